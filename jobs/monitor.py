"""spark-submit entry point for `segspark monitor`: the same options (--config, --lakehouse, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("monitor", argv)


if __name__ == "__main__":
    sys.exit(main())

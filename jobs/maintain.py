"""spark-submit entry point for `segspark maintain`: the same options (--config, --lakehouse, --as-of, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("maintain", argv)


if __name__ == "__main__":
    sys.exit(main())

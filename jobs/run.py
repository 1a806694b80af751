"""spark-submit entry point for `segspark run`: the same options (--config, --layout, --input, --as-of, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("run", argv)


if __name__ == "__main__":
    sys.exit(main())

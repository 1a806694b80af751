"""spark-submit entry point for `segspark export`: the same options (--table, --format, --out, --where, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("export", argv)


if __name__ == "__main__":
    sys.exit(main())

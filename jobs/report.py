"""spark-submit entry point for `segspark report`."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("report", argv)


if __name__ == "__main__":
    sys.exit(main())

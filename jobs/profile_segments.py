"""spark-submit entry point for `segspark profile` (not jobs/profile.py: that name would shadow Python's `profile`
module, which pyspark imports, since spark-submit puts this folder first on sys.path)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("profile", argv)


if __name__ == "__main__":
    sys.exit(main())

"""spark-submit entry point for `segspark backfill`: the same options (--config, --lakehouse, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("backfill", argv)


if __name__ == "__main__":
    sys.exit(main())

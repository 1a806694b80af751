"""spark-submit entry point for `segspark ingest`: the same options (--config, --layout, --input, --lakehouse, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("ingest", argv)


if __name__ == "__main__":
    sys.exit(main())

"""spark-submit entry point for `segspark score`: the same options (--config, --lakehouse, --as-of, --model, ...)."""

import sys

from segspark.cli import job_main


def main(argv=None) -> int:
    return job_main("score", argv)


if __name__ == "__main__":
    sys.exit(main())

"""The ``segspark`` command line: ``segspark run`` and one subcommand per stage.

Exit codes: 0 success, 2 bad usage or configuration (the message names the problem), 1 job failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segspark import __version__
from segspark.config import Config, load_config
from segspark.errors import SegsparkError
from segspark.inputs import check_ingest_input

log = logging.getLogger("segspark")

#: Subcommand -> (stages it runs, help). ``run`` runs every stage in order.
COMMANDS: dict[str, tuple[list[str], str]] = {
    "run": (["ingest", "features", "train"], "run the whole pipeline: every stage in order"),
    "ingest": (["ingest"], "raw transactions -> transactions_clean + transactions_rejected"),
    "features": (["features"], "transactions_clean -> customer_features for the --as-of snapshots"),
    "train": (
        ["train"],
        "customer_features -> K sweep, saved model, model_selection + customer_segments + segment_centroids",
    ),
}


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every stage command and job entry point shares."""
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML config layer (repeatable; later wins)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="override one config key, e.g. --set source.format=parquet (repeatable)",
    )
    parser.add_argument("--input", metavar="PATH", help="raw transactions: file, folder, glob or table name")
    parser.add_argument("--lakehouse", metavar="DIR", help="root folder of all output Delta tables and models")
    parser.add_argument(
        "--as-of", action="append", default=[], type=_iso_date, metavar="DATE", dest="as_of",
        help="snapshot date YYYY-MM-DD (repeatable)",
    )
    parser.add_argument(
        "--env", default="local", metavar="NAME", help="config overlay conf/<NAME>.yaml (default: local)"
    )
    parser.add_argument("--conf-dir", metavar="DIR", help="folder with base.yaml and overlays (default: conf/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segspark",
        description="Customer segmentation on Apache Spark and Delta Lake.",
        epilog="Exit codes: 0 success, 2 bad usage or configuration, 1 job failure.",
    )
    parser.add_argument("--version", action="version", version=f"segspark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        add_common_options(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the layered configuration the arguments describe."""
    flags: dict[str, Any] = {}
    if args.input:
        flags.setdefault("source", {})["path"] = args.input
    if args.lakehouse:
        flags["lakehouse"] = args.lakehouse
    if args.as_of:
        flags["as_of_dates"] = [d.isoformat() for d in args.as_of]
    return load_config(args.config, args.overrides, env=args.env, conf_dir=args.conf_dir, flags=flags)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (pytest and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always wins
        pass


def configure_logging(verbose: bool = False) -> None:
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("segspark %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def execute(stages: list[str], args: argparse.Namespace) -> int:
    """Load config, build the session, run the stages, stop the session; map errors to exit codes."""
    from segspark.pipeline import run_stages
    from segspark.session import build_spark_session

    configure_logging(args.verbose)
    spark = None
    try:
        config = config_from_args(args)
        if "ingest" in stages:
            check_ingest_input(config)  # a bad local --input is a usage error, found before the JVM starts
        spark = build_spark_session(config.spark)
        run_id = run_stages(spark, config, stages)
        print(f"segspark: run {run_id} finished; tables under {Path(config.lakehouse).resolve()}")
        return 0
    except SegsparkError as exc:
        print(f"segspark: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a Spark or Java failure: one readable line first, the detail in debug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"segspark: job failed: {type(exc).__name__}: {first}", file=sys.stderr)
        log.debug("job failure detail", exc_info=True)
        return 1
    finally:
        if spark is not None:
            spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return execute(COMMANDS[args.command][0], args)


def job_main(stage_command: str, argv: Sequence[str] | None = None) -> int:
    """Entry point for ``jobs/<stage>.py`` under spark-submit: the same options as ``segspark <stage>``."""
    stages, help_text = COMMANDS[stage_command]
    parser = argparse.ArgumentParser(prog=f"jobs/{stage_command}.py", description=help_text)
    add_common_options(parser)
    return execute(stages, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

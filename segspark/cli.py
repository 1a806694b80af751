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
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from segspark import __version__
from segspark.config.settings import Config, load_config
from segspark.errors import ConfigError, SegsparkError
from segspark.platform import progress
from segspark.stages.ingest.preflight import check_ingest_input

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "COMMANDS",
    "Command",
    "add_common_options",
    "build_parser",
    "config_from_args",
    "configure_logging",
    "default_env",
    "execute",
    "job_file",
    "job_main",
    "main",
    "spark_log_file",
]

log = logging.getLogger("segspark")


class Command(NamedTuple):
    """One subcommand (and its ``jobs/<name>.py`` entry point)."""

    #: Stages it runs, in order.
    stages: list[str]
    help: str
    #: Options beyond the shared ones that its stages use: ``input``, ``layout``, ``as_of``. Every other
    #: command-specific option is a usage error for it.
    uses: tuple[str, ...]
    #: Arguments of the one example in its help, after ``segspark <name>`` or ``jobs/<name>.py``.
    example: str


COMMANDS: dict[str, Command] = {
    "run": Command(
        ["ingest", "features", "segment", "profile", "monitor", "report"],
        "run the whole pipeline: ingest, features, train (or score a later snapshot), profile, monitor, report",
        ("input", "layout", "as_of", "retrain", "full_refresh"),
        "--layout online_retail --input data/ --lakehouse lakehouse --as-of 2011-12-01",
    ),
    "ingest": Command(
        ["ingest"],
        "raw transactions -> transactions_clean + transactions_rejected",
        ("input", "layout", "full_refresh"),
        "--config conf/layouts/online_retail.yaml --input data/ --lakehouse lakehouse",
    ),
    "features": Command(
        ["features"],
        "transactions_clean -> customer_features for the --as-of snapshots",
        ("as_of",),
        "--lakehouse lakehouse --as-of 2011-11-01 --as-of 2011-12-01",
    ),
    "train": Command(
        ["train"],
        "customer_features -> K sweep, saved model, model_selection + customer_segments + segment_centroids",
        ("as_of",),
        "--lakehouse lakehouse --as-of 2011-12-01 --set model.k_max=8",
    ),
    "score": Command(
        ["score"],
        "a saved model + a customer_features snapshot -> that snapshot's customer_segments",
        ("as_of", "model"),
        "--lakehouse lakehouse --as-of 2012-01-01",
    ),
    "profile": Command(
        ["profile"],
        "customer_segments + features + lines -> segment_profiles, names, plays, top products, cross-sell, "
        "campaign_audiences (+ campaign_results)",
        ("as_of",),
        "--lakehouse lakehouse --as-of 2012-01-01",
    ),
    "monitor": Command(
        ["monitor"],
        "customer_segments + features -> segment_migration between consecutive scored snapshots, feature_drift "
        "of each against its model, and the retrain decision",
        (),
        "--lakehouse lakehouse",
    ),
    "backfill": Command(
        ["features", "segment", "profile", "monitor"],
        "past snapshots in turn, each published on its own: features, train at the first (or --model) or score, "
        "profile, monitor; a re-run continues from the first unpublished snapshot",
        ("as_of", "model", "from", "to", "every"),
        "--lakehouse lakehouse --from 2011-03-01 --to 2011-12-01 --every month",
    ),
    "report": Command(
        ["report"],
        "the published tables of one snapshot -> <lakehouse>/reports/<run_id>/index.html and its figures",
        ("as_of", "run_id"),
        "--lakehouse lakehouse --as-of 2011-12-10",
    ),
    "maintain": Command(
        ["maintain"],
        "compact and Z-order every table (OPTIMIZE), delete files no recent version needs (VACUUM), report files",
        ("as_of",),
        "--lakehouse lakehouse --catalog-db segmentation",
    ),
    "export": Command(
        [],
        "a published table, optionally filtered -> CSV or Parquet files to hand on",
        ("export",),
        "--lakehouse lakehouse --table campaign_audiences --format csv --out champions "
        "--where \"segment_name = 'Champions' and not is_control\"",
    ),
}

#: Command-line flag of each command-specific option.
_FLAGS = {
    "input": "--input",
    "layout": "--layout",
    "as_of": "--as-of",
    "model": "--model",
    "retrain": "--retrain",
    "full_refresh": "--full-refresh",
    "run_id": "--run-id",
    "from": "--from",
    "to": "--to",
    "every": "--every",
}


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


class _NotUsed(argparse.Action):
    """A command-specific option given to a command that does not use it: a usage error naming it.

    Without it argparse would report "unrecognized arguments" from the top-level parser, with the top-level
    usage; this says which commands take the option instead.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, users: list[str], **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.users = users

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        raise argparse.ArgumentError(self, f"{parser.prog} does not use it (commands that do: {', '.join(self.users)})")


def _as_of_option(command: str) -> tuple[str, dict[str, Any]]:
    if command == "score":
        return "the customer_features snapshot to score, YYYY-MM-DD (default: the latest in the table)", {}
    if command == "profile":
        return "the customer_segments snapshot to profile, YYYY-MM-DD (default: the latest in the table)", {}
    if command == "report":
        return "the customer_segments snapshot to report, YYYY-MM-DD (default: the latest in the table)", {}
    if command == "backfill":
        return "a snapshot to backfill, YYYY-MM-DD (repeatable; with or instead of --from/--to/--every)", {
            "action": "append",
            "default": [],
        }
    if command == "train":
        what = (
            "the customer_features snapshot to train on, YYYY-MM-DD (default: the latest in the table; with "
            "model.input=attributes, the date the segments are written under, default today)"
        )
        return what, {}
    if command == "features":
        what = "snapshot date YYYY-MM-DD to build (repeatable; default: the day after the latest clean invoice)"
    elif command == "maintain":
        what = "compact only this snapshot's partitions, YYYY-MM-DD (repeatable; default: every snapshot)"
    else:
        what = (
            "snapshot date YYYY-MM-DD for features (repeatable; default: the day after the latest clean "
            "invoice); train uses the latest"
        )
    return what, {"action": "append", "default": []}


def add_common_options(parser: argparse.ArgumentParser, command: str = "run") -> None:
    """The options of ``command``: the shared ones and those its stages use.

    Command-specific options it does not use are hidden and rejected with a usage error (exit 2).
    """
    uses = COMMANDS[command].uses
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML config layer (repeatable; later wins)"
    )
    if "layout" in uses:
        parser.add_argument(
            "--layout",
            metavar="NAME",
            help="source layout conf/layouts/NAME.yaml, layered right after the env overlay (e.g. online_retail)",
        )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one config key, e.g. --set source.format=parquet (repeatable)",
    )
    if "input" in uses:
        parser.add_argument(
            "--input", metavar="PATH", help="raw transactions: file, folder, glob or table name (source.path)"
        )
    parser.add_argument("--lakehouse", metavar="DIR", help="root folder of all output Delta tables and models")
    if "model" in uses:
        default = "train on the first snapshot" if command == "backfill" else "the latest trained model"
        parser.add_argument(
            "--model", metavar="VERSION", help=f"saved model to score with (score.model_version; default: {default})"
        )
    if "from" in uses:
        parser.add_argument("--from", type=_iso_date, metavar="DATE", dest="start", help="first snapshot, YYYY-MM-DD")
        parser.add_argument("--to", type=_iso_date, metavar="DATE", dest="end", help="last snapshot at the latest")
        parser.add_argument("--every", choices=["week", "month"], help="the step from one snapshot to the next")
    if "export" in uses:
        parser.add_argument("--table", required=True, metavar="NAME", help="table to export, e.g. campaign_audiences")
        parser.add_argument("--format", required=True, choices=["csv", "parquet"], dest="fmt", help="file format")
        parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist)")
        parser.add_argument(
            "--where",
            metavar="CLAUSE",
            help="rows to keep: the table's columns, literals, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, LIKE",
        )
        parser.add_argument("--overwrite", action="store_true", help="replace the folder --out if it exists")
    if "retrain" in uses:
        parser.add_argument(
            "--retrain",
            action="store_true",
            default=None,
            help="fit a new model even when the latest one could score this later snapshot (run.retrain)",
        )
    if "full_refresh" in uses:
        parser.add_argument(
            "--full-refresh",
            action="store_true",
            default=None,
            dest="full_refresh",
            help="re-ingest every source file and replace the transactions tables (ingest.mode=full)",
        )
    if "run_id" in uses:
        parser.add_argument(
            "--run-id",
            metavar="ID",
            dest="run_id",
            help="the run whose snapshot to report (report.run_id; default: --as-of, else the latest snapshot)",
        )
    if "as_of" in uses:
        help_text, kwargs = _as_of_option(command)
        parser.add_argument("--as-of", type=_iso_date, metavar="DATE", dest="as_of", help=help_text, **kwargs)
    parser.add_argument(
        "--env",
        metavar="NAME",
        help="environment overlay conf/NAME.yaml (default: local; cluster under spark-submit)",
    )
    parser.add_argument(
        "--conf-dir", metavar="DIR", help="folder with base.yaml, the env overlays and layouts/ (default: conf/)"
    )
    if command != "export":
        parser.add_argument(
            "--catalog-db",
            metavar="NAME",
            dest="catalog_db",
            help="register every output table in this catalog database afterwards (catalog.database)",
        )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    for option, flag in _FLAGS.items():
        if option not in uses:
            users = [name for name, spec in COMMANDS.items() if option in spec.uses]
            parser.add_argument(flag, action=_NotUsed, users=users)


def _epilog(example: str) -> str:
    return f"example:\n  {example}\n\nExit codes: 0 success, 2 bad usage or configuration, 1 job failure."


def build_parser() -> argparse.ArgumentParser:
    """The ``segspark`` command line: one subcommand per entry of ``COMMANDS``, each with its options."""
    parser = argparse.ArgumentParser(
        prog="segspark",
        description="Customer segmentation on Apache Spark and Delta Lake.",
        epilog="Run 'segspark COMMAND --help' for a command's options and an example.\n"
        "Exit codes: 0 success, 2 bad usage or configuration, 1 job failure.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"segspark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        add_common_options(
            sub.add_parser(
                name,
                help=spec.help,
                description=spec.help,
                epilog=_epilog(f"segspark {name} {spec.example}"),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            ),
            name,
        )
    return parser


def default_env() -> str:
    """``cluster`` inside spark-submit (the local overlay binds the driver to 127.0.0.1, which executors on other
    machines cannot reach), ``local`` otherwise."""
    from segspark.platform.session import running_under_spark_submit

    return "cluster" if running_under_spark_submit() else "local"


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the layered configuration the arguments describe.

    A command-specific option the command does not have (``--input``, ``--layout``, ``--as-of``) may be absent
    from ``args``; ``train``'s ``--as-of`` is one date, the others' a list.
    """
    flags: dict[str, Any] = {}
    if getattr(args, "input", None):
        flags.setdefault("source", {})["path"] = args.input
    if getattr(args, "lakehouse", None):
        flags["lakehouse"] = args.lakehouse
    if getattr(args, "model", None):
        flags["score"] = {"model_version": args.model}
    if getattr(args, "retrain", None):
        flags["run"] = {"retrain": True}
    if getattr(args, "full_refresh", None):
        flags["ingest"] = {"mode": "full"}
    if getattr(args, "run_id", None):
        flags["report"] = {"run_id": args.run_id}
    if getattr(args, "catalog_db", None):
        flags["catalog"] = {"database": args.catalog_db}
    as_of = getattr(args, "as_of", None) or []
    if as_of:
        flags["as_of_dates"] = [d.isoformat() for d in ([as_of] if isinstance(as_of, dt.date) else as_of)]
    return load_config(
        getattr(args, "config", None),
        getattr(args, "overrides", None),
        env=getattr(args, "env", None) or default_env(),
        layout=getattr(args, "layout", None),
        conf_dir=getattr(args, "conf_dir", None),
        flags=flags,
    )


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (pytest and notebooks replace it), after
    erasing the progress line so the two never share a line."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; the property always wins
        pass

    def emit(self, record: logging.LogRecord) -> None:
        progress.clear_line()
        super().emit(record)


def configure_logging(verbose: bool = False) -> None:
    """Send the ``segspark`` logger's records, INFO and up (DEBUG with ``verbose``), to the current stderr only."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("segspark %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def spark_log_file(config: Config, run_id: str) -> Path:
    """Where Spark's own console output (Ivy, log4j, JVM warnings) goes: ``<lakehouse>/_logs/<run_id>.log``,
    or a cache folder when the lakehouse is not a local folder."""
    folder = config.lakehouse_local_path
    base = folder / "_logs" if folder is not None else Path("~/.cache/segspark/logs").expanduser()
    return base / f"{run_id}.log"


def execute(stages: list[str], args: argparse.Namespace) -> int:
    """Load config, build the session, run the stages, stop the session; map errors to exit codes."""
    from segspark.console import maintain_summary, profile_summary, run_summary
    from segspark.pipeline import run_stages
    from segspark.platform import catalog, privacy
    from segspark.platform.lakehouse import check_lakehouse
    from segspark.platform.session import build_spark_session, running_under_spark_submit
    from segspark.platform.stage_log import new_run_id
    from segspark.stages.monitor.stage import MonitorResult
    from segspark.stages.report.stage import ReportResult

    verbose = getattr(args, "verbose", False)
    configure_logging(verbose)
    spark = None
    try:
        config = config_from_args(args)
        if "ingest" in stages:
            check_ingest_input(config)  # a bad local --input is a usage error, found before the JVM starts
        check_lakehouse(config)
        backfilled = backfill_dates(args) if getattr(args, "command", None) == "backfill" else None
        trains = "train" in stages or "segment" in stages
        if "ingest" in stages or (trains and config.model.attributes.path is not None):
            privacy.id_key(config.privacy)  # a missing key is a usage error, found before the JVM starts
        run_id = new_run_id()
        # Under spark-submit the JVM's console is the submitter's; segspark redirects only a JVM it starts.
        jvm_log = None if verbose or running_under_spark_submit() else spark_log_file(config, run_id)
        if jvm_log is not None:
            log.info("Spark's own log: %s", jvm_log)
        spark = build_spark_session(
            config.spark,
            jvm_log=jvm_log,
            warehouse_dir=f"{config.lakehouse}/_spark_warehouse",
            extra_conf=catalog.session_conf(config),
        )
        if backfilled is not None:
            return _backfill(spark, config, backfilled)
        if not stages:  # export: reads published versions only, so it takes no lock and repairs nothing
            from segspark.stages.export.stage import run_export

            with progress.ProgressReporter(spark):
                result = run_export(spark, config, args.table, args.fmt, args.out, args.where, args.overwrite)
            print(
                f"segspark: exported {result.rows:,} rows of {result.table} to {result.path} "
                f"({len(result.files)} file(s))"
            )
            return 0
        if len(stages) > 1 and not config.report.enabled:
            stages = [s for s in stages if s != "report"]  # report.enabled=false: segspark run stops at profile
        results: dict[str, object] = {}
        with progress.ProgressReporter(spark):
            run_stages(spark, config, stages, run_id, results=results)
        for summary in (
            run_summary(spark, config, run_id) if trains else None,
            profile_summary(spark, config, run_id) if "profile" in stages else None,
        ):
            if summary:
                print(summary)
        # run_stages keeps each stage's own result under the stage's name, and the catalog's under "catalog".
        monitored, retrained = results.get("monitor"), results.get("retrained")
        if isinstance(retrained, str):  # monitor.auto_retrain refitted the snapshot's model
            print(f"segspark: {retrained}")
        elif isinstance(monitored, MonitorResult) and monitored.decision is not None:
            print(f"segspark: {monitored.decision.line()}")
        report = results.get("report")
        if isinstance(report, ReportResult):
            print(f"segspark: report {report.path}")
        maintained = results.get("maintain")
        if isinstance(maintained, list):
            print(maintain_summary(maintained))
        registration = results.get("catalog")
        if isinstance(registration, catalog.Registration):
            print(f"segspark: {len(registration.tables)} tables registered in catalog database {registration.database}")
        print(f"segspark: run {run_id} finished; tables under {config.lakehouse_local_path or config.lakehouse}")
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


def backfill_dates(args: argparse.Namespace) -> list[dt.date]:
    """The snapshots ``segspark backfill`` was given: ``--as-of`` dates and the ``--from``/``--to``/``--every``
    series (all three or none).

    Raises
    ------
    ConfigError
        Only some of the three, or no date at all.
    """
    from segspark.backfill import snapshot_dates

    start, end, every = (getattr(args, name, None) for name in ("start", "end", "every"))
    dates = list(getattr(args, "as_of", None) or [])
    if start is not None or end is not None or every is not None:
        if start is None or end is None or every is None:
            raise ConfigError("--from, --to and --every go together: give all three (or --as-of dates)")
        dates += snapshot_dates(start, end, every)
    if not dates:
        raise ConfigError("backfill needs snapshot dates: --from, --to and --every, or --as-of (repeatable)")
    return sorted(set(dates))


def _backfill(spark: SparkSession, config: Config, dates: list[dt.date]) -> int:
    from segspark.backfill import run_backfill

    with progress.ProgressReporter(spark):
        outcome = run_backfill(spark, config, dates, config.score.model_version)
    for snapshot in outcome:
        how = "already published" if snapshot.run_id is None else f"run {snapshot.run_id}, {snapshot.segmented_by}"
        decision = f"; {snapshot.decision}" if snapshot.decision else ""
        print(f"segspark: {snapshot.as_of}: {how}, model {snapshot.model_version}{decision}")
    built = sum(1 for s in outcome if s.run_id is not None)
    print(f"segspark: backfill of {len(outcome)} snapshot(s) finished: {built} built, {len(outcome) - built} skipped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``segspark`` console command: parse ``argv`` (default ``sys.argv``), run the command, return its exit
    code."""
    args = build_parser().parse_args(argv)
    return execute(COMMANDS[args.command][0], args)


def job_file(command: str) -> str:
    """The spark-submit entry point of ``command``: ``jobs/<command>.py``, except ``profile``.

    spark-submit puts the job's folder first on ``sys.path``, so ``jobs/profile.py`` would stand in for the
    standard library's ``profile`` module (which pyspark imports through cProfile) and break every job.
    """
    return "jobs/profile_segments.py" if command == "profile" else f"jobs/{command}.py"


def job_main(stage_command: str, argv: Sequence[str] | None = None) -> int:
    """Entry point for ``jobs/<stage>.py`` under spark-submit: the same options as ``segspark <stage>``."""
    spec = COMMANDS[stage_command]
    job = job_file(stage_command)
    example = f"scripts/submit.sh --master 'local[2]' {job} {spec.example}"
    parser = argparse.ArgumentParser(
        prog=job,
        description=spec.help,
        epilog=_epilog(example),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, stage_command)
    return execute(spec.stages, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

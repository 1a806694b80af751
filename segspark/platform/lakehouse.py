"""Reading and writing the lakehouse's Delta tables.

Every write goes through :func:`write_table`, which enforces the table's schema contract (column order, types,
comments), creates the table with its comment on first use, and returns the Delta version it committed and the
row count Delta recorded for that commit, so that stages can reconcile counts against what really landed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import TableSpec
from segspark.errors import ConfigError, InputError, InternalError
from segspark.platform import filesystem

__all__ = [
    "Commit",
    "WriteResult",
    "check_lakehouse",
    "commits_after",
    "conform",
    "create_table",
    "current_version",
    "existing_version",
    "dates_predicate",
    "delete_path",
    "one_row",
    "path_identifier",
    "read_input",
    "read_table",
    "restore",
    "table_exists",
    "table_id",
    "write_table",
]

log = logging.getLogger("segspark")

#: Names in ``_delta_log`` that make a table: a commit (``00000000000000000000.json``) or a checkpoint (one
#: file or several parts), as globs of :func:`segspark.platform.filesystem.list_names`.
_COMMIT_PATTERNS = ("[0-9]*.json", "[0-9]*.checkpoint*.parquet")


@dataclass(frozen=True)
class WriteResult:
    """What one committed write did."""

    path: str
    version: int
    rows_written: int


@dataclass(frozen=True)
class Commit:
    """One commit of a Delta table, as its history reports it."""

    version: int
    #: Delta's name for it: ``WRITE``, ``OPTIMIZE``, ``RESTORE``, ``MERGE``, ``SET TBLPROPERTIES``, ...
    operation: str
    #: ``operationParameters`` (``mode`` of a WRITE, ``version`` of a RESTORE), all text.
    parameters: dict[str, str]
    #: ``operationMetrics`` (``numOutputRows`` of a WRITE), all text.
    metrics: dict[str, str]


def dates_predicate(column: str, dates: Iterable[dt.date]) -> str:
    """``replaceWhere`` text selecting ``column`` IN the given dates: the one predicate segspark writes as text.

    (Export's ``--where`` is the user's text: :mod:`segspark.stages.export.where_clause` parses and renders it again.)

    Delta's ``replaceWhere`` takes only a string. The column must be a plain identifier and every value a
    :class:`datetime.date`, rendered as a ``DATE'yyyy-mm-dd'`` literal, so no text from config or data is pasted.
    """
    if not column.isidentifier():
        raise ValueError(f"not a plain column name: {column!r}")
    values = list(dates)
    if not values or not all(type(d) is dt.date for d in values):
        raise ValueError(f"replaceWhere needs datetime.date values, got {values!r}")
    literals = ", ".join("DATE'" + d.isoformat() + "'" for d in values)
    return f"{column} IN ({literals})"


def check_lakehouse(config: Config) -> None:
    """Make sure a local lakehouse folder exists and is writable, before any Spark work starts.

    A lakehouse on another filesystem (s3a://, abfss://, gs://, hdfs://) is checked by its first write.
    Raises ConfigError (exit 2) naming the folder and what is wrong with it.
    """
    folder = config.lakehouse_local_path
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"lakehouse '{folder}' is a file, not a folder: pass --lakehouse DIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"lakehouse '{folder}' cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"lakehouse '{folder}' is not writable by this user")
    # A table folder left by another user (or made read-only) would otherwise fail mid-run in the JVM.
    for name in config.tables.model_dump().values():
        for sub in (folder / name, folder / name / "_delta_log"):
            if sub.is_dir() and not os.access(sub, os.W_OK | os.X_OK):
                raise ConfigError(f"table folder '{sub}' in the lakehouse is not writable by this user")


def table_exists(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` holds a Delta table with at least one commit.

    Delta answers from the table's log as this session last cached it, and it does not look again: a session
    that saw a folder without a commit (a run stopped while creating the table) keeps answering "no table" after
    another process has created it. When Delta says no but the log folder holds commits, the cached logs are
    dropped and Delta is asked again, so a long-lived session (a notebook, the tests, a server) neither misses
    a table nor takes it for an unfinished one.
    """
    if DeltaTable.isDeltaTable(spark, path):
        return True
    if not _has_commits(spark, path):
        return False
    filesystem.clear_delta_log_cache(spark)
    return DeltaTable.isDeltaTable(spark, path)


def _has_commits(spark: SparkSession, path: str) -> bool:
    """Whether the table's ``_delta_log`` holds a commit or a checkpoint, read from the file system itself."""
    try:
        return any(filesystem.list_names(spark, f"{path}/_delta_log", pattern=p) for p in _COMMIT_PATTERNS)
    except FileNotFoundError:  # no log folder
        return False


def one_row(df: DataFrame, what: str) -> Row:
    """The first row of ``df``, a frame known to hold one: a global aggregation, a table's latest commit.

    An action (``first()``): call it only where the stage means to run one, on a frame of one row.

    Raises
    ------
    InternalError
        ``df`` holds no row after all; ``what`` (``"the latest commit of <path>"``) says which row was expected.
    """
    row = df.first()
    if row is None:
        raise InternalError(f"expected one row, found none: {what}")
    return row


def existing_version(spark: SparkSession, path: str, when: str) -> int:
    """The latest version of a table that must exist now (``when``: "right after train wrote it").

    Raises
    ------
    InternalError
        There is no Delta table at ``path`` after all.
    """
    version = current_version(spark, path)
    if version is None:
        raise InternalError(f"no Delta table at {path} {when}")
    return version


def current_version(spark: SparkSession, path: str) -> int | None:
    """Latest committed version of the Delta table at ``path``, or None when there is no table."""
    if not table_exists(spark, path):
        return None
    # history(1) is one row: the latest commit.
    history_df = DeltaTable.forPath(spark, path).history(1).select("version")
    return int(one_row(history_df, f"the latest commit of {path}")[0])


def commits_after(spark: SparkSession, path: str, version: int) -> list[Commit]:
    """The commits of the table at ``path`` after ``version``, oldest first; [] when there is no table.

    Only those the table's log still holds (Delta drops commits older than ``delta.logRetentionDuration``): a
    caller that needs every one checks the versions are consecutive.
    """
    current = current_version(spark, path)
    if current is None or current <= version:
        return []
    # history(n) is the latest n commits: one row per commit, read from the log only.
    history_df = DeltaTable.forPath(spark, path).history(current - version)
    rows = history_df.select("version", "operation", "operationParameters", "operationMetrics").collect()
    found = [
        Commit(
            int(r["version"]), r["operation"], dict(r["operationParameters"] or {}), dict(r["operationMetrics"] or {})
        )
        for r in rows
        if int(r["version"]) > version
    ]
    return sorted(found, key=lambda c: c.version)


def table_id(spark: SparkSession, path: str) -> str:
    """The Delta table id of the table at ``path``: it changes only when the table is created anew."""
    detail_df = DeltaTable.forPath(spark, path).detail().select("id")
    return str(one_row(detail_df, f"DESCRIBE DETAIL of the Delta table at {path}")["id"])


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select exactly the spec's columns, in order, cast to its types and carrying its comments."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name, metadata=f.metadata) for f in spec.schema.fields])


def create_table(spark: SparkSession, path: str, spec: TableSpec) -> None:
    """Create the empty Delta table (version 0) with the spec's schema, comment and layout, if absent."""
    _ensure_table(spark, path, spec)


def _clear_unfinished_table(spark: SparkSession, path: str) -> None:
    """Remove a table folder whose first commit never landed (a run killed while creating it).

    Such a folder holds a ``_delta_log`` without any commit; Delta treats it as no table, yet refuses to create
    one there. Nothing in it was ever readable, so nothing is lost.
    """
    # Only a log without any commit: a table with commits is never deleted, whatever a cache says.
    if filesystem.exists(spark, f"{path}/_delta_log") and not _has_commits(spark, path):
        filesystem.delete(spark, path, recursive=True)
        log.warning("removed %s: its first commit never finished (a run was stopped while creating it)", path)


def _ensure_table(spark: SparkSession, path: str, spec: TableSpec) -> None:
    _clear_unfinished_table(spark, path)
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(spec.schema).comment(spec.comment)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    if spec.stats_columns is not None:
        builder = builder.property("delta.dataSkippingStatsColumns", ",".join(spec.stats_columns))
    for key, value in spec.properties:
        builder = builder.property(key, value)
    builder.execute()


def write_table(
    df: DataFrame,
    path: str,
    spec: TableSpec,
    *,
    mode: str = "overwrite",
    replace_where: str | None = None,
    overwrite_schema: bool = False,
) -> WriteResult:
    """Write ``df`` to the Delta table at ``path`` in one atomic commit.

    Parameters
    ----------
    df : rows to write; must hold the spec's columns (extra columns are dropped).
    mode : ``overwrite`` (replace the table, or the ``replace_where`` slice) or ``append``.
    replace_where : a predicate on partition columns; with ``overwrite`` only matching rows are replaced.
    overwrite_schema : allow the table's schema to change (full-refresh tables whose source layout can vary).
    """
    spark = df.sparkSession
    if not table_exists(spark, path):  # a cheap check; creating an existing table still reads its log
        _ensure_table(spark, path, spec)
    elif spec.relaxed_columns:
        _relax_not_null(spark, path, spec.relaxed_columns)
    # Delta commits nothing for an append of no rows: the latest commit would then be an earlier run's.
    before = current_version(spark, path) if mode == "append" else None
    writer = conform(df, spec).write.format("delta").mode(mode)
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    if replace_where is not None:
        writer = writer.option("replaceWhere", replace_where)
    if overwrite_schema:
        writer = writer.option("overwriteSchema", "true")
    elif spec.added_columns:  # a table written before these columns existed gains them (nullable) on this write
        writer = writer.option("mergeSchema", "true")
    writer.save(path)
    last = one_row(
        DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics"),
        f"the commit just written to {path}",
    )
    metrics = last["operationMetrics"] or {}
    if before is not None and int(last["version"]) == before:
        return WriteResult(path=path, version=before, rows_written=0)
    return WriteResult(path=path, version=int(last["version"]), rows_written=int(metrics.get("numOutputRows", 0)))


def _relax_not_null(spark: SparkSession, path: str, columns: tuple[str, ...]) -> None:
    """Drop NOT NULL from ``columns`` where a table written by an earlier release still has it (one commit
    each, once)."""
    fields = {f.name: f for f in read_table(spark, path).schema.fields}
    for name in columns:
        if name in fields and not fields[name].nullable:
            spark.sql(f"ALTER TABLE {path_identifier(path)} ALTER COLUMN `{name}` DROP NOT NULL")
            log.info("%s: column %s may now be null", path, name)


def path_identifier(path: str) -> str:
    """The Delta table at ``path`` as a Spark SQL identifier, ``delta.`path``` (backticks in it doubled)."""
    return "delta.`{}`".format(path.replace("`", "``"))


def restore(spark: SparkSession, path: str, version: int | None) -> None:
    """Put the table back to ``version`` (the one before a failed run).

    ``None`` means the table did not exist before the run: it goes back to version 0, the empty table
    :func:`write_table` creates first, so no partial rows survive.
    """
    if not table_exists(spark, path):
        return
    target = 0 if version is None else version
    if current_version(spark, path) != target:
        DeltaTable.forPath(spark, path).restoreToVersion(target)


def delete_path(spark: SparkSession, path: str) -> bool:
    """Delete a folder (a model a failed run saved) through Hadoop's FileSystem, so object stores work too.

    Returns whether anything was deleted.
    """
    return filesystem.exists(spark, path) and filesystem.delete(spark, path, recursive=True)


def _is_folder(spark: SparkSession, uri: str) -> bool:
    """Whether ``uri`` names an existing folder (not a file, not a glob)."""
    return filesystem.is_folder(spark, uri)


def read_table(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """The Delta table at ``path``: its latest version, or ``version`` when given."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def read_input(
    spark: SparkSession,
    fmt: str,
    path: str | list[str],
    csv_options: dict[str, str],
    what: str,
    base: str | None = None,
) -> DataFrame:
    """Read a user's csv/parquet/delta path or catalog table (``fmt == "table"``); CSV columns stay text.

    ``path`` may be a list of files of the folder or glob ``base``: they are read with the columns a read of
    ``base`` would have (folder partition columns included, when ``base`` is a folder).
    A missing path or table raises InputError naming ``what`` and the path, not a Java stack trace.
    """
    paths = [path] if isinstance(path, str) else path
    options = dict(csv_options) if fmt == "csv" else {}
    if isinstance(path, list) and base is not None and _is_folder(spark, base):
        options["basePath"] = base
    try:
        if fmt == "csv":
            return spark.read.options(**options).option("inferSchema", "false").csv(paths)
        if fmt == "parquet":
            return spark.read.options(**options).parquet(*paths)
        if fmt == "delta":
            return spark.read.format("delta").load(paths[0])
        return spark.table(paths[0])
    except AnalysisException as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise InputError(f"cannot read {fmt} {what} '{path}': {first_line}") from None

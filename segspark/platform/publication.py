"""Publication: the tables of one stage run become visible together, or not at all.

A stage that writes several tables (ingest: two; train: four and a model folder) commits each to Delta on its
own, so a driver killed between two commits would leave tables from two different runs. The ``published_runs``
table is the publication log that makes the set atomic:

- A stage writes its tables, then appends one row naming the Delta version of each (:func:`publish`). A Delta
  append is one atomic commit, so a run is published completely or not at all.
- Readers (the next stage, and every later command) read each table at the version of its latest publication
  (:func:`read_published`), never at a version a run left behind without publishing.
- Every segspark command first rolls back (Delta ``RESTORE``) any table whose latest version is not its
  published one (:func:`repair`), and records the rollback as a ``repair`` row. After any later command, a
  tool reading the tables' latest versions (a BI dashboard) sees one consistent published set again.

A lakehouse written before the log existed is adopted: the first command records its tables' current versions
as published (an ``adopt`` row).

Stages whose tables readers join (``segspark run``'s features, train or score, and profile) publish as one unit
inside :func:`together`: each :func:`publish` is held back, readers in this process already read the held
versions, and the block's end appends every held row in one commit. A failure anywhere in the block rolls back
all of them, so a killed or failed run never leaves a snapshot's segments from one model and its profile from
another.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import PUBLISHED_RUNS, PUBLISHED_TABLES, RUN_ID
from segspark.errors import InputError, InternalError
from segspark.platform import lakehouse

log = logging.getLogger("segspark")

#: Which command to run when a table has never been published.
_PRODUCER = {
    "transactions_clean": "ingest",
    "transactions_rejected": "ingest",
    "invoice_rollup": "features",
    "product_rollup": "features",
    "new_products_rollup": "features",
    "rollup_batches": "features",
    "customer_features": "features",
    "customer_segments": "train",
    "segment_centroids": "train",
    "model_selection": "train",
    "sweep_segments": "train",
    "drift_reference": "train",
    "segment_profiles": "profile",
    "segment_top_products": "profile",
    "segment_cross_sell": "profile",
    "campaign_audiences": "profile",
    "campaign_results": "profile",
    "segment_migration": "monitor",
    "feature_drift": "monitor",
}


def _log_path(config: Config) -> str:
    return config.table_path("published_runs")


@dataclass(frozen=True)
class _Row:
    """One row of the publication log, before it is written."""

    run_id: str
    stage: str
    kind: str
    versions: Mapping[str, int]
    model_version: str | None = None
    counts: Mapping[str, int] | None = None


@dataclass
class _Group:
    """The publications :func:`together` holds back until its block ends."""

    run_id: str
    rows: list[_Row] = field(default_factory=list)
    #: What to undo outside the tables (train's model folder) if the group is rolled back after all.
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: A repair ran inside the block: the held versions were rolled back and must never be published.
    repaired: bool = False

    def versions(self) -> dict[str, int]:
        """Table -> the version the held rows name, a later row's winning (profile's customer_segments)."""
        held: dict[str, int] = {}
        for row in self.rows:
            held.update(row.versions)
        return held


#: Log path -> the group open on that lakehouse in this process (one command per lakehouse holds the lock).
_groups: dict[str, _Group] = {}


def _append(spark: SparkSession, config: Config, rows: list[_Row]) -> None:
    """Append ``rows`` to the log in one commit; they share one ``published_at``."""
    now = dt.datetime.now(dt.UTC)
    values = [
        (
            row.run_id,
            row.stage,
            row.kind,
            now,
            {t: int(v) for t, v in row.versions.items()},
            row.model_version,
            None if row.counts is None else {k: int(v) for k, v in row.counts.items()},
        )
        for row in rows
    ]
    df = spark.createDataFrame(values, PUBLISHED_RUNS.schema)
    lakehouse.write_table(df, _log_path(config), PUBLISHED_RUNS, mode="append")


def _log_published(row: _Row) -> None:
    log.info(
        "%s published: %s",
        row.stage,
        ", ".join(f"{t} v{v}" for t, v in row.versions.items())
        + (f", model {row.model_version}" if row.model_version else ""),
    )


def ensure_log(spark: SparkSession, config: Config, run_id: str) -> None:
    """Create the publication log when the lakehouse has none, adopting the tables that already exist.

    A lakehouse without the log was written before it existed (or by hand, or by a test): its tables' current
    versions are taken as published, in one ``adopt`` row, and that is said in one line.
    """
    if lakehouse.table_exists(spark, _log_path(config)):
        return
    existing = {}
    for table in PUBLISHED_TABLES:
        version = lakehouse.current_version(spark, config.table_path(table))
        if version is not None:
            existing[table] = version
    if existing:
        _append(spark, config, [_Row(run_id, "adopt", "adopt", existing)])
        log.info("publication log started: the current versions of %s are taken as published", ", ".join(existing))
    else:
        lakehouse.create_table(spark, _log_path(config), PUBLISHED_RUNS)


#: Log path -> ((the log's Delta version, its commit time), published versions at it): the log is read once
#: per new commit (the commit time tells a log deleted and written anew from the one read before).
_versions_cache: dict[str, tuple[tuple[int, dt.datetime], dict[str, int]]] = {}


def published_versions(spark: SparkSession, config: Config) -> dict[str, int]:
    """Logical table name -> the Delta version readers use: its latest publication's; {} without a log.

    Inside :func:`together` the versions its block holds back count as published for this process, so a stage
    reads what the stage before it in the same command wrote.
    """
    versions = _committed_versions(spark, config)
    group = _groups.get(_log_path(config))
    if group is not None:
        versions.update(group.versions())
    return versions


def _committed_versions(spark: SparkSession, config: Config) -> dict[str, int]:
    """Logical table name -> the Delta version its latest row in the log names; {} without a log.

    One row per table comes back (at most :data:`PUBLISHED_TABLES`), however long the log. The answer is
    cached per version of the log, so readers can ask before every read. Rows of one commit share their
    ``published_at`` and run id; of two naming one table, the later version is the later stage's.
    """
    path = _log_path(config)
    if not lakehouse.table_exists(spark, path):
        return {}
    last = lakehouse.one_row(
        DeltaTable.forPath(spark, path).history(1).select("version", "timestamp"), f"the latest commit of {path}"
    )
    key = (int(last["version"]), last["timestamp"])
    cached = _versions_cache.get(path)
    if cached is not None and cached[0] == key:
        return dict(cached[1])
    latest = (
        lakehouse.read_table(spark, path, version=key[0])
        .select("published_at", RUN_ID, F.explode("table_versions").alias("table", "version"))
        .groupBy("table")
        .agg(F.max_by("version", F.struct("published_at", RUN_ID, "version")).alias("version"))
    )
    versions = {r["table"]: int(r["version"]) for r in latest.collect()}  # one row per published table (16)
    _versions_cache[path] = (key, versions)
    return dict(versions)


def last_publication(spark: SparkSession, config: Config, stage: str) -> dict[str, Any] | None:
    """The latest committed ``run`` row of ``stage`` as a dict, or None when the stage never published."""
    path = _log_path(config)
    if not lakehouse.table_exists(spark, path):
        return None
    row = (
        lakehouse.read_table(spark, path)
        .filter((F.col("stage") == stage) & (F.col("kind") == "run"))
        .orderBy(F.col("published_at").desc(), F.col(RUN_ID).desc())
        .first()
    )
    return None if row is None else row.asDict(recursive=True)


def run_publications(spark: SparkSession, config: Config, run_id: str) -> dict[str, dict[str, Any]]:
    """Stage -> the latest committed ``run`` row that run ``run_id`` wrote for it (a dict); {} when none."""
    path = _log_path(config)
    if not lakehouse.table_exists(spark, path):
        return {}
    rows = (
        lakehouse.read_table(spark, path)
        .filter((F.col(RUN_ID) == F.lit(run_id)) & (F.col("kind") == "run"))
        .orderBy("published_at")
        .collect()  # a few rows: one per stage of one run (maintain: two)
    )
    return {r["stage"]: r.asDict(recursive=True) for r in rows}


def published_version(spark: SparkSession, config: Config, table: str) -> int | None:
    """The Delta version of ``table`` readers use: its published one; None when there is nothing to read.

    Without a publication log (a lakehouse older than it, or tables a test wrote directly) the latest version is
    read, as before the log existed.
    """
    path = config.table_path(table)
    if not lakehouse.table_exists(spark, path):
        return None
    if not lakehouse.table_exists(spark, _log_path(config)):
        return lakehouse.current_version(spark, path)
    return published_versions(spark, config).get(table)


def read_published(spark: SparkSession, config: Config, table: str) -> DataFrame:
    """``table`` as its latest publication left it.

    Raises
    ------
    InputError
        No run has published the table yet; the message names the command that does.
    """
    version = published_version(spark, config, table)
    if version is None:
        raise InputError(
            f"no published {table} table in {config.lakehouse}: run 'segspark {_PRODUCER.get(table, 'run')}' first"
        )
    return lakehouse.read_table(spark, config.table_path(table), version=version)


def read_if_published(spark: SparkSession, config: Config, table: str, *also: str) -> DataFrame | None:
    """``table`` as its latest publication left it; None unless it and each table of ``also`` are published."""
    if not all(is_published(spark, config, t) for t in (table, *also)):
        return None
    return read_published(spark, config, table)


def is_published(spark: SparkSession, config: Config, table: str) -> bool:
    """Whether ``table`` has a version readers may use (:func:`published_version` is not None)."""
    return published_version(spark, config, table) is not None


def publish(
    spark: SparkSession,
    config: Config,
    run_id: str,
    stage: str,
    versions: Mapping[str, int],
    *,
    model_version: str | None = None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Make a stage run's tables visible together: one appended row naming each table's version.

    Call it after every write of the stage has succeeded and been checked. Until this commit lands, readers
    keep reading the previous publication. Inside :func:`together` the row is held back and written with the
    block's other rows when the block ends.
    """
    ensure_log(spark, config, run_id)
    row = _Row(run_id, stage, "run", dict(versions), model_version, counts)
    group = _groups.get(_log_path(config))
    if group is not None:
        group.rows.append(row)
        log.debug("%s written: %s; published when the stages it is published with have succeeded", stage, versions)
        return
    _append(spark, config, [row])
    _log_published(row)


@contextmanager
def publishing(
    spark: SparkSession,
    config: Config,
    run_id: str,
    failed: str | None = None,
    cleanup: Callable[[], None] | None = None,
) -> Iterator[None]:
    """The writes of one stage run, up to and including its :func:`publish`: all of them land, or none.

    On any error inside the block every table goes back to its published version (:func:`repair`),
    ``cleanup`` removes what the stage made outside the tables (train's model folder), ``failed`` is logged as
    one error line, and the error is raised again for the stage log and the CLI. Inside :func:`together`,
    ``cleanup`` is also kept for the group, to run if a later stage of the group fails.
    """
    try:
        yield
    except Exception:
        repair(spark, config, run_id)
        if cleanup is not None:
            cleanup()
        if failed is not None:
            log.error("%s", failed)
        raise
    group = _groups.get(_log_path(config))
    if group is not None and cleanup is not None:
        group.cleanups.append(cleanup)


@contextmanager
def together(spark: SparkSession, config: Config, run_id: str) -> Iterator[None]:
    """The publications of every stage inside the block become visible in one commit, or none of them do.

    Each :func:`publish` in the block is held back; readers in this process already read the held versions
    (:func:`published_versions`). When the block ends without error, the held rows are appended to the log in
    one commit. On any error, every table goes back to its published version (:func:`repair`: the held
    stages' too), the stages' cleanups run (a model folder no publication names), and the error is raised
    again.

    Raises
    ------
    InternalError
        The block is entered while another is open on the same lakehouse, or a repair inside it rolled back
        versions it holds (and it did not fail).
    """
    path = _log_path(config)
    if path in _groups:
        holder = _groups[path].run_id
        raise InternalError(f"the publications of {config.lakehouse} are already held back by run {holder}")
    group = _groups[path] = _Group(run_id)
    try:
        yield
        if group.repaired:
            raise InternalError(f"run {run_id}'s held publications were rolled back inside the block")
        if group.rows:
            _append(spark, config, group.rows)
    except Exception:
        del _groups[path]
        repair(spark, config, run_id)
        for cleanup in reversed(group.cleanups):
            cleanup()
        raise
    finally:
        _groups.pop(path, None)
    for row in group.rows:
        _log_published(row)


def repair(spark: SparkSession, config: Config, run_id: str) -> dict[str, tuple[int, int]]:
    """Roll back every table whose latest version is not its published one; say so in one line.

    Published means committed to the log: versions :func:`together` holds back are rolled back too.

    A table that was never published (its first run did not finish) goes back to version 0, the empty table
    :func:`segspark.platform.lakehouse.write_table` creates first. The rollback is recorded as a ``repair`` row naming
    the tables' new versions (the same rows as the published ones), so it happens once.

    Returns
    -------
    dict
        Table -> (version found, version restored), for the tables rolled back.
    """
    ensure_log(spark, config, run_id)
    published = _committed_versions(spark, config)
    rolled: dict[str, tuple[int, int]] = {}
    new_versions: dict[str, int] = {}
    for table in PUBLISHED_TABLES:
        path = config.table_path(table)
        current = lakehouse.current_version(spark, path)
        if current is None:
            continue
        target = published.get(table, 0)
        if current == target:
            continue
        lakehouse.restore(spark, path, target)
        rolled[table] = (current, target)
        restored = lakehouse.current_version(spark, path)
        if restored is None:  # the table was there a moment ago; restoring never deletes it
            raise InternalError(f"{table} ({path}) has no Delta version after its restore to v{target}")
        new_versions[table] = restored
    if rolled:
        group = _groups.get(_log_path(config))
        if group is not None:  # what the group holds back was not published: it was rolled back with the rest
            group.repaired = True
        _append(spark, config, [_Row(run_id, "repair", "repair", new_versions)])
        log.warning(
            "rolled back what an unfinished run left in the lakehouse: %s; the tables are again those last published",
            ", ".join(f"{t} v{found} -> v{target}" for t, (found, target) in rolled.items()),
        )
    return rolled

"""Which clean lines are new to the features rollup, and the batch that brings them in.

The rollup remembers what it consumed in ``rollup_batches``: per batch, the Delta table id and version of
``transactions_clean`` it read and the lines of each ingest run (``run_id``) it took. The next run compares
that with the published clean table (:func:`plan_batch`):

- the same table and version: nothing is read;
- the same table, and every commit since the version read appends lines (or leaves them as they were:
  ``OPTIMIZE``, ``VACUUM``, table properties, a ``RESTORE`` back to a version in between): the new lines are
  those of ingest runs the rollup has not consumed, read with a filter on ``run_id`` that lets Delta skip
  every file of the consumed runs (statistics on ``run_id``); their count must equal the rows those appends
  wrote, or the rollup is rebuilt;
- anything else (no rollup yet, the table created anew, an overwrite (a full refresh), a delete or merge, a
  version the log no longer holds): a rebuild from every line, the rollup tables overwritten.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import reduce
from typing import Literal

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import (
    INGEST_RUN_ID,
    INVOICE_ROLLUP,
    NEW_PRODUCTS_ROLLUP,
    PRODUCT_ROLLUP,
    ROLLUP_BATCHES,
    RUN_ID,
    TableSpec,
)
from segspark.errors import InternalError, ReconciliationError
from segspark.platform import lakehouse, publication
from segspark.platform.lakehouse import Commit
from segspark.stages.features.rollup import first_purchases, product_rollup_rows, rollup_lines, with_known_dates

__all__ = [
    "ROLLUP_TABLES",
    "BatchPlan",
    "RollupBatch",
    "RollupState",
    "new_lines",
    "plan_batch",
    "prepare_batch",
    "rollup_frames",
    "rollup_state",
    "write_batch",
]

log = logging.getLogger("segspark")

#: The tables of the rollup, written and published with customer_features.
ROLLUP_TABLES = ("invoice_rollup", "product_rollup", "new_products_rollup", "rollup_batches")

#: Delta operations that leave a table's lines as they were.
_SAME_LINES = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES"})


@dataclass(frozen=True)
class RollupState:
    """What the published rollup has consumed: the clean table's id and version read, and its ingest runs.

    ``versions``: the published Delta version of each rollup table (the state was read at them).
    """

    clean_table_id: str
    clean_version: int
    ingest_runs: frozenset[str]
    versions: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BatchPlan:
    """What this run reads: ``rebuild`` (every line), ``append`` (the new lines) or ``unchanged`` (none).

    ``expected_lines`` (append): the rows the appends since the version read wrote; None when a commit does
    not report it (Delta's history metrics turned off), and then the count is not checked.
    """

    kind: Literal["rebuild", "append", "unchanged"]
    reason: str
    expected_lines: int | None = None


def rollup_state(spark: SparkSession, config: Config) -> RollupState | None:
    """The published rollup's state; None when a rollup table has never been published (or no batch is recorded).

    The publication log is read once for the four tables (they are published together).
    """
    published = publication.published_versions(spark, config)
    versions = {t: published[t] for t in ROLLUP_TABLES if t in published}
    if len(versions) < len(ROLLUP_TABLES):
        return None
    batches_df = _read(spark, config, "rollup_batches", versions)
    # One row per batch since the last rebuild (ingest-run level, never customer level).
    rows = batches_df.select("clean_table_id", "clean_version", "lines_by_ingest_run", "created_at").collect()
    if not rows:
        return None
    latest = max(rows, key=lambda r: (r["clean_version"], r["created_at"]))
    runs = frozenset(run for r in rows for run in r["lines_by_ingest_run"])
    return RollupState(latest["clean_table_id"], int(latest["clean_version"]), runs, versions)


def _read(spark: SparkSession, config: Config, table: str, versions: dict[str, int]) -> DataFrame:
    return lakehouse.read_table(spark, config.table_path(table), version=versions[table])


def plan_batch(state: RollupState | None, table_id: str, version: int, commits: list[Commit]) -> BatchPlan:
    """Decide what to read from ``transactions_clean`` (id ``table_id``, published ``version``).

    ``commits``: the clean table's commits after ``state.clean_version`` (:func:`lakehouse.commits_after`).
    """
    if state is None:
        return BatchPlan("rebuild", "no rollup yet")
    if state.clean_table_id != table_id:
        return BatchPlan("rebuild", "transactions_clean was created anew")
    read = state.clean_version
    if version < read:
        return BatchPlan("rebuild", f"transactions_clean v{version} is older than the v{read} the rollup read")
    if version == read:
        return BatchPlan("unchanged", f"transactions_clean is still at v{read}")
    by_version = {c.version: c for c in commits}
    # Version -> rows appended since the version read (None: not reported); known only for versions reached
    # by appends and same-line commits, so a RESTORE to one of them is known too.
    appended: dict[int, int | None] = {read: 0}
    for v in range(read + 1, version + 1):
        commit = by_version.get(v)
        if commit is None:
            return BatchPlan("rebuild", f"the log of transactions_clean no longer holds v{v}")
        before = appended[v - 1]
        restored = _restored(commit) if commit.operation == "RESTORE" else None
        if commit.operation == "WRITE" and commit.parameters.get("mode") == "Append":
            rows = commit.metrics.get("numOutputRows")
            appended[v] = None if before is None or rows is None else before + int(rows)
        elif commit.operation in _SAME_LINES:
            appended[v] = before
        elif restored is not None and restored in appended:
            appended[v] = appended[restored]
        else:
            mode = commit.parameters.get("mode")
            what = commit.operation + (f" {mode}" if mode else "")
            return BatchPlan("rebuild", f"transactions_clean v{v} replaced or removed lines ({what})")
    return BatchPlan("append", f"lines appended to transactions_clean after v{read}", appended[version])


def _restored(commit: Commit) -> int | None:
    target = commit.parameters.get("version")
    return int(target) if target is not None and target.isdigit() else None


def _not_any(column: str, values: frozenset[str]) -> Column:
    """``column`` equal to none of ``values``, as a balanced AND of ``!=``.

    Delta skips a file by its min/max statistics for ``a != x`` (min = max = x) but not for ``NOT IN``; the
    balanced tree keeps the expression shallow for many values.
    """
    terms = [F.col(column) != F.lit(v) for v in sorted(values)]
    while len(terms) > 1:
        terms = [reduce(lambda a, b: a & b, terms[i : i + 2]) for i in range(0, len(terms), 2)]
    return terms[0] if terms else F.lit(True)


def new_lines(lines_df: DataFrame, state: RollupState) -> DataFrame:
    """The clean lines of ingest runs the rollup has not consumed."""
    return lines_df.where(_not_any(RUN_ID, state.ingest_runs))


@dataclass
class RollupBatch:
    """The lines one run brings into the rollup, aggregated and cached until :meth:`unpersist`.

    ``invoices_df`` (``invoice_rollup`` rows plus their product sets), ``pairs_df`` (``product_rollup`` rows) and
    ``new_products_df`` (``new_products_rollup`` rows) are the rows to write; None when the plan is ``unchanged``.
    """

    plan: BatchPlan
    clean_table_id: str
    clean_version: int
    #: The rollup tables' published versions before this batch ({} when there is no rollup yet).
    published: dict[str, int] = field(default_factory=dict)
    invoices_df: DataFrame | None = None
    pairs_df: DataFrame | None = None
    new_products_df: DataFrame | None = None
    lines_by_ingest_run: dict[str, int] = field(default_factory=dict)
    invoice_rows: int = 0
    product_rows: int = 0
    new_products_rows: int = 0

    @property
    def lines(self) -> int:
        """Clean lines the batch read."""
        return sum(self.lines_by_ingest_run.values())

    def unpersist(self) -> None:
        """Drop the cached batch frames."""
        for df in (self.invoices_df, self.pairs_df, self.new_products_df):
            if df is not None:
                df.unpersist()

    def row(self, run_id: str) -> tuple[object, ...]:
        """The batch's ``rollup_batches`` row."""
        return ROLLUP_BATCHES.row(
            {
                RUN_ID: run_id,
                "kind": self.plan.kind,
                "reason": self.plan.reason,
                "clean_table_id": self.clean_table_id,
                "clean_version": self.clean_version,
                "lines_by_ingest_run": self.lines_by_ingest_run,
                "lines": self.lines,
                "invoice_rows": self.invoice_rows,
                "product_rows": self.product_rows,
                "new_products_rows": self.new_products_rows,
                "created_at": dt.datetime.now(dt.UTC),
            }
        )

    def tables(self) -> list[tuple[str, TableSpec, DataFrame | None, int]]:
        """(table, contract, the batch's rows, their count) for each rollup table fed from the lines."""
        return [
            ("invoice_rollup", INVOICE_ROLLUP, self.invoices_df, self.invoice_rows),
            ("product_rollup", PRODUCT_ROLLUP, self.pairs_df, self.product_rows),
            ("new_products_rollup", NEW_PRODUCTS_ROLLUP, self.new_products_df, self.new_products_rows),
        ]


def _cached(df: DataFrame) -> DataFrame:
    return df.persist(StorageLevel.MEMORY_AND_DISK)


def _aggregate(batch: RollupBatch, lines_df: DataFrame, run_id: str) -> None:
    """Aggregate ``lines_df`` into the batch's invoice rows and count them per ingest run (cached: they are
    counted, written and read by the features)."""
    invoices_df = _cached(rollup_lines(lines_df, run_id))
    per_run = (
        invoices_df.groupBy(INGEST_RUN_ID).agg(F.sum("lines").alias("lines"), F.count(F.lit(1)).alias("rows"))
    ).collect()  # one row per ingest run in the batch
    batch.invoices_df = invoices_df
    batch.lines_by_ingest_run = {r[INGEST_RUN_ID]: int(r["lines"]) for r in per_run}
    batch.invoice_rows = sum(int(r["rows"]) for r in per_run)


def _add_products(batch: RollupBatch, known_pairs_df: DataFrame | None, run_id: str) -> RollupBatch:
    """The batch's product rows against the known pairs (None on a rebuild), cached and counted."""
    if batch.invoices_df is None:
        raise InternalError("the batch's products were asked for before its invoice rows")
    batch_pairs_df = _cached(product_rollup_rows(batch.invoices_df))
    # Counted before the join: Spark then knows its size, and broadcasts a small batch against the known pairs
    # instead of shuffling them all.
    batch_pairs_df.count()
    known_df = _cached(with_known_dates(batch_pairs_df, known_pairs_df))  # read by both outputs
    pairs_df, new_products_df = first_purchases(known_df, run_id)
    batch.pairs_df, batch.new_products_df = _cached(pairs_df), _cached(new_products_df)
    batch.product_rows = batch.pairs_df.count()  # cached batch frames: the rows this run appends
    batch.new_products_rows = batch.new_products_df.count()
    known_df.unpersist()
    batch_pairs_df.unpersist()
    return batch


def prepare_batch(spark: SparkSession, config: Config, run_id: str, lines_df: DataFrame, version: int) -> RollupBatch:
    """Plan and aggregate this run's batch of ``lines_df`` (``transactions_clean`` at its published ``version``)."""
    path = config.table_path("transactions_clean")
    table_id = lakehouse.table_id(spark, path)
    state = rollup_state(spark, config)
    commits = lakehouse.commits_after(spark, path, state.clean_version) if state is not None else []
    plan = plan_batch(state, table_id, version, commits)
    batch = RollupBatch(plan, table_id, version, {} if state is None else state.versions)
    if plan.kind == "unchanged":
        return batch
    if plan.kind == "append" and state is not None:
        _aggregate(batch, new_lines(lines_df, state), run_id)
        if plan.expected_lines is None or batch.lines == plan.expected_lines:
            return _add_products(batch, _read(spark, config, "product_rollup", batch.published), run_id)
        batch.unpersist()
        reason = (
            f"the {batch.lines:,} lines of ingest runs new to the rollup are not the {plan.expected_lines:,} the "
            f"appends after v{state.clean_version} wrote"
        )
        batch = RollupBatch(BatchPlan("rebuild", reason), table_id, version, batch.published)
    _aggregate(batch, lines_df, run_id)
    return _add_products(batch, None, run_id)


def rollup_frames(spark: SparkSession, config: Config, batch: RollupBatch) -> tuple[DataFrame, DataFrame]:
    """The rollup after this batch: (invoice_rollup, new_products_rollup), for the features of any snapshot.

    A rebuild is the batch alone; an append is the published rollup and the batch; unchanged, the published one.
    """
    frames = []
    for table, spec, new_df, _ in batch.tables():
        if table == "product_rollup":  # read only to bring a batch in
            continue
        batch_df = None if new_df is None else lakehouse.conform(new_df, spec)
        if batch.plan.kind == "rebuild" and batch_df is not None:
            frames.append(batch_df)
            continue
        published_df = lakehouse.conform(_read(spark, config, table, batch.published), spec)
        frames.append(published_df if batch_df is None else published_df.unionByName(batch_df))
    return frames[0], frames[1]


def write_batch(spark: SparkSession, config: Config, run_id: str, batch: RollupBatch) -> dict[str, int]:
    """Write the batch to the rollup tables (overwrite on a rebuild, append otherwise); their versions.

    Call it inside the stage's :func:`publication.publishing`. Unchanged: nothing is written and the published
    versions are returned.

    Raises
    ------
    ReconciliationError
        A rollup table recorded another row count than the batch holds.
    """
    if batch.plan.kind == "unchanged":
        return {t: _published(batch, t) for t in ROLLUP_TABLES}
    mode = "overwrite" if batch.plan.kind == "rebuild" else "append"
    batch_row_df = spark.createDataFrame([batch.row(run_id)], ROLLUP_BATCHES.schema)
    versions = {}
    for table, spec, df, expected in [*batch.tables(), ("rollup_batches", ROLLUP_BATCHES, batch_row_df, 1)]:
        if df is None:
            raise InternalError(f"the batch has no rows for {table}, yet its plan is {batch.plan.kind}")
        if mode == "append" and expected == 0:  # Delta commits no empty append: the table stays as published
            versions[table] = _published(batch, table)
            continue
        written = lakehouse.write_table(df, config.table_path(table), spec, mode=mode)
        if written.rows_written != expected:
            raise ReconciliationError(f"{table} wrote {written.rows_written:,} rows, expected {expected:,}")
        versions[table] = written.version
    return versions


def _published(batch: RollupBatch, table: str) -> int:
    if table not in batch.published:  # only a rebuild starts without a published rollup, and it writes every table
        raise InternalError(f"{table} has no published version, yet the batch does not write it")
    return batch.published[table]

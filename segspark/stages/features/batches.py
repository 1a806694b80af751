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
from segspark.contracts.schemas import INGEST_RUN_ID, INVOICE_ROLLUP, PRODUCT_ROLLUP, ROLLUP_BATCHES, RUN_ID
from segspark.errors import InternalError, ReconciliationError
from segspark.platform import lakehouse, publication
from segspark.platform.lakehouse import Commit
from segspark.stages.features.rollup import product_rollup_rows, rollup_lines

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
ROLLUP_TABLES = ("invoice_rollup", "product_rollup", "rollup_batches")

#: Delta operations that leave a table's lines as they were.
_SAME_LINES = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES"})


@dataclass(frozen=True)
class RollupState:
    """What the published rollup has consumed: the clean table's id and version read, and its ingest runs."""

    clean_table_id: str
    clean_version: int
    ingest_runs: frozenset[str]


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
    """The published rollup's state; None when any rollup table has never been published (or holds no batch)."""
    if not all(publication.is_published(spark, config, t) for t in ROLLUP_TABLES):
        return None
    batches_df = publication.read_published(spark, config, "rollup_batches")
    # One row per batch since the last rebuild (ingest-run level, never customer level).
    rows = batches_df.select("clean_table_id", "clean_version", "lines_by_ingest_run", "created_at").collect()
    if not rows:
        return None
    latest = max(rows, key=lambda r: (r["clean_version"], r["created_at"]))
    runs = frozenset(run for r in rows for run in r["lines_by_ingest_run"])
    return RollupState(latest["clean_table_id"], int(latest["clean_version"]), runs)


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

    ``invoices_df`` (``invoice_rollup`` rows plus their product sets) and ``products_df`` (``product_rollup``
    rows) are None when the plan is ``unchanged``.
    """

    plan: BatchPlan
    clean_table_id: str
    clean_version: int
    invoices_df: DataFrame | None = None
    products_df: DataFrame | None = None
    lines_by_ingest_run: dict[str, int] = field(default_factory=dict)
    invoice_rows: int = 0
    product_rows: int = 0

    @property
    def lines(self) -> int:
        """Clean lines the batch read."""
        return sum(self.lines_by_ingest_run.values())

    def unpersist(self) -> None:
        """Drop the cached batch frames."""
        for df in (self.invoices_df, self.products_df):
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
                "created_at": dt.datetime.now(dt.UTC),
            }
        )


def _aggregate(batch: RollupBatch, lines_df: DataFrame, run_id: str) -> RollupBatch:
    """Aggregate ``lines_df`` into the batch's frames (cached: they are counted, written and read by features)."""
    invoices_df = rollup_lines(lines_df, run_id).persist(StorageLevel.MEMORY_AND_DISK)
    products_df = product_rollup_rows(invoices_df).persist(StorageLevel.MEMORY_AND_DISK)
    per_run = (
        invoices_df.groupBy(INGEST_RUN_ID).agg(F.sum("lines").alias("lines"), F.count(F.lit(1)).alias("rows"))
    ).collect()  # one row per ingest run in the batch
    batch.invoices_df, batch.products_df = invoices_df, products_df
    batch.lines_by_ingest_run = {r[INGEST_RUN_ID]: int(r["lines"]) for r in per_run}
    batch.invoice_rows = sum(int(r["rows"]) for r in per_run)
    return batch


def prepare_batch(spark: SparkSession, config: Config, run_id: str, lines_df: DataFrame, version: int) -> RollupBatch:
    """Plan and aggregate this run's batch of ``lines_df`` (``transactions_clean`` at its published ``version``)."""
    path = config.table_path("transactions_clean")
    table_id = lakehouse.table_id(spark, path)
    state = rollup_state(spark, config)
    commits = lakehouse.commits_after(spark, path, state.clean_version) if state is not None else []
    plan = plan_batch(state, table_id, version, commits)
    batch = RollupBatch(plan, table_id, version)
    if plan.kind == "unchanged":
        return batch
    if plan.kind == "append" and state is not None:
        _aggregate(batch, new_lines(lines_df, state), run_id)
        if plan.expected_lines is None or batch.lines == plan.expected_lines:
            batch.product_rows = _count(batch.products_df)
            return batch
        batch.unpersist()
        reason = (
            f"the {batch.lines:,} lines of ingest runs new to the rollup are not the {plan.expected_lines:,} the "
            f"appends after v{state.clean_version} wrote"
        )
        batch = RollupBatch(BatchPlan("rebuild", reason), table_id, version)
    _aggregate(batch, lines_df, run_id)
    batch.product_rows = _count(batch.products_df)
    return batch


def _count(df: DataFrame | None) -> int:
    return 0 if df is None else df.count()  # a cached batch frame: the rows this run appends


def rollup_frames(spark: SparkSession, config: Config, batch: RollupBatch) -> tuple[DataFrame, DataFrame]:
    """The whole rollup after this batch: (invoice rollup, product rollup), for the features of any snapshot.

    A rebuild is the batch alone; an append is the published rollup and the batch; unchanged, the published one.
    """
    frames = []
    for table, spec, new_df in (
        ("invoice_rollup", INVOICE_ROLLUP, batch.invoices_df),
        ("product_rollup", PRODUCT_ROLLUP, batch.products_df),
    ):
        batch_df = None if new_df is None else lakehouse.conform(new_df, spec)
        if batch.plan.kind == "rebuild" and batch_df is not None:
            frames.append(batch_df)
            continue
        published_df = lakehouse.conform(publication.read_published(spark, config, table), spec)
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
    if batch.plan.kind == "unchanged" or batch.invoices_df is None or batch.products_df is None:
        return {t: _published(spark, config, t) for t in ROLLUP_TABLES}
    mode = "overwrite" if batch.plan.kind == "rebuild" else "append"
    batch_row_df = spark.createDataFrame([batch.row(run_id)], ROLLUP_BATCHES.schema)
    versions = {}
    for table, spec, df, expected in (
        ("invoice_rollup", INVOICE_ROLLUP, batch.invoices_df, batch.invoice_rows),
        ("product_rollup", PRODUCT_ROLLUP, batch.products_df, batch.product_rows),
        ("rollup_batches", ROLLUP_BATCHES, batch_row_df, 1),
    ):
        if mode == "append" and expected == 0:  # Delta commits no empty append: the table stays as published
            versions[table] = _published(spark, config, table)
            continue
        written = lakehouse.write_table(df, config.table_path(table), spec, mode=mode)
        if written.rows_written != expected:
            raise ReconciliationError(f"{table} wrote {written.rows_written:,} rows, expected {expected:,}")
        versions[table] = written.version
    return versions


def _published(spark: SparkSession, config: Config, table: str) -> int:
    version = publication.published_version(spark, config, table)
    if version is None:  # only a rebuild starts without a published rollup, and it writes every table
        raise InternalError(f"{table} has no published version, yet the rollup's state was read from it")
    return version

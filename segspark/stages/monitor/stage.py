"""The monitor stage: ``segspark monitor`` writes ``segment_migration`` for each pair of consecutive scored
snapshots.

For every snapshot of the published ``customer_segments`` after the first, the customers moving from each
segment of the previous snapshot to each segment of this one (:mod:`segspark.stages.monitor.migration`), one
partition per later snapshot. A pair is computed again only when it is new, or when either snapshot's
segments were written by another run since (a rescore, a retrain, a snapshot backfilled between the two):
each pair's rows name the ``customer_segments`` runs they were computed from, and those are compared with the
table's own runs per snapshot (one aggregate row per snapshot). Nothing else is read twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import (
    AS_OF_DATE,
    CREATED_AT,
    CUSTOMER_ID,
    MODEL_VERSION,
    RUN_ID,
    SEGMENT_ID,
    SEGMENT_MIGRATION,
    SEGMENT_NAME,
)
from segspark.errors import InputError, ReconciliationError
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.stages.monitor.migration import segment_migration

__all__ = ["MonitorResult", "SnapshotRun", "pairs_to_compute", "run_monitor"]

log = logging.getLogger("segspark")


@dataclass(frozen=True)
class SnapshotRun:
    """Which run wrote a snapshot's customer_segments, with which model."""

    as_of: dt.date
    run_id: str
    model_version: str
    customers: int


@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run wrote: the (earlier, later) snapshot pairs computed and the rows written."""

    pairs: list[tuple[dt.date, dt.date]]
    rows: int


def pairs_to_compute(
    snapshots: list[SnapshotRun], recorded: dict[dt.date, tuple[dt.date, str, str]]
) -> list[tuple[SnapshotRun, SnapshotRun]]:
    """The consecutive pairs whose migration is missing or out of date.

    ``recorded`` maps each later snapshot already in segment_migration to (its earlier snapshot, the earlier
    snapshot's segments run, the later snapshot's segments run) as the rows record them.
    """
    ordered = sorted(snapshots, key=lambda s: s.as_of)
    return [
        (earlier, later)
        for earlier, later in zip(ordered, ordered[1:], strict=False)
        if recorded.get(later.as_of) != (earlier.as_of, earlier.run_id, later.run_id)
    ]


def _snapshot_runs(segments_df: DataFrame) -> list[SnapshotRun]:
    rows = (
        segments_df.groupBy(AS_OF_DATE).agg(
            F.max(RUN_ID).alias(RUN_ID), F.max(MODEL_VERSION).alias(MODEL_VERSION), F.count(F.lit(1)).alias("n")
        )
    ).collect()  # one row per snapshot
    return [SnapshotRun(r[AS_OF_DATE], r[RUN_ID], r[MODEL_VERSION], r["n"]) for r in rows]


def _recorded(spark: SparkSession, config: Config) -> dict[dt.date, tuple[dt.date, str, str]]:
    if not publication.is_published(spark, config, "segment_migration"):
        return {}
    rows = (
        publication.read_published(spark, config, "segment_migration")
        .groupBy("to_as_of_date")
        .agg(F.max("from_as_of_date"), F.max("from_segments_run_id"), F.max("to_segments_run_id"))
        .collect()  # one row per later snapshot
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _pair_df(segments_df: DataFrame, earlier: SnapshotRun, later: SnapshotRun, run_id: str) -> DataFrame:
    def side(snapshot: SnapshotRun) -> DataFrame:
        return segments_df.filter(F.col(AS_OF_DATE) == F.lit(snapshot.as_of)).select(
            CUSTOMER_ID, SEGMENT_ID, SEGMENT_NAME
        )

    return segment_migration(side(earlier), side(later)).withColumns(
        {
            "from_as_of_date": F.lit(earlier.as_of),
            "to_as_of_date": F.lit(later.as_of),
            "from_model_version": F.lit(earlier.model_version),
            "to_model_version": F.lit(later.model_version),
            "from_segments_run_id": F.lit(earlier.run_id),
            "to_segments_run_id": F.lit(later.run_id),
            RUN_ID: F.lit(run_id),
            CREATED_AT: F.current_timestamp(),
        }
    )


def run_monitor(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> MonitorResult:
    """Write segment_migration for every consecutive pair of scored snapshots that is new or out of date."""
    if not publication.is_published(spark, config, "customer_segments"):
        raise InputError(f"no scored snapshot in {config.lakehouse}: run 'segspark train' (or 'segspark run') first")
    segments_df = publication.read_published(spark, config, "customer_segments")
    snapshots = _snapshot_runs(segments_df)
    pairs = pairs_to_compute(snapshots, _recorded(spark, config))
    if not pairs:
        log.info("monitor: segment_migration is up to date (%d snapshot(s))", len(snapshots))
        if stage is not None:
            stage.counts.update({"snapshots": len(snapshots), "pairs": 0})
        return MonitorResult([], 0)
    publication.ensure_log(spark, config, run_id)
    path = config.table_path("segment_migration")
    later_dates = [later.as_of for _, later in pairs]
    with publication.publishing(spark, config, run_id, failed="monitor failed: its tables restored"):
        progress.step(f"segment migration of {len(pairs)} snapshot pair(s), the last into {later_dates[-1]}")
        migration_df = reduce(
            DataFrame.unionByName, [_pair_df(segments_df, earlier, later, run_id) for earlier, later in pairs]
        )
        written = lakehouse.write_table(
            migration_df,
            path,
            SEGMENT_MIGRATION,
            replace_where=lakehouse.dates_predicate("to_as_of_date", later_dates),
        )
        _check_counts(spark, path, written.version, {later.as_of: later.customers for _, later in pairs})
        publication.publish(
            spark, config, run_id, "monitor", {"segment_migration": written.version}, counts={"pairs": len(pairs)}
        )
    for earlier, later in pairs:
        log.info("monitor: migration %s -> %s: %s customers", earlier.as_of, later.as_of, f"{later.customers:,}")
    if stage is not None:
        stage.rows_out = written.rows_written
        stage.counts.update({"snapshots": len(snapshots), "pairs": len(pairs)})
    return MonitorResult([(earlier.as_of, later.as_of) for earlier, later in pairs], written.rows_written)


def _check_counts(spark: SparkSession, path: str, version: int, scored: dict[dt.date, int]) -> None:
    """Each later snapshot's rows other than ``gone`` sum to its customers in customer_segments (``scored``,
    counted with the snapshots' runs)."""
    written = {
        r[0]: r[1]
        for r in lakehouse.read_table(spark, path, version=version)
        .filter(F.col("to_as_of_date").isin(list(scored)) & F.col("to_segment_id").isNotNull())
        .groupBy("to_as_of_date")
        .agg(F.sum("customers"))
        .collect()  # one row per pair
    }
    if written != scored:
        raise ReconciliationError(f"segment_migration counts {written} differ from customer_segments' {scored}")

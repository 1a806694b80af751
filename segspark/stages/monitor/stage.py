"""The monitor stage: ``segspark monitor`` writes ``segment_migration`` for each pair of consecutive scored
snapshots and ``feature_drift`` for each scored snapshot, then decides whether the latest snapshot's model
should be retrained (:mod:`segspark.stages.monitor.decision`).

For every snapshot of the published ``customer_segments`` after the first, the customers moving from each
segment of the previous snapshot to each segment of this one (:mod:`segspark.stages.monitor.migration`), one
partition per later snapshot. A pair is computed again only when it is new, or when either snapshot's
segments were written by another run since (a rescore, a retrain, a snapshot backfilled between the two):
each pair's rows name the ``customer_segments`` runs they were computed from, and those are compared with the
table's own runs per snapshot (one aggregate over customer_segments, which also gives each snapshot's segment
sizes). feature_drift is kept up to date the same way (:mod:`segspark.stages.monitor.feature_drift`). Both tables
publish together.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

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
from segspark.stages.monitor.decision import RetrainDecision, decide
from segspark.stages.monitor.feature_drift import (
    ModelReference,
    drift_rows,
    model_references,
    recorded_drift,
    write_drift,
)
from segspark.stages.monitor.migration import segment_migration
from segspark.stages.monitor.snapshots import SnapshotRun, snapshot_runs

__all__ = ["MonitorResult", "pairs_to_compute", "run_monitor"]

log = logging.getLogger("segspark")


@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run wrote: the (earlier, later) snapshot pairs computed, the migration rows written, the
    snapshots whose drift was measured, and the decision for the latest snapshot (None without a reference)."""

    pairs: list[tuple[dt.date, dt.date]]
    rows: int
    drift_snapshots: list[dt.date] = field(default_factory=list)
    decision: RetrainDecision | None = None


def pairs_to_compute(
    snapshots: list[SnapshotRun], recorded: dict[dt.date, tuple[dt.date, str, str, str]]
) -> list[tuple[SnapshotRun, SnapshotRun]]:
    """The consecutive pairs whose migration is missing or out of date.

    ``recorded`` maps each later snapshot already in segment_migration to (its earlier snapshot, the earlier
    snapshot's segments run, the later snapshot's segments run and model) as the rows record them: a retrain
    within one run rewrites a snapshot's segments under the same run id, with another model.
    """
    ordered = sorted(snapshots, key=lambda s: s.as_of)
    return [
        (earlier, later)
        for earlier, later in zip(ordered, ordered[1:], strict=False)
        if recorded.get(later.as_of) != (earlier.as_of, earlier.run_id, later.run_id, later.model_version)
    ]


def _recorded(spark: SparkSession, config: Config) -> dict[dt.date, tuple[dt.date, str, str, str]]:
    if not publication.is_published(spark, config, "segment_migration"):
        return {}
    rows = (
        publication.read_published(spark, config, "segment_migration")
        .groupBy("to_as_of_date")
        .agg(
            F.max("from_as_of_date"),
            F.max("from_segments_run_id"),
            F.max("to_segments_run_id"),
            F.max("to_model_version"),
        )
        .collect()  # one row per later snapshot
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


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
    """Bring segment_migration and feature_drift up to date, then decide on the latest snapshot's model."""
    if not publication.is_published(spark, config, "customer_segments"):
        raise InputError(f"no scored snapshot in {config.lakehouse}: run 'segspark train' (or 'segspark run') first")
    segments_df = publication.read_published(spark, config, "customer_segments")
    snapshots = snapshot_runs(segments_df)
    pairs = pairs_to_compute(snapshots, _recorded(spark, config))
    due, references = _drift_due(spark, config, snapshots)
    rows: list[dict[str, Any]] = []
    written_rows = 0
    if pairs or due:
        publication.ensure_log(spark, config, run_id)
        with publication.publishing(spark, config, run_id, failed="monitor failed: its tables restored"):
            versions = {}
            if pairs:
                written = _write_migration(spark, config, segments_df, pairs, run_id)
                versions["segment_migration"], written_rows = written.version, written.rows_written
            for snapshot in due:
                rows += drift_rows(spark, config, snapshot, references[snapshot.model_version])
            if rows:
                versions["feature_drift"] = write_drift(spark, config, rows, run_id).version
            counts = {"pairs": len(pairs), "drift_snapshots": len(due)}
            publication.publish(spark, config, run_id, "monitor", versions, counts=counts)
    for earlier, later in pairs:
        log.info("monitor: migration %s -> %s: %s customers", earlier.as_of, later.as_of, f"{later.customers:,}")
    decision = _decision(spark, config, snapshots[-1], references, rows) if snapshots else None
    if decision is not None:
        log.info("monitor: %s", decision.line())
    if stage is not None:
        stage.rows_out = written_rows
        stage.counts.update({"snapshots": len(snapshots), "pairs": len(pairs), "drift_snapshots": len(due)})
        stage.decision = decision.line() if decision is not None else None
    return MonitorResult(
        [(earlier.as_of, later.as_of) for earlier, later in pairs], written_rows, [s.as_of for s in due], decision
    )


def _write_migration(
    spark: SparkSession,
    config: Config,
    segments_df: DataFrame,
    pairs: list[tuple[SnapshotRun, SnapshotRun]],
    run_id: str,
) -> lakehouse.WriteResult:
    path = config.table_path("segment_migration")
    later_dates = [later.as_of for _, later in pairs]
    progress.step(f"segment migration of {len(pairs)} snapshot pair(s), the last into {later_dates[-1]}")
    migration_df = reduce(
        DataFrame.unionByName, [_pair_df(segments_df, earlier, later, run_id) for earlier, later in pairs]
    )
    written = lakehouse.write_table(
        migration_df, path, SEGMENT_MIGRATION, replace_where=lakehouse.dates_predicate("to_as_of_date", later_dates)
    )
    _check_counts(spark, path, written.version, {later.as_of: later.customers for _, later in pairs})
    return written


def _drift_due(
    spark: SparkSession, config: Config, snapshots: list[SnapshotRun]
) -> tuple[list[SnapshotRun], dict[str, ModelReference]]:
    """The snapshots whose drift is missing or out of date and whose model has a reference, and the references
    of every snapshot's model (the latest snapshot's decision needs its model's)."""
    recorded = recorded_drift(spark, config)
    references = model_references(spark, config, {s.model_version for s in snapshots})
    stale = [s for s in snapshots if recorded.get((s.as_of, s.model_version)) != s.run_id]
    for version in sorted({s.model_version for s in stale} - set(references)):
        log.info(
            "monitor: model %s has no drift reference (it was trained before drift_reference existed): the drift "
            "of its snapshots is not measured; retrain to measure it",
            version,
        )
    return [s for s in stale if s.model_version in references], references


def _decision(
    spark: SparkSession,
    config: Config,
    latest: SnapshotRun,
    references: dict[str, ModelReference],
    computed: list[dict[str, Any]],
) -> RetrainDecision | None:
    """The retrain decision for the latest snapshot, from its rows just computed or else as published."""
    reference = references.get(latest.model_version)
    if reference is None:
        return None
    rows: list[Any] = [
        r for r in computed if r[AS_OF_DATE] == latest.as_of and r[MODEL_VERSION] == latest.model_version
    ]
    if not rows and publication.is_published(spark, config, "feature_drift"):
        rows = (
            publication.read_published(spark, config, "feature_drift")
            .filter((F.col(AS_OF_DATE) == F.lit(latest.as_of)) & (F.col(MODEL_VERSION) == F.lit(latest.model_version)))
            .collect()  # features + K + 2 rows
        )
    if not rows:
        return None
    return decide(rows, latest.as_of, latest.model_version, reference.as_of, config.monitor)


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

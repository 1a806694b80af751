"""The features stage: ``customer_features`` for the configured snapshots, replacing only their partitions.

What each feature is lives in :mod:`segspark.stages.features.customers`. The stage never aggregates the whole
history of clean lines twice: it brings the lines new since its last run into the rollup
(:mod:`segspark.stages.features.batches`; every line on its first run or after a full refresh), computes every
requested snapshot from the rollup (:mod:`segspark.stages.features.rollup`), counts each snapshot's
customers, then writes the rollup and the snapshots and publishes them together.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, CUSTOMER_FEATURES, INVOICE_DATE, RUN_ID
from segspark.errors import InputError, ReconciliationError
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.stages.features import batches
from segspark.stages.features.customers import scored_features
from segspark.stages.features.rollup import rollup_customer_aggregates

__all__ = ["FeatureCounts", "default_as_of_date", "run_features", "snapshot_counts"]

log = logging.getLogger("segspark")


def default_as_of_date(lines_df: DataFrame) -> dt.date:
    """The day after the latest clean invoice date (one aggregate; Delta can answer it from file statistics)."""
    row = lines_df.agg(F.max(INVOICE_DATE)).first()  # a global aggregate: one row, even over no lines
    latest: dt.date | None = None if row is None else row[0]
    if latest is None:
        raise InputError("transactions_clean is empty: run ingest first or check the input")
    return latest + dt.timedelta(days=1)


@dataclass(frozen=True)
class FeatureCounts:
    """Customers per snapshot date: those kept (with a purchase) and those dropped for having only returns."""

    customers: dict[dt.date, int]
    returns_only_customers: dict[dt.date, int]


def snapshot_counts(customers_df: DataFrame) -> FeatureCounts:
    """Customers kept and returns-only customers per snapshot (one small row per snapshot collected)."""
    rows = (
        customers_df.groupBy(AS_OF_DATE)
        .agg(
            F.count(F.when(F.col("frequency") > 0, True)).alias("kept"),
            F.count(F.when(F.col("frequency") == 0, True)).alias("returns_only"),
        )
        .collect()  # one row per snapshot date
    )
    return FeatureCounts(
        customers={r[AS_OF_DATE]: int(r["kept"]) for r in rows},
        returns_only_customers={r[AS_OF_DATE]: int(r["returns_only"]) for r in rows},
    )


def _say_batch(batch: batches.RollupBatch) -> str:
    if batch.plan.kind == "unchanged":
        return f"rollup up to date ({batch.plan.reason})"
    runs = len(batch.lines_by_ingest_run)
    read = f"{batch.lines:,} clean lines of {runs:,} ingest run{'s' if runs != 1 else ''}"
    if batch.plan.kind == "rebuild":
        return f"rollup rebuilt from {read} ({batch.plan.reason})"
    return f"rollup: {read} appended ({batch.plan.reason})"


def run_features(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> FeatureCounts:
    """Bring new clean lines into the rollup and build ``customer_features`` for the configured snapshot dates.

    Only the snapshots' partitions are replaced; the rollup tables and the snapshots are published together.
    """
    lines_df = publication.read_published(spark, config, "transactions_clean")
    clean_version = publication.published_version(spark, config, "transactions_clean")
    if clean_version is None:  # read_published has just read it
        raise InputError("transactions_clean has no published version: run 'segspark ingest' first")
    if not config.as_of_dates:
        progress.step("finding the latest clean invoice (the default snapshot is the day after it)", logged=False)
    as_of_dates = sorted(set(config.as_of_dates)) or [default_as_of_date(lines_df)]
    settings = config.features

    progress.step("reading the clean lines new to the features rollup")
    batch = batches.prepare_batch(spark, config, run_id, lines_df, clean_version)
    log.info("%s", _say_batch(batch))
    try:
        invoice_rollup_df, new_products_df = batches.rollup_frames(spark, config, batch)
        customers_df = rollup_customer_aggregates(invoice_rollup_df, new_products_df, as_of_dates, settings)
        # Reused by the counts and the write: the rollup is aggregated once.
        customers_df = customers_df.persist(StorageLevel.MEMORY_AND_DISK)
        counts, expected = _write(spark, config, run_id, batch, customers_df, as_of_dates)
    finally:
        batch.unpersist()

    if stage is not None:
        stage.rows_in = batch.lines
        stage.rows_out = expected
        stage.counts["rollup_rebuilt"] = int(batch.plan.kind == "rebuild")
        for d in as_of_dates:
            stage.counts[f"customers_{d.isoformat()}"] = counts.customers.get(d, 0)
            stage.counts[f"returns_only_customers_{d.isoformat()}"] = counts.returns_only_customers.get(d, 0)
    for d in as_of_dates:
        log.info(
            "snapshot %s: %s customers (%s with returns only left out)",
            d,
            f"{counts.customers.get(d, 0):,}",
            f"{counts.returns_only_customers.get(d, 0):,}",
        )
    return counts


def _write(
    spark: SparkSession,
    config: Config,
    run_id: str,
    batch: batches.RollupBatch,
    customers_df: DataFrame,
    dates: list[dt.date],
) -> tuple[FeatureCounts, int]:
    """Count the snapshots, then write the rollup and the snapshots in one publication; unpersists customers_df."""
    try:
        progress.step(f"aggregating invoices and customers for {', '.join(d.isoformat() for d in dates)}")
        counts = snapshot_counts(customers_df)
        empty = [d.isoformat() for d in dates if counts.customers.get(d, 0) == 0]
        if empty:
            raise InputError(f"no customer has a purchase before as_of_date {', '.join(empty)}")
        features_df = scored_features(customers_df, config.features).withColumn(RUN_ID, F.lit(run_id))
        expected = sum(counts.customers.values())
        publication.ensure_log(spark, config, run_id)
        with publication.publishing(spark, config, run_id):
            versions = batches.write_batch(spark, config, run_id, batch)
            progress.step(f"writing {expected:,} customer rows to customer_features")
            written = lakehouse.write_table(
                features_df,
                config.table_path("customer_features"),
                CUSTOMER_FEATURES,
                replace_where=lakehouse.dates_predicate(AS_OF_DATE, dates),
            )
            if written.rows_written != expected:
                raise ReconciliationError(
                    f"customer_features wrote {written.rows_written:,} rows, expected {expected:,}"
                )
            publication.publish(
                spark,
                config,
                run_id,
                "features",
                {**versions, "customer_features": written.version},
                counts={f"customers_{d.isoformat()}": counts.customers.get(d, 0) for d in dates},
            )
    finally:
        customers_df.unpersist()
    return counts, expected

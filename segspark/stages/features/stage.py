"""The features stage: ``customer_features`` for the configured snapshots, replacing only their partitions.

What each feature is lives in :mod:`segspark.stages.features.customers`; this module reads the clean lines,
counts each snapshot's customers, writes and publishes.
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
from segspark.stages.features.customers import customer_aggregates, scored_features

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


def run_features(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> FeatureCounts:
    """Build ``customer_features`` for the configured snapshot dates, replacing only those partitions."""
    lines_df = publication.read_published(spark, config, "transactions_clean")
    if not config.as_of_dates:
        progress.step("finding the latest clean invoice (the default snapshot is the day after it)", logged=False)
    as_of_dates = sorted(set(config.as_of_dates)) or [default_as_of_date(lines_df)]
    settings = config.features

    # Reused by the counts and the write: the transactions are scanned once.
    customers_df = customer_aggregates(lines_df, as_of_dates, settings).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        progress.step(
            f"aggregating invoices and customers for {', '.join(d.isoformat() for d in as_of_dates)} (one scan)"
        )
        counts = snapshot_counts(customers_df)
        empty = [d.isoformat() for d in as_of_dates if counts.customers.get(d, 0) == 0]
        if empty:
            raise InputError(f"no customer has a purchase before as_of_date {', '.join(empty)}")
        features_df = scored_features(customers_df, settings).withColumn(RUN_ID, F.lit(run_id))
        progress.step(f"writing {sum(counts.customers.values()):,} customer rows to customer_features")
        publication.ensure_log(spark, config, run_id)
        expected = sum(counts.customers.values())
        with publication.publishing(spark, config, run_id):
            written = lakehouse.write_table(
                features_df,
                config.table_path("customer_features"),
                CUSTOMER_FEATURES,
                replace_where=lakehouse.dates_predicate(AS_OF_DATE, as_of_dates),
            )
            if written.rows_written != expected:
                raise ReconciliationError(
                    f"customer_features wrote {written.rows_written:,} rows, expected {expected:,}"
                )
            snapshot_counts_by_date = {f"customers_{d.isoformat()}": counts.customers.get(d, 0) for d in as_of_dates}
            publication.publish(
                spark,
                config,
                run_id,
                "features",
                {"customer_features": written.version},
                counts=snapshot_counts_by_date,
            )
    finally:
        customers_df.unpersist()

    if stage is not None:
        stage.rows_in = lines_df.count()
        stage.rows_out = expected
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

"""The features rollup: clean lines to partial aggregates that merge exactly, and back to any snapshot's customers.

Two tables hold it, appended per batch of clean lines (see :mod:`segspark.stages.features.batches`):

- ``invoice_rollup``: one row per (customer, invoice, invoice date, ingest run) with the invoice aggregates of
  those lines (:func:`segspark.stages.features.customers.invoice_partials`: sums, a min, maxes, an OR).
- ``product_rollup``: one row per (customer, product, ingest run) with the first date the customer bought the
  product in those lines.

Why it is exact. A snapshot ``S`` counts an invoice's lines dated before ``S``. Each invoice rollup row holds
the lines of one date (and one ingest run), so the rows dated before ``S`` hold exactly those lines, and the
sum of partial sums, the min of mins, the max of maxes and the OR of ORs equal the same aggregates over the
lines: merged per (snapshot, customer, invoice) they are the invoices :func:`aggregate_invoices` builds, but
for the product sets. A customer bought a product before ``S`` when the earliest first purchase date of the
pair is before ``S``, so distinct products as of ``S`` are a count of pairs. An invoice spanning two days, or
whose lines arrive in two batches, is several rows merged at feature time.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import FeatureSettings
from segspark.contracts.schemas import (
    AS_OF_DATE,
    COUNTRY,
    CUSTOMER_ID,
    INGEST_RUN_ID,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_ROLLUP,
    PRODUCT_ID,
    PRODUCT_ROLLUP,
    RUN_ID,
    require_columns,
)
from segspark.stages.features.customers import (
    CUSTOMER_AGGREGATE_COLUMNS,
    FEATURE_INPUT_COLUMNS,
    customer_aggregations,
    invoice_partials,
    scored_features,
    with_snapshot_dates,
)

__all__ = [
    "ROLLUP_INPUT_COLUMNS",
    "build_features_from_rollup",
    "distinct_products_as_of",
    "invoices_as_of",
    "product_rollup_rows",
    "rollup_customer_aggregates",
    "rollup_lines",
]

#: Columns of transactions_clean the rollup reads: the features' own and the ingest run of each line.
ROLLUP_INPUT_COLUMNS = [*FEATURE_INPUT_COLUMNS, RUN_ID]

FIRST_PURCHASE_DATE = "first_purchase_date"


def rollup_lines(lines_df: DataFrame, run_id: str) -> DataFrame:
    """Clean lines to ``invoice_rollup`` rows, plus ``products`` (the row's purchased product ids).

    One row per (customer_id, invoice_id, invoice_date, ingest_run_id): ``lines`` and the invoice partials
    (``purchase_value, returned_value, purchase_items, has_purchase, purchase_ts, products, country``; the
    sums, ``purchase_ts`` and ``country`` are null when the row has no purchase line), ``run_id`` = ``run_id``.
    ``products`` is not a rollup column: :func:`product_rollup_rows` turns it into first purchase dates.
    """
    require_columns(lines_df, ROLLUP_INPUT_COLUMNS, "the features rollup")
    return (
        lines_df.groupBy(CUSTOMER_ID, INVOICE_ID, INVOICE_DATE, F.col(RUN_ID).alias(INGEST_RUN_ID))
        .agg(F.count(F.lit(1)).alias("lines"), *invoice_partials())
        .withColumn(RUN_ID, F.lit(run_id))
        .select(*INVOICE_ROLLUP.columns, "products")
    )


def product_rollup_rows(invoice_rows_df: DataFrame) -> DataFrame:
    """:func:`rollup_lines` rows to ``product_rollup`` rows: the first purchase date per (customer, product, run).

    Lines without a product id never count (the invoices' product sets leave them out too).
    """
    require_columns(invoice_rows_df, [CUSTOMER_ID, INVOICE_DATE, INGEST_RUN_ID, RUN_ID, "products"], "product_rollup")
    return (
        invoice_rows_df.select(
            CUSTOMER_ID, INVOICE_DATE, INGEST_RUN_ID, RUN_ID, F.explode("products").alias(PRODUCT_ID)
        )
        .groupBy(CUSTOMER_ID, PRODUCT_ID, INGEST_RUN_ID, RUN_ID)
        .agg(F.min(INVOICE_DATE).alias(FIRST_PURCHASE_DATE))
        .select(*PRODUCT_ROLLUP.columns)
    )


def _before_latest(df: DataFrame, date_column: str, as_of_dates: list[dt.date]) -> DataFrame:
    # Implied by with_snapshot_dates, but as a plain filter Delta skips the files of later batches with it.
    return df.where(F.col(date_column) < F.lit(max(as_of_dates)))


def invoices_as_of(invoice_rollup_df: DataFrame, as_of_dates: list[dt.date]) -> DataFrame:
    """Rollup rows to one row per (as_of_date, customer_id, invoice_id): the invoices as of each snapshot.

    The columns of :func:`segspark.stages.features.customers.aggregate_invoices` but ``products``, equal to
    them: partials dated before the snapshot merged by sum, min, max and OR.
    """
    require_columns(invoice_rollup_df, INVOICE_ROLLUP.columns, "invoices_as_of")
    return (
        invoice_rollup_df.transform(_before_latest, INVOICE_DATE, as_of_dates)
        .transform(with_snapshot_dates, as_of_dates)
        .groupBy(AS_OF_DATE, CUSTOMER_ID, INVOICE_ID)
        .agg(
            F.sum("purchase_value").alias("purchase_value"),
            F.sum("returned_value").alias("returned_value"),
            F.sum("purchase_items").alias("purchase_items"),
            F.max("has_purchase").alias("has_purchase"),
            F.min("purchase_ts").alias("purchase_ts"),
            F.max(COUNTRY).alias(COUNTRY),
        )
    )


def distinct_products_as_of(product_rollup_df: DataFrame, as_of_dates: list[dt.date]) -> DataFrame:
    """Product rollup rows to ``distinct_products`` per (as_of_date, customer_id): pairs first bought before it.

    Customers without a purchased product before a snapshot have no row for it.
    """
    require_columns(product_rollup_df, [CUSTOMER_ID, PRODUCT_ID, FIRST_PURCHASE_DATE], "distinct_products_as_of")
    return (
        product_rollup_df.transform(_before_latest, FIRST_PURCHASE_DATE, as_of_dates)
        .groupBy(CUSTOMER_ID, PRODUCT_ID)
        .agg(F.min(FIRST_PURCHASE_DATE).alias(FIRST_PURCHASE_DATE))
        .transform(with_snapshot_dates, as_of_dates, FIRST_PURCHASE_DATE)
        .groupBy(AS_OF_DATE, CUSTOMER_ID)
        .agg(F.count(F.lit(1)).alias("distinct_products"))
    )


def rollup_customer_aggregates(
    invoice_rollup_df: DataFrame,
    product_rollup_df: DataFrame,
    as_of_dates: list[dt.date],
    settings: FeatureSettings,
) -> DataFrame:
    """The rollup to raw per-customer aggregates for every snapshot, equal to ``customer_aggregates`` of the lines.

    Output: :data:`segspark.stages.features.customers.CUSTOMER_AGGREGATE_COLUMNS`; returns-only customers
    included (``frequency`` 0, ``distinct_products`` 0).
    """
    customers_df = (
        invoices_as_of(invoice_rollup_df, as_of_dates)
        .groupBy(AS_OF_DATE, CUSTOMER_ID)
        .agg(*customer_aggregations(settings))
    )
    products_df = distinct_products_as_of(product_rollup_df, as_of_dates)
    return (
        customers_df.join(products_df, [AS_OF_DATE, CUSTOMER_ID], how="left")
        .withColumn("distinct_products", F.coalesce(F.col("distinct_products"), F.lit(0)).cast(T.IntegerType()))
        .select(*CUSTOMER_AGGREGATE_COLUMNS)
    )


def build_features_from_rollup(
    invoice_rollup_df: DataFrame,
    product_rollup_df: DataFrame,
    as_of_dates: list[dt.date],
    settings: FeatureSettings,
) -> DataFrame:
    """The rollup to ``customer_features`` rows (without run metadata), equal to ``build_customer_features``."""
    return scored_features(
        rollup_customer_aggregates(invoice_rollup_df, product_rollup_df, as_of_dates, settings), settings
    )

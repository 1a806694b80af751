"""The features rollup: clean lines to partial aggregates that merge exactly, and back to any snapshot's customers.

Three tables hold it, appended per batch of clean lines (see :mod:`segspark.stages.features.batches`):

- ``invoice_rollup``: one row per (customer, invoice, invoice date, ingest run) with the invoice aggregates of
  those lines (:func:`segspark.stages.features.customers.invoice_partials`: sums, a min, maxes, an OR).
- ``product_rollup``: one row per (customer, product) a batch bought first, or earlier than known, with that
  date: a pair's first purchase date is the earliest of its rows. Read only to bring the next batch in.
- ``new_products_rollup``: one row per (customer, date) of a batch with the change in the number of products
  first bought that day.

Why it is exact. A snapshot ``S`` counts an invoice's lines dated before ``S``. Each invoice rollup row holds
the lines of one date (and one ingest run), so the rows dated before ``S`` hold exactly those lines, and the
sum of partial sums, the min of mins, the max of maxes and the OR of ORs equal the same aggregates over the
lines: merged per (snapshot, customer, invoice) they are the invoices ``aggregate_invoices`` builds, but for the
product sets. A customer bought a product before ``S`` when the pair's first purchase date is before ``S``; the
new products rollup keeps, per customer and day, how many pairs have that day as their first purchase date
(a batch adds 1 on a pair's first day, and for a pair it finds earlier than known, 1 on the new day and -1 on
the old one), so distinct products as of ``S`` are the sum of its rows dated before ``S``. An invoice spanning
two days, or whose lines arrive in two batches, is several invoice rows merged at feature time.
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
    NEW_PRODUCTS_ROLLUP,
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
    "first_purchases",
    "invoices_as_of",
    "product_rollup_rows",
    "rollup_customer_aggregates",
    "rollup_lines",
    "with_known_dates",
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
    """:func:`rollup_lines` rows to the batch's purchased pairs: the earliest purchase date per (customer, product).

    Output: ``product_rollup`` columns. Lines without a product id never count (the invoices' product sets leave
    them out too).
    """
    require_columns(invoice_rows_df, [CUSTOMER_ID, INVOICE_DATE, RUN_ID, "products"], "product_rollup")
    return (
        invoice_rows_df.select(CUSTOMER_ID, INVOICE_DATE, RUN_ID, F.explode("products").alias(PRODUCT_ID))
        .groupBy(CUSTOMER_ID, PRODUCT_ID, RUN_ID)
        .agg(F.min(INVOICE_DATE).alias(FIRST_PURCHASE_DATE))
        .select(*PRODUCT_ROLLUP.columns)
    )


def with_known_dates(batch_pairs_df: DataFrame, known_pairs_df: DataFrame | None) -> DataFrame:
    """Add ``known_date`` to the batch's pairs: the pair's first purchase date the rollup knows, null if none.

    ``known_pairs_df``: the published ``product_rollup``; None on a rebuild (nothing is known).
    """
    if known_pairs_df is None:
        return batch_pairs_df.withColumn("known_date", F.lit(None).cast(T.DateType()))
    # Only the known pairs the batch holds: a semi-join against the batch's (small) pairs.
    known_df = (
        known_pairs_df.join(batch_pairs_df.select(CUSTOMER_ID, PRODUCT_ID), [CUSTOMER_ID, PRODUCT_ID], "left_semi")
        .groupBy(CUSTOMER_ID, PRODUCT_ID)
        .agg(F.min(FIRST_PURCHASE_DATE).alias("known_date"))
    )
    return batch_pairs_df.join(known_df, [CUSTOMER_ID, PRODUCT_ID], how="left")


def first_purchases(pairs_df: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """The batch's pairs with their known dates (:func:`with_known_dates`) to the rows the product tables gain.

    Returns
    -------
    (product_rollup rows, new_products_rollup rows)
        The pairs the batch bought first or earlier than known, with the batch's date; and per (customer, day)
        the change in products first bought that day (+1 on a pair's new first day, -1 on its old one), days
        without a change left out.
    """
    require_columns(pairs_df, [*PRODUCT_ROLLUP.columns, "known_date"], "first_purchases")
    known = F.col("known_date")
    is_earlier = known.isNull() | (F.col(FIRST_PURCHASE_DATE) < known)
    firsts_df = pairs_df.where(is_earlier)
    changes_df = (
        firsts_df.select(CUSTOMER_ID, FIRST_PURCHASE_DATE, F.lit(1).alias("change"))
        .unionByName(
            firsts_df.where(known.isNotNull()).select(
                CUSTOMER_ID, known.alias(FIRST_PURCHASE_DATE), F.lit(-1).alias("change")
            )
        )
        .groupBy(CUSTOMER_ID, FIRST_PURCHASE_DATE)
        .agg(F.sum("change").cast(T.LongType()).alias("new_products"))
        .where(F.col("new_products") != 0)
        .withColumn(RUN_ID, F.lit(run_id))
        .select(*NEW_PRODUCTS_ROLLUP.columns)
    )
    return firsts_df.select(*PRODUCT_ROLLUP.columns), changes_df


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


def distinct_products_as_of(new_products_df: DataFrame, as_of_dates: list[dt.date]) -> DataFrame:
    """New products rollup rows to ``distinct_products`` per (as_of_date, customer_id): the changes before it.

    Customers without a change before a snapshot have no row for it.
    """
    require_columns(new_products_df, NEW_PRODUCTS_ROLLUP.columns, "distinct_products_as_of")
    return (
        new_products_df.transform(_before_latest, FIRST_PURCHASE_DATE, as_of_dates)
        .transform(with_snapshot_dates, as_of_dates, FIRST_PURCHASE_DATE)
        .groupBy(AS_OF_DATE, CUSTOMER_ID)
        .agg(F.sum("new_products").alias("distinct_products"))
    )


def rollup_customer_aggregates(
    invoice_rollup_df: DataFrame,
    new_products_df: DataFrame,
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
    products_df = distinct_products_as_of(new_products_df, as_of_dates)
    return (
        customers_df.join(products_df, [AS_OF_DATE, CUSTOMER_ID], how="left")
        .withColumn("distinct_products", F.coalesce(F.col("distinct_products"), F.lit(0)).cast(T.IntegerType()))
        .select(*CUSTOMER_AGGREGATE_COLUMNS)
    )


def build_features_from_rollup(
    invoice_rollup_df: DataFrame,
    new_products_df: DataFrame,
    as_of_dates: list[dt.date],
    settings: FeatureSettings,
) -> DataFrame:
    """The rollup to ``customer_features`` rows (without run metadata), equal to ``build_customer_features``."""
    return scored_features(
        rollup_customer_aggregates(invoice_rollup_df, new_products_df, as_of_dates, settings), settings
    )

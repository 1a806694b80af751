"""What a customer's features are: clean lines to per-customer aggregates, derived features and RFM scores.

From lines in one pass (:func:`build_customer_features`, the definition every other computation must equal):

1. Each clean line is paired with every snapshot it counts for (``invoice_date < as_of_date``) by exploding
   the small list of snapshot dates, so all snapshots come from the same scan.
2. Lines are aggregated to invoices (per snapshot, customer, invoice), then invoices to customers: every
   feature is an aggregate of those two levels; nothing joins back to the fact table.
3. RFM scores are quintiles over each snapshot's customers (a window per snapshot), and the named RFM segment
   comes from the configured (recency score, frequency-monetary score) grid.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import FeatureSettings, RfmRule
from segspark.contracts.schemas import (
    AS_OF_DATE,
    COUNTRY,
    CUSTOMER_ID,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_TS,
    IS_RETURN,
    LINE_AMOUNT,
    PRODUCT_ID,
    QUANTITY,
    require_columns,
)
from segspark.errors import ConfigError

__all__ = [
    "CUSTOMER_AGGREGATE_COLUMNS",
    "FEATURE_INPUT_COLUMNS",
    "MONEY",
    "aggregate_customers",
    "aggregate_invoices",
    "build_customer_features",
    "customer_aggregates",
    "customer_aggregations",
    "invoice_partials",
    "quintile_score",
    "rfm_segment",
    "scored_features",
    "with_derived_features",
    "with_rfm_scores",
    "with_snapshot_dates",
]

#: Columns of transactions_clean the feature stage reads.
FEATURE_INPUT_COLUMNS = [
    CUSTOMER_ID,
    INVOICE_ID,
    PRODUCT_ID,
    QUANTITY,
    LINE_AMOUNT,
    INVOICE_TS,
    INVOICE_DATE,
    COUNTRY,
    IS_RETURN,
]
MONEY = T.DecimalType(20, 2)


def with_snapshot_dates(df: DataFrame, as_of_dates: list[dt.date], date_column: str = INVOICE_DATE) -> DataFrame:
    """Add ``as_of_date``: one row per (row, snapshot) with ``date_column < as_of_date``.

    Rows on or after every snapshot date are dropped; a row counts in every later snapshot.
    """
    dates = F.array(*[F.lit(d) for d in sorted(set(as_of_dates))])
    return df.withColumn(AS_OF_DATE, F.explode(F.filter(dates, lambda d: d > F.col(date_column))))


def invoice_partials() -> list[Column]:
    """The aggregates of an invoice's lines, over clean lines (the columns of :func:`aggregate_invoices`).

    Each is a sum, a min, a max or an OR, so partials over any split of the lines merge exactly (the rollup
    relies on it); ``products`` (a set) is the exception, kept apart by the rollup as first purchase dates.
    """
    is_purchase = ~F.col(IS_RETURN)
    return [
        F.sum(F.when(is_purchase, F.col(LINE_AMOUNT))).alias("purchase_value"),
        F.sum(F.when(~is_purchase, F.abs(F.col(LINE_AMOUNT)))).alias("returned_value"),
        F.sum(F.when(is_purchase, F.col(QUANTITY))).alias("purchase_items"),
        F.max(is_purchase).alias("has_purchase"),
        F.min(F.when(is_purchase, F.col(INVOICE_TS))).alias("purchase_ts"),
        F.collect_set(F.when(is_purchase, F.col(PRODUCT_ID))).alias("products"),
        F.max(F.when(is_purchase, F.col(COUNTRY))).alias(COUNTRY),
    ]


def aggregate_invoices(lines_df: DataFrame) -> DataFrame:
    """Lines to one row per (as_of_date, customer_id, invoice_id).

    Output: ``purchase_value`` (sum of purchase lines, null when none), ``returned_value`` (sum of
    |line_amount| over return lines, null when none), ``purchase_items``, ``has_purchase``, ``purchase_ts``
    (earliest purchase line), ``products`` (distinct purchased product ids), ``country``.
    """
    require_columns(lines_df, [*FEATURE_INPUT_COLUMNS, AS_OF_DATE], "aggregate_invoices")
    return lines_df.groupBy(AS_OF_DATE, CUSTOMER_ID, INVOICE_ID).agg(*invoice_partials())


#: The raw per-customer aggregates, in order: what :func:`aggregate_customers` returns and
#: :func:`with_derived_features` reads.
CUSTOMER_AGGREGATE_COLUMNS = [
    AS_OF_DATE,
    CUSTOMER_ID,
    "frequency",
    "monetary_exact",
    "returned_exact",
    "first_purchase_date",
    "last_purchase_date",
    "purchase_days",
    "distinct_products",
    "total_items",
    "weekend_invoices",
    "evening_invoices",
    "recent_spend",
    "q4_spend",
    COUNTRY,
]


def customer_aggregations(settings: FeatureSettings) -> list[Column]:
    """Every aggregate of a customer's invoices (per snapshot) but ``distinct_products``.

    The invoices carry ``purchase_value, returned_value, purchase_items, has_purchase, purchase_ts, country``
    (:func:`aggregate_invoices`); distinct products need the invoices' product sets, or the rollup's first
    purchase dates, so each caller adds them.
    """
    purchase = F.col("has_purchase")
    purchase_date = F.to_date(F.col("purchase_ts"))
    value = F.col("purchase_value")
    recent_start = F.date_sub(F.col(AS_OF_DATE), settings.recent_window_days)
    return [
        F.count(F.when(purchase, True)).alias("frequency"),
        F.sum(value).alias("monetary_exact"),
        F.coalesce(F.sum("returned_value"), F.lit(0)).alias("returned_exact"),
        F.min(purchase_date).alias("first_purchase_date"),
        F.max(purchase_date).alias("last_purchase_date"),
        F.array_sort(F.collect_set(purchase_date)).alias("purchase_days"),
        F.coalesce(F.sum("purchase_items"), F.lit(0)).cast(T.LongType()).alias("total_items"),
        F.count(F.when(purchase & F.dayofweek("purchase_ts").isin(1, 7), True)).alias("weekend_invoices"),
        F.count(F.when(purchase & (F.hour("purchase_ts") >= settings.evening_start_hour), True)).alias(
            "evening_invoices"
        ),
        F.coalesce(F.sum(F.when(purchase_date >= recent_start, value)), F.lit(0)).alias("recent_spend"),
        F.coalesce(F.sum(F.when(F.month(purchase_date) >= 10, value)), F.lit(0)).alias("q4_spend"),
        # Country of the latest purchase invoice; the struct makes ties (same time) pick one value for sure.
        F.max_by(F.col(COUNTRY), F.when(purchase, F.struct("purchase_ts", COUNTRY))).alias(COUNTRY),
    ]


def aggregate_customers(invoices_df: DataFrame, settings: FeatureSettings) -> DataFrame:
    """Invoices to one row per (as_of_date, customer_id) of raw aggregates, including returns-only customers.

    Output: :data:`CUSTOMER_AGGREGATE_COLUMNS`. ``frequency`` is 0 for a customer with returns only;
    :func:`with_derived_features` drops them.
    """
    distinct_products = F.size(F.array_distinct(F.flatten(F.collect_list("products")))).alias("distinct_products")
    return (
        invoices_df.groupBy(AS_OF_DATE, CUSTOMER_ID)
        .agg(*customer_aggregations(settings), distinct_products)
        .select(*CUSTOMER_AGGREGATE_COLUMNS)
    )


def _ratio(numerator: Column, denominator: Column) -> Column:
    # try_divide: null, not an ANSI-mode error, if a denominator is ever 0.
    return F.try_divide(numerator.cast(T.DoubleType()), denominator.cast(T.DoubleType())).cast(T.DoubleType())


def with_derived_features(customers_df: DataFrame) -> DataFrame:
    """Keep customers with a purchase and derive the model-ready features (no nulls for them).

    Single-purchase rules: with one purchase day, ``avg_days_between_purchases`` is ``tenure_days`` (the gap
    so far, a lower bound) and ``std_days_between_purchases`` is 0 (also with two purchase days, one gap).
    """
    days = F.col("purchase_days")
    n_days = F.size(days)
    # Gap i = purchase_days[i+1] - purchase_days[i]; transform's index is 0-based, element_at is 1-based.
    gaps = F.transform(
        F.slice(days, 2, F.greatest(n_days - 1, F.lit(1))), lambda d, i: F.datediff(d, F.element_at(days, i + 1))
    )
    gaps = F.when(n_days >= 2, gaps).otherwise(F.array().cast("array<int>"))
    n_gaps = F.size(gaps)
    mean_sq = F.aggregate(gaps, F.lit(0.0), lambda acc, g: acc + g.cast("double") * g) / n_gaps
    tenure = F.datediff(F.col(AS_OF_DATE), F.col("first_purchase_date"))
    mean_gap = F.when(n_days >= 2, F.datediff("last_purchase_date", "first_purchase_date") / (n_days - 1))
    mean_gap = mean_gap.otherwise(tenure.cast(T.DoubleType()))
    std_gap = F.when(n_gaps >= 2, F.sqrt(F.greatest(mean_sq - mean_gap * mean_gap, F.lit(0.0)))).otherwise(0.0)
    frequency = F.col("frequency")
    monetary = F.col("monetary_exact")
    return (
        customers_df.where(frequency > 0)
        .withColumn("recency_days", F.datediff(F.col(AS_OF_DATE), F.col("last_purchase_date")))
        .withColumn("tenure_days", tenure)
        .withColumn("monetary", F.round(monetary, 2).cast(MONEY))
        .withColumn("returned_value", F.round(F.col("returned_exact"), 2).cast(MONEY))
        .withColumn("avg_basket_value", _ratio(monetary, frequency))
        .withColumn("return_rate", _ratio(F.col("returned_exact"), monetary))
        .withColumn("items_per_basket", _ratio(F.col("total_items"), frequency))
        .withColumn("purchase_days_count", n_days)
        .withColumn("avg_days_between_purchases", mean_gap.cast(T.DoubleType()))
        .withColumn("std_days_between_purchases", std_gap.cast(T.DoubleType()))
        .withColumn("recent_spend_share", _ratio(F.col("recent_spend"), monetary))
        .withColumn("weekend_share", _ratio(F.col("weekend_invoices"), frequency))
        .withColumn("evening_share", _ratio(F.col("evening_invoices"), frequency))
        .withColumn("q4_spend_share", _ratio(F.col("q4_spend"), monetary))
    )


def quintile_score(value: Column, higher_is_better: bool = True) -> Column:
    """1-5 score by quintile of ``value`` among the customers of the same snapshot.

    Tie rule: equal values get equal scores, from their mid-rank. With ``lo``/``hi`` the first and last
    (1-based) ranks of the tied group among ``n`` customers ordered from worst to best, the score is
    ``1 + floor(5 * (lo - 1 + hi) / (2 n))``, at most 5. Five distinct values score 1..5; all-equal values
    score 3; fewer than five customers spread over 1..5 by their mid-ranks.
    """
    order = value.asc() if higher_is_better else value.desc()
    by_rank = Window.partitionBy(AS_OF_DATE).orderBy(order)
    whole = Window.partitionBy(AS_OF_DATE).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    # rank() and cume_dist() are ranking functions: their frame is fixed by Spark (ties share a rank).
    n = F.count(F.lit(1)).over(whole)
    lo = F.rank().over(by_rank)
    hi = F.round(F.cume_dist().over(by_rank) * n)
    score = F.floor(5 * (lo - 1 + hi) / (2 * n)) + 1
    return F.least(score, F.lit(5)).cast(T.IntegerType())


def rfm_segment(r_score: Column, fm_score: Column, rules: tuple[RfmRule, ...]) -> Column:
    """Name of the first rule whose recency and frequency-monetary ranges hold both scores.

    Raises
    ------
    ConfigError : ``rules`` is empty (the config's validation, which needs the rules to cover every score pair,
        never lets that through).
    """
    segment: Column | None = None
    for rule in rules:
        condition = r_score.between(rule.r[0], rule.r[1]) & fm_score.between(rule.fm[0], rule.fm[1])
        segment = F.when(condition, rule.segment) if segment is None else segment.when(condition, rule.segment)
    if segment is None:
        raise ConfigError("config key 'features.rfm_segments' holds no rule")
    return segment


def with_rfm_scores(features_df: DataFrame, settings: FeatureSettings) -> DataFrame:
    """Add ``r_score, f_score, m_score`` (quintiles), ``fm_score`` (half-up mean of f and m), ``rfm_score``
    (like ``"545"``) and ``rfm_segment`` (from ``features.rfm_segments``)."""
    fm = ((F.col("f_score") + F.col("m_score") + 1) / 2).cast(T.IntegerType())
    return (
        features_df.withColumn("r_score", quintile_score(F.col("recency_days"), higher_is_better=False))
        .withColumn("f_score", quintile_score(F.col("frequency")))
        .withColumn("m_score", quintile_score(F.col("monetary")))
        .withColumn("fm_score", fm)
        .withColumn("rfm_score", F.concat(F.col("r_score"), F.col("f_score"), F.col("m_score")).cast("string"))
        .withColumn("rfm_segment", rfm_segment(F.col("r_score"), F.col("fm_score"), settings.rfm_segments))
    )


def customer_aggregates(lines_df: DataFrame, as_of_dates: list[dt.date], settings: FeatureSettings) -> DataFrame:
    """Clean lines to raw per-customer aggregates for every snapshot (returns-only customers included)."""
    require_columns(lines_df, FEATURE_INPUT_COLUMNS, "customer features")
    return (
        lines_df.select(*FEATURE_INPUT_COLUMNS)
        .transform(with_snapshot_dates, as_of_dates)
        .transform(aggregate_invoices)
        .transform(aggregate_customers, settings)
    )


def scored_features(customers_df: DataFrame, settings: FeatureSettings) -> DataFrame:
    """Raw aggregates to model-ready features with RFM scores and segments (returns-only customers dropped)."""
    return customers_df.transform(with_derived_features).transform(with_rfm_scores, settings)


def build_customer_features(lines_df: DataFrame, as_of_dates: list[dt.date], settings: FeatureSettings) -> DataFrame:
    """Clean lines to ``customer_features`` rows (without run metadata) for every snapshot date."""
    return scored_features(customer_aggregates(lines_df, as_of_dates, settings), settings)

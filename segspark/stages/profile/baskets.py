"""What each segment buys: its top products, and cross-sell rules mined from its baskets.

Both functions read clean transaction lines and one segment per customer, and count only **purchase lines**:
``is_return`` false and ``product_id`` not null. Lines of customers without a segment are ignored (inner
join), so every population figure below is over the segmented customers only.

Definitions
-----------
spend
    Sum of ``line_amount`` over purchase lines (exact decimal; the output rounds it half up to cents).
spend share / population spend share / lift (top products)
    A product's spend in a segment over the segment's total spend; the product's spend over every segmented
    customer's total spend; lift is the first over the second (above 1: the segment over-buys it).
basket
    One invoice's distinct purchased product ids, in the segment of the invoice's customer.
support / confidence / lift (cross-sell rules)
    For a rule ``antecedent -> consequent`` mined in one segment with N baskets: support is the share of the N
    baskets holding antecedent and consequent together, confidence is that count over the count of baskets
    holding the antecedent, and lift is confidence over the consequent's own basket share. Only rules with
    lift above 1 are kept: at or below 1 the antecedent makes the consequent no likelier than it already is.
description
    A product's most frequent non-null description over the purchase lines, the smallest string on a tie,
    null when it has none (the same for every segment).

Rules are mined with :class:`pyspark.ml.fpm.FPGrowth`, one fit per segment, so supports and confidences are
within the segment. Its ``associationRules`` has the columns ``antecedent, consequent, confidence, lift,
support`` on both supported Spark lines (``support`` arrived in Spark 3.1, SPARK-19939; the Python docstring
of ``FPGrowthModel.associationRules`` still lists four columns in 3.5 and 4.1). Its consequent is always a
single item, and its antecedent comes in no particular order, so it is sorted here.
"""

from __future__ import annotations

from functools import reduce
from numbers import Real

from pyspark import StorageLevel
from pyspark.ml.fpm import FPGrowth
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.contracts.schemas import (
    CUSTOMER_ID,
    DESCRIPTION,
    INVOICE_ID,
    IS_RETURN,
    LINE_AMOUNT,
    PRODUCT_ID,
    SEGMENT_ID,
    require_columns,
)

__all__ = [
    "ANTECEDENT",
    "ANTECEDENT_DESCRIPTIONS",
    "BUYERS",
    "CONFIDENCE",
    "CONSEQUENT",
    "CONSEQUENT_DESCRIPTION",
    "CROSS_SELL_RULES_SCHEMA",
    "ITEMS",
    "LIFT",
    "LIFT_DECIMALS",
    "POPULATION_SPEND_SHARE",
    "RANK",
    "RULE_BASKETS",
    "SEGMENT_BASKETS",
    "SPEND",
    "SPEND_SHARE",
    "SUPPORT",
    "TOP_PRODUCTS_SCHEMA",
    "cross_sell_rules",
    "top_products",
]

RANK = "rank"
SPEND = "spend"
SPEND_SHARE = "spend_share"
POPULATION_SPEND_SHARE = "population_spend_share"
LIFT = "lift"
BUYERS = "buyers"
ANTECEDENT = "antecedent"
ANTECEDENT_DESCRIPTIONS = "antecedent_descriptions"
CONSEQUENT = "consequent"
CONSEQUENT_DESCRIPTION = "consequent_description"
SUPPORT = "support"
CONFIDENCE = "confidence"
RULE_BASKETS = "rule_baskets"
SEGMENT_BASKETS = "segment_baskets"

#: FPGrowth's input column: one basket's distinct product ids.
ITEMS = "items"

#: Lifts are compared at this many decimals. FPGrowth computes lift as confidence / consequent support, two
#: roundings, so mathematically equal lifts (A -> B and B -> A always have one) can differ in the last bit;
#: without this the noise, not confidence, would order them, and an exact lift of 1 could pass ``> 1``.
LIFT_DECIMALS = 9

#: Output of :func:`top_products`, in column order. Nullability is as Spark derives it from the inputs' types
#: (``segment_id`` and ``product_id`` are never null in the rows).
TOP_PRODUCTS_SCHEMA = T.StructType(
    [
        T.StructField(SEGMENT_ID, T.IntegerType(), True),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(PRODUCT_ID, T.StringType(), True),
        T.StructField(DESCRIPTION, T.StringType(), True),
        T.StructField(SPEND, T.DecimalType(28, 2), True),
        T.StructField(SPEND_SHARE, T.DoubleType(), True),
        T.StructField(POPULATION_SPEND_SHARE, T.DoubleType(), True),
        T.StructField(LIFT, T.DoubleType(), True),
        T.StructField(BUYERS, T.LongType(), False),
    ]
)

#: Output of :func:`cross_sell_rules`, in column order.
CROSS_SELL_RULES_SCHEMA = T.StructType(
    [
        T.StructField(SEGMENT_ID, T.IntegerType(), False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(ANTECEDENT, T.ArrayType(T.StringType(), True), False),
        T.StructField(ANTECEDENT_DESCRIPTIONS, T.ArrayType(T.StringType(), True), False),
        T.StructField(CONSEQUENT, T.StringType(), True),
        T.StructField(CONSEQUENT_DESCRIPTION, T.StringType(), True),
        T.StructField(SUPPORT, T.DoubleType(), False),
        T.StructField(CONFIDENCE, T.DoubleType(), False),
        T.StructField(LIFT, T.DoubleType(), True),
        T.StructField(RULE_BASKETS, T.LongType(), True),
        T.StructField(SEGMENT_BASKETS, T.LongType(), False),
    ]
)


def _check_top_n(top_n: int) -> None:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")


def _check_share(name: str, value: float) -> None:
    # ``not 0 < value <= 1`` also rejects NaN, for which every comparison is false.
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def _segment_purchases(lines: DataFrame, segments: DataFrame, line_columns: list[str], what: str) -> DataFrame:
    """Purchase lines of segmented customers, with their ``segment_id``."""
    require_columns(lines, line_columns, what)
    require_columns(segments, [CUSTOMER_ID, SEGMENT_ID], what)
    is_purchase = ~F.col(IS_RETURN) & F.col(PRODUCT_ID).isNotNull()
    # A customer without a segment id is in no segment, like one missing from ``segments``.
    segment_of_df = segments.filter(F.col(SEGMENT_ID).isNotNull()).select(
        CUSTOMER_ID, F.col(SEGMENT_ID).cast(T.IntegerType()).alias(SEGMENT_ID)
    )
    return lines.filter(is_purchase).join(segment_of_df, on=CUSTOMER_ID, how="inner")


def _product_descriptions(purchases_df: DataFrame) -> DataFrame:
    """``product_id, description``: each product's most frequent non-null description, smallest on a tie.

    Products whose lines all lack a description have no row (a left join gives them null).
    """
    counted_df = (
        purchases_df.filter(F.col(DESCRIPTION).isNotNull())
        .groupBy(PRODUCT_ID, DESCRIPTION)
        .agg(F.count(F.lit(1)).alias("_lines"))
    )
    # The smallest (-lines, description) is the most frequent description, then the smallest string: one
    # aggregate instead of a ranking window.
    best = F.min(F.struct((-F.col("_lines")).alias("_minus_lines"), F.col(DESCRIPTION).alias(DESCRIPTION)))
    return (
        counted_df.groupBy(PRODUCT_ID)
        .agg(best.alias("_best"))
        .select(PRODUCT_ID, F.col("_best")[DESCRIPTION].alias(DESCRIPTION))
    )


def _conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """The schema's columns, in its order, cast to its types."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def top_products(lines: DataFrame, segments: DataFrame, top_n: int) -> DataFrame:
    """The ``top_n`` products of each segment by share of the segment's purchase spend.

    Parameters
    ----------
    lines : clean transaction lines: ``customer_id, product_id, description, line_amount, is_return``.
        Returns and lines without a product id are ignored.
    segments : ``customer_id, segment_id``, one row per customer; other customers' lines are ignored.
    top_n : products kept per segment, >= 1.

    Returns
    -------
    DataFrame
        :data:`TOP_PRODUCTS_SCHEMA`: ``segment_id, rank, product_id, description, spend, spend_share,
        population_spend_share, lift, buyers``, sorted by segment and rank. ``rank`` 1 is the largest spend
        share; equal shares rank by product id. ``spend`` is rounded half up to cents; the shares use exact
        spend. ``buyers`` counts the segment's distinct customers who bought the product. ``description``
        is null for a product no purchase line describes. A segment without purchases has no rows.
    """
    _check_top_n(top_n)
    purchases_df = _segment_purchases(
        lines, segments, [CUSTOMER_ID, PRODUCT_ID, DESCRIPTION, LINE_AMOUNT, IS_RETURN], "top_products"
    )
    product_df = purchases_df.groupBy(SEGMENT_ID, PRODUCT_ID).agg(
        F.sum(LINE_AMOUNT).alias("_spend"),
        F.countDistinct(CUSTOMER_ID).alias(BUYERS),
    )
    whole_segment = Window.partitionBy(SEGMENT_ID).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    whole_product = Window.partitionBy(PRODUCT_ID).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    # Ranking on the exact spend gives the spend-share order without comparing doubles.
    by_spend = (
        Window.partitionBy(SEGMENT_ID)
        .orderBy(F.col("_spend").desc(), F.col(PRODUCT_ID).asc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    population_df = product_df.agg(F.sum("_spend").alias("_population_spend"))  # one row

    def ratio(numerator: str, denominator: str) -> Column:
        return F.col(numerator).cast(T.DoubleType()) / F.col(denominator).cast(T.DoubleType())

    # The product window first: both segment windows then share one shuffle by segment.
    ranked_df = (
        product_df.withColumn("_product_spend", F.sum("_spend").over(whole_product))
        .withColumn("_segment_spend", F.sum("_spend").over(whole_segment))
        .withColumn(RANK, F.row_number().over(by_spend))
        .filter(F.col(RANK) <= top_n)
        .join(F.broadcast(population_df), how="cross")
        .withColumn(SPEND, F.col("_spend"))
        .withColumn(SPEND_SHARE, ratio("_spend", "_segment_spend"))
        .withColumn(POPULATION_SPEND_SHARE, ratio("_product_spend", "_population_spend"))
        .withColumn(LIFT, F.col(SPEND_SHARE) / F.col(POPULATION_SPEND_SHARE))
    )
    described_df = ranked_df.join(_product_descriptions(purchases_df), on=PRODUCT_ID, how="left")
    return _conform(described_df, TOP_PRODUCTS_SCHEMA).orderBy(SEGMENT_ID, RANK)


def _segment_rules(
    baskets_df: DataFrame, segment_id: int, segment_baskets: int, min_support: float, min_confidence: float
) -> DataFrame:
    """One segment's rules with lift above 1 (fits FPGrowth on the segment's baskets: Spark jobs run here)."""
    fp_growth = FPGrowth(itemsCol=ITEMS, minSupport=min_support, minConfidence=min_confidence)
    model = fp_growth.fit(baskets_df.filter(F.col(SEGMENT_ID) == F.lit(segment_id)).select(ITEMS))
    return model.associationRules.filter(F.round(F.col(LIFT), LIFT_DECIMALS) > 1).select(
        F.lit(segment_id).cast(T.IntegerType()).alias(SEGMENT_ID),
        F.array_sort(ANTECEDENT).alias(ANTECEDENT),
        # FPGrowth's consequents are single items.
        F.col(CONSEQUENT)[0].alias(CONSEQUENT),
        F.col(SUPPORT),
        F.col(CONFIDENCE),
        F.col(LIFT),
        # support is freq / baskets as a double: times baskets, rounded, it is the exact count again.
        F.round(F.col(SUPPORT) * F.lit(segment_baskets)).cast(T.LongType()).alias(RULE_BASKETS),
        F.lit(segment_baskets).cast(T.LongType()).alias(SEGMENT_BASKETS),
    )


def cross_sell_rules(
    lines: DataFrame, segments: DataFrame, min_support: float, min_confidence: float, top_n: int
) -> DataFrame:
    """Each segment's ``top_n`` association rules with lift above 1, mined with FPGrowth per segment.

    Not a lazy transformation: it counts the baskets of each segment (one small collect) and fits FPGrowth
    once per segment with baskets, in ascending segment order; each fit reads ``lines``, so persist it first
    when it is expensive to compute. The returned frame is lazy and mines the itemsets again when evaluated:
    write it once.

    Parameters
    ----------
    lines : clean transaction lines: ``customer_id, invoice_id, product_id, description, line_amount,
        is_return``. Returns and lines without a product id are ignored.
    segments : ``customer_id, segment_id``, one row per customer; other customers' lines are ignored.
    min_support : FPGrowth's minimum share of a segment's baskets holding an itemset, in (0, 1].
    min_confidence : minimum confidence of a rule, in (0, 1].
    top_n : rules kept per segment, >= 1.

    Returns
    -------
    DataFrame
        :data:`CROSS_SELL_RULES_SCHEMA`: ``segment_id, rank, antecedent, antecedent_descriptions, consequent,
        consequent_description, support, confidence, lift, rule_baskets, segment_baskets``, sorted by segment
        and rank. ``antecedent`` is sorted; ``antecedent_descriptions`` follows its order, with null for a
        product without a description. ``rank`` orders by lift (to :data:`LIFT_DECIMALS` decimals),
        confidence and support, all descending, then the antecedent joined with commas and the consequent.
        Empty (with this schema) when no segment has a rule.

    Raises
    ------
    ValueError
        When ``min_support`` or ``min_confidence`` is outside (0, 1] or ``top_n`` is below 1.
    """
    _check_share("min_support", min_support)
    _check_share("min_confidence", min_confidence)
    _check_top_n(top_n)
    purchases_df = _segment_purchases(
        lines,
        segments,
        [CUSTOMER_ID, INVOICE_ID, PRODUCT_ID, DESCRIPTION, LINE_AMOUNT, IS_RETURN],
        "cross_sell_rules",
    )
    # FPGrowth requires distinct items per basket; sorting makes the input independent of line order.
    baskets_df = purchases_df.groupBy(SEGMENT_ID, INVOICE_ID).agg(F.array_sort(F.collect_set(PRODUCT_ID)).alias(ITEMS))
    # Every fit reads its segment's baskets: kept (one row per invoice) for the fits, so lines are read and
    # shuffled once, not once per segment. Released before returning: the rules no longer need it.
    baskets_df = baskets_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        basket_counts = (
            baskets_df.groupBy(SEGMENT_ID)
            .agg(F.count(F.lit(1)).alias("_baskets"))
            .orderBy(SEGMENT_ID)
            .collect()  # one row per segment with baskets: at most a few dozen
        )
        segment_rules = [
            _segment_rules(baskets_df, row[SEGMENT_ID], row["_baskets"], min_support, min_confidence)
            for row in basket_counts
        ]
    finally:
        baskets_df.unpersist()
    if not segment_rules:
        return lines.sparkSession.createDataFrame([], CROSS_SELL_RULES_SCHEMA)
    rules_df = reduce(DataFrame.unionByName, segment_rules)

    ordered = (
        Window.partitionBy(SEGMENT_ID)
        .orderBy(
            F.round(F.col(LIFT), LIFT_DECIMALS).desc(),
            F.col(CONFIDENCE).desc(),
            F.col(SUPPORT).desc(),
            F.array_join(ANTECEDENT, ",").asc(),
            F.col(CONSEQUENT).asc(),
        )
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    top_df = rules_df.withColumn(RANK, F.row_number().over(ordered)).filter(F.col(RANK) <= top_n)

    # Descriptions for antecedent and consequent in one lookup: one row per item of a rule, antecedent items
    # at their positions and the consequent after them, described, then gathered back in position order.
    described = F.sort_array(F.collect_list(F.struct(F.col("_pos"), F.col(DESCRIPTION))))
    described_df = (
        top_df.select("*", F.posexplode(F.concat(ANTECEDENT, F.array(CONSEQUENT))).alias("_pos", PRODUCT_ID))
        .join(_product_descriptions(purchases_df), on=PRODUCT_ID, how="left")
        .groupBy(*top_df.columns)
        .agg(described.alias("_described"))
        .withColumn(
            ANTECEDENT_DESCRIPTIONS,
            F.transform(
                F.filter("_described", lambda entry: entry["_pos"] < F.size(ANTECEDENT)),
                lambda entry: entry[DESCRIPTION],
            ),
        )
        .withColumn(CONSEQUENT_DESCRIPTION, F.element_at("_described", -1)[DESCRIPTION])
    )
    return _conform(described_df, CROSS_SELL_RULES_SCHEMA).orderBy(SEGMENT_ID, RANK)

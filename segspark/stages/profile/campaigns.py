"""Campaign audiences with a control group, and the campaign's measured effect at the next snapshot.

The holdout is exact per segment: within each segment customers are ordered by a seeded 64-bit hash of
(campaign key, customer id), ties by id, and the first ``round(holdout_share x segment size)`` (half up) are
control. The same key, seed and customers give the same control group on every run and any file layout; a
customer's place depends only on their own id, so adding customers moves few others in or out.

Measured at the next snapshot: for each segment of the audience and each of contacted / control, the share of
customers with a purchase in [audience snapshot, next snapshot) and their purchase spend in that window.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segspark.contracts.schemas import (
    AS_OF_DATE,
    CUSTOMER_ID,
    INVOICE_DATE,
    IS_RETURN,
    LINE_AMOUNT,
    SEGMENT_ID,
    require_columns,
)

__all__ = ["IS_CONTROL", "campaign_key", "campaign_outcomes", "holdout_rank", "previous_snapshot", "with_control_group"]

IS_CONTROL = "is_control"


def campaign_key(name: str | None, as_of: dt.date, seed: int) -> str:
    """What fixes the holdout: the seed and the campaign's name (default: the snapshot date)."""
    return f"{seed}:{name if name is not None else as_of.isoformat()}"


def holdout_rank(key: str) -> Column:
    """A customer's place in their segment's holdout order: a 64-bit hash of the campaign key and the id."""
    return F.xxhash64(F.lit(key), F.col(CUSTOMER_ID))


def with_control_group(members_df: DataFrame, share: float, key: str) -> DataFrame:
    """Add ``is_control``: exactly round-half-up(share x size) customers of each segment, chosen by the key.

    Input columns: ``customer_id, segment_id``; output: the input's columns and ``is_control`` (never null).
    """
    require_columns(members_df, [CUSTOMER_ID, SEGMENT_ID], "campaign holdout")
    ordered = Window.partitionBy(SEGMENT_ID).orderBy(holdout_rank(key), F.col(CUSTOMER_ID))
    whole = Window.partitionBy(SEGMENT_ID).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    control_size = F.floor(F.count(F.lit(1)).over(whole) * F.lit(share) + F.lit(0.5))
    return members_df.withColumn(IS_CONTROL, F.row_number().over(ordered) <= control_size)


def campaign_outcomes(audience_df: DataFrame, lines_df: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Per segment and group of one audience: customers, purchasers, purchase rate and spend in [start, end).

    Parameters
    ----------
    audience_df : ``customer_id, segment_id, segment_name, play, is_control`` of the audience snapshot.
    lines_df : clean transaction lines (``customer_id, invoice_date, is_return, line_amount``).
    start, end : the audience's snapshot and the next one.

    Returns
    -------
    DataFrame
        ``segment_id, segment_name, play, is_control, customers, purchasers, purchase_rate, spend,
        spend_per_customer, purchase_rate_uplift, spend_per_customer_uplift``. The uplifts are contacted minus
        control, the same on both rows of a segment, and null when either group is empty.
    """
    require_columns(audience_df, [CUSTOMER_ID, SEGMENT_ID, "segment_name", "play", IS_CONTROL], "campaign results")
    require_columns(lines_df, [CUSTOMER_ID, INVOICE_DATE, IS_RETURN, LINE_AMOUNT], "campaign results")
    bought_df = (
        lines_df.filter((F.col(INVOICE_DATE) >= F.lit(start)) & (F.col(INVOICE_DATE) < F.lit(end)) & ~F.col(IS_RETURN))
        .groupBy(CUSTOMER_ID)
        .agg(F.sum(LINE_AMOUNT).alias("spend"))
    )
    groups_df = (
        audience_df.select(CUSTOMER_ID, SEGMENT_ID, "segment_name", "play", IS_CONTROL)
        .join(bought_df, on=CUSTOMER_ID, how="left")
        .groupBy(SEGMENT_ID, "segment_name", "play", IS_CONTROL)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.count("spend").alias("purchasers"),
            F.coalesce(F.sum("spend"), F.lit(0)).cast("decimal(28,2)").alias("spend"),
        )
        .withColumn("purchase_rate", F.col("purchasers") / F.col("customers"))
        .withColumn("spend_per_customer", F.col("spend").cast("double") / F.col("customers"))
    )
    segment = Window.partitionBy(SEGMENT_ID).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)

    def uplift(column: str) -> Column:
        contacted = F.max(F.when(~F.col(IS_CONTROL), F.col(column))).over(segment)
        control = F.max(F.when(F.col(IS_CONTROL), F.col(column))).over(segment)
        return contacted - control

    return groups_df.select(
        SEGMENT_ID,
        "segment_name",
        "play",
        IS_CONTROL,
        "customers",
        "purchasers",
        "purchase_rate",
        "spend",
        "spend_per_customer",
        uplift("purchase_rate").alias("purchase_rate_uplift"),
        uplift("spend_per_customer").alias("spend_per_customer_uplift"),
    )


def previous_snapshot(audiences_df: DataFrame, as_of: dt.date) -> dt.date | None:
    """The latest audience snapshot before ``as_of`` (one aggregate row), or None."""
    row = audiences_df.filter(F.col(AS_OF_DATE) < F.lit(as_of)).agg(F.max(AS_OF_DATE)).first()
    earlier: dt.date | None = None if row is None else row[0]  # a global aggregate: one row, null over none
    return earlier

"""Segment migration between two scored snapshots: who moved from which segment to which.

Customers present in both snapshots move from their earlier segment to their later one (or stay). Customers
only in the later snapshot come from ``new``; customers only in the earlier one go to ``gone`` (they have no
purchase before the later snapshot's lookback any more, or were left out of its features). Every customer of
either snapshot is in exactly one row's count, so a snapshot's rows sum to its customers plus those gone.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from segspark.contracts.schemas import CUSTOMER_ID, SEGMENT_ID, SEGMENT_NAME, require_columns

__all__ = ["GONE", "MIGRATION_COLUMNS", "NEW", "segment_migration"]

#: The from-segment name of customers who were not in the earlier snapshot.
NEW = "new"
#: The to-segment name of customers who are not in the later snapshot.
GONE = "gone"

MIGRATION_COLUMNS = [
    "from_segment_id",
    "from_segment_name",
    "to_segment_id",
    "to_segment_name",
    "customers",
    "share_of_from",
]


def _side(segments_df: DataFrame, prefix: str, what: str) -> DataFrame:
    require_columns(segments_df, [CUSTOMER_ID, SEGMENT_ID, SEGMENT_NAME], what)
    return segments_df.select(
        CUSTOMER_ID,
        F.col(SEGMENT_ID).alias(f"{prefix}_segment_id"),
        F.col(SEGMENT_NAME).alias(f"{prefix}_segment_name"),
        F.lit(True).alias(f"is_in_{prefix}"),
    )


def segment_migration(from_df: DataFrame, to_df: DataFrame) -> DataFrame:
    """Customers per (from-segment, to-segment) between two snapshots, and their share of the from-segment.

    Parameters
    ----------
    from_df, to_df : ``customer_id, segment_id, segment_name`` of the earlier and the later snapshot, one row
        per customer.

    Returns
    -------
    DataFrame
        :data:`MIGRATION_COLUMNS`: ``from_segment_id`` null and ``from_segment_name`` ``new`` for customers
        only in the later snapshot; ``to_segment_id`` null and ``to_segment_name`` ``gone`` for those only in
        the earlier one. ``share_of_from`` is the row's customers over all customers of its from-segment (of
        all new customers for the ``new`` rows). A segment name that is null (not yet profiled) stays null.
    """
    joined_df = _side(from_df, "from", "segment migration (earlier snapshot)").join(
        _side(to_df, "to", "segment migration (later snapshot)"), on=CUSTOMER_ID, how="full"
    )
    is_new, is_gone = F.col("is_in_from").isNull(), F.col("is_in_to").isNull()
    keyed_df = joined_df.select(
        F.col("from_segment_id"),
        F.when(is_new, F.lit(NEW)).otherwise(F.col("from_segment_name")).alias("from_segment_name"),
        F.col("to_segment_id"),
        F.when(is_gone, F.lit(GONE)).otherwise(F.col("to_segment_name")).alias("to_segment_name"),
        is_new.alias("is_new"),
    )
    from_segment = Window.partitionBy("is_new", "from_segment_id").rowsBetween(
        Window.unboundedPreceding, Window.unboundedFollowing
    )
    return (
        keyed_df.groupBy("is_new", "from_segment_id", "from_segment_name", "to_segment_id", "to_segment_name")
        .agg(F.count(F.lit(1)).alias("customers"))
        .withColumn("share_of_from", F.col("customers") / F.sum("customers").over(from_segment))
        .select(*MIGRATION_COLUMNS)
    )

"""Feature values counted into the model's fixed bins, every feature in one pass over a snapshot.

The bins are those of :mod:`segspark.maths.drift`: a value falls in bin ``i`` = the number of the feature's
edges strictly below it; a null or NaN value falls in :data:`MISSING_BIN`. With each bin's count come the sum
and the sum of squares of its values, so the snapshot's mean and standard deviation per feature come from the
same pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segspark.contracts.schemas import require_columns

__all__ = ["BIN_COUNT_COLUMNS", "MISSING_BIN", "bin_counts", "bin_index"]

#: The bin of a missing (null or NaN) value.
MISSING_BIN = -1

BIN_COUNT_COLUMNS = ["feature", "bin", "customers", "value_sum", "value_squares"]


def bin_index(column: str, edges: Sequence[float]) -> Column:
    """The bin of ``column``'s value: how many of ``edges`` lie strictly below it; :data:`MISSING_BIN` for a
    null or NaN value."""
    value = F.col(column).cast("double")
    above = [F.when(value > F.lit(float(edge)), 1).otherwise(0) for edge in edges]
    index = reduce(lambda a, b: a + b, above) if above else F.lit(0)
    return F.when(value.isNull() | F.isnan(value), F.lit(MISSING_BIN)).otherwise(index)


def bin_counts(customers_df: DataFrame, edges: Mapping[str, Sequence[float]]) -> DataFrame:
    """Customers per feature and bin, with the sum and sum of squares of the bin's values.

    Parameters
    ----------
    customers_df : one row per customer, with a numeric column per feature of ``edges``.
    edges : feature -> its inner bin edges (sorted, as :func:`segspark.maths.drift.bin_edges` gives them).

    Returns
    -------
    DataFrame
        :data:`BIN_COUNT_COLUMNS`, one row per feature and non-empty bin (at most len(edges) + 2 per feature);
        the sums are 0 in the missing bin.
    """
    require_columns(customers_df, list(edges), "feature binning")
    entries = F.array(
        *[
            F.struct(
                F.lit(name).alias("feature"),
                bin_index(name, feature_edges).alias("bin"),
                F.col(name).cast("double").alias("value"),
            )
            for name, feature_edges in edges.items()
        ]
    )
    is_missing = F.col("bin") == F.lit(MISSING_BIN)
    value = F.when(is_missing, F.lit(0.0)).otherwise(F.col("value"))
    return (
        customers_df.select(F.explode(entries).alias("entry"))
        .select("entry.*")
        .groupBy("feature", "bin")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(value).alias("value_sum"),
            F.sum(value * value).alias("value_squares"),
        )
        .select(*BIN_COUNT_COLUMNS)
    )

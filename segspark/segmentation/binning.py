"""Feature values counted into a model's fixed bins, every feature in one pass over a snapshot.

The bins are those of :mod:`segspark.maths.drift`. A numeric value falls in bin ``i`` = the number of the
feature's edges strictly below it; a categorical value in the bin of its position among the training
categories, or in the last bin (``(unseen)``) when training never saw it. A null or NaN value, and the
categorical ``(missing)``, fall in :data:`MISSING_BIN`.

With each numeric bin's count come the sum and the sum of squares of its values, so a snapshot's mean and
standard deviation per feature come from the same pass. Both sums are exact decimals (each value rounded to
:data:`SUM_SCALE` places first): a sum of doubles depends on the order Spark adds the partitions in, and the
same snapshot must give the same drift on any file layout or cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.contracts.schemas import require_columns

__all__ = [
    "BIN_COUNT_COLUMNS",
    "CATEGORICAL",
    "MISSING_BIN",
    "NUMERIC",
    "SUM_SCALE",
    "FeatureBins",
    "bin_counts",
    "bin_index",
]

#: The bin of a missing (null or NaN, or the categorical ``(missing)``) value.
MISSING_BIN = -1
#: Decimal places each value keeps before it is summed (see the module docstring).
SUM_SCALE = 8
_SUM_TYPE = T.DecimalType(38, SUM_SCALE)

NUMERIC = "numeric"
CATEGORICAL = "categorical"

BIN_COUNT_COLUMNS = ["feature", "bin", "customers", "value_sum", "value_squares"]


@dataclass(frozen=True)
class FeatureBins:
    """One model feature's fixed bins: inner ``edges`` for a numeric feature, ``categories`` (training's, in
    order, without ``(missing)``) for a categorical one."""

    feature: str
    kind: str
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    #: The categorical value that counts as missing.
    missing_category: str | None = None

    @property
    def bins(self) -> int:
        """How many bins besides :data:`MISSING_BIN`: edges + 1, or categories + 1 for ``(unseen)``."""
        return len(self.edges) + 1 if self.kind == NUMERIC else len(self.categories) + 1


def bin_index(column: str, bins: FeatureBins | Sequence[float]) -> Column:
    """The bin of ``column``'s value (see the module docstring); a plain sequence is a numeric feature's edges."""
    if not isinstance(bins, FeatureBins):
        bins = FeatureBins(column, NUMERIC, tuple(bins))
    if bins.kind == CATEGORICAL:
        text = F.col(column).cast("string")
        index: Column = F.lit(len(bins.categories))  # unseen
        for position, category in reversed(list(enumerate(bins.categories))):
            index = F.when(text == F.lit(category), F.lit(position)).otherwise(index)
        missing = text.isNull() | (text == F.lit(bins.missing_category) if bins.missing_category else F.lit(False))
        return F.when(missing, F.lit(MISSING_BIN)).otherwise(index)
    value = F.col(column).cast("double")
    above = [F.when(value > F.lit(float(edge)), 1).otherwise(0) for edge in bins.edges]
    counted = reduce(lambda a, b: a + b, above) if above else F.lit(0)
    return F.when(value.isNull() | F.isnan(value), F.lit(MISSING_BIN)).otherwise(counted)


def bin_counts(customers_df: DataFrame, features: Sequence[FeatureBins] | dict[str, Sequence[float]]) -> DataFrame:
    """Customers per feature and bin, with the exact sum and sum of squares of the bin's numeric values.

    Parameters
    ----------
    customers_df : one row per customer, with a column per feature (named after it).
    features : each feature's bins; a dict maps numeric features to their inner edges.

    Returns
    -------
    DataFrame
        :data:`BIN_COUNT_COLUMNS`, one row per feature and non-empty bin; the sums are decimals, 0 in the
        missing bin and in every categorical bin.
    """
    if isinstance(features, dict):
        features = [FeatureBins(name, NUMERIC, tuple(edges)) for name, edges in features.items()]
    require_columns(customers_df, [f.feature for f in features], "feature binning")
    entries = F.array(
        *[
            F.struct(
                F.lit(f.feature).alias("feature"),
                bin_index(f.feature, f).alias("bin"),
                (F.col(f.feature).cast("double") if f.kind == NUMERIC else F.lit(None).cast("double")).alias("value"),
            )
            for f in features
        ]
    )
    counted = F.col("bin") != F.lit(MISSING_BIN)
    value = F.when(counted & F.col("value").isNotNull(), F.col("value")).otherwise(F.lit(0.0))
    return (
        customers_df.select(F.explode(entries).alias("entry"))
        .select("entry.*")
        .groupBy("feature", "bin")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(value.cast(_SUM_TYPE)).alias("value_sum"),
            F.sum((value * value).cast(_SUM_TYPE)).alias("value_squares"),
        )
        .select(*BIN_COUNT_COLUMNS)
    )

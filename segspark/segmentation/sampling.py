"""Deterministic customer samples: the customers with the smallest seeded hash of their id, on any file layout."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segspark.contracts.schemas import CUSTOMER_ID
from segspark.platform.lakehouse import one_row

__all__ = ["SILHOUETTE_SAMPLE", "SWEEP_SAMPLE", "hash_sample", "sample_key"]

#: The salt of train's sweep sample (``model.sample_size`` customers).
SWEEP_SAMPLE = "sweep"
#: The salt of train's silhouette sample (``model.silhouette_sample_size`` customers), which the report reuses.
SILHOUETTE_SAMPLE = "silhouette"


def hash_sample(df: DataFrame, size: int, seed: int, salt: str) -> DataFrame:
    """The ``size`` customers with the smallest seeded hash of their id: the same sample on any layout.

    Keeps the input's partitioning and order (a filter), so the sample stays deterministically laid out.
    """
    key = sample_key(seed, salt)
    # A global aggregation: one row, whose max is null when ``df`` is empty (then nothing passes the filter).
    smallest_df = df.select(key.alias("_h")).orderBy("_h").limit(size)
    threshold = one_row(smallest_df.agg(F.max("_h")), "the sample's largest hash")[0]
    return df.filter(key <= F.lit(threshold))


def sample_key(seed: int, salt: str) -> Column:
    """The seeded hash of ``customer_id`` that orders customers for a sample: the smallest ``size`` are picked.

    ``salt`` names the sample (:data:`SWEEP_SAMPLE`, :data:`SILHOUETTE_SAMPLE`), so different samples of the
    same customers are independent; the report's customer sample uses :data:`SILHOUETTE_SAMPLE` to show the
    customers train's silhouette was measured on.
    """
    return F.xxhash64(F.lit(seed), F.lit(salt), F.col(CUSTOMER_ID))

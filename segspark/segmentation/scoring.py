"""A saved model's assignment of one customer_features snapshot: its input, and the customer_segments it writes.

Train writes its own snapshot this way and score writes later ones, so both give the same ids and distances;
the report scores its customer sample with the same input.
"""

from __future__ import annotations

import datetime as dt

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, CUSTOMER_ID, CUSTOMER_SEGMENTS, MODEL_VERSION, RUN_ID, SEGMENT_NAME
from segspark.contracts.stamp import RunStamp
from segspark.errors import InputError, SchemaError
from segspark.platform import lakehouse, publication
from segspark.segmentation.model import assign_segments, quote

__all__ = ["latest_snapshot", "scoring_input", "write_segments"]


def latest_snapshot(features_df: DataFrame) -> dt.date | None:
    """The latest as_of_date in customer_features (answered from partition values); None when it is empty."""
    latest_df = features_df.agg(F.max(AS_OF_DATE))
    latest: dt.date | None = lakehouse.one_row(latest_df, "the latest as_of_date (an aggregation)")[0]
    return latest


def scoring_input(spark: SparkSession, config: Config, columns: list[str]) -> tuple[DataFrame, dt.date]:
    """``customer_id`` plus the model's input columns for one published customer_features snapshot."""
    features_df = publication.read_published(spark, config, "customer_features")
    as_of = max(config.as_of_dates) if config.as_of_dates else latest_snapshot(features_df)
    if as_of is None:
        raise InputError(f"customer_features in {config.lakehouse} is empty: run 'segspark features' first")
    missing = [c for c in columns if c not in features_df.columns]
    if missing:
        raise SchemaError(
            f"the model reads {missing}, which customer_features does not have (a model trained on an attribute "
            "table scores only where those columns exist): retrain on customer_features, or score with "
            "'segspark train'"
        )
    snapshot_df = features_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
    return snapshot_df.select(CUSTOMER_ID, *[quote(c) for c in columns]), as_of


def write_segments(model: PipelineModel, customers_df: DataFrame, stamp: RunStamp, config: Config) -> int:
    """Score one snapshot's customers with ``model`` into their customer_segments partition (``stamp.as_of``).

    Returns the rows Delta recorded for the write, for the caller to reconcile with its customer count.
    """
    segments_df = (
        stamp.on(assign_segments(model, customers_df), AS_OF_DATE, MODEL_VERSION, RUN_ID)
        .withColumn(SEGMENT_NAME, F.lit(None).cast("string"))  # named by segspark profile
    )
    result = lakehouse.write_table(
        segments_df,
        config.table_path("customer_segments"),
        CUSTOMER_SEGMENTS,
        replace_where=lakehouse.dates_predicate(AS_OF_DATE, [stamp.as_of]),
    )
    return result.rows_written

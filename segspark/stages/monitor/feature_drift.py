"""``feature_drift``: each scored snapshot against the training snapshot of the model that scored it.

Per snapshot one pass over its customer_features counts every model feature into the model's fixed bins
(:mod:`segspark.segmentation.binning`); with the segment sizes (from the aggregate that finds the snapshots)
and, when enabled, the silhouette of a bounded seeded sample, that is all that reaches the driver. The rows are
built by :mod:`segspark.stages.monitor.drift`.

A snapshot's rows are computed again only when they are missing for the model that scored it, or when its
customer_segments were written by another run since (a rescore). Rows of an earlier model for the same
snapshot (the one a retrain replaced) are kept: the drift that led to a retrain stays on record.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import (
    AS_OF_DATE,
    CREATED_AT,
    CUSTOMER_ID,
    FEATURE_DRIFT,
    MODEL_VERSION,
    RUN_ID,
    SEGMENT_ID,
)
from segspark.maths.evaluation import euclidean_silhouette
from segspark.platform import lakehouse, progress, publication
from segspark.segmentation.binning import FeatureBins, bin_counts
from segspark.segmentation.drift_reference import FeatureSummary, bins_from_reference, summarise
from segspark.segmentation.model import FEATURES_COL, load_model, model_inputs
from segspark.segmentation.sampling import SILHOUETTE_SAMPLE, hash_sample
from segspark.stages.monitor.drift import centroid_rows, feature_rows, fit_row, segment_row
from segspark.stages.monitor.snapshots import SnapshotRun

__all__ = ["ModelReference", "drift_rows", "model_references", "recorded_drift", "write_drift"]

log = logging.getLogger("segspark")


@dataclass(frozen=True)
class ModelReference:
    """What a model was trained on, for drift: its fixed bins and training summaries, its segment sizes, its
    centroids' shifts from the previous model, and its silhouette at training."""

    model_version: str
    as_of: dt.date | None
    bins: list[FeatureBins]
    summaries: dict[str, FeatureSummary]
    sizes: dict[int, int]
    centroid_shifts: dict[int, float | None]
    silhouette: float | None


def model_references(spark: SparkSession, config: Config, versions: Iterable[str]) -> dict[str, ModelReference]:
    """The references of the ``versions`` that have one (a model trained before drift_reference has none)."""
    wanted = sorted(set(versions))
    if not wanted or not publication.is_published(spark, config, "drift_reference"):
        return {}
    in_wanted = F.col(MODEL_VERSION).isin(wanted)
    reference_df = publication.read_published(spark, config, "drift_reference").filter(in_wanted)
    reference_rows = reference_df.collect()  # models x features x bins rows
    centroids = (
        publication.read_published(spark, config, "segment_centroids")
        .filter(in_wanted)
        .select(MODEL_VERSION, AS_OF_DATE, SEGMENT_ID, "customers", "previous_centroid_distance")
        .collect()  # models x K rows
    )
    silhouettes = {
        r[MODEL_VERSION]: r["silhouette_euclidean"]
        for r in publication.read_published(spark, config, "model_selection")
        .filter(in_wanted & F.col("is_chosen"))
        .select(MODEL_VERSION, "silhouette_euclidean")
        .collect()  # one row per model
    }
    references = {}
    for version in wanted:
        rows = [r for r in reference_rows if r[MODEL_VERSION] == version]
        if not rows:
            continue
        bins, summaries = bins_from_reference(rows)
        model_centroids = [c for c in centroids if c[MODEL_VERSION] == version]
        references[version] = ModelReference(
            version,
            rows[0][AS_OF_DATE],
            bins,
            summaries,
            {c[SEGMENT_ID]: c["customers"] for c in model_centroids},
            {c[SEGMENT_ID]: c["previous_centroid_distance"] for c in model_centroids},
            silhouettes.get(version),
        )
    return references


def recorded_drift(spark: SparkSession, config: Config) -> dict[tuple[dt.date, str], str]:
    """(snapshot, model) -> the customer_segments run its feature_drift rows were computed from."""
    if not publication.is_published(spark, config, "feature_drift"):
        return {}
    rows = (
        publication.read_published(spark, config, "feature_drift")
        .groupBy(AS_OF_DATE, MODEL_VERSION)
        .agg(F.max("segments_run_id").alias("run"))
        .collect()  # snapshots x models rows
    )
    return {(r[AS_OF_DATE], r[MODEL_VERSION]): r["run"] for r in rows}


def _snapshot_silhouette(features_df: DataFrame, model: PipelineModel, config: Config) -> float | None:
    """The snapshot's Euclidean silhouette on the ``model.silhouette_sample_size`` customers with the smallest
    seeded hash of their id (train's silhouette sample is drawn the same way)."""
    size = config.model.silhouette_sample_size
    sample_df = hash_sample(features_df, size, config.seed, SILHOUETTE_SAMPLE)
    scored = (
        model.transform(sample_df)
        .select(CUSTOMER_ID, vector_to_array(F.col(FEATURES_COL)).alias("v"), SEGMENT_ID)
        .orderBy(CUSTOMER_ID)
        .collect()  # at most model.silhouette_sample_size rows
    )
    if not scored:
        return None
    points = np.array([r["v"] for r in scored], dtype=float)
    return euclidean_silhouette(points, np.array([r[SEGMENT_ID] for r in scored]))


def drift_rows(
    spark: SparkSession, config: Config, snapshot: SnapshotRun, reference: ModelReference
) -> list[dict[str, Any]]:
    """The feature_drift rows of one snapshot against its model's reference (without the run columns)."""
    features_df = publication.read_published(spark, config, "customer_features").filter(
        F.col(AS_OF_DATE) == F.lit(snapshot.as_of)
    )
    progress.step(f"feature drift of {snapshot.as_of} against model {snapshot.model_version}'s training snapshot")
    model = load_model(config.model_path(snapshot.model_version))
    inputs_df = model_inputs(model, features_df)
    current = summarise(reference.bins, bin_counts(inputs_df, reference.bins).collect())  # features x bins rows
    thresholds = config.monitor.thresholds
    rows = feature_rows(reference.bins, reference.summaries, current, thresholds)
    rows.append(segment_row(reference.sizes, snapshot.sizes, thresholds))
    new_fit = snapshot.as_of == reference.as_of and any(d is not None for d in reference.centroid_shifts.values())
    if new_fit:
        rows += centroid_rows(reference.centroid_shifts, snapshot.customers, thresholds)
    drop = config.monitor.retrain_when.silhouette_drop
    if drop is not None:
        silhouette = _snapshot_silhouette(features_df, model, config)
        rows.append(fit_row(silhouette, reference.silhouette, snapshot.customers, drop))
    return [
        {
            **row,
            AS_OF_DATE: snapshot.as_of,
            MODEL_VERSION: snapshot.model_version,
            "model_as_of_date": reference.as_of,
            "segments_run_id": snapshot.run_id,
        }
        for row in rows
    ]


def write_drift(spark: SparkSession, config: Config, rows: list[dict[str, Any]], run_id: str) -> lakehouse.WriteResult:
    """Replace the snapshots of ``rows`` in feature_drift, keeping those snapshots' rows of other models."""
    path = config.table_path("feature_drift")
    dates = sorted({r[AS_OF_DATE] for r in rows})
    replaced = {(r[AS_OF_DATE], r[MODEL_VERSION]) for r in rows}
    now = dt.datetime.now(dt.UTC)
    stamped = [FEATURE_DRIFT.row({**r, RUN_ID: run_id, CREATED_AT: now}) for r in rows]
    new_df = spark.createDataFrame(stamped, FEATURE_DRIFT.schema)
    if publication.is_published(spark, config, "feature_drift"):
        kept_df = publication.read_published(spark, config, "feature_drift").filter(F.col(AS_OF_DATE).isin(dates))
        for as_of, version in replaced:
            kept_df = kept_df.filter(~((F.col(AS_OF_DATE) == F.lit(as_of)) & (F.col(MODEL_VERSION) == F.lit(version))))
        new_df = new_df.unionByName(kept_df.select(*FEATURE_DRIFT.columns))
    return lakehouse.write_table(
        new_df, path, FEATURE_DRIFT, replace_where=lakehouse.dates_predicate(AS_OF_DATE, dates)
    )

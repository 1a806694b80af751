"""The train stage's tables: stable segment ids, and the writers of customer_segments, segment_centroids,
model_selection, sweep_segments and drift_reference."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.optimize import linear_sum_assignment

from segspark.config.settings import Config, ModelSettings
from segspark.contracts.schemas import (
    DRIFT_REFERENCE,
    MODEL_SELECTION,
    MODEL_VERSION,
    SEGMENT_CENTROIDS,
    SEGMENT_ID,
    SWEEP_SEGMENTS,
)
from segspark.contracts.stamp import RunStamp
from segspark.errors import SegsparkError
from segspark.maths.evaluation import Candidate, small_segments
from segspark.maths.local_fits import Evaluated
from segspark.platform import lakehouse, publication
from segspark.segmentation.binning import bin_counts
from segspark.segmentation.drift_reference import reference_bins, reference_rows, summarise
from segspark.segmentation.model import (
    PREDICTION_COL,
    SCALED_COL,
    Preprocessing,
    standardised_offset,
    to_original_units,
    to_standardised,
)

__all__ = [
    "PreviousModel",
    "SegmentTable",
    "SweepSize",
    "describe_centre",
    "number_segments",
    "previous_model",
    "segment_table",
    "with_centre_descriptions",
    "write_centroids",
    "write_drift_reference",
    "write_selection",
    "write_sweep_segments",
]

log = logging.getLogger("segspark")


# ---------------------------------------------------------------------------------------------------------
# 5. Stable segment ids


@dataclass(frozen=True)
class PreviousModel:
    """The latest saved model's version, segment ids and centroids (original units), for stable segment ids."""

    model_version: str
    segment_ids: list[int]
    centroids_original: np.ndarray  # (segments, slots) in this model's slot order


def previous_model(spark: SparkSession, config: Config, slot_names: list[str]) -> PreviousModel | None:
    """The latest saved model's centroids, if its features are this model's features (K rows read)."""
    if not publication.is_published(spark, config, "segment_centroids"):
        return None
    centroids_df = publication.read_published(spark, config, "segment_centroids")
    row = centroids_df.agg(F.max_by(MODEL_VERSION, "created_at")).first()  # a global aggregate: one row
    latest: str | None = None if row is None else row[0]
    if latest is None:
        return None
    rows = centroids_df.filter(F.col(MODEL_VERSION) == latest).orderBy(SEGMENT_ID).collect()  # K rows
    if any(set(r["centroid_original"]) != set(slot_names) for r in rows):
        log.info("previous model %s has other features: segment ids start afresh", latest)
        return None
    matrix = np.array([[r["centroid_original"][s] for s in slot_names] for r in rows])
    return PreviousModel(latest, [int(r[SEGMENT_ID]) for r in rows], matrix)


def number_segments(
    standardised_means: np.ndarray, counts: np.ndarray, prep: Preprocessing, previous: PreviousModel | None
) -> tuple[list[int], list[float | None]]:
    """Segment id for each cluster (row) and the distance to the previous centroid it continues.

    Without a previous model: 1..K by descending size (ties by centroid, coordinate by coordinate).
    With one: the assignment of new to previous centroids with the least total distance (measured in this
    model's standardised units) keeps the previous ids; clusters left over get new ids above the previous
    largest, largest cluster first.
    """
    k = len(counts)
    by_size = sorted(range(k), key=lambda i: (-counts[i], *standardised_means[i]))
    ids: list[int | None] = [None] * k
    distances: list[float | None] = [None] * k
    next_id = 1
    if previous is not None:
        old = np.array([to_standardised(prep, c) for c in previous.centroids_original])
        cost = np.sqrt(((standardised_means[:, None, :] - old[None, :, :]) ** 2).sum(axis=2))
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            ids[r] = previous.segment_ids[c]
            distances[r] = float(cost[r, c])
        next_id = max(previous.segment_ids) + 1
    for i in by_size:
        if ids[i] is None:
            ids[i] = next_id
            next_id += 1
    numbered = [int(i) for i in ids if i is not None]
    if len(numbered) != k:  # by_size holds every cluster, so each has an id by now
        raise SegsparkError(f"{k - len(numbered)} of {k} clusters were left without a segment id")
    return numbered, distances


# ---------------------------------------------------------------------------------------------------------
# Tables
@dataclass(frozen=True)
class SegmentTable:
    """The final model's clusters over all customers, one entry per non-empty cluster in prediction order.

    ``predictions`` are the model's cluster indices, ``counts`` their members and ``standardised`` the members'
    mean standardised vectors.
    """

    predictions: list[int]
    counts: np.ndarray
    standardised: np.ndarray  # (k, slots) members' mean standardised vector


def segment_table(final: Transformer, vectors_df: DataFrame, prep: Preprocessing) -> SegmentTable:
    """Sizes and standardised centroids of the final model's clusters over all customers (K rows)."""
    rows = (
        final.transform(vectors_df)
        .groupBy(PREDICTION_COL)
        .agg(F.count(F.lit(1)).alias("n"), Summarizer.mean(F.col(SCALED_COL)).alias("mean"))
        .orderBy(PREDICTION_COL)
        .collect()  # one row per cluster
    )
    return SegmentTable(
        predictions=[int(r[PREDICTION_COL]) for r in rows],
        counts=np.array([r["n"] for r in rows], dtype=float),
        standardised=np.array([r["mean"].toArray() for r in rows]) - standardised_offset(prep),
    )


def write_centroids(
    spark: SparkSession,
    config: Config,
    stamp: RunStamp,
    segments: SegmentTable,
    ids: list[int],
    distances: list[float | None],
    prep: Preprocessing,
    chosen: Candidate,
    previous_version: str | None,
    feature_columns: list[str],
) -> None:
    """Append one segment_centroids row per segment of the new model (K rows).

    ``ids`` and ``distances`` are the stable segment id of each cluster and its centre's distance to the
    matched centre of ``previous_version`` (None where nothing matched, see :func:`number_segments`).
    """
    total = float(segments.counts.sum())
    rows = []
    for i, segment_id in enumerate(ids):
        standardised = segments.standardised[i]
        original = to_original_units(prep, standardised)
        values = {
            **stamp.values(),
            SEGMENT_ID: segment_id,
            "algorithm": chosen.algorithm,
            "k": chosen.k,
            "customers": int(segments.counts[i]),
            "share": float(segments.counts[i] / total),
            "centroid_standardised": {s: float(v) for s, v in zip(prep.slot_names, standardised, strict=True)},
            "centroid_original": {s: float(v) for s, v in zip(prep.slot_names, original, strict=True)},
            "feature_columns": list(feature_columns),
            "previous_model_version": previous_version if distances[i] is not None else None,
            "previous_centroid_distance": distances[i],
        }
        rows.append(SEGMENT_CENTROIDS.row(values))
    at = SEGMENT_CENTROIDS.columns.index(SEGMENT_ID)
    rows.sort(key=lambda r: cast(int, r[at]))  # TableSpec.row types its values object; segment ids are ints
    df = spark.createDataFrame(rows, SEGMENT_CENTROIDS.schema)
    lakehouse.write_table(df, config.table_path("segment_centroids"), SEGMENT_CENTROIDS, mode="append")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class SweepSize:
    """How many customers the sweep saw: all of the snapshot, those evaluated, the silhouette sample."""

    customers: int
    evaluated: int
    silhouette_sample: int


def write_selection(
    spark: SparkSession,
    config: Config,
    stamp: RunStamp,
    results: list[Evaluated],
    decided: list[Candidate],
    size: SweepSize,
) -> None:
    """Append the sweep's rows and decision record to model_selection (one row per algorithm and K)."""
    rows = []
    for r, c in zip(results, decided, strict=True):
        values = {
            **stamp.values(),
            "algorithm": c.algorithm,
            "k": c.k,
            "customers": size.customers,
            "customers_evaluated": size.evaluated,
            "wssse": float(r.wssse),
            "silhouette_squared_euclidean": _finite(r.mllib_silhouette),
            "silhouette_euclidean": _finite(c.silhouette),
            "silhouette_sample": size.silhouette_sample,
            "reference_silhouette": _finite(c.reference_silhouette),
            "davies_bouldin": _finite(r.davies_bouldin),
            "calinski_harabasz": _finite(r.calinski_harabasz),
            "segments_found": c.segments_found,
            "smallest_segment_share": c.smallest_share,
            "stability_ari": _finite(c.stability),
            "iterations": r.iterations,
            "converged": r.converged,
            "is_elbow": c.is_elbow,
            "fit_seconds": r.fit_seconds,
            "seconds": r.seconds,
            "structure": c.structure,
            "is_chosen": c.is_chosen,
            "reason": c.reason,
        }
        rows.append(MODEL_SELECTION.row(values))
    df = spark.createDataFrame(rows, MODEL_SELECTION.schema)
    lakehouse.write_table(df, config.table_path("model_selection"), MODEL_SELECTION, mode="append")


#: Standardised differences smaller than this do not describe a segment.
_PROFILE_MIN_SD = 0.5


def describe_centre(prep: Preprocessing, centre: np.ndarray, top: int = 3) -> str:
    """What sets a model-space centre apart, e.g. ``"monetary +3.1 sd, frequency +2.4 sd"``: the numeric features
    whose standardised value is furthest from the population mean (at least 0.5 sd), largest first. Empty with
    PCA (its axes are not features) or when nothing stands out."""
    if prep.pca_components is not None:
        return ""
    standardised = np.asarray(centre, dtype=float) - standardised_offset(prep)
    slots = [
        (abs(v), name, v)
        for name, (source, _), v in zip(prep.slot_names, prep.slot_sources, standardised, strict=True)
        if source is not None and abs(v) >= _PROFILE_MIN_SD
    ]
    slots.sort(key=lambda item: (-item[0], item[1]))
    return ", ".join(f"{name} {v:+.1f} sd" for _, name, v in slots[:top])


def with_centre_descriptions(results: list[Evaluated], prep: Preprocessing) -> list[Evaluated]:
    """Each candidate's segments with :func:`describe_centre` of their centres filled in."""
    out = []
    for r in results:
        segments = tuple(
            replace(seg, profile=describe_centre(prep, r.centres[seg.cluster]))
            if 0 <= seg.cluster < len(r.centres)
            else seg
            for seg in r.candidate.segments
        )
        out.append(replace(r, candidate=replace(r.candidate, segments=segments)))
    return out


def write_sweep_segments(
    spark: SparkSession,
    config: Config,
    stamp: RunStamp,
    decided: list[Candidate],
    evaluated_n: int,
    settings: ModelSettings,
) -> None:
    """Append one sweep_segments row per segment of every candidate (sum of K over the sweep)."""
    rows = []
    for c in decided:
        distinct = {seg.rank for seg in small_segments(c, settings)[0]}
        for seg in c.segments:
            small = seg.share < settings.min_segment_share
            values = {
                **stamp.values(),
                "algorithm": c.algorithm,
                "k": c.k,
                "segment_rank": seg.rank,
                "customers": int(round(seg.share * evaluated_n)),
                "share": seg.share,
                "silhouette": _finite(seg.silhouette),
                "silhouette_customers": seg.sampled,
                "candidate_silhouette": _finite(c.silhouette),
                "is_small": small,
                "is_distinct": (not small) or seg.rank in distinct,
                "profile": seg.profile or None,
                "is_chosen": c.is_chosen,
            }
            rows.append(SWEEP_SEGMENTS.row(values))
    df = spark.createDataFrame(rows, SWEEP_SEGMENTS.schema)
    lakehouse.write_table(df, config.table_path("sweep_segments"), SWEEP_SEGMENTS, mode="append")


def write_drift_reference(
    config: Config, stamp: RunStamp, model: PipelineModel, inputs_df: DataFrame, seed: int
) -> int:
    """Fix each model feature's drift bins and append its training counts to drift_reference; returns the rows.

    ``inputs_df``: the training customers as the model sees them
    (:func:`segspark.segmentation.model.model_inputs`). Two aggregations: the deciles of a bounded sample, and
    every feature's bins in one pass; features x bins rows reach the driver.
    """
    bins = reference_bins(model, inputs_df, config.monitor.reference_sample, seed)
    summaries = summarise(bins, bin_counts(inputs_df, bins).collect())  # features x bins rows
    rows = [DRIFT_REFERENCE.row({**stamp.values(), **values}) for values in reference_rows(bins, summaries)]
    df = inputs_df.sparkSession.createDataFrame(rows, DRIFT_REFERENCE.schema)
    lakehouse.write_table(df, config.table_path("drift_reference"), DRIFT_REFERENCE, mode="append")
    return len(rows)

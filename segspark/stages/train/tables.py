"""The train stage's tables: stable segment ids, and the writers of customer_segments, segment_centroids,
model_selection and sweep_segments."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from pyspark.ml import Transformer
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.optimize import linear_sum_assignment

from segspark.config.settings import Config, ModelSettings
from segspark.contracts.schemas import (
    MODEL_SELECTION,
    MODEL_VERSION,
    SEGMENT_CENTROIDS,
    SEGMENT_ID,
    SWEEP_SEGMENTS,
)
from segspark.maths.evaluation import Candidate, small_segments
from segspark.maths.local_fits import Evaluated
from segspark.platform import lakehouse, publication
from segspark.segmentation.model import (
    PREDICTION_COL,
    SCALED_COL,
    Preprocessing,
    standardised_offset,
    to_original_units,
    to_standardised,
)

log = logging.getLogger("segspark")


# ---------------------------------------------------------------------------------------------------------
# 5. Stable segment ids


@dataclass(frozen=True)
class PreviousModel:
    model_version: str
    segment_ids: list[int]
    centroids_original: np.ndarray  # (segments, slots) in this model's slot order


def previous_model(spark: SparkSession, config: Config, slot_names: list[str]) -> PreviousModel | None:
    """The latest saved model's centroids, if its features are this model's features (K rows read)."""
    if not publication.is_published(spark, config, "segment_centroids"):
        return None
    centroids_df = publication.read_published(spark, config, "segment_centroids")
    latest = centroids_df.agg(F.max_by(MODEL_VERSION, "created_at")).first()[0]
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
    return [int(i) for i in ids], distances


# ---------------------------------------------------------------------------------------------------------
# Tables
@dataclass(frozen=True)
class SegmentTable:
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
    segments: SegmentTable,
    ids: list[int],
    distances: list[float | None],
    prep: Preprocessing,
    chosen: Candidate,
    as_of: dt.date,
    model_version: str,
    run_id: str,
    now: dt.datetime,
    previous_version: str | None,
    feature_columns: list[str],
) -> None:
    """Append one segment_centroids row per segment of the new model (K rows)."""
    total = float(segments.counts.sum())
    rows = []
    for i, segment_id in enumerate(ids):
        standardised = segments.standardised[i]
        original = to_original_units(prep, standardised)
        rows.append(
            (
                model_version,
                segment_id,
                chosen.algorithm,
                chosen.k,
                as_of,
                int(segments.counts[i]),
                float(segments.counts[i] / total),
                {s: float(v) for s, v in zip(prep.slot_names, standardised, strict=True)},
                {s: float(v) for s, v in zip(prep.slot_names, original, strict=True)},
                list(feature_columns),
                previous_version if distances[i] is not None else None,
                distances[i],
                run_id,
                now,
            )
        )
    rows.sort(key=lambda r: r[1])
    df = spark.createDataFrame(rows, SEGMENT_CENTROIDS.schema)
    lakehouse.write_table(df, config.table_path("segment_centroids"), SEGMENT_CENTROIDS, mode="append")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def write_selection(
    spark: SparkSession,
    config: Config,
    results: list[Evaluated],
    decided: list[Candidate],
    n: int,
    evaluated_n: int,
    sample_n: int,
    as_of: dt.date,
    model_version: str,
    run_id: str,
    now: dt.datetime,
) -> None:
    """Append the sweep's rows and decision record to model_selection."""
    rows = []
    for r, c in zip(results, decided, strict=True):
        rows.append(
            (
                run_id,
                model_version,
                as_of,
                c.algorithm,
                c.k,
                n,
                evaluated_n,
                float(r.wssse),
                _finite(r.mllib_silhouette),
                _finite(c.silhouette),
                sample_n,
                _finite(c.reference_silhouette),
                _finite(r.davies_bouldin),
                _finite(r.calinski_harabasz),
                c.segments_found,
                c.smallest_share,
                _finite(c.stability),
                r.iterations,
                r.converged,
                c.is_elbow,
                r.fit_seconds,
                r.seconds,
                c.structure,
                c.is_chosen,
                c.reason,
                now,
            )
        )
    df = spark.createDataFrame(rows, MODEL_SELECTION.schema)
    lakehouse.write_table(df, config.table_path("model_selection"), MODEL_SELECTION, mode="append")


#: Standardised differences smaller than this do not describe a segment.
_PROFILE_MIN_SD = 0.5


def centre_profile(prep: Preprocessing, centre: np.ndarray, top: int = 3) -> str:
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


def with_segment_profiles(results: list[Evaluated], prep: Preprocessing) -> list[Evaluated]:
    """Each candidate's segments with :func:`centre_profile` of their centres filled in."""
    out = []
    for r in results:
        segments = tuple(
            replace(seg, profile=centre_profile(prep, r.centres[seg.cluster])) if 0 <= seg.cluster < len(r.centres)
            else seg
            for seg in r.candidate.segments
        )
        out.append(replace(r, candidate=replace(r.candidate, segments=segments)))
    return out


def write_sweep_segments(
    spark: SparkSession,
    config: Config,
    decided: list[Candidate],
    evaluated_n: int,
    as_of: dt.date,
    model_version: str,
    run_id: str,
    now: dt.datetime,
    settings: ModelSettings,
) -> None:
    """Append one sweep_segments row per segment of every candidate (sum of K over the sweep)."""
    rows = []
    for c in decided:
        distinct = {seg.rank for seg in small_segments(c, settings)[0]}
        for seg in c.segments:
            small = seg.share < settings.min_segment_share
            rows.append(
                (
                    run_id,
                    model_version,
                    as_of,
                    c.algorithm,
                    c.k,
                    seg.rank,
                    int(round(seg.share * evaluated_n)),
                    seg.share,
                    _finite(seg.silhouette),
                    seg.sampled,
                    _finite(c.silhouette),
                    small,
                    (not small) or seg.rank in distinct,
                    seg.profile or None,
                    c.is_chosen,
                    now,
                )
            )
    df = spark.createDataFrame(rows, SWEEP_SEGMENTS.schema)
    lakehouse.write_table(df, config.table_path("sweep_segments"), SWEEP_SEGMENTS, mode="append")

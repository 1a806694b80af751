"""What the report shows, read from the published tables: small aggregates and one bounded sample.

Every read goes through the publication log (:func:`segspark.platform.publication.read_published`), so a report never
shows an unfinished run's rows. What reaches the driver is bounded: K-row and (algorithm x K)-row tables, the
R x F grid (at most 25 rows), counts per reject reason, sizes per snapshot and segment, and the customer sample
of ``report.sample_size`` rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import (
    AS_OF_DATE,
    CUSTOMER_ID,
    INGESTED_AT,
    INVOICE_DATE,
    IS_RETURN,
    LINE_AMOUNT,
    MODEL_VERSION,
    REJECT_REASON,
    REJECT_REASONS,
    RUN_ID,
    SEGMENT_ID,
    SEGMENT_NAME,
)
from segspark.errors import ConfigError, InputError, SchemaError
from segspark.platform import lakehouse, publication
from segspark.segmentation.model import (
    FEATURES_COL,
    cluster_centers,
    clustering_stage,
    load_model,
    model_numeric_features,
    quote,
)
from segspark.segmentation.sampling import SILHOUETTE_SAMPLE, sample_key
from segspark.segmentation.scoring import scoring_input
from segspark.stages.report.monitoring import Monitoring, gather_monitoring

__all__ = ["STANDARDISED_COL", "DataQuality", "ReportData", "Sample", "Target", "gather", "resolve_target"]

log = logging.getLogger("segspark")

#: The model's numeric slots before any PCA: log (for model.log_features), imputed, capped, divided by the std.
STANDARDISED_COL = "_standardised"
#: The VectorAssembler of the model's numeric inputs (see segspark.segmentation.model.preprocessing_pipeline).


@dataclass(frozen=True)
class Target:
    """The snapshot a report describes, and the run it is filed under."""

    run_id: str
    as_of_date: dt.date
    model_version: str


@dataclass(frozen=True)
class Sample:
    """``report.sample_size`` customers of the snapshot (smallest seeded hashes of their ids), on the driver."""

    customer_ids: list[str]
    segment_ids: np.ndarray
    #: Model space (after any PCA): what the segments were found in.
    points: np.ndarray
    #: The model's numeric features in original units, one column each.
    raw: pd.DataFrame
    #: The same features as the model sees them before any PCA (log, imputation, caps, divided by the std),
    #: centred on the sample's mean.
    transformed: pd.DataFrame
    #: Model-space centres of the segments present in the sample, and their segment ids.
    centres: np.ndarray
    centre_ids: np.ndarray


@dataclass(frozen=True)
class DataQuality:
    """The input's figures for the report: ingest's counts and rejects, the invoice span, returns and value."""

    rows_in: int | None
    rows_clean: int | None
    rejected_by_reason: dict[str, int]
    examples: dict[str, str | None]
    first_invoice: dt.date | None
    last_invoice: dt.date | None
    return_lines: int
    clean_lines: int
    returned_value: float
    purchase_value: float
    #: Customers left out of the snapshot's features because they only returned goods (None: not recorded).
    returns_only_customers: int | None


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows of one snapshot, gathered from the published tables as small pandas frames."""

    target: Target
    lakehouse: str
    algorithm: str
    k: int
    customers: int
    #: The snapshot the model was trained on (the reported one, or an earlier one it was scored from).
    trained_on: dt.date | None
    structure: str
    decision: str
    #: model_selection rows of the train run that saved the model: one per (algorithm, K).
    selection: pd.DataFrame
    #: One row per segment: segment_id, name, customers, customer_share, revenue, revenue_share, play, priority,
    #: play_reason, value_at_stake, top_features_text (profile columns null when the snapshot is not profiled).
    segments: pd.DataFrame
    #: One row per (segment, profiled feature): segment_id, feature, mean, median, population_mean, effect_size,
    #: effect_rank; empty when not profiled.
    feature_profiles: pd.DataFrame
    log_features: list[str]
    sample: Sample | None
    #: Why there is no sample (e.g. the model reads an attribute table), when there is none.
    sample_note: str | None
    rfm_grid: pd.DataFrame | None
    quality: DataQuality | None
    #: Customers per (as_of_date, segment_id) over every published snapshot.
    sizes_over_time: pd.DataFrame
    previous_as_of: dt.date | None
    #: Customers per (from segment, to segment) between the previous snapshot and this one; -1 = none.
    migration: pd.DataFrame | None
    #: Drift over the snapshots, the latest retrain decision and the lift measured at this snapshot.
    monitoring: Monitoring


def _latest_date(segments_df: DataFrame) -> dt.date | None:
    """The latest as_of_date of ``segments_df`` (one aggregate row), None when it has no rows."""
    aggregate_df = segments_df.agg(F.max(AS_OF_DATE))
    latest: dt.date | None = lakehouse.one_row(aggregate_df, "the latest snapshot of customer_segments")[0]
    return latest


# ---------------------------------------------------------------------------------------------------------
# Which snapshot


def resolve_target(spark: SparkSession, config: Config, run_id: str | None) -> Target:
    """The snapshot to report: ``run_id``'s (``report.run_id``), else ``--as-of``'s, else the latest.

    A run's snapshot is the one whose published ``customer_segments`` or ``segment_profiles`` rows it wrote.
    Without ``run_id`` the report is filed under the run that last wrote the snapshot's segments.

    Raises
    ------
    ConfigError
        (exit 2) When ``run_id`` wrote no published snapshot; the message lists the runs that did.
    InputError
        When there is no published customer_segments snapshot at all, or not for ``--as-of``.
    """
    if not publication.is_published(spark, config, "customer_segments"):
        raise InputError(f"no published customer_segments in {config.lakehouse}: run 'segspark train' first")
    segments_df = publication.read_published(spark, config, "customer_segments")
    writers = segments_df.select(RUN_ID, AS_OF_DATE, MODEL_VERSION)
    if publication.is_published(spark, config, "segment_profiles"):
        profiles_df = publication.read_published(spark, config, "segment_profiles")
        writers = writers.unionByName(profiles_df.select(RUN_ID, AS_OF_DATE, MODEL_VERSION))
    writers = writers.distinct()
    if run_id is not None:
        latest = writers.filter(F.col(RUN_ID) == F.lit(run_id)).orderBy(F.col(AS_OF_DATE).desc())
        rows = latest.limit(1).collect()  # at most one row
        if not rows:
            known = (
                writers.groupBy(RUN_ID)
                .agg(F.max(AS_OF_DATE).alias(AS_OF_DATE))
                .orderBy(F.col(RUN_ID).desc())
                .limit(5)
                .collect()  # at most 5 rows
            )
            listed = ", ".join(f"{r[RUN_ID]} ({r[AS_OF_DATE]})" for r in known)
            raise ConfigError(
                f"run {run_id!r} wrote no published segments snapshot in {config.lakehouse}"
                + (f"; the latest runs that did: {listed}" if listed else "")
            )
        return Target(run_id, rows[0][AS_OF_DATE], rows[0][MODEL_VERSION])
    as_of = max(config.as_of_dates) if config.as_of_dates else _latest_date(segments_df)
    if as_of is None:
        raise InputError(f"customer_segments in {config.lakehouse} is empty: run 'segspark train' first")
    row = (
        segments_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
        .groupBy(RUN_ID, MODEL_VERSION)
        .count()
        .orderBy(F.col(RUN_ID).desc())
        .first()  # the snapshot's latest writer
    )
    if row is None:
        raise InputError(f"customer_segments has no snapshot {as_of}: run 'segspark score --as-of {as_of}' first")
    return Target(row[RUN_ID], as_of, row[MODEL_VERSION])


# ---------------------------------------------------------------------------------------------------------
# Gathering


def gather(spark: SparkSession, config: Config, target: Target) -> ReportData:
    """Everything the report shows for ``target``, from the published tables (bounded results only)."""
    as_of, model_version = target.as_of_date, target.model_version
    segments_df = publication.read_published(spark, config, "customer_segments").filter(
        F.col(AS_OF_DATE) == F.lit(as_of)
    )
    selection = _selection(spark, config, model_version)
    chosen = selection[selection["is_chosen"]]
    if chosen.empty:
        raise InputError(f"model {model_version} has no chosen row in model_selection: retrain with 'segspark train'")
    chosen_row = chosen.iloc[0]
    segments, feature_profiles = _segments(spark, config, segments_df, as_of)
    sample, sample_note = None, None
    try:
        sample = _sample(spark, config, segments_df, model_version, as_of)
    except SchemaError as exc:
        sample_note = f"no customer sample: {exc}"
    previous_as_of, migration = _migration(spark, config, as_of)
    return ReportData(
        target=target,
        lakehouse=config.lakehouse,
        algorithm=str(chosen_row["algorithm"]),
        k=int(chosen_row["k"]),
        customers=int(segments["customers"].sum()),
        trained_on=chosen_row[AS_OF_DATE],
        structure=str(chosen_row["structure"]),
        decision=str(chosen_row["reason"]),
        selection=selection,
        segments=segments,
        feature_profiles=feature_profiles,
        log_features=list(config.model.log_features),
        sample=sample,
        sample_note=sample_note,
        rfm_grid=_rfm_grid(spark, config, as_of),
        quality=_quality(spark, config, as_of),
        sizes_over_time=_sizes_over_time(spark, config),
        previous_as_of=previous_as_of,
        migration=migration,
        monitoring=gather_monitoring(spark, config, as_of),
    )


def _selection(spark: SparkSession, config: Config, model_version: str) -> pd.DataFrame:
    columns = [
        AS_OF_DATE, "algorithm", "k", "wssse", "silhouette_euclidean", "silhouette_squared_euclidean",
        "reference_silhouette",
        "stability_ari", "davies_bouldin", "calinski_harabasz", "smallest_segment_share", "segments_found",
        "silhouette_sample", "customers_evaluated", "is_elbow", "is_chosen", "structure", "reason",
    ]  # fmt: skip
    rows = (
        publication.read_published(spark, config, "model_selection")
        .filter(F.col(MODEL_VERSION) == F.lit(model_version))
        .select(*columns)
        .orderBy("algorithm", "k")
        .collect()  # one row per (algorithm, K) of one sweep
    )
    if not rows:
        raise InputError(f"model {model_version} has no rows in model_selection (a model saved before it existed?)")
    frame = pd.DataFrame([r.asDict() for r in rows], columns=columns)
    for c in ("wssse", "silhouette_euclidean", "reference_silhouette", "stability_ari"):
        frame[c] = frame[c].astype(float)
    return frame


def _segments(
    spark: SparkSession, config: Config, segments_df: DataFrame, as_of: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sizes from customer_segments; names, revenue, plays and feature figures from segment_profiles."""
    sizes = {
        int(r[SEGMENT_ID]): (int(r["customers"]), r[SEGMENT_NAME])
        for r in segments_df.groupBy(SEGMENT_ID)
        .agg(F.count(F.lit(1)).alias("customers"), F.max(SEGMENT_NAME).alias(SEGMENT_NAME))
        .collect()  # one row per segment
    }
    total = sum(n for n, _ in sizes.values())
    profiles: dict[int, dict[str, Any]] = {}
    feature_rows: list[dict[str, Any]] = []
    if publication.is_published(spark, config, "segment_profiles"):
        for r in (
            publication.read_published(spark, config, "segment_profiles")
            .filter(F.col(AS_OF_DATE) == F.lit(as_of))
            .collect()  # one row per segment
        ):
            sid = int(r[SEGMENT_ID])
            profiles[sid] = r.asDict()
            for f in r["feature_profile"] or []:
                feature_rows.append({SEGMENT_ID: sid, **f.asDict()})
    records = []
    for sid in sorted(sizes):
        customers, name = sizes[sid]
        p = profiles.get(sid, {})
        records.append(
            {
                SEGMENT_ID: sid,
                "name": p.get(SEGMENT_NAME) or name or f"Segment {sid}",
                "customers": customers,
                "customer_share": customers / total if total else float("nan"),
                "revenue": _float(p.get("revenue")),
                "revenue_share": _float(p.get("revenue_share")),
                "value_at_stake": _float(p.get("value_at_stake")),
                "play": p.get("play"),
                "priority": p.get("priority"),
                "play_reason": p.get("play_reason"),
                "top_features_text": p.get("top_features_text"),
                "recency_days_median": _float(p.get("recency_days_median")),
                "frequency_median": _float(p.get("frequency_median")),
                "monetary_median": _float(p.get("monetary_median")),
                "dominant_rfm_segment": p.get("dominant_rfm_segment"),
            }
        )
    feature_columns = [SEGMENT_ID, "feature", "mean", "median", "population_mean", "effect_size", "effect_rank"]
    features = pd.DataFrame([{c: row.get(c) for c in feature_columns} for row in feature_rows], columns=feature_columns)
    return pd.DataFrame(records), features


def _float(value: float | Decimal | None) -> float:
    return float("nan") if value is None else float(value)


def _sample(spark: SparkSession, config: Config, segments_df: DataFrame, model_version: str, as_of: dt.date) -> Sample:
    """The report's customer sample, scored by the saved model: the ``report.sample_size`` smallest seeded
    hashes of the ids (with the same seed and size as model.silhouette_sample_size, train's silhouette sample)."""
    if not publication.is_published(spark, config, "customer_features"):
        raise SchemaError(
            "this lakehouse has no customer_features to draw customers from (a model trained on an attribute "
            "table): the figures of customers are left out"
        )
    model = load_model(config.model_path(model_version))
    centroids = publication.read_published(spark, config, "segment_centroids").filter(
        F.col(MODEL_VERSION) == F.lit(model_version)
    )
    row = centroids.select("feature_columns").first()  # one row
    if row is None:
        raise InputError(f"model {model_version} has no rows in segment_centroids")
    columns = list(row["feature_columns"])
    customers_df, _ = scoring_input(spark, config.model_copy(update={"as_of_dates": [as_of]}), columns)
    numeric = model_numeric_features(model)
    key = sample_key(config.seed, SILHOUETTE_SAMPLE)
    sampled_df = (
        customers_df.join(segments_df.select(CUSTOMER_ID, SEGMENT_ID), CUSTOMER_ID, "inner")
        .withColumn("_h", key)
        .orderBy("_h", CUSTOMER_ID)
        .limit(config.report.sample_size)
    )
    # The published segment id rides along as _segment: the model adds its own segment_id column.
    scored_df = model.transform(sampled_df.withColumnRenamed(SEGMENT_ID, "_segment"))
    transformed = (
        vector_to_array(F.col(STANDARDISED_COL))
        if STANDARDISED_COL in scored_df.columns
        else F.array().cast("array<double>")
    )
    pdf = (
        scored_df.select(
            CUSTOMER_ID,
            F.col("_segment").alias(SEGMENT_ID),
            F.col("prediction").cast("int").alias("_prediction"),
            vector_to_array(F.col(FEATURES_COL)).alias("_points"),
            transformed.alias("_transformed"),
            *[F.col(quote(c)).cast("double").alias(c) for c in numeric],
        )
        .orderBy(CUSTOMER_ID)
        .toPandas()  # <= report.sample_size rows
    )
    n = len(pdf)
    points = np.array(pdf["_points"].tolist(), dtype=float).reshape(n, -1) if n else np.zeros((0, 0))
    width = len(numeric)
    trans = np.array(pdf["_transformed"].tolist(), dtype=float).reshape(n, -1) if n else np.zeros((0, width))
    if n:
        # The model divides by the standard deviation without centring (see segspark.segmentation.model): centred
        # here, so the figures read as standard deviations from the mean. Clustering does not depend on the origin.
        trans = trans - np.nanmean(trans, axis=0) if trans.size else trans
    transformed_df = pd.DataFrame(
        trans[:, :width] if trans.shape[1] >= width else np.full((n, width), np.nan), columns=numeric
    )
    # Model-space centres, by prediction index; each mapped to its segment id through the sample's rows.
    centres_all = cluster_centers(clustering_stage(model))
    pairs = sorted({(int(p), int(s)) for p, s in zip(pdf["_prediction"], pdf[SEGMENT_ID], strict=True)})
    centre_ids = np.array([s for _, s in pairs], dtype=int)
    centres = np.array([centres_all[p] for p, _ in pairs]) if pairs else np.zeros((0, points.shape[1]))
    return Sample(
        customer_ids=pdf[CUSTOMER_ID].tolist(),
        segment_ids=pdf[SEGMENT_ID].to_numpy(dtype=int),
        points=points,
        raw=pdf[numeric].astype(float).reset_index(drop=True),
        transformed=transformed_df,
        centres=centres,
        centre_ids=centre_ids,
    )


def _rfm_grid(spark: SparkSession, config: Config, as_of: dt.date) -> pd.DataFrame | None:
    if not publication.is_published(spark, config, "customer_features"):
        return None
    features_df = publication.read_published(spark, config, "customer_features")
    if not {"r_score", "f_score", "monetary"} <= set(features_df.columns):
        return None
    rows = (
        features_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
        .groupBy("r_score", "f_score")
        .agg(F.count(F.lit(1)).alias("customers"), F.sum("monetary").cast("double").alias("revenue"))
        .orderBy("r_score", "f_score")
        .collect()  # at most 25 rows
    )
    return pd.DataFrame([r.asDict() for r in rows], columns=["r_score", "f_score", "customers", "revenue"])


def _quality(spark: SparkSession, config: Config, as_of: dt.date) -> DataQuality | None:
    """Ingest counts by reason with one example each, the clean lines' window and returns, and the customers the
    snapshot left out; None for a lakehouse without ingested transactions (an attribute-table model)."""
    if not publication.is_published(spark, config, "transactions_clean"):
        return None
    ingest = publication.last_publication(spark, config, "ingest") or {}
    counts = ingest.get("counts") or {}
    rejected_by_reason, examples = _rejects(publication.read_published(spark, config, "transactions_rejected"))
    amount = F.col(LINE_AMOUNT).cast("double")
    row = lakehouse.one_row(
        publication.read_published(spark, config, "transactions_clean").agg(
            F.min(INVOICE_DATE).alias("first"),
            F.max(INVOICE_DATE).alias("last"),
            F.count(F.lit(1)).alias("lines"),
            F.count(F.when(F.col(IS_RETURN), 1)).alias("returns"),
            F.sum(F.when(F.col(IS_RETURN), F.abs(amount)).otherwise(0.0)).alias("returned"),
            F.sum(F.when(~F.col(IS_RETURN), amount).otherwise(0.0)).alias("purchased"),
        ),
        "a global aggregate of the report's tables",
    )
    return DataQuality(
        rows_in=counts.get("rows_in"),
        rows_clean=counts.get("rows_clean"),
        rejected_by_reason=rejected_by_reason,
        examples=examples,
        first_invoice=row["first"],
        last_invoice=row["last"],
        return_lines=int(row["returns"] or 0),
        clean_lines=int(row["lines"] or 0),
        returned_value=float(row["returned"] or 0.0),
        purchase_value=float(row["purchased"] or 0.0),
        returns_only_customers=_returns_only(spark, config, as_of),
    )


def _rejects(rejected_df: DataFrame) -> tuple[dict[str, int], dict[str, str | None]]:
    """Lines per reject reason (every reason, 0 when none) and one example line per reason: its source columns
    as ``name=value`` text, the smallest such text (so the same example on every run), cut to 300 characters."""
    source_columns = [c for c in rejected_df.columns if c not in {REJECT_REASON, RUN_ID, INGESTED_AT}]
    pairs = [F.concat(F.lit(f"{c}="), F.coalesce(F.col(quote(c)), F.lit(""))) for c in source_columns]
    text = F.concat_ws(", ", *pairs)
    rows = (
        rejected_df.groupBy(REJECT_REASON)
        .agg(F.count(F.lit(1)).alias("lines"), F.min(F.substring(text, 1, 300)).alias("example"))
        .collect()  # at most one row per reason
    )
    counts = dict.fromkeys(REJECT_REASONS, 0)
    examples: dict[str, str | None] = {}
    for r in rows:
        counts[r[REJECT_REASON]] = int(r["lines"])
        examples[r[REJECT_REASON]] = r["example"]
    return counts, examples


def _returns_only(spark: SparkSession, config: Config, as_of: dt.date) -> int | None:
    """The latest successful features run's count of customers left out of ``as_of`` for returning only."""
    path = config.table_path("pipeline_runs")
    if not lakehouse.table_exists(spark, path):
        return None
    key = f"returns_only_customers_{as_of.isoformat()}"
    row = (
        lakehouse.read_table(spark, path)
        .filter((F.col("stage") == "features") & (F.col("status") == "succeeded"))
        .filter(F.col("counts").getItem(key).isNotNull())
        .orderBy(F.col("ended_at").desc())
        .select(F.col("counts").getItem(key).alias("n"))
        .first()  # one row
    )
    return None if row is None else int(row["n"])


def _sizes_over_time(spark: SparkSession, config: Config) -> pd.DataFrame:
    rows = (
        publication.read_published(spark, config, "customer_segments")
        .groupBy(AS_OF_DATE, SEGMENT_ID)
        .agg(F.count(F.lit(1)).alias("customers"))
        .orderBy(AS_OF_DATE, SEGMENT_ID)
        .collect()  # snapshots x segments
    )
    return pd.DataFrame([r.asDict() for r in rows], columns=[AS_OF_DATE, SEGMENT_ID, "customers"])


def _migration(spark: SparkSession, config: Config, as_of: dt.date) -> tuple[dt.date | None, pd.DataFrame | None]:
    """Customers per (segment at the previous snapshot, segment now), as segment_migration holds them (monitor
    writes it); -1 stands for "not in that snapshot". (None, None) before monitor has compared the two."""
    if not publication.is_published(spark, config, "segment_migration"):
        return None, None
    rows = (
        publication.read_published(spark, config, "segment_migration")
        .filter(F.col("to_as_of_date") == F.lit(as_of))
        .select(
            "from_as_of_date",
            F.coalesce("from_segment_id", F.lit(-1)).alias("from_segment"),
            F.coalesce("to_segment_id", F.lit(-1)).alias("to_segment"),
            "customers",
        )
        .orderBy("from_segment", "to_segment")
        .collect()  # at most (K + 1) x (K' + 1) rows
    )
    if not rows:
        return None, None
    moves = pd.DataFrame(
        [r.asDict() for r in rows], columns=["from_as_of_date", "from_segment", "to_segment", "customers"]
    )
    return rows[0]["from_as_of_date"], moves.drop(columns="from_as_of_date")

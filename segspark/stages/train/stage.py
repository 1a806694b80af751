"""The train stage: sweep K, choose it with evidence, fit and save the model, write the segment tables.

Plan:

1. Read the training customers (:mod:`segspark.stages.train.training_data`): one ``customer_features`` snapshot
   (joined to an attribute table when one is configured) or, in attribute-only mode, the attribute table. Check the
   feature columns and values. Lay customers out deterministically (hash partitions on ``customer_id``,
   sorted within each), so every seeded step sees the same data in the same order whatever the input's file
   layout.
2. Fit the preprocessing (impute, encode, scale, optional PCA) on all customers; cache the model-space
   vectors once. The sweep runs on them, or on a seeded sample of ``sample_size`` customers.
3. Per (algorithm, K), in one Spark job with one task per candidate (:mod:`segspark.stages.train.sweep`): fit with
   restarts, then measure WSSSE, silhouettes, Davies-Bouldin, Calinski-Harabasz, segment sizes, stability
   across seeds, and the silhouette the same fit reaches on a structureless reference.
   :func:`segspark.maths.evaluation.choose` decides.
4. Make the chosen candidate an MLlib model on all customers (:func:`final_model`), number segments stably,
   save one PipelineModel, and write ``customer_segments``, ``segment_centroids``, ``model_selection`` and
   ``sweep_segments`` (:mod:`segspark.stages.train.tables`).

Only small results reach the driver: the bounded sweep sample, K-row statistics, one row per candidate.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.feature import StandardScalerModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config, ModelSettings
from segspark.contracts.schemas import CUSTOMER_ID
from segspark.contracts.stamp import RunStamp
from segspark.errors import ReconciliationError
from segspark.maths.evaluation import Candidate, choose
from segspark.maths.local_fits import Evaluated, SweepData
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.segmentation.model import (
    FEATURES_COL,
    SCALED_COL,
    Preprocessing,
    assemble_model,
    describe_slots,
    fit_best,
    fit_caps,
    fit_pca,
    imputing_stages,
    kmeans_with_centres,
    model_inputs,
    preprocessing_pipeline,
    refine_centres,
    save_model,
)
from segspark.segmentation.sampling import SWEEP_SAMPLE, hash_sample
from segspark.segmentation.scoring import write_segments
from segspark.stages.train.sweep import run_sweep
from segspark.stages.train.tables import (
    SweepSize,
    number_segments,
    previous_model,
    segment_table,
    with_centre_descriptions,
    write_centroids,
    write_drift_reference,
    write_selection,
    write_sweep_segments,
)
from segspark.stages.train.training_data import (
    CheckedFeatures,
    check_features,
    check_k_range,
    sweep_arrays,
    training_input,
    with_deterministic_layout,
)

__all__ = ["TrainResult", "final_model", "fit_preprocessing", "model_space", "run_train"]

log = logging.getLogger("segspark")


# ---------------------------------------------------------------------------------------------------------
# Preprocessing


def fit_preprocessing(customers_df: DataFrame, settings: ModelSettings, checked: CheckedFeatures) -> Preprocessing:
    """Fit stages 1-5 of the model on all training customers (with ``model.winsorize``, the caps first)."""
    caps = None
    # Winsorising is enabled when both percentiles are set (the config accepts both or neither).
    lower, upper = settings.winsorize.lower, settings.winsorize.upper
    if lower is not None and upper is not None and checked.numeric:
        imputed = Pipeline(stages=imputing_stages(settings, checked.numeric, [])).fit(customers_df)
        caps = fit_caps(imputed.transform(customers_df), checked.numeric, lower, upper)
        log.info(
            "winsorising at the %g and %g percentiles: %s",
            lower,
            upper,
            ", ".join(f"{c} {lo:.4g}..{hi:.4g}" for c, (lo, hi) in caps.items()),
        )
    pipeline_model = preprocessing_pipeline(settings, checked.numeric, checked.categorical, caps).fit(customers_df)
    stages = list(pipeline_model.stages)
    slot_names, slot_sources = describe_slots(stages, checked.numeric, checked.categorical, settings)
    # Numeric slots come first and are standardised; one-hot slots are left as they are (mean 0, scale 1).
    scalers = [s for s in stages if isinstance(s, StandardScalerModel)]
    mean, std = np.zeros(len(slot_names)), np.ones(len(slot_names))
    if scalers:
        width = len(checked.numeric)
        mean[:width], std[:width] = scalers[0].mean.toArray(), scalers[0].std.toArray()
    out = SCALED_COL if settings.pca.enabled else FEATURES_COL
    width = pipeline_model.transform(customers_df).schema[out].metadata.get("ml_attr", {}).get("num_attrs")
    if width is not None and width != len(slot_names):  # schema metadata only: no Spark job
        raise AssertionError(f"slot names {slot_names} do not match the {width}-wide feature vector")
    components = None
    if settings.pca.enabled:
        scaled_df = pipeline_model.transform(customers_df)
        pca_model, components = fit_pca(scaled_df, settings, len(mean))
        stages.append(pca_model)
    return Preprocessing(stages, slot_names, slot_sources, mean, std, components, caps)


def model_space(prep: Preprocessing, customers_df: DataFrame) -> DataFrame:
    """``customer_id``, ``features`` (model space) and ``_scaled`` (standardised, before any PCA)."""
    vectors_df = PipelineModel(stages=prep.stages).transform(customers_df)
    scaled = F.col(SCALED_COL) if prep.pca_components is not None else F.col(FEATURES_COL)
    return vectors_df.select(CUSTOMER_ID, FEATURES_COL, scaled.alias(SCALED_COL))


# ---------------------------------------------------------------------------------------------------------
# The final model


def final_model(
    spark: SparkSession,
    chosen: Candidate,
    best: Evaluated,
    vectors_df: DataFrame,
    data: SweepData,
    settings: ModelSettings,
    seed: int,
    *,
    sampled: bool,
) -> Transformer:
    """The chosen candidate as an MLlib clustering model over all customers.

    KMeans: the sweep's kept fit, whose centres are refined by Lloyd iterations over all customers when the
    sweep ran on a sample, becomes an MLlib ``KMeansModel``; its assignments are the ones the evidence
    describes. BisectingKMeans and GaussianMixture: MLlib fits them on all customers with the same restarts
    (MLlib cannot start from given centres).
    """
    if chosen.algorithm == "kmeans":
        centres = best.centres
        if sampled:
            progress.step(f"refining the K={chosen.k} centres on all customers")
            scale = float(np.var(data.points, axis=0).mean())
            centres, steps = refine_centres(vectors_df, centres, settings.max_iter, settings.tol * scale)
            log.info("K=%d centres refined on all customers in %d Lloyd iteration(s)", chosen.k, steps)
        return kmeans_with_centres(spark, centres, seed)
    progress.step(f"fitting {chosen.algorithm} K={chosen.k} on all customers")
    return fit_best(chosen.algorithm, chosen.k, vectors_df, settings, seed)


# ---------------------------------------------------------------------------------------------------------
# The stage


@dataclass(frozen=True)
class TrainResult:
    """What one train run made: the saved model, its snapshot and customers, the chosen and all candidates."""

    model_version: str
    model_path: str
    as_of_date: dt.date
    customers: int
    chosen: Candidate
    candidates: list[Candidate]
    dropped_features: list[str]
    #: The attribute table had no id column: customer ids are row numbers in file order.
    ids_from_file_order: bool = False


def run_train(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> TrainResult:
    """Sweep K, choose, fit on all customers, save the model and write its five tables.

    The tables: customer_segments, segment_centroids, model_selection, sweep_segments and drift_reference.
    """
    settings = config.model
    seed = config.seed
    model_version = run_id
    input_df, as_of = training_input(spark, config)
    what = f"snapshot {as_of}" if settings.input == "features" else "the attribute table"
    checked = check_features(input_df, settings)
    numbered = settings.input == "attributes" and settings.attributes.customer_id is None
    if numbered:
        log.info(
            "attribute table has no id column (model.attributes.customer_id is null): customers are numbered "
            "1..%d in file order",
            checked.customers,
        )
    if checked.constant:
        log.warning("features with one value for every customer are left out of the model: %s", checked.constant)
    n = checked.customers
    evaluated_n = min(n, settings.sample_size)
    check_k_range(settings, n, evaluated_n, what)

    layout = settings.rows_per_partition
    customers_df = with_deterministic_layout(input_df, n, layout).persist(StorageLevel.MEMORY_AND_DISK)
    cached: list[DataFrame] = [customers_df]
    try:
        progress.step("fitting the preprocessing (impute, encode, scale) on all customers", logged=False)
        prep = fit_preprocessing(customers_df, settings, checked)
        vectors_df = model_space(prep, customers_df).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(vectors_df)
        sampled = n > settings.sample_size
        sweep_df = hash_sample(vectors_df, settings.sample_size, seed, SWEEP_SAMPLE) if sampled else vectors_df
        progress.step(f"collecting the sweep sample ({evaluated_n:,} customers)", logged=False)
        _, data = sweep_arrays(sweep_df, settings.silhouette_sample_size, seed)
        log.info(
            "train: %s customers (%s in the sweep, %s in the silhouette sample), %d model dimensions, K %s, %s",
            f"{n:,}",
            f"{evaluated_n:,}",
            f"{len(data.silhouette_rows):,}",
            data.points.shape[1],
            ",".join(map(str, settings.k_values())),
            ", ".join(settings.algorithms),
        )
        results = with_centre_descriptions(run_sweep(spark, data, settings, seed), prep)
        decided = choose([r.candidate for r in results], settings)
        chosen = next(c for c in decided if c.is_chosen)
        best = next(r for r in results if (r.candidate.algorithm, r.candidate.k) == (chosen.algorithm, chosen.k))

        final = final_model(spark, chosen, best, vectors_df, data, settings, seed, sampled=sampled)
        segments = segment_table(final, vectors_df, prep)
        previous = previous_model(spark, config, prep.slot_names) if settings.match_previous else None
        ids, distances = number_segments(segments.standardised, segments.counts, prep, previous)
        mapping = dict(zip(segments.predictions, ids, strict=True))
        model = assemble_model(prep, final, mapping)
        model_path = config.model_path(model_version)

        stamp = RunStamp(run_id, as_of, model_version)
        # The model and the four tables change together or not at all: on any failure each table goes back
        # to its version before and the model folder is removed.
        tables = ["customer_segments", "segment_centroids", "model_selection", "sweep_segments", "drift_reference"]
        publication.ensure_log(spark, config, run_id)
        with publication.publishing(
            spark,
            config,
            run_id,
            failed=f"train failed: segment tables restored to their published versions, model {model_version} removed",
            # No published table names this model: leaving it would be an orphan folder under models/.
            cleanup=lambda: _remove_model(spark, model_path),
        ):
            save_model(model, model_path)
            progress.step("writing customer_segments, segment_centroids, model_selection and sweep_segments")
            written = write_segments(model, customers_df, stamp, config)
            if written != n:
                raise ReconciliationError(f"customer_segments wrote {written:,} rows for {n:,} customers")
            previous_version = previous.model_version if previous is not None else None
            write_centroids(
                spark, config, stamp, segments, ids, distances, prep, chosen, previous_version, settings.features
            )
            size = SweepSize(customers=n, evaluated=evaluated_n, silhouette_sample=len(data.silhouette_rows))
            write_selection(spark, config, stamp, results, decided, size)
            write_sweep_segments(spark, config, stamp, decided, evaluated_n, settings)
            progress.step("fixing the drift bins of each feature (drift_reference)")
            write_drift_reference(config, stamp, model, model_inputs(model, customers_df), seed)
            # The stage holds the lakehouse (segspark.platform.lock), so each table's latest version is this run's.
            publication.publish(
                spark,
                config,
                run_id,
                "train",
                {t: lakehouse.existing_version(spark, config.table_path(t), "after train's write") for t in tables},
                model_version=model_version,
                counts={"customers": n, "k": chosen.k},
            )
    finally:
        for df in reversed(cached):
            df.unpersist()

    log.info("train: %s", chosen.reason)
    if chosen.structure == "weak":
        log.warning("weak structure: the segments of model %s are not distinct groups (see its reason)", model_version)
    log.info("model %s saved to %s; %s customers segmented for %s", model_version, model_path, f"{n:,}", as_of)
    if stage is not None:
        stage.rows_in = n
        stage.rows_out = n
        stage.counts.update(
            {"customers": n, "customers_evaluated": evaluated_n, "k": chosen.k, "candidates": len(decided)}
        )
        if numbered:
            stage.counts["customers_numbered_in_file_order"] = n
    return TrainResult(model_version, model_path, as_of, n, chosen, decided, checked.constant, numbered)


def _remove_model(spark: SparkSession, model_path: str) -> None:
    """Delete a model folder no published table names (whether there was one to delete does not matter)."""
    lakehouse.delete_path(spark, model_path)

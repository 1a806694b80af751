"""The segmentation model: one Spark ML ``PipelineModel`` from raw feature columns to ``segment_id``.

Stages, in order (column names are internal and start with ``_``):

1. ``SQLTransformer``: numeric features cast to double, ``log_features`` replaced by sign(x) * ln(1 + |x|);
   categorical features cast to text with null as ``(missing)``.
2. ``Imputer`` (median of the training customers) for nulls left in numeric features; with
   ``model.winsorize`` a ``SQLTransformer`` then caps each numeric value at the training customers' percentiles.
3. ``StringIndexer`` (alphabetical, unseen values kept in their own slot) and ``OneHotEncoder`` (no slot
   dropped) for categorical features.
4. ``StandardScaler`` (divided by the standard deviation; the mean is subtracted only in reports) for numeric
   features; one-hot slots stay 0/1; both assembled into one vector.
5. Optional ``PCA``. The model-space vector is ``features``.
6. The clustering model (KMeans, BisectingKMeans or GaussianMixture) adds ``prediction``.
7. ``SQLTransformer`` mapping MLlib's arbitrary ``prediction`` to the stable ``segment_id``.

The fitted model is saved with ``PipelineModel.save`` under ``<lakehouse>/models/<model_version>`` and loads
with :func:`load_model` to score any frame holding the feature columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.clustering import (
    BisectingKMeans,
    BisectingKMeansModel,
    GaussianMixture,
    GaussianMixtureModel,
    KMeans,
    KMeansModel,
)
from pyspark.ml.feature import (
    PCA,
    Imputer,
    OneHotEncoder,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    StringIndexerModel,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors
from pyspark.ml.param.shared import HasInputCols
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import ModelSettings
from segspark.contracts.schemas import CUSTOMER_ID, SEGMENT_ID
from segspark.errors import InternalError
from segspark.platform import filesystem
from segspark.platform.lakehouse import one_row

if TYPE_CHECKING:
    from pyspark.ml._typing import PipelineStage

__all__ = [
    "FEATURES_COL",
    "MISSING_CATEGORY",
    "NUMERIC_COL",
    "PREDICTION_COL",
    "SCALED_COL",
    "UNSEEN_CATEGORY",
    "Preprocessing",
    "assemble_model",
    "assign_segments",
    "capping_stage",
    "cluster_centers",
    "clustering_estimator",
    "clustering_stage",
    "describe_slots",
    "distance_to",
    "euclidean_distance",
    "fit_best",
    "fit_caps",
    "fit_pca",
    "imputing_stages",
    "kmeans_fitted_to_centres",
    "kmeans_with_centres",
    "load_model",
    "model_categorical_features",
    "model_inputs",
    "model_numeric_features",
    "nearest_centre",
    "objective",
    "preprocessing_pipeline",
    "quote",
    "refine_centres",
    "save_model",
    "segment_id_stage",
    "signed_log_sql",
    "squared_distance",
    "standardised_offset",
    "to_original_units",
    "to_standardised",
]

FEATURES_COL = "features"
SCALED_COL = "_scaled"
#: The assembled vector of the numeric features (imputed, and capped when configured), before scaling.
NUMERIC_COL = "_numeric"
PREDICTION_COL = "prediction"
MISSING_CATEGORY = "(missing)"
#: Name of a one-hot slot for values not seen in training.
UNSEEN_CATEGORY = "(unseen)"


def quote(name: str) -> str:
    """A column name as a Spark SQL identifier (backticks doubled), safe inside SQLTransformer statements."""
    return "`" + name.replace("`", "``") + "`"


def _num(name: str) -> str:
    return f"_num_{name}"


def _imp(name: str) -> str:
    return f"_imp_{name}"


def _win(name: str) -> str:
    return f"_win_{name}"


def _cat(name: str) -> str:
    return f"_cat_{name}"


def _idx(name: str) -> str:
    return f"_idx_{name}"


def _ohe(name: str) -> str:
    return f"_ohe_{name}"


def signed_log_sql(expr: str) -> str:
    """sign(x) * ln(1 + |x|): compresses skewed values, keeps 0 at 0 and the sign of negatives."""
    return f"SIGNUM({expr}) * LN(1D + ABS({expr}))"


def capping_stage(caps: dict[str, tuple[float, float]]) -> SQLTransformer:
    """``_win_<feature>``: the imputed value held within its ``(lower, upper)`` cap (winsorising)."""
    exprs = [
        f"LEAST(GREATEST({quote(_imp(c))}, CAST('{lo!r}' AS DOUBLE)), CAST('{hi!r}' AS DOUBLE)) AS {quote(_win(c))}"
        for c, (lo, hi) in caps.items()
    ]
    return SQLTransformer(statement=f"SELECT *, {', '.join(exprs)} FROM __THIS__")


def fit_caps(imputed_df: DataFrame, numeric: list[str], lower: float, upper: float) -> dict[str, tuple[float, float]]:
    """Each numeric feature's ``lower`` and ``upper`` percentiles over the training customers (one aggregation;
    ``percentile_approx`` with accuracy 10,000, exact for up to 10,000 distinct values)."""
    row = one_row(
        imputed_df.agg(
            *[
                F.percentile_approx(F.col(quote(_imp(c))), [lower, upper], 10_000).alias(str(i))
                for i, c in enumerate(numeric)
            ]
        ),
        "the winsorize percentiles (a global aggregation)",
    )
    return {c: (float(row[str(i)][0]), float(row[str(i)][1])) for i, c in enumerate(numeric)}


def imputing_stages(settings: ModelSettings, numeric: list[str], categorical: list[str]) -> list[PipelineStage]:
    """Stages 1-2: the cast/log/category SQLTransformer and the Imputer (unfitted)."""
    exprs = []
    for name in numeric:
        # TRY_CAST: text that is not a number becomes null (then imputed), not a failed job in ANSI mode.
        value = f"TRY_CAST({quote(name)} AS DOUBLE)"
        if name in settings.log_features:
            value = signed_log_sql(value)
        exprs.append(f"{value} AS {quote(_num(name))}")
    for name in categorical:
        exprs.append(f"COALESCE(CAST({quote(name)} AS STRING), '{MISSING_CATEGORY}') AS {quote(_cat(name))}")
    stages: list[PipelineStage] = [SQLTransformer(statement=f"SELECT *, {', '.join(exprs)} FROM __THIS__")]
    if numeric:
        stages.append(
            Imputer(inputCols=[_num(c) for c in numeric], outputCols=[_imp(c) for c in numeric], strategy="median")
        )
    return stages


def preprocessing_pipeline(
    settings: ModelSettings,
    numeric: list[str],
    categorical: list[str],
    caps: dict[str, tuple[float, float]] | None = None,
) -> Pipeline:
    """Stages 1-5 (see the module docstring) for the given feature columns, unfitted; with ``caps`` (see
    :func:`fit_caps`) the numeric values are capped after imputation."""
    stages = imputing_stages(settings, numeric, categorical)
    values = [_imp(c) for c in numeric]
    if caps:
        stages.append(capping_stage(caps))
        values = [_win(c) for c in numeric]
    if categorical:
        stages.append(
            StringIndexer(
                inputCols=[_cat(c) for c in categorical],
                outputCols=[_idx(c) for c in categorical],
                stringOrderType="alphabetAsc",
                handleInvalid="keep",
            )
        )
        stages.append(
            OneHotEncoder(
                inputCols=[_idx(c) for c in categorical], outputCols=[_ohe(c) for c in categorical], dropLast=False
            )
        )
    out = SCALED_COL if settings.pca.enabled else FEATURES_COL
    if numeric:
        stages.append(VectorAssembler(inputCols=values, outputCol=NUMERIC_COL))
        # Divided by the standard deviation but not centred: clustering does not care where the origin is,
        # and Spark's BisectingKMeans cannot split mean-centred data (it perturbs the root centre in
        # proportion to its norm, which is then 0). Reports subtract the mean (see standardised_offset).
        stages.append(StandardScaler(inputCol=NUMERIC_COL, outputCol="_standardised", withMean=False, withStd=True))
    # One-hot slots stay 0/1: two customers with different values are sqrt(2) apart on that feature, which
    # is what two typical customers are apart on a standardised numeric feature (E[(x - y)^2] = 2).
    parts = (["_standardised"] if numeric else []) + [_ohe(c) for c in categorical]
    stages.append(VectorAssembler(inputCols=parts, outputCol=out, handleInvalid="error"))
    return Pipeline(stages=stages)


def fit_pca(scaled_df: DataFrame, settings: ModelSettings, dimensions: int) -> tuple[Transformer, int]:
    """Fit PCA on ``_scaled`` keeping ``pca.components`` or enough components for ``pca.variance``."""
    if settings.pca.components is not None:
        k = min(settings.pca.components, dimensions)
        return PCA(k=k, inputCol=SCALED_COL, outputCol=FEATURES_COL).fit(scaled_df), k
    variance = settings.pca.variance
    if variance is None:  # callers fit PCA only when it is enabled: components or variance is set
        raise InternalError("fit_pca was called with PCA off (neither pca.components nor pca.variance is set)")
    full = PCA(k=dimensions, inputCol=SCALED_COL, outputCol=FEATURES_COL).fit(scaled_df)
    explained = np.cumsum(full.explainedVariance.toArray())
    k = int(np.searchsorted(explained, variance - 1e-12) + 1)
    k = min(max(k, 1), dimensions)
    return PCA(k=k, inputCol=SCALED_COL, outputCol=FEATURES_COL).fit(scaled_df), k


class _CommonParams(TypedDict):
    """The parameters every clustering estimator is given, as keyword arguments."""

    featuresCol: str
    predictionCol: str
    k: int
    seed: int
    maxIter: int


def clustering_estimator(
    algorithm: str, k: int, seed: int, settings: ModelSettings
) -> KMeans | BisectingKMeans | GaussianMixture:
    """The MLlib estimator for one candidate, reading ``features`` and writing ``prediction``."""
    common = _CommonParams(
        featuresCol=FEATURES_COL, predictionCol=PREDICTION_COL, k=k, seed=seed, maxIter=settings.max_iter
    )
    if algorithm == "kmeans":
        return KMeans(initMode="k-means||", tol=settings.tol, **common)
    if algorithm == "bisecting_kmeans":
        return BisectingKMeans(**common)
    if algorithm == "gaussian_mixture":
        return GaussianMixture(tol=settings.tol, probabilityCol="_probability", **common)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _not_clustering(model: Transformer) -> InternalError:
    return InternalError(f"{type(model).__name__} is not a KMeans, BisectingKMeans or GaussianMixture model")


def cluster_centers(model: Transformer) -> np.ndarray:
    """Centres of a fitted clustering model by MLlib cluster index (GaussianMixture: component means).

    Raises
    ------
    InternalError
        ``model`` is not a fitted KMeans, BisectingKMeans or GaussianMixture model.
    """
    if isinstance(model, GaussianMixtureModel):
        return np.array([g.mean.toArray() for g in model.gaussians])
    if isinstance(model, KMeansModel | BisectingKMeansModel):
        return np.array([np.asarray(c) for c in model.clusterCenters()])
    raise _not_clustering(model)


def objective(model: Transformer) -> float:
    """What the fit minimised, lower is better: WSSSE (KMeans, BisectingKMeans) or -log-likelihood (GMM).

    Raises
    ------
    InternalError
        ``model`` is not a fitted KMeans, BisectingKMeans or GaussianMixture model.
    """
    if isinstance(model, GaussianMixtureModel):
        return -float(model.summary.logLikelihood)
    if isinstance(model, KMeansModel | BisectingKMeansModel):
        return float(model.summary.trainingCost)
    raise _not_clustering(model)


def fit_best(algorithm: str, k: int, df: DataFrame, settings: ModelSettings, seed: int) -> Transformer:
    """Fit with ``model.restarts`` seeds from ``seed`` on and keep the lowest objective (then the lowest seed).

    Restarts are scikit-learn's n_init: MLlib's k-means|| start can settle in a poor local optimum (on the
    planted test data about half of the single starts did).
    """
    fits = [clustering_estimator(algorithm, k, s, settings).fit(df) for s in range(seed, seed + settings.restarts)]
    return min(enumerate(fits), key=lambda item: (objective(item[1]), item[0]))[1]


def kmeans_with_centres(spark: SparkSession, centres: np.ndarray, seed: int) -> Transformer:
    """An MLlib ``KMeansModel`` whose centres are exactly ``centres`` (K distinct rows).

    MLlib's Python API cannot start KMeans from given centres. On a classic session the model is built the
    way MLlib builds it after a fit (an ``mllib`` ``KMeansModel`` of the centres wrapped by the ``ml`` model,
    through the JVM: milliseconds). Where that is not reachable (Spark Connect, a changed constructor), KMeans
    is fitted to the K centres themselves (:func:`kmeans_fitted_to_centres`, a few seconds of Spark jobs). Either
    way the result is checked, not assumed.
    """
    model = _kmeans_built_from_centres(spark, centres)
    if model is None:
        model = kmeans_fitted_to_centres(spark, centres, seed)
    _check_centres(model, centres)
    return model


def _kmeans_built_from_centres(spark: SparkSession, centres: np.ndarray) -> Transformer | None:
    model = filesystem.kmeans_model(spark, [[float(v) for v in centre] for centre in centres])
    if model is None:  # no driver JVM (Spark Connect) or MLlib's internals changed: use the public API
        return None
    model.setFeaturesCol(FEATURES_COL).setPredictionCol(PREDICTION_COL)
    model._set(k=len(centres))
    model._transfer_params_to_java()
    return model


def kmeans_fitted_to_centres(spark: SparkSession, centres: np.ndarray, seed: int) -> Transformer:
    """KMeans fitted to the K centres themselves: random initialisation samples all K distinct rows, each
    row is its own cluster, and Lloyd's step leaves every centre where it is."""
    rows = [(Vectors.dense([float(v) for v in c]),) for c in centres]
    centres_df = spark.createDataFrame(rows, [FEATURES_COL]).coalesce(1)
    return KMeans(
        featuresCol=FEATURES_COL,
        predictionCol=PREDICTION_COL,
        k=len(centres),
        initMode="random",
        maxIter=1,
        seed=seed,
    ).fit(centres_df)


def _check_centres(model: Transformer, centres: np.ndarray) -> None:
    k = len(centres)
    got = cluster_centers(model)
    scale = max(1.0, float(np.abs(centres).max()))
    matched = [int(np.argmin(((got - c) ** 2).sum(axis=1))) for c in centres] if len(got) == k else []
    if sorted(matched) != list(range(k)) or np.abs(got[matched] - centres).max() > 1e-9 * scale:
        raise AssertionError(f"the MLlib KMeansModel does not hold the {k} given centres (it has {len(got)})")


def nearest_centre(centres: np.ndarray, features: Column | None = None) -> Column:
    """Index of the centre nearest to the ``features`` vector (native array functions; ties: lowest index)."""
    vector = vector_to_array(features if features is not None else F.col(FEATURES_COL))
    squared = [squared_distance(vector, F.array(*[F.lit(float(v)) for v in c])) for c in centres]
    distances = F.array(*squared)
    return (F.array_position(distances, F.array_min(distances)) - 1).cast("int")


def refine_centres(vectors_df: DataFrame, centres: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Lloyd iterations over every row of ``vectors_df`` starting from ``centres`` (one K-row aggregation each).

    Stops when the centres' total squared movement is at most ``tol`` (scikit-learn's rule) or after
    ``max_iter`` iterations. A centre that loses all its members stays where it was.
    """
    centres = np.array(centres, dtype=float)
    for step in range(1, max_iter + 1):
        rows = (
            vectors_df.groupBy(nearest_centre(centres).alias("_centre"))
            .agg(Summarizer.mean(F.col(FEATURES_COL)).alias("_mean"))
            .collect()  # at most K rows
        )
        moved = centres.copy()
        for r in rows:
            moved[int(r["_centre"])] = r["_mean"].toArray()
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= tol:
            return centres, step
    return centres, max_iter


def _array_literal(matrix: np.ndarray) -> Column:
    return F.array(*[F.array(*[F.lit(float(v)) for v in row]) for row in matrix])


def squared_distance(vector: Column, centre: Column) -> Column:
    """Squared Euclidean distance between two double arrays (native higher-order functions, no Python UDF)."""
    squares = F.zip_with(vector, centre, lambda a, b: (a - b) * (a - b))
    return F.aggregate(squares, F.lit(0.0), lambda acc, x: acc + x)


def euclidean_distance(vector: Column, centre: Column) -> Column:
    """Euclidean distance between two double arrays."""
    return F.sqrt(squared_distance(vector, centre))


def distance_to(centres: np.ndarray, index: Column, features: Column | None = None) -> Column:
    """Distance from the ``features`` vector to ``centres[index]``."""
    features = features if features is not None else F.col(FEATURES_COL)
    centre = F.element_at(_array_literal(centres), index.cast("int") + 1)
    return euclidean_distance(vector_to_array(features), centre)


def segment_id_stage(prediction_to_segment: dict[int, int]) -> SQLTransformer:
    """Stage 7: map MLlib's cluster index to the stable segment id."""
    cases = " ".join(f"WHEN {p} THEN {s}" for p, s in sorted(prediction_to_segment.items()))
    return SQLTransformer(
        statement=f"SELECT *, CAST(CASE {quote(PREDICTION_COL)} {cases} END AS INT) AS {SEGMENT_ID} FROM __THIS__"
    )


@dataclass(frozen=True)
class Preprocessing:
    """Fitted stages 1-5 and the names of the slots of the standardised vector."""

    stages: list[Transformer]
    slot_names: list[str]
    #: For each slot: (numeric feature name or None, was it log-transformed).
    slot_sources: list[tuple[str | None, bool]]
    scaler_mean: np.ndarray
    scaler_std: np.ndarray
    pca_components: int | None
    #: Feature -> (lower, upper) cap applied before scaling; None when winsorising is off.
    caps: dict[str, tuple[float, float]] | None = None


def describe_slots(
    stages: list[Transformer], numeric: list[str], categorical: list[str], settings: ModelSettings
) -> tuple[list[str], list[tuple[str | None, bool]]]:
    """Names of the assembled vector's slots: numeric features, then ``feature=value`` one-hot slots."""
    names = list(numeric)
    sources: list[tuple[str | None, bool]] = [(c, c in settings.log_features) for c in numeric]
    indexers = [s for s in stages if isinstance(s, StringIndexerModel)]
    if categorical:
        for column, labels in zip(categorical, indexers[0].labelsArray, strict=True):
            for label in [*labels, UNSEEN_CATEGORY]:
                names.append(f"{column}={label}")
                sources.append((None, False))
    return names, sources


def standardised_offset(prep: Preprocessing) -> np.ndarray:
    """What the model-space (pre-PCA) vector holds beyond standardised units: mean / sd on numeric slots."""
    std = np.where(prep.scaler_std > 0, prep.scaler_std, 1.0)
    return np.where(prep.scaler_std > 0, prep.scaler_mean / std, 0.0)


def to_original_units(prep: Preprocessing, standardised: np.ndarray) -> np.ndarray:
    """Undo standardisation (and the log transform) slot by slot; one-hot slots become shares."""
    values: np.ndarray = prep.scaler_mean + prep.scaler_std * standardised
    out = values.copy()
    for i, (_, logged) in enumerate(prep.slot_sources):
        if logged:
            out[i] = np.sign(values[i]) * np.expm1(np.abs(values[i]))
    return out


def to_standardised(prep: Preprocessing, original: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_original_units`: original units to this model's standardised units."""
    values = np.array(original, dtype=float)
    for i, (_, logged) in enumerate(prep.slot_sources):
        if logged:
            values[i] = np.sign(values[i]) * np.log1p(np.abs(values[i]))
    std = np.where(prep.scaler_std > 0, prep.scaler_std, 1.0)
    return np.where(prep.scaler_std > 0, (values - prep.scaler_mean) / std, 0.0)


def assemble_model(
    prep: Preprocessing, clustering: Transformer, prediction_to_segment: dict[int, int]
) -> PipelineModel:
    """Stages 1-7 as one PipelineModel."""
    return PipelineModel(stages=[*prep.stages, clustering, segment_id_stage(prediction_to_segment)])


def clustering_stage(model: PipelineModel) -> Transformer:
    """The clustering model inside a segmentation PipelineModel (the stage before the segment-id mapping)."""
    return model.stages[-2]


def assign_segments(model: PipelineModel, customers_df: DataFrame) -> DataFrame:
    """Score customers: the input's columns plus ``segment_id`` and ``distance_to_centroid``.

    Parameters
    ----------
    customers_df : one row per customer with the model's feature columns (nulls are imputed).
    """
    centres = cluster_centers(clustering_stage(model))
    scored_df = model.transform(customers_df)
    return scored_df.select(
        *customers_df.columns,
        F.col(SEGMENT_ID),
        distance_to(centres, F.col(PREDICTION_COL)).alias("distance_to_centroid"),
    )


def save_model(model: PipelineModel, path: str) -> None:
    """Save ``model`` under ``path`` (``<lakehouse>/models/<model_version>``), replacing what is there."""
    model.write().overwrite().save(path)


def load_model(path: str) -> PipelineModel:
    """The segmentation model :func:`save_model` saved under ``path``."""
    return PipelineModel.load(path)


def model_numeric_features(model: PipelineModel) -> list[str]:
    """The numeric features a saved model reads, in slot order (from its :data:`NUMERIC_COL` assembler).

    The assembler's inputs are the imputed (``_imp_<feature>``) or capped (``_win_<feature>``) columns this
    module names; an empty list for a model with no numeric features.
    """
    for stage in model.stages:
        if stage.hasParam("outputCol") and stage.getOrDefault("outputCol") == NUMERIC_COL:
            if not isinstance(stage, HasInputCols):  # segspark builds that stage as a VectorAssembler
                raise InternalError(f"the model's {NUMERIC_COL} stage ({type(stage).__name__}) has no inputCols")
            return [_feature_of(c) for c in stage.getInputCols()]
    return []


def model_categorical_features(model: PipelineModel) -> list[tuple[str, list[str]]]:
    """The categorical features a saved model reads, each with its training categories in slot order (from
    its ``StringIndexer``); an empty list for a model with none."""
    for stage in model.stages:
        if isinstance(stage, StringIndexerModel):
            columns = stage.getInputCols()
            return [
                (column[len(_cat("")) :], list(labels))
                for column, labels in zip(columns, stage.labelsArray, strict=True)
            ]
    return []


def model_inputs(model: PipelineModel, customers_df: DataFrame) -> DataFrame:
    """``customer_id`` and one column per model feature, named after it, holding the value as the model's first
    stage makes it: numeric cast to double and log-transformed where configured (missing values still null,
    before imputation), categorical as text with null as :data:`MISSING_CATEGORY`."""
    seen_df = model.stages[0].transform(customers_df)
    numeric = [F.col(quote(_num(f))).alias(f) for f in model_numeric_features(model)]
    categorical = [F.col(quote(_cat(f))).alias(f) for f, _ in model_categorical_features(model)]
    return seen_df.select(CUSTOMER_ID, *numeric, *categorical)


def _feature_of(column: str) -> str:
    """The feature a ``_num_``/``_imp_``/``_win_`` column was made from (the inverse of those names)."""
    for prefix in (_num(""), _imp(""), _win("")):
        if column.startswith(prefix):
            return column[len(prefix) :]
    raise ValueError(f"{column!r} is not a column this model names")

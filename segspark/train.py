"""The train stage: sweep K, choose it with evidence, fit and save the model, write the segment tables.

Plan:

1. Read the training customers: one ``customer_features`` snapshot (joined to an attribute table when one
   is configured) or, in attribute-only mode, the attribute table. Check the feature columns and values.
2. Lay customers out deterministically (hash partitions on ``customer_id``, sorted within each), so every
   seeded step (k-means|| sampling, medians, samples) sees the same data in the same order whatever the
   input's file layout.
3. Fit the preprocessing (impute, encode, scale, optional PCA) on all customers; cache the model-space
   vectors once. The sweep runs on them, or on a seeded sample of ``sample_size`` customers.
4. Per (algorithm, K): fit, then measure WSSSE, MLlib's silhouette, a Euclidean silhouette on a bounded
   sample, Davies-Bouldin, Calinski-Harabasz, segment sizes, stability across seeds, and the silhouette the
   same fit reaches on a structureless reference. :func:`segspark.evaluation.choose` decides.
5. Fit the chosen candidate on all customers, number segments stably, save one PipelineModel, and write
   ``customer_segments``, ``segment_centroids`` and ``model_selection``.

Only small results reach the driver: K-row statistics, K x K contingency tables, the silhouette sample.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import StandardScalerModel
from pyspark.ml.linalg import Vectors
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy.optimize import linear_sum_assignment

from segspark import lakehouse, progress
from segspark.compat import try_cast
from segspark.config import AttributeSource, Config, ModelSettings
from segspark.errors import ConfigError, InputError, ReconciliationError, SchemaError
from segspark.evaluation import (
    Candidate,
    ClusterStats,
    adjusted_rand_index,
    calinski_harabasz,
    choose,
    davies_bouldin,
    elbow_knee,
    euclidean_silhouette,
)
from segspark.model import (
    FEATURES_COL,
    PREDICTION_COL,
    SCALED_COL,
    Preprocessing,
    assemble_model,
    assign_segments,
    cluster_centers,
    describe_slots,
    distance_to,
    fit_best,
    fit_pca,
    iterations,
    preprocessing_pipeline,
    quote,
    save_model,
    standardised_offset,
    to_original_units,
    to_standardised,
)
from segspark.schemas import (
    AS_OF_DATE,
    CUSTOMER_ID,
    CUSTOMER_SEGMENTS,
    MODEL_SELECTION,
    MODEL_VERSION,
    RUN_ID,
    SEGMENT_CENTROIDS,
    SEGMENT_ID,
)

log = logging.getLogger("segspark")

_NUMBER_TYPES = (T.NumericType, T.BooleanType, T.StringType)


# ---------------------------------------------------------------------------------------------------------
# 1. Training input


#: Where each row of an attribute table without an id column is in its files, while its rows are numbered.
_FILE, _BLOCK, _POSITION = "_file_path", "_file_block_start", "_position_in_block"


def read_attribute_table(spark: SparkSession, source: AttributeSource) -> DataFrame:
    """The attribute table as stored; without an id column (``customer_id`` null) each row also carries where it
    is: ``_file_path``, ``_file_block_start`` (the byte offset of the split that read it) and
    ``_position_in_block`` (increasing in reading order within a split).

    The position must be taken here, on the scan itself: ``monotonically_increasing_id`` counts rows per
    partition as they are read, and a split is read in file order within one partition. Across splits it
    says nothing (Spark packs splits of several files into one partition, largest first), so the split's
    path and offset order those.
    """
    table_df = lakehouse.read_input(spark, source.format, source.path, source.csv_options, "attribute table")
    if source.customer_id is not None:
        return table_df
    try:
        return table_df.select(
            "*",
            F.col("_metadata.file_path").alias(_FILE),
            F.col("_metadata.file_block_start").alias(_BLOCK),
            F.monotonically_increasing_id().alias(_POSITION),
        )
    except AnalysisException:
        raise SchemaError(
            f"attribute table '{source.path}' has no id column (model.attributes.customer_id is null) and is not "
            "read from files, so its rows have no file order to be numbered by; name its id column"
        ) from None


def with_file_order_ids(located_df: DataFrame) -> DataFrame:
    """Number rows 1, 2, ... in file order (files by path, then position in the file) as text ``customer_id``.

    Input columns: ``_file_path``, ``_file_block_start``, ``_position_in_block`` (from
    :func:`read_attribute_table`) and the table's own columns. Output: ``customer_id`` then the table's own
    columns. Deterministic for the same files however Spark splits them: a row's number is the rows in
    earlier splits (by path and offset) plus its rank within its split, and neither depends on which
    partition read which split. No row is moved to one partition: ranks are computed per split, and only
    the per-split row counts (one row per split) are summed in one ordered window.
    """
    block = [F.col(_FILE), F.col(_BLOCK)]
    own = [c for c in located_df.columns if c not in (_FILE, _BLOCK, _POSITION)]
    in_block = (
        Window.partitionBy(*block).orderBy(_POSITION).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    ranked_df = located_df.withColumn("_rank", F.row_number().over(in_block))
    earlier = Window.orderBy(*block).rowsBetween(Window.unboundedPreceding, -1)
    offsets_df = (
        located_df.groupBy(*block)
        .agg(F.count(F.lit(1)).alias("_rows"))
        .select(*block, F.coalesce(F.sum("_rows").over(earlier), F.lit(0)).alias("_offset"))
    )
    return ranked_df.join(F.broadcast(offsets_df), on=[_FILE, _BLOCK], how="inner").select(
        (F.col("_offset") + F.col("_rank")).cast("string").alias(CUSTOMER_ID), *[F.col(quote(c)) for c in own]
    )


def as_of_value(table_df: DataFrame, column: str) -> Column:
    """The snapshot date column as a date: a date as it is, a timestamp's date, text parsed as yyyy-MM-dd (null
    where it does not parse)."""
    data_type = table_df.schema[column].dataType
    value = F.col(quote(column))
    if isinstance(data_type, T.DateType):
        return value
    if isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        return F.to_date(value)
    if isinstance(data_type, T.StringType):
        return try_cast(F.trim(value), "date")
    raise SchemaError(
        f"attribute table column '{column}' (model.attributes.as_of_column) must be a date, a timestamp or "
        f"yyyy-MM-dd text, not {data_type.simpleString()}"
    )


def attributes_as_of(table_df: DataFrame, source: AttributeSource, requested: dt.date | None) -> dt.date:
    """The snapshot date of an attribute-only run: from the table's date column, else ``--as-of``.

    Never the clock: a rerun on the same files must write the same tables. One aggregate row is read.
    Raises ConfigError when the date cannot be decided (no date column and no ``--as-of``; several dates and
    no ``--as-of``; an ``--as-of`` the column does not hold) and InputError for rows without a date.
    """
    column = source.as_of_column
    if column is None or column not in table_df.columns:
        if requested is None:
            where = (
                "model.attributes.as_of_column is null"
                if column is None
                else f"the attribute table has no '{column}' column (model.attributes.as_of_column)"
            )
            raise ConfigError(
                f"attribute-only mode needs a snapshot date and {where}: pass --as-of YYYY-MM-DD (the date is "
                "never taken from the clock, so that reruns on the same files write the same tables)"
            )
        return requested
    value = as_of_value(table_df, column)
    row = table_df.agg(
        F.count(F.when(value.isNull(), 1)).alias("undated"),
        F.countDistinct(value).alias("dates"),
        F.min(value).alias("first"),
        F.max(value).alias("last"),
        F.count(F.when(value == F.lit(requested), 1)).alias("requested"),
    ).first()  # one row
    what = f"attribute table '{source.path}' column '{column}' (model.attributes.as_of_column)"
    if row["undated"]:
        raise InputError(f"{what}: {row['undated']:,} row(s) have no date (null, or text that is not yyyy-MM-dd)")
    if row["dates"] == 0:
        if requested is None:
            raise InputError(f"{what}: the table has no rows, so no snapshot date; pass --as-of")
        return requested
    span = f"{row['dates']:,} distinct date(s), {row['first']} to {row['last']}"
    if requested is not None:
        if not row["requested"]:
            raise ConfigError(f"--as-of {requested} is not a date in {what}: it holds {span}")
        return requested
    if row["dates"] > 1:
        raise ConfigError(f"{what} holds {span}: choose the snapshot with --as-of YYYY-MM-DD")
    return row["first"]


def customer_attributes(table_df: DataFrame, source: AttributeSource, as_of: dt.date | None = None) -> DataFrame:
    """``customer_id`` (text, trimmed; numbered in file order when the table has no id column) and the
    table's other columns; only the rows dated ``as_of`` when it is given and the table has the date column."""
    if as_of is not None and source.as_of_column is not None and source.as_of_column in table_df.columns:
        table_df = table_df.filter(as_of_value(table_df, source.as_of_column) == F.lit(as_of))
    if source.customer_id is None:
        if CUSTOMER_ID in table_df.columns:
            raise SchemaError(
                f"attribute table '{source.path}' has a '{CUSTOMER_ID}' column but model.attributes.customer_id "
                f"is null (no id column); set model.attributes.customer_id: {CUSTOMER_ID} to use it"
            )
        return with_file_order_ids(table_df)
    if source.customer_id not in table_df.columns:
        raise SchemaError(
            f"attribute table '{source.path}' has no column '{source.customer_id}' (model.attributes.customer_id); "
            f"it has {table_df.columns}"
        )
    others = [F.col(quote(c)) for c in table_df.columns if c not in (source.customer_id, CUSTOMER_ID)]
    return table_df.select(F.trim(F.col(quote(source.customer_id)).cast("string")).alias(CUSTOMER_ID), *others)


def read_attributes(spark: SparkSession, settings: ModelSettings, as_of: dt.date | None = None) -> DataFrame:
    """The attribute table with its id column renamed to ``customer_id`` (as text, trimmed); see
    :func:`customer_attributes`."""
    source = settings.attributes
    return customer_attributes(read_attribute_table(spark, source), source, as_of)


def check_attribute_keys(attributes_df: DataFrame, path: str) -> None:
    """Every attribute row must name one customer, once: a null or repeated id cannot be segmented."""
    row = attributes_df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(F.col(CUSTOMER_ID).isNull() | (F.col(CUSTOMER_ID) == ""), 1)).alias("null_ids"),
        F.countDistinct(CUSTOMER_ID).alias("ids"),
    ).first()
    if row["null_ids"]:
        raise InputError(f"attribute table '{path}': {row['null_ids']:,} row(s) have no customer id")
    if row["ids"] != row["rows"]:
        example = attributes_df.groupBy(CUSTOMER_ID).count().filter("count > 1").first()[CUSTOMER_ID]
        raise InputError(
            f"attribute table '{path}': {row['rows'] - row['ids']:,} repeated customer id(s), e.g. {example!r}; "
            "it must hold one row per customer"
        )


def latest_snapshot(features_df: DataFrame) -> dt.date | None:
    """The latest as_of_date in customer_features (answered from partition values)."""
    return features_df.agg(F.max(AS_OF_DATE)).first()[0]


def training_input(spark: SparkSession, config: Config) -> tuple[DataFrame, dt.date]:
    """``customer_id`` plus every model feature column, one row per training customer, and its snapshot date."""
    settings = config.model
    wanted = settings.features
    requested = max(config.as_of_dates) if config.as_of_dates else None
    if settings.input == "attributes":
        source = settings.attributes
        table_df = read_attribute_table(spark, source)
        as_of = attributes_as_of(table_df, source, requested)
        attributes_df = customer_attributes(table_df, source, as_of)
        _require(attributes_df, wanted, f"attribute table '{source.path}'")
        if source.customer_id is not None:  # numbered ids are unique and present by construction
            check_attribute_keys(attributes_df, source.path)
        return attributes_df.select(CUSTOMER_ID, *[quote(c) for c in wanted]), as_of

    path = config.table_path("customer_features")
    if not lakehouse.table_exists(spark, path):
        raise InputError(f"no customer_features table at {path}: run 'segspark features' first")
    features_df = lakehouse.read_table(spark, path)
    as_of = requested or latest_snapshot(features_df)
    if as_of is None:
        raise InputError(f"customer_features at {path} is empty: run 'segspark features' first")
    snapshot_df = features_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
    from_features = [c for c in wanted if c in features_df.columns]
    rest = [c for c in wanted if c not in features_df.columns]
    customers_df = snapshot_df.select(CUSTOMER_ID, *[quote(c) for c in from_features])
    if settings.attributes.path is not None:
        attributes_df = read_attributes(spark, settings)
        check_attribute_keys(attributes_df, settings.attributes.path)
        _require(attributes_df, rest, f"customer_features or attribute table '{settings.attributes.path}'")
        # Left join: a customer without attributes keeps its transaction features; its attributes are imputed.
        customers_df = customers_df.join(
            attributes_df.select(CUSTOMER_ID, *[quote(c) for c in rest]), on=CUSTOMER_ID, how="left"
        )
    elif rest:
        raise SchemaError(
            f"model features {rest} are not customer_features columns and no attribute table is configured "
            f"(model.attributes.path); customer_features has {features_df.columns}"
        )
    return customers_df.select(CUSTOMER_ID, *[quote(c) for c in wanted]), as_of


def _require(df: DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"model feature column(s) {missing} not found in {what}; it has {df.columns}")


def with_deterministic_layout(customers_df: DataFrame, customers: int, rows_per_partition: int) -> DataFrame:
    """Hash-partition on customer_id and sort within partitions: the same rows in the same order every time.

    The partition count comes from the customer count (not the input's files or the cluster's cores), so
    seeded steps that work partition by partition (k-means|| sampling) repeat exactly.
    """
    partitions = max(1, math.ceil(customers / rows_per_partition))
    return customers_df.repartition(partitions, CUSTOMER_ID).sortWithinPartitions(CUSTOMER_ID)


@dataclass(frozen=True)
class FeatureProfile:
    customers: int
    numeric: list[str]
    categorical: list[str]
    constant: list[str]


def profile_features(customers_df: DataFrame, settings: ModelSettings) -> FeatureProfile:
    """Check feature types and values in one pass; drop numeric features that do not vary.

    Raises SchemaError for a non-numeric type, text that is not a number, or a feature with no values.
    """
    types = {f.name: f.dataType for f in customers_df.schema.fields}
    wrong = [
        f"{c} ({types[c].simpleString()})"
        for c in settings.numeric_features
        if not isinstance(types[c], _NUMBER_TYPES)
    ]
    if wrong:
        raise SchemaError(f"model.numeric_features must be numbers; these are not: {', '.join(wrong)}")
    aggs = [F.count(F.lit(1)).alias("_rows")]
    for i, c in enumerate(settings.numeric_features):
        value = try_cast(F.col(quote(c)), "double")
        aggs += [
            F.count(value).alias(f"n{i}"),
            F.min(value).alias(f"lo{i}"),
            F.max(value).alias(f"hi{i}"),
            F.count(F.when(F.col(quote(c)).isNotNull() & value.isNull(), 1)).alias(f"bad{i}"),
        ]
    for i, c in enumerate(settings.categorical_features):
        aggs.append(F.count(F.col(quote(c))).alias(f"c{i}"))
    row = customers_df.agg(*aggs).first()  # one row
    customers = int(row["_rows"])
    if customers == 0:
        return FeatureProfile(0, [], [], [])
    not_numbers = [f"{c} ({row[f'bad{i}']:,})" for i, c in enumerate(settings.numeric_features) if row[f"bad{i}"]]
    if not_numbers:
        raise SchemaError(f"numeric feature(s) hold text that is not a number (count): {', '.join(not_numbers)}")
    empty = [c for i, c in enumerate(settings.numeric_features) if row[f"n{i}"] == 0]
    empty += [c for i, c in enumerate(settings.categorical_features) if row[f"c{i}"] == 0]
    if empty:
        raise SchemaError(f"model feature(s) {empty} are null for every customer: nothing to impute from")
    constant = [c for i, c in enumerate(settings.numeric_features) if row[f"lo{i}"] == row[f"hi{i}"]]
    numeric = [c for c in settings.numeric_features if c not in constant]
    if not numeric and not settings.categorical_features:
        raise InputError(f"every model feature is constant ({constant}): there is nothing to segment on")
    return FeatureProfile(customers, numeric, list(settings.categorical_features), constant)


def check_k_range(settings: ModelSettings, customers: int, evaluated: int, what: str) -> None:
    """K must leave at least one customer per segment, in the data and in the sweep sample."""
    if customers == 0:
        raise InputError(f"{what} has no customers to segment")
    ks = settings.k_values()
    if ks[-1] > customers:
        key = "model.force_k" if settings.force_k == ks[-1] and settings.force_k > settings.k_max else "model.k_max"
        raise ConfigError(
            f"{key} asks for K={ks[-1]} but {what} has only {customers:,} customers; lower {key}"
        )
    if ks[-1] > evaluated:
        raise ConfigError(
            f"K={ks[-1]} is more than the {evaluated:,} customers model.sample_size lets the sweep use; "
            "raise model.sample_size or lower model.k_max"
        )


# ---------------------------------------------------------------------------------------------------------
# 3. Preprocessing and samples


def fit_preprocessing(customers_df: DataFrame, settings: ModelSettings, profile: FeatureProfile) -> Preprocessing:
    """Fit stages 1-5 of the model on all training customers."""
    pipeline_model = preprocessing_pipeline(settings, profile.numeric, profile.categorical).fit(customers_df)
    stages = list(pipeline_model.stages)
    slot_names, slot_sources = describe_slots(stages, profile.numeric, profile.categorical, settings)
    # Numeric slots come first and are standardised; one-hot slots are left as they are (mean 0, scale 1).
    scalers = [s for s in stages if isinstance(s, StandardScalerModel)]
    mean, std = np.zeros(len(slot_names)), np.ones(len(slot_names))
    if scalers:
        width = len(profile.numeric)
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
    return Preprocessing(stages, slot_names, slot_sources, mean, std, components)


def model_space(prep: Preprocessing, customers_df: DataFrame) -> DataFrame:
    """``customer_id``, ``features`` (model space) and ``_scaled`` (standardised, before any PCA)."""
    vectors_df = PipelineModel(stages=prep.stages).transform(customers_df)
    scaled = F.col(SCALED_COL) if prep.pca_components is not None else F.col(FEATURES_COL)
    return vectors_df.select(CUSTOMER_ID, FEATURES_COL, scaled.alias(SCALED_COL))


def hash_sample(df: DataFrame, size: int, seed: int, salt: str) -> DataFrame:
    """The ``size`` customers with the smallest seeded hash of their id: the same sample on any layout.

    Keeps the input's partitioning and order (a filter), so the sample stays deterministically laid out.
    """
    key = F.xxhash64(F.lit(seed), F.lit(salt), F.col(CUSTOMER_ID))
    threshold = df.select(key.alias("_h")).orderBy("_h").limit(size).agg(F.max("_h")).first()[0]
    return df.filter(key <= F.lit(threshold))


def collect_points(sample_df: DataFrame) -> tuple[list[str], np.ndarray]:
    """The silhouette sample on the driver (bounded by model.silhouette_sample_size), ordered by customer."""
    rows = sample_df.select(CUSTOMER_ID, FEATURES_COL).orderBy(CUSTOMER_ID).collect()  # <= silhouette_sample_size
    return [r[0] for r in rows], np.array([r[1].toArray() for r in rows])


def reference_frame(spark: SparkSession, points: np.ndarray, seed: int) -> tuple[DataFrame, np.ndarray]:
    """A structureless reference: as many points from one Gaussian with the sample's mean and covariance."""
    rng = np.random.default_rng(seed)
    covariance = np.atleast_2d(np.cov(points, rowvar=False))
    reference = rng.multivariate_normal(points.mean(axis=0), covariance, size=len(points), method="eigh")
    rows = [(f"r{i:06d}", Vectors.dense(r.tolist())) for i, r in enumerate(reference)]
    # One partition, rows in order: the same reference fit whatever the cluster's parallelism.
    return spark.createDataFrame(rows, [CUSTOMER_ID, FEATURES_COL]).coalesce(1), reference


def labels_of(model: Transformer, points_df: DataFrame) -> np.ndarray:
    """Cluster index of each point of a small frame, in customer_id order."""
    rows = model.transform(points_df).select(CUSTOMER_ID, PREDICTION_COL).orderBy(CUSTOMER_ID).collect()  # bounded
    return np.array([r[1] for r in rows])


# ---------------------------------------------------------------------------------------------------------
# 4. The sweep


def cluster_stats(
    predictions_df: DataFrame, centres: np.ndarray, column: str = FEATURES_COL
) -> tuple[ClusterStats, float]:
    """Per-cluster sizes, empirical means and spreads (two passes, K rows each), and the WSSSE to ``centres``."""
    first = (
        predictions_df.groupBy(PREDICTION_COL)
        .agg(F.count(F.lit(1)).alias("n"), Summarizer.mean(F.col(column)).alias("mean"))
        .collect()  # one row per non-empty cluster
    )
    first.sort(key=lambda r: r[PREDICTION_COL])
    index = [int(r[PREDICTION_COL]) for r in first]
    means = np.zeros((max(len(centres), max(index) + 1), len(first[0]["mean"])))
    for r in first:
        means[int(r[PREDICTION_COL])] = r["mean"].toArray()
    prediction = F.col(PREDICTION_COL)
    to_mean = distance_to(means, prediction, F.col(column))
    to_centre = distance_to(centres, prediction, F.col(column))
    second = {
        int(r[PREDICTION_COL]): r
        for r in predictions_df.groupBy(PREDICTION_COL)
        .agg(
            F.avg(to_mean).alias("spread"),
            F.sum(to_mean * to_mean).alias("wss"),
            F.sum(to_centre * to_centre).alias("cost"),
        )
        .collect()  # one row per non-empty cluster
    }
    stats = ClusterStats(
        counts=np.array([r["n"] for r in first], dtype=float),
        means=means[index],
        mean_distance=np.array([second[i]["spread"] for i in index]),
        within_ss=float(sum(second[i]["wss"] for i in index)),
    )
    return stats, float(sum(second[i]["cost"] for i in index))


def stability(base_df: DataFrame, repeats: list[Transformer], k: int) -> float | None:
    """Mean adjusted Rand index between the kept fit's assignments (``prediction`` in ``base_df``) and each
    repeat's; None without repeats."""
    if not repeats:
        return None
    scores = []
    renamed_df = base_df.select(CUSTOMER_ID, FEATURES_COL, F.col(PREDICTION_COL).alias("_base"))
    for repeat in repeats:
        cells = repeat.transform(renamed_df).groupBy("_base", PREDICTION_COL).count().collect()  # <= K x K rows
        table = np.zeros((k, k))
        for r in cells:
            table[int(r["_base"]), int(r[PREDICTION_COL])] = r["count"]
        scores.append(adjusted_rand_index(table))
    return float(np.mean(scores))


@dataclass(frozen=True)
class Evaluated:
    """One candidate's evidence, plus the figures written to model_selection only."""

    candidate: Candidate
    wssse: float
    mllib_silhouette: float | None
    davies_bouldin: float | None
    calinski_harabasz: float | None
    iterations: int | None
    converged: bool | None
    fit_seconds: float
    seconds: float


def evaluate_candidate(
    algorithm: str,
    k: int,
    sweep_df: DataFrame,
    sample: tuple[DataFrame, np.ndarray],
    reference: tuple[DataFrame, np.ndarray],
    settings: ModelSettings,
    seed: int,
) -> tuple[Evaluated, Transformer]:
    """Fit one (algorithm, K) on the sweep customers and measure everything model_selection records."""
    started = time.perf_counter()
    model = fit_best(algorithm, k, sweep_df, settings, seed)
    fit_seconds = time.perf_counter() - started
    centres = cluster_centers(model)
    predictions_df = model.transform(sweep_df).select(CUSTOMER_ID, FEATURES_COL, PREDICTION_COL)
    predictions_df = predictions_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats, wssse = cluster_stats(predictions_df, centres)
        found = len(stats.counts)
        mllib_silhouette = None
        if found >= 2:
            evaluator = ClusteringEvaluator(
                featuresCol=FEATURES_COL, predictionCol=PREDICTION_COL, distanceMeasure="squaredEuclidean"
            )
            mllib_silhouette = float(evaluator.evaluate(predictions_df))
        sample_df, points = sample
        silhouette = euclidean_silhouette(points, labels_of(model, sample_df))
        reference_df, reference_points = reference
        # The reference gets the same restarts, so a lucky or unlucky start favours neither side.
        reference_model = fit_best(algorithm, k, reference_df, settings, seed)
        reference_silhouette = euclidean_silhouette(reference_points, labels_of(reference_model, reference_df))
        repeats = [
            fit_best(algorithm, k, sweep_df, settings, seed + run * settings.restarts)
            for run in range(1, settings.stability_runs + 1)
        ]
        stable = stability(predictions_df, repeats, k)
    finally:
        predictions_df.unpersist()
    n_iter = iterations(model)
    candidate = Candidate(
        algorithm=algorithm,
        k=k,
        silhouette=silhouette,
        reference_silhouette=reference_silhouette,
        stability=stable,
        smallest_share=float(stats.counts.min() / stats.counts.sum()),
        segments_found=found,
    )
    evaluated = Evaluated(
        candidate=candidate,
        wssse=wssse,
        mllib_silhouette=mllib_silhouette,
        davies_bouldin=davies_bouldin(stats),
        calinski_harabasz=calinski_harabasz(stats),
        iterations=n_iter,
        converged=None if n_iter is None else n_iter < settings.max_iter,
        fit_seconds=fit_seconds,
        seconds=time.perf_counter() - started,
    )
    return evaluated, model


def sweep(
    sweep_df: DataFrame,
    sample: tuple[DataFrame, np.ndarray],
    reference: tuple[DataFrame, np.ndarray],
    settings: ModelSettings,
    seed: int,
) -> tuple[list[Evaluated], dict[tuple[str, int], Transformer]]:
    """Every (algorithm, K) evaluated, with elbows marked, and the fitted main models."""
    results, models = [], {}
    total = len(settings.algorithms) * len(settings.k_values())
    for algorithm in settings.algorithms:
        rows = []
        for k in settings.k_values():
            progress.step(f"sweep: {algorithm} K={k} (candidate {len(results) + len(rows) + 1} of {total})",
                          logged=False)
            evaluated, model = evaluate_candidate(algorithm, k, sweep_df, sample, reference, settings, seed)
            c = evaluated.candidate
            log.info(
                "  %s K=%d: silhouette %s (reference %s), stability %s, smallest segment %.1f%%, %.1f s",
                algorithm, k, _f(c.silhouette), _f(c.reference_silhouette), _f(c.stability),
                100 * c.smallest_share, evaluated.seconds,
            )
            rows.append(evaluated)
            models[(algorithm, k)] = model
        knee = elbow_knee([r.candidate.k for r in rows], [r.wssse for r in rows])
        results += [replace(r, candidate=replace(r.candidate, is_elbow=r.candidate.k == knee)) for r in rows]
    return results, models


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------------------------------------
# 5. Stable segment ids


@dataclass(frozen=True)
class PreviousModel:
    model_version: str
    segment_ids: list[int]
    centroids_original: np.ndarray  # (segments, slots) in this model's slot order


def previous_model(spark: SparkSession, config: Config, slot_names: list[str]) -> PreviousModel | None:
    """The latest saved model's centroids, if its features are this model's features (K rows read)."""
    path = config.table_path("segment_centroids")
    if not lakehouse.table_exists(spark, path):
        return None
    centroids_df = lakehouse.read_table(spark, path)
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
# The stage


@dataclass(frozen=True)
class TrainResult:
    model_version: str
    model_path: str
    as_of_date: dt.date
    customers: int
    chosen: Candidate
    candidates: list[Candidate]
    dropped_features: list[str]
    #: The attribute table had no id column: customer ids are row numbers in file order.
    ids_from_file_order: bool = False


def run_train(spark: SparkSession, config: Config, run_id: str, stage=None) -> TrainResult:
    """Sweep K, choose, fit on all customers, save the model and write the three segment tables."""
    settings = config.model
    seed = config.seed
    model_version = run_id
    input_df, as_of = training_input(spark, config)
    what = f"snapshot {as_of}" if settings.input == "features" else "the attribute table"
    profile = profile_features(input_df, settings)
    numbered = settings.input == "attributes" and settings.attributes.customer_id is None
    if numbered:
        log.info(
            "attribute table has no id column (model.attributes.customer_id is null): customers are numbered "
            "1..%d in file order",
            profile.customers,
        )
    if profile.constant:
        log.warning("features with one value for every customer are left out of the model: %s", profile.constant)
    n = profile.customers
    evaluated_n = min(n, settings.sample_size)
    check_k_range(settings, n, evaluated_n, what)

    layout = settings.rows_per_partition
    customers_df = with_deterministic_layout(input_df, n, layout).persist(StorageLevel.MEMORY_AND_DISK)
    cached: list[DataFrame] = [customers_df]
    try:

        progress.step("fitting the preprocessing (impute, encode, scale) on all customers", logged=False)
        prep = fit_preprocessing(customers_df, settings, profile)
        vectors_df = model_space(prep, customers_df).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(vectors_df)
        sweep_df = vectors_df
        if n > settings.sample_size:
            sweep_df = with_deterministic_layout(
                hash_sample(vectors_df, settings.sample_size, seed, "sweep"), evaluated_n, layout
            ).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(sweep_df)
        sample_df = sweep_df
        if evaluated_n > settings.silhouette_sample_size:
            sample_df = hash_sample(sweep_df, settings.silhouette_sample_size, seed, "silhouette")
        sample_df = sample_df.select(CUSTOMER_ID, FEATURES_COL).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(sample_df)
        _, points = collect_points(sample_df)
        reference_df, reference_points = reference_frame(spark, points, seed)
        reference_df = reference_df.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(reference_df)

        log.info(
            "train: %s customers (%s in the sweep, %s in the silhouette sample), %d model dimensions, K %s, %s",
            f"{n:,}", f"{evaluated_n:,}", f"{len(points):,}", points.shape[1],
            ",".join(map(str, settings.k_values())), ", ".join(settings.algorithms),
        )
        results, models = sweep(sweep_df, (sample_df, points), (reference_df, reference_points), settings, seed)
        decided = choose([r.candidate for r in results], settings)
        chosen = next(c for c in decided if c.is_chosen)

        final = models[(chosen.algorithm, chosen.k)]
        if sweep_df is not vectors_df:
            progress.step(f"fitting {chosen.algorithm} K={chosen.k} on all {n:,} customers")
            final = fit_best(chosen.algorithm, chosen.k, vectors_df, settings, seed)
        segments = segment_table(final, vectors_df, prep)
        previous = previous_model(spark, config, prep.slot_names) if settings.match_previous else None
        ids, distances = number_segments(segments.standardised, segments.counts, prep, previous)
        mapping = dict(zip(segments.predictions, ids, strict=True))
        model = assemble_model(prep, final, mapping)
        model_path = config.model_path(model_version)

        now = dt.datetime.now(dt.UTC)
        # The model and the three tables change together or not at all: on any failure each table goes back
        # to its version before and the model folder is removed.
        tables = ["customer_segments", "segment_centroids", "model_selection"]
        before = {t: lakehouse.current_version(spark, config.table_path(t)) for t in tables}
        try:
            save_model(model, model_path)
            progress.step("writing customer_segments, segment_centroids and model_selection")
            written = write_segments(model, customers_df, as_of, model_version, run_id, config)
            if written != n:
                raise ReconciliationError(f"customer_segments wrote {written:,} rows for {n:,} customers")
            write_centroids(
                spark, config, segments, ids, distances, prep, chosen, as_of, model_version, run_id, now,
                previous.model_version if previous is not None else None, settings.features,
            )
            write_selection(
                spark, config, results, decided, n, evaluated_n, len(points), as_of, model_version, run_id, now
            )
        except Exception:
            for t in tables:
                lakehouse.restore(spark, config.table_path(t), before[t])
            # No table names this model: leaving it would be an orphan folder under models/.
            lakehouse.delete_path(spark, model_path)
            log.error("train failed: segment tables restored, model %s removed", model_version)
            raise
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
    return TrainResult(model_version, model_path, as_of, n, chosen, decided, profile.constant, numbered)


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


def write_segments(
    model: PipelineModel, customers_df: DataFrame, as_of: dt.date, model_version: str, run_id: str, config: Config
) -> int:
    """Score the training customers with the assembled model into their customer_segments partition."""
    segments_df = (
        assign_segments(model, customers_df)
        .withColumn(AS_OF_DATE, F.lit(as_of))
        .withColumn(MODEL_VERSION, F.lit(model_version))
        .withColumn(RUN_ID, F.lit(run_id))
    )
    result = lakehouse.write_table(
        segments_df,
        config.table_path("customer_segments"),
        CUSTOMER_SEGMENTS,
        replace_where=f"{AS_OF_DATE} = DATE'{as_of.isoformat()}'",
    )
    return result.rows_written


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
                model_version, segment_id, chosen.algorithm, chosen.k, as_of, int(segments.counts[i]),
                float(segments.counts[i] / total),
                {s: float(v) for s, v in zip(prep.slot_names, standardised, strict=True)},
                {s: float(v) for s, v in zip(prep.slot_names, original, strict=True)},
                list(feature_columns), previous_version if distances[i] is not None else None, distances[i],
                run_id, now,
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
                run_id, model_version, as_of, c.algorithm, c.k, n, evaluated_n, float(r.wssse),
                _finite(r.mllib_silhouette), _finite(c.silhouette), sample_n, _finite(c.reference_silhouette),
                _finite(r.davies_bouldin), _finite(r.calinski_harabasz), c.segments_found, c.smallest_share,
                _finite(c.stability), r.iterations, r.converged, c.is_elbow, r.fit_seconds, r.seconds,
                c.structure, c.is_chosen, c.reason, now,
            )
        )
    df = spark.createDataFrame(rows, MODEL_SELECTION.schema)
    lakehouse.write_table(df, config.table_path("model_selection"), MODEL_SELECTION, mode="append")

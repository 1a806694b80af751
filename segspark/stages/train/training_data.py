"""Training input: the customers the train stage segments, checked, and laid out and sampled deterministically.

- :func:`training_input`: one ``customer_features`` snapshot (joined to an attribute table when one is
  configured) or, in attribute-only mode, the attribute table at one snapshot date.
- :func:`check_features`: feature types and values checked in one pass; constant features left out.
- :func:`with_deterministic_layout` and :func:`hash_sample`: the same rows in the same order, and the same
  samples, whatever the input's file layout or the cluster's cores.
- :func:`sweep_arrays`: the bounded sweep sample on the driver, with its silhouette sample and reference.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import numpy as np
from pyspark.errors import AnalysisException
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import AttributeSource, Config, ModelSettings
from segspark.contracts.schemas import AS_OF_DATE, CUSTOMER_ID
from segspark.errors import ConfigError, InputError, SchemaError
from segspark.maths.local_fits import SweepData, reference_points
from segspark.platform import lakehouse, privacy, publication
from segspark.platform.compat import try_cast
from segspark.segmentation.model import FEATURES_COL, quote
from segspark.segmentation.sampling import SILHOUETTE_SAMPLE, sample_key
from segspark.segmentation.scoring import latest_snapshot

__all__ = [
    "CheckedFeatures",
    "as_of_value",
    "attributes_as_of",
    "check_attribute_keys",
    "check_features",
    "check_k_range",
    "customer_attributes",
    "read_attribute_table",
    "read_attributes",
    "sweep_arrays",
    "training_input",
    "with_deterministic_layout",
    "with_file_order_ids",
]

log = logging.getLogger("segspark")

_NUMBER_TYPES = (T.NumericType, T.BooleanType, T.StringType)


# ---------------------------------------------------------------------------------------------------------
# Reading and checking


def _attribute_path(source: AttributeSource) -> str:
    """``model.attributes.path``, or ConfigError saying it is needed (the config already checks attribute mode)."""
    if source.path is None:
        raise ConfigError("config key 'model.attributes.path' is not set: the attribute table has no path")
    return source.path


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
    path = _attribute_path(source)
    table_df = lakehouse.read_input(spark, source.format, path, source.csv_options, "attribute table")
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
    in_block = Window.partitionBy(*block).orderBy(_POSITION).rowsBetween(Window.unboundedPreceding, Window.currentRow)
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
    row = lakehouse.one_row(
        table_df.agg(
            F.count(F.when(value.isNull(), 1)).alias("undated"),
            F.countDistinct(value).alias("dates"),
            F.min(value).alias("first"),
            F.max(value).alias("last"),
            F.count(F.when(value == F.lit(requested), 1)).alias("requested"),
        ),
        "a global aggregate of the training input",
    )
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
    only: dt.date = row["first"]
    return only


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
    row = lakehouse.one_row(
        attributes_df.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(F.col(CUSTOMER_ID).isNull() | (F.col(CUSTOMER_ID) == ""), 1)).alias("null_ids"),
            F.countDistinct(CUSTOMER_ID).alias("ids"),
        ),
        "a global aggregate of the training input",
    )
    if row["null_ids"]:
        raise InputError(f"attribute table '{path}': {row['null_ids']:,} row(s) have no customer id")
    if row["ids"] != row["rows"]:
        # With no null or empty id, fewer distinct ids than rows means some id repeats: there is an example.
        repeated = attributes_df.groupBy(CUSTOMER_ID).count().filter("count > 1").first()
        example = "" if repeated is None else f", e.g. {repeated[CUSTOMER_ID]!r}"
        raise InputError(
            f"attribute table '{path}': {row['rows'] - row['ids']:,} repeated customer id(s){example}; "
            "it must hold one row per customer"
        )


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
            check_attribute_keys(attributes_df, _attribute_path(source))
        ids = privacy.pseudonymised(F.col(CUSTOMER_ID), privacy.id_key(config.privacy)).alias(CUSTOMER_ID)
        return attributes_df.select(ids, *[quote(c) for c in wanted]), as_of

    path = config.table_path("customer_features")
    features_df = publication.read_published(spark, config, "customer_features")
    snapshot = requested or latest_snapshot(features_df)
    if snapshot is None:
        raise InputError(f"customer_features at {path} is empty: run 'segspark features' first")
    snapshot_df = features_df.filter(F.col(AS_OF_DATE) == F.lit(snapshot))
    from_features = [c for c in wanted if c in features_df.columns]
    rest = [c for c in wanted if c not in features_df.columns]
    customers_df = snapshot_df.select(CUSTOMER_ID, *[quote(c) for c in from_features])
    if settings.attributes.path is not None:
        attributes_df = read_attributes(spark, settings)
        check_attribute_keys(attributes_df, settings.attributes.path)
        _require(attributes_df, rest, f"customer_features or attribute table '{settings.attributes.path}'")
        # Left join: a customer without attributes keeps its transaction features; its attributes are imputed.
        # Under privacy.pseudonymise_ids, customer_features holds pseudonyms: the attribute ids join as such.
        ids = privacy.pseudonymised(F.col(CUSTOMER_ID), privacy.id_key(config.privacy)).alias(CUSTOMER_ID)
        customers_df = customers_df.join(
            attributes_df.select(ids, *[quote(c) for c in rest]), on=CUSTOMER_ID, how="left"
        )
    elif rest:
        raise SchemaError(
            f"model features {rest} are not customer_features columns and no attribute table is configured "
            f"(model.attributes.path); customer_features has {features_df.columns}"
        )
    return customers_df.select(CUSTOMER_ID, *[quote(c) for c in wanted]), snapshot


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
class CheckedFeatures:
    """Train's input after the type and value check: its customers and the features by kind.

    ``numeric`` holds the numeric features that vary, ``constant`` those that do not (dropped from the model).
    """

    customers: int
    numeric: list[str]
    categorical: list[str]
    constant: list[str]


def check_features(customers_df: DataFrame, settings: ModelSettings) -> CheckedFeatures:
    """Check feature types and values in one pass; drop numeric features that do not vary.

    Raises SchemaError for a non-numeric type, text that is not a number, or a feature with no values.
    """
    types = {f.name: f.dataType for f in customers_df.schema.fields}
    wrong = [
        f"{c} ({types[c].simpleString()})" for c in settings.numeric_features if not isinstance(types[c], _NUMBER_TYPES)
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
    row = lakehouse.one_row(customers_df.agg(*aggs), "a global aggregate of the training input")
    customers = int(row["_rows"])
    if customers == 0:
        return CheckedFeatures(0, [], [], [])
    if customers == 1:  # before the constant check: with one customer every feature is constant
        raise InputError("there is only 1 customer to segment: segments need at least 2 customers")
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
    return CheckedFeatures(customers, numeric, list(settings.categorical_features), constant)


def check_k_range(settings: ModelSettings, customers: int, evaluated: int, what: str) -> None:
    """K must leave at least one customer per segment, in the data and in the sweep sample."""
    if customers == 0:
        raise InputError(f"{what} has no customers to segment")
    ks = settings.k_values()
    if settings.k_min > customers:
        raise ConfigError(
            f"model.k_min is {settings.k_min} but {what} has only {customers:,} customers: lower model.k_min "
            "(every segment needs a customer)"
        )
    if ks[-1] > customers:
        key = "model.force_k" if settings.force_k == ks[-1] and settings.force_k > settings.k_max else "model.k_max"
        raise ConfigError(f"{key} asks for K={ks[-1]} but {what} has only {customers:,} customers; lower {key}")
    if ks[-1] > evaluated:
        raise ConfigError(
            f"K={ks[-1]} is more than the {evaluated:,} customers model.sample_size lets the sweep use; "
            "raise model.sample_size or lower model.k_max"
        )


# ---------------------------------------------------------------------------------------------------------
# Samples


def sweep_arrays(sweep_df: DataFrame, silhouette_sample_size: int, seed: int) -> tuple[list[str], SweepData]:
    """The sweep customers' vectors on the driver, ordered by customer_id (bounded by model.sample_size),
    the silhouette sample (the ``silhouette_sample_size`` smallest seeded hashes of the id, as
    :func:`hash_sample` picks them) and a structureless reference.
    """
    pdf = (
        sweep_df.select(
            CUSTOMER_ID,
            sample_key(seed, SILHOUETTE_SAMPLE).alias("_h"),
            vector_to_array(F.col(FEATURES_COL)).alias("_v"),
        )
        .orderBy(CUSTOMER_ID)
        .toPandas()  # <= model.sample_size rows
    )
    points = np.array(pdf["_v"].tolist(), dtype=float).reshape(len(pdf), -1)
    rows = np.arange(len(points))
    if len(points) > silhouette_sample_size:
        rows = np.sort(np.argsort(pdf["_h"].to_numpy(), kind="stable")[:silhouette_sample_size])
    return pdf[CUSTOMER_ID].tolist(), SweepData(points, rows, reference_points(points[rows], seed))

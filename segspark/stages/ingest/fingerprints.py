"""Repeated and earlier-seen source lines, found by fingerprint: the distinct rows ingest checks once each.

A row's fingerprint is a 64-bit hash of its text and of which of its columns are null. Only the rows whose
fingerprint repeats are grouped by their full text, counting copies (:data:`COPIES`), so a collision keeps two
different rows apart and every other row is distinct with one copy. A second hash chained from another seed
makes 128 bits with the first: the key ``ingest_fingerprints`` stores per text and file, by which an incremental
run finds the texts earlier runs ingested (:data:`SEEN_LATEST`). Source columns are read by their exact names
(:func:`source_column`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.contracts.schemas import INVOICE_TS, REJECT_REASON

__all__ = [
    "BROADCAST_REPEATS",
    "COPIES",
    "FINGERPRINT",
    "SEEN_LATEST",
    "batch_fingerprints",
    "count_identical_rows",
    "distinct_rows",
    "repeated_fingerprints",
    "repeated_in_batch",
    "repeated_rows",
    "row_fingerprint",
    "row_fingerprint2",
    "seen_before",
    "source_column",
    "unique_rows",
    "with_earlier_duplicates",
    "with_seen_latest",
]

#: Internal column holding how many identical source rows a distinct row stands for.
COPIES = "_copies"
#: Internal column holding a row's fingerprint: a 64-bit hash of its text (with where its nulls are).
FINGERPRINT = "__fingerprint"
#: Repeated fingerprints up to this many are broadcast to every task; more are joined by a shuffle.
BROADCAST_REPEATS = 1_000_000


def source_column(name: str) -> Column:
    """A source column by its exact name, even if it has dots, spaces or backticks."""
    return F.col("`" + name.replace("`", "``") + "`")


def count_identical_rows(text_df: DataFrame) -> DataFrame:
    """One row per distinct source row, with ``_copies``: how many source rows are identical to it."""
    return text_df.groupBy(*[source_column(c) for c in text_df.columns]).agg(F.count(F.lit(1)).alias(COPIES))


def row_fingerprint(columns: list[str]) -> Column:
    """A 64-bit hash of a row's text columns and of which of them are null (xxhash64 alone skips nulls)."""
    cols = [source_column(c) for c in columns]
    return F.xxhash64(*cols, F.array(*[c.isNull() for c in cols]))


def repeated_fingerprints(text_df: DataFrame) -> DataFrame:
    """The fingerprints that more than one source row has (a shuffle of 8-byte keys, not of rows)."""
    return (
        text_df.select(row_fingerprint(text_df.columns).alias(FINGERPRINT))
        .groupBy(FINGERPRINT)
        .count()
        .where(F.col("count") > 1)
        .select(FINGERPRINT)
    )


def row_fingerprint2(columns: list[str]) -> Column:
    """A second 64-bit hash of the same, chained from another seed: with :func:`row_fingerprint`, 128 bits."""
    cols = [source_column(c) for c in columns]
    return F.xxhash64(F.lit("segspark"), *cols, F.array(*[c.isNull() for c in cols]))


def batch_fingerprints(keyed_df: DataFrame, path_column: str) -> DataFrame:
    """One row per distinct (text, file) of a batch: ``fingerprint, fingerprint2, path, copies``.

    ``keyed_df``: the text columns and ``path_column`` (the file each line came from). A shuffle of two 8-byte
    keys and a path, not of rows; these rows are the ``ingest_fingerprints`` of the run.
    """
    text_columns = [c for c in keyed_df.columns if c != path_column]
    return (
        keyed_df.select(
            row_fingerprint(text_columns).alias("fingerprint"),
            row_fingerprint2(text_columns).alias("fingerprint2"),
            F.col(path_column).alias("path"),
        )
        .groupBy("fingerprint", "fingerprint2", "path")
        .agg(F.count(F.lit(1)).alias("copies"))
    )


def repeated_in_batch(batch_df: DataFrame) -> DataFrame:
    """The fingerprints more than one line of the batch has (across its files), as :data:`FINGERPRINT`."""
    return (
        batch_df.groupBy("fingerprint")
        .agg(F.sum("copies").alias("copies"))
        .where(F.col("copies") > 1)
        .select(F.col("fingerprint").alias(FINGERPRINT))
    )


def seen_before(history_df: DataFrame, batch_df: DataFrame) -> DataFrame:
    """The batch's distinct texts that earlier runs ingested, with ``seen_latest``: the latest
    ``latest_timestamp`` of those runs (a line no later than it was clean, or a duplicate, back then)."""
    keys = batch_df.select("fingerprint", "fingerprint2").distinct()
    return (
        history_df.join(keys, ["fingerprint", "fingerprint2"], "left_semi")
        .groupBy("fingerprint", "fingerprint2")
        .agg(F.max("latest_timestamp").alias("seen_latest"))
    )


#: Internal column: the latest bound of the earlier runs that ingested the row's text (null when none did).
SEEN_LATEST = "__seen_latest"


def with_seen_latest(distinct_df: DataFrame, seen: DataFrame | None, broadcast: bool) -> DataFrame:
    """Add :data:`SEEN_LATEST` to distinct source rows (all null when ``seen`` is None)."""
    if seen is None:
        return distinct_df.withColumn(SEEN_LATEST, F.lit(None).cast(T.TimestampType()))
    text_columns = [c for c in distinct_df.columns if c != COPIES]
    flagged = seen.select(
        F.col("fingerprint").alias(FINGERPRINT),
        F.col("fingerprint2").alias("__fingerprint2"),
        F.col("seen_latest").alias(SEEN_LATEST),
    )
    keyed = distinct_df.withColumn(FINGERPRINT, row_fingerprint(text_columns)).withColumn(
        "__fingerprint2", row_fingerprint2(text_columns)
    )
    joined = keyed.join(F.broadcast(flagged) if broadcast else flagged, [FINGERPRINT, "__fingerprint2"], "left")
    return joined.drop(FINGERPRINT, "__fingerprint2")


def with_earlier_duplicates(parsed_df: DataFrame) -> DataFrame:
    """``reject_reason`` ``duplicate`` for valid rows an earlier run ingested while they were valid.

    Such a row had a clean copy then (or was a duplicate of one), so every copy now is a duplicate. A row that
    was rejected then for its own reason is rejected again for it (the checks see the same text), and one that
    was ``future_timestamp`` then but is valid now is clean now.
    """
    is_earlier = F.col(SEEN_LATEST).isNotNull() & (F.col(f"__{INVOICE_TS}") <= F.col(SEEN_LATEST))
    reason = F.coalesce(F.col(REJECT_REASON), F.when(is_earlier, F.lit("duplicate")))
    return parsed_df.withColumn(REJECT_REASON, F.when(F.spark_partition_id() >= 0, reason))


def repeated_rows(text_df: DataFrame, repeated: DataFrame, broadcast: bool) -> DataFrame:
    """The rows whose fingerprint is in ``repeated``, one per distinct text, with ``_copies``.

    As small as the repeated lines: the stage caches it, so the writes that follow read the source once each.
    """
    flagged = F.broadcast(repeated) if broadcast else repeated
    keyed = text_df.withColumn(FINGERPRINT, row_fingerprint(text_df.columns))
    return count_identical_rows(keyed.join(flagged, FINGERPRINT, "left_semi").drop(FINGERPRINT))


def unique_rows(text_df: DataFrame, repeated: DataFrame | None, broadcast: bool) -> DataFrame:
    """The rows whose fingerprint no other row has (all rows when ``repeated`` is None), with one copy each."""
    if repeated is not None:
        flagged = F.broadcast(repeated) if broadcast else repeated
        keyed = text_df.withColumn(FINGERPRINT, row_fingerprint(text_df.columns))
        text_df = keyed.join(flagged, FINGERPRINT, "left_anti").drop(FINGERPRINT)
    return text_df.withColumn(COPIES, F.lit(1).cast(T.LongType()))


def distinct_rows(
    text_df: DataFrame, repeated: DataFrame, broadcast: bool, grouped: DataFrame | None = None
) -> DataFrame:
    """One row per distinct source row with ``_copies``, as :func:`count_identical_rows`, grouping only the
    rows whose fingerprint is in ``repeated``; every other row is distinct and has one copy.

    ``grouped``: :func:`repeated_rows` computed (and cached) already; when None it is computed here, and
    each action on the result then reads the source twice.
    """
    if grouped is None:
        grouped = repeated_rows(text_df, repeated, broadcast)
    return unique_rows(text_df, repeated, broadcast).unionByName(grouped)

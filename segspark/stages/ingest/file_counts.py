"""Each source file's lines of one ingest batch: in, clean and rejected by reason (``ingested_files``).

Ingest judges distinct line texts, not files, so a file's counts come from joining two small things after the
writes: the batch's fingerprint rows (per text and file, how many copies; ``ingest_fingerprints``) and the
batch's rejected texts (per text, its reason and how many of its copies were rejected), cached while the
rejected lines were written. A text that is not rejected has one copy and it is clean. A text rejected for a
reason of its own is rejected for it in every file that holds it. A valid text repeated in the batch has one
clean copy, and it is counted in the first of the files holding it, by path; every other copy is a
``duplicate`` (a text an earlier batch ingested has no clean copy in this one). The sums over the files are
checked against the tables' own counts, so a file's figures cannot drift from what was written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from segspark.contracts.schemas import INGESTED_AT, INGESTED_FILES, REJECT_REASON, REJECT_REASONS, RUN_ID
from segspark.errors import ReconciliationError
from segspark.stages.ingest.deliveries import SourceFile, reader_path
from segspark.stages.ingest.fingerprints import BROADCAST_REPEATS, row_fingerprint, row_fingerprint2
from segspark.stages.ingest.rules import REJECTED_COPIES, rejected_texts

__all__ = [
    "FileLines",
    "cached_rejected_texts",
    "check_file_counts",
    "file_counts",
    "ingested_file_rows",
    "lines_per_file",
    "rejected_keys",
]

_KEY = ["fingerprint", "fingerprint2"]

#: One file's lines: (lines in, clean, rejected per reason with every reason).
FileLines = tuple[int, int, dict[str, int]]


def rejected_keys(texts: DataFrame, source_columns: list[str]) -> DataFrame:
    """The batch's rejected texts (:func:`~segspark.stages.ingest.rules.rejected_texts`) as their fingerprints
    (the keys ``ingest_fingerprints`` holds), reason and rejected copies: ``fingerprint, fingerprint2,
    reject_reason, rejected``."""
    return texts.select(
        row_fingerprint(source_columns).alias("fingerprint"),
        row_fingerprint2(source_columns).alias("fingerprint2"),
        F.col(REJECT_REASON),
        F.col(REJECTED_COPIES).alias("rejected"),
    )


def file_counts(fingerprints: DataFrame, keys: DataFrame, broadcast: bool) -> DataFrame:
    """One row per file of the batch: ``path, lines_in, lines_clean`` and ``rejected:<reason>`` per reason.

    ``fingerprints``: the batch's ``ingest_fingerprints`` rows (``fingerprint, fingerprint2, path, copies``);
    ``keys``: :func:`rejected_keys`; ``broadcast`` it when it is small.
    """
    lines = fingerprints.join(F.broadcast(keys) if broadcast else keys, _KEY, "left")
    # Only rejected texts need the window over their files (their rows are as few as the rejected lines).
    text = Window.partitionBy(*_KEY)
    repeated = (
        lines.where(F.col(REJECT_REASON).isNotNull())
        .withColumn("__total", F.sum("copies").over(text))
        .withColumn("__first", F.min("path").over(text))
    )
    has_clean_copy = (
        (F.col(REJECT_REASON) == "duplicate")
        & (F.col("rejected") < F.col("__total"))
        & (F.col("path") == F.col("__first"))
    )
    clean_here = F.when(has_clean_copy, 1).otherwise(0).cast("long")
    judged = repeated.select("path", "copies", clean_here.alias("clean"), REJECT_REASON).unionByName(
        lines.where(F.col(REJECT_REASON).isNull()).select(
            "path", "copies", F.col("copies").alias("clean"), REJECT_REASON
        )
    )
    rejected = F.col("copies") - F.col("clean")
    return judged.groupBy("path").agg(
        F.sum("copies").alias("lines_in"),
        F.sum("clean").alias("lines_clean"),
        *[
            F.coalesce(F.sum(F.when(F.col(REJECT_REASON) == r, rejected)), F.lit(0)).alias(f"rejected:{r}")
            for r in REJECT_REASONS
        ],
    )


def check_file_counts(files: dict[str, FileLines], rows_clean: int, rejected_by_reason: dict[str, int]) -> None:
    """ReconciliationError unless the files' clean lines and rejected lines per reason add up to the batch's."""
    clean = sum(f[1] for f in files.values())
    by_reason = {r: sum(f[2][r] for f in files.values()) for r in REJECT_REASONS}
    if clean != rows_clean or by_reason != rejected_by_reason:
        differ = [r for r in REJECT_REASONS if by_reason[r] != rejected_by_reason[r]]
        raise ReconciliationError(
            f"the files' lines do not add up to the batch's: {clean:,} clean in the files against "
            f"{rows_clean:,} written"
            + "".join(f"; {r}: {by_reason[r]:,} against {rejected_by_reason[r]:,}" for r in differ)
        )


@contextlib.contextmanager
def cached_rejected_texts(parsed_df: DataFrame, per_file: bool) -> Iterator[DataFrame]:
    """The batch's rejected distinct rows (:func:`~segspark.stages.ingest.rules.rejected_texts`); with
    ``per_file``, cached while they are written, so the counts per file cost no other read of the source."""
    texts = rejected_texts(parsed_df)
    if not per_file:
        yield texts
        return
    texts = texts.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield texts
    finally:
        texts.unpersist()


def lines_per_file(
    fingerprints: DataFrame, texts: DataFrame, source_columns: list[str], rejected_lines: int
) -> dict[str, FileLines]:
    """:func:`file_counts` on the driver, by the path readers take (one row per file of the batch)."""
    keys = rejected_keys(texts, source_columns)
    per_file = file_counts(fingerprints, keys, broadcast=rejected_lines <= BROADCAST_REPEATS)
    return {
        reader_path(r["path"]): (
            int(r["lines_in"]),
            int(r["lines_clean"]),
            {reason: int(r[f"rejected:{reason}"]) for reason in REJECT_REASONS},
        )
        for r in per_file.collect()  # one row per file
    }


def ingested_file_rows(
    spark: SparkSession,
    files: tuple[SourceFile, ...],
    lines: dict[str, FileLines],
    run_id: str,
    ingested_at: dt.datetime,
) -> DataFrame:
    """A batch's ``ingested_files`` rows: each file read, with its lines in, clean and rejected by reason."""
    none: FileLines = (0, 0, dict.fromkeys(REJECT_REASONS, 0))
    rows = []
    for f in files:
        lines_in, clean, by_reason = lines.get(reader_path(f.path), none)
        values = {
            "path": f.path,
            "size": f.size,
            "modification_time": f.modified,
            "lines_in": lines_in,
            "lines_clean": clean,
            "lines_rejected": lines_in - clean,
            "rejected_by_reason": by_reason,
            RUN_ID: run_id,
            INGESTED_AT: ingested_at,
        }
        rows.append(INGESTED_FILES.row(values))
    return spark.createDataFrame(rows, INGESTED_FILES.schema)

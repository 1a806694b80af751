"""Ingest: raw transactions to ``transactions_clean`` and ``transactions_rejected``; nothing is lost.

Plan (no shuffle of whole rows unless rows repeat; four reads of the source, two parses):

1. Read the source; every column becomes its text (the "original text" kept for rejects).
2. Find repeated rows cheaply, in the same job that counts the source's lines (an observed count): a 64-bit
   fingerprint of each row's text is counted (a shuffle of 8-byte keys), and the fingerprints seen more than
   once are kept (a small cached set). Rows whose fingerprint is unique are distinct and go straight on; only
   rows sharing a fingerprint are grouped by their full text, counting copies, once, into a cache as small as
   the repeated lines. Identical rows pass or fail every check alike, so each check runs once per distinct row
   and duplicates fall out of the copy count (the first copy is clean when the row is valid; the others are
   ``duplicate`` rejects). A fingerprint collision only sends two different rows through the exact grouping,
   which keeps them apart. Rows are judged by content, so the result does not depend on how the input is
   split into files or partitions.
3. Parse the canonical columns and give each distinct row its first failing reason.
4. Write the rejected copies (expanded back to one row per source line), then the clean rows. The counts and
   one example per reason are observed on the rejected write itself, and ``lines in = clean + rejected`` is
   reconciled against the observed line count and the row counts Delta recorded for both commits. Each file's
   lines clean and rejected by reason come from the rejected texts (cached during their write) joined with the
   run's fingerprint rows (``file_counts.py``), and must add up to the batch's. If the counts do not hold, or
   a write fails, both tables are restored to the versions they had before the run.
5. Fail the stage when no line is clean or too many lines are rejected (``ingest.max_reject_share``); the
   tables stay written, so the rejects can be read.

Each write reads and parses the source again: on this project's benchmark that costs less than caching the
parsed lines, and Delta has no public way to commit one job's files to two tables (see
``docs/performance.md``).

Its parts: ``fingerprints.py`` (step 2), ``rules.py`` (step 3), ``counts.py`` and ``file_counts.py`` (the counts
and checks of 4 and 5).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import Config, SourceSettings
from segspark.contracts.schemas import (
    INGEST_FINGERPRINTS,
    INGESTED_FILES,
    INGESTED_VERSIONS,
    REJECT_REASONS,
    REJECTED_EXTRA_FIELDS,
    RUN_ID,
    TRANSACTIONS_CLEAN,
    transactions_rejected_spec,
)
from segspark.errors import InputError, InputPathError, ReconciliationError, SchemaError
from segspark.platform import lakehouse, privacy, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.stages.ingest.counts import (
    IngestCounts,
    check_reject_share,
    counts_from_metrics,
    published_counts,
    reconcile,
    reject_metrics,
)
from segspark.stages.ingest.deliveries import Delivery, plan_delivery
from segspark.stages.ingest.file_counts import (
    FileLines,
    cached_rejected_texts,
    check_file_counts,
    ingested_file_rows,
    lines_per_file,
)
from segspark.stages.ingest.fingerprints import (
    BROADCAST_REPEATS,
    batch_fingerprints,
    distinct_rows,
    repeated_in_batch,
    repeated_rows,
    seen_before,
    source_column,
    unique_rows,
    with_earlier_duplicates,
    with_seen_latest,
)
from segspark.stages.ingest.preflight import require_path
from segspark.stages.ingest.rules import (
    expand_rejected,
    private_columns,
    select_clean,
    utc_timestamp_literal,
    with_canonical_columns,
    with_reject_reason,
)
from segspark.stages.ingest.versions import ingested_version_rows, read_versions

__all__ = ["check_source_columns", "read_source", "run_ingest", "with_text_columns"]

log = logging.getLogger("segspark")


def read_source(spark: SparkSession, source: SourceSettings, files: list[str] | None = None) -> DataFrame:
    """Read the raw transactions as configured; CSV columns are all text (no inference).

    ``files``: read only these files of the source (paths as :func:`~segspark.stages.ingest.deliveries.reader_path`
    gives them), with the columns a read of the whole source would have.
    """
    path = require_path(source)
    return lakehouse.read_input(spark, source.format, files or path, source.csv_options, what="input", base=path)


def check_source_columns(raw_df: DataFrame, source: SourceSettings) -> None:
    """Raise SchemaError naming each configured source column the input lacks.

    A source without any column is an empty (0-byte) CSV: InputPathError says so, rather than "it has []".
    """
    if not raw_df.columns:
        raise InputPathError(f"input '{source.path}' is empty (0 bytes): no header line and no rows")
    mapping = source.columns.model_dump()
    present = set(raw_df.columns)
    missing = {canon: name for canon, name in mapping.items() if name is not None and name not in present}
    if missing:
        described = ", ".join(f"{name!r} (for {canon})" for canon, name in missing.items())
        raise SchemaError(
            f"input lacks configured column(s) {described}; it has {raw_df.columns}. "
            "Map the source layout with source.columns.* (null for an optional column the source lacks)."
        )


def with_text_columns(raw_df: DataFrame) -> DataFrame:
    """Every column cast to string: the original text that rejects keep and duplicates are judged on."""
    return raw_df.select(*[source_column(c).cast(T.StringType()).alias(c) for c in raw_df.columns])


def run_ingest(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> IngestCounts:
    """Ingest the configured source into the clean and rejected tables.

    Parameters
    ----------
    stage : optional :class:`~segspark.platform.stage_log.StageRun` that receives rows in/out and counts.

    Raises
    ------
    ConfigError, SchemaError : the source is not configured or lacks mapped columns.
    InputPathError : the source is an empty (0-byte) CSV.
    InputError : the source cannot be read or has no rows.
    ReconciliationError : written counts do not add up; both tables are restored.
    RejectThresholdError : no line is clean, or more than ``ingest.max_reject_share`` of all input lines is
        rejected for reasons outside ``ingest.tolerated_reject_reasons``. Raised after both tables are written
        and reconciled; they are kept, so the rejects can be inspected.
    """
    source = config.source
    id_key = privacy.id_key(config.privacy)  # before any Spark work: a missing key is a usage error
    raw_df = read_source(spark, source)
    check_source_columns(raw_df, source)
    delivery = plan_delivery(spark, config, raw_df)
    if delivery.why_full:
        log.info("ingesting the whole source (%s)", delivery.why_full)
    if delivery.nothing_new:
        return _nothing_new(delivery, stage)
    batch_df = _batch_source(spark, config, raw_df, delivery)
    ingested_at = dt.datetime.now(dt.UTC)
    latest = config.ingest.latest_timestamp or ingested_at.replace(microsecond=0)
    batch = _Batch(run_id, delivery, ingested_at, latest, batch_df.columns)

    publication.ensure_log(spark, config, run_id)
    with publication.publishing(
        spark, config, run_id, failed="ingest failed: transactions tables restored to their published versions"
    ):
        progress.step("counting the source lines and fingerprinting them")
        state = _write_fingerprints(spark, config, batch, batch_df)
        with _distinct_source_rows(spark, config, batch, batch_df, state) as distinct_df:
            parsed_df = (
                distinct_df.transform(with_canonical_columns, source, id_key, config.privacy.keep_descriptions)
                .transform(with_reject_reason, source, latest)
                .transform(with_earlier_duplicates)
            )
            counts = _write_tables(spark, config, batch, parsed_df, state)
    log.info("%s", _ingested_line(counts, delivery))
    _record(stage, counts)
    # After the writes and outside the restore: the tables are valid and stay for inspection; the stage fails.
    check_reject_share(counts, config)
    return counts


def _nothing_new(delivery: Delivery, stage: StageRun | None) -> IngestCounts:
    """An incremental run with nothing new: it says so, writes nothing and records zero lines."""
    if delivery.versions is not None:
        log.info("no new source version: the source table is still at version %d", delivery.versions.to_version)
    else:
        log.info("no new source file: %s file(s) already ingested, skipped", f"{delivery.skipped:,}")
    counts = IngestCounts(0, 0, dict.fromkeys(REJECT_REASONS, 0), incremental=True, files_skipped=delivery.skipped)
    _record(stage, counts)
    return counts


def _batch_source(spark: SparkSession, config: Config, raw_df: DataFrame, delivery: Delivery) -> DataFrame:
    """The lines this run reads: the whole source, its new files, or its versions (pinned or new)."""
    if delivery.versions is not None:
        batch_df = read_versions(spark, delivery.versions)
    elif delivery.incremental:
        batch_df = read_source(spark, config.source, delivery.paths)
    else:
        return raw_df
    if delivery.incremental:
        _check_batch_columns(spark, config, batch_df)
    return batch_df


def _ingested_line(counts: IngestCounts, delivery: Delivery) -> str:
    """``ingested 7 new file(s), 1,204,332 lines (...); 412 file(s) already ingested, skipped``."""
    lines = f"{counts.rows_in:,} lines ({counts.rows_clean:,} clean, {counts.rows_rejected:,} rejected)"
    versions = delivery.versions
    if versions is not None:
        read = (
            f"version {versions.to_version} of the source table"
            if versions.from_version is None
            else f"versions {versions.from_version}-{versions.to_version} of the source table (new rows)"
        )
        return f"ingested {read}, {lines}"
    if not delivery.files:
        return f"ingested the source, {lines}"
    if not delivery.incremental:
        return f"ingested {counts.files_read:,} file(s), {lines}"
    return (
        f"ingested {counts.files_read:,} new file(s), {lines}; {delivery.skipped:,} file(s) already ingested, skipped"
    )


def _record(stage: StageRun | None, counts: IngestCounts) -> None:
    """The run's counts in its stage record (``pipeline_runs``)."""
    if stage is None:
        return
    stage.rows_in = counts.rows_in
    stage.rows_out = counts.rows_clean
    stage.counts = {k: v for k, v in published_counts(counts).items() if k != "rows_in"}
    stage.counts.update({f"rejected_{k}": v for k, v in counts.rejected_by_reason.items()})


@dataclass(frozen=True)
class _Batch:
    """One run's batch: its id, the files it reads, its times and the source columns it writes."""

    run_id: str
    delivery: Delivery
    ingested_at: dt.datetime
    latest: dt.datetime
    source_columns: list[str]

    @property
    def mode(self) -> str:
        """How the run writes every ingest table: ``append`` a batch, or ``overwrite`` them."""
        return "append" if self.delivery.incremental else "overwrite"


@dataclass(frozen=True)
class _State:
    """The run's rows of ``ingest_fingerprints`` just written, and its line count."""

    version: int
    rows_in: int
    batch_df: DataFrame


#: Internal column: the file a source line came from.
_PATH = "__path"


def _check_batch_columns(spark: SparkSession, config: Config, batch_df: DataFrame) -> None:
    """InputError unless the new files have the columns of the lines ingested before (the rejected table's)."""
    extra = {f.name for f in REJECTED_EXTRA_FIELDS}
    before = [c for c in publication.read_published(spark, config, "transactions_rejected").columns if c not in extra]
    if batch_df.columns != before:
        raise InputError(
            f"the new source files have columns {batch_df.columns}; the lines ingested before have {before}. "
            "Re-ingest everything with --full-refresh (ingest.mode: full)"
        )


def _write_fingerprints(spark: SparkSession, config: Config, batch: _Batch, batch_df: DataFrame) -> _State:
    """Write the batch's ``ingest_fingerprints`` (one job over the source; it also counts the lines)."""
    source = config.source
    path = F.col("_metadata.file_path") if batch.delivery.files else F.lit(source.path)
    keyed = batch_df.select(
        *[source_column(c).cast(T.StringType()).alias(c) for c in batch_df.columns], path.alias(_PATH)
    )
    if keyed.isEmpty():  # reads one row; an observation over no rows has no values to get
        raise InputError(
            f"input '{source.path}' has no rows" + (" in its new files" if batch.delivery.incremental else "")
        )
    lines = Observation("source_lines")
    state_df = (
        batch_fingerprints(keyed.observe(lines, F.count(F.lit(1)).alias("lines")), _PATH)
        .withColumn("latest_timestamp", utc_timestamp_literal(batch.latest))
        .withColumn(RUN_ID, F.lit(batch.run_id))
    )
    written = lakehouse.write_table(
        state_df, config.table_path("ingest_fingerprints"), INGEST_FINGERPRINTS, mode=batch.mode
    )
    this_run = lakehouse.read_table(spark, config.table_path("ingest_fingerprints"), version=written.version)
    return _State(written.version, int(lines.get["lines"]), this_run.where(F.col(RUN_ID) == batch.run_id))


@contextlib.contextmanager
def _distinct_source_rows(
    spark: SparkSession, config: Config, batch: _Batch, batch_df: DataFrame, state: _State
) -> Iterator[DataFrame]:
    """The batch's distinct rows with ``_copies`` and :data:`~segspark.stages.ingest.fingerprints.SEEN_LATEST`;
    the small caches go on exit.

    The repeated fingerprints and the texts earlier runs ingested come from ``ingest_fingerprints`` (as
    few as the repeated lines and the re-delivered texts); the rows carrying a repeated fingerprint are grouped
    once into a cache. Each action on the result then reads the source once more.
    """
    text_df = batch_df.transform(with_text_columns)
    cached: list[DataFrame] = []
    try:
        repeated = repeated_in_batch(state.batch_df).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(repeated)
        n_repeated = repeated.count()
        seen = None
        if batch.delivery.incremental:
            history = publication.read_published(spark, config, "ingest_fingerprints")
            seen = seen_before(history, state.batch_df).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(seen)
            n_seen = seen.count()
            log.info("%s distinct line text(s) of the new files were ingested before", f"{n_seen:,}")
            if n_seen == 0:
                seen = None
        if n_repeated == 0:
            distinct_df = unique_rows(text_df, None, broadcast=True)
        else:
            progress.step(f"grouping the lines that share one of {n_repeated:,} repeated fingerprints")
            broadcast = n_repeated <= BROADCAST_REPEATS
            grouped = repeated_rows(text_df, repeated, broadcast).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(grouped)
            grouped.count()
            distinct_df = distinct_rows(text_df, repeated, broadcast, grouped)
        yield with_seen_latest(distinct_df, seen, broadcast=True)
    finally:
        for df in cached:
            df.unpersist()


def _write_tables(
    spark: SparkSession, config: Config, batch: _Batch, parsed_df: DataFrame, state: _State
) -> IngestCounts:
    """Write the rejected lines, the clean ones and the log of what was read; reconcile and publish them all."""
    rejected_metrics = Observation("rejected_lines")
    with cached_rejected_texts(parsed_df, bool(batch.delivery.files)) as texts:
        rejected_df = expand_rejected(
            texts, batch.source_columns, batch.run_id, batch.ingested_at, private_columns(config)
        )
        progress.step("checking every line and writing the rejected ones to transactions_rejected")
        rejected = lakehouse.write_table(
            rejected_df.observe(rejected_metrics, *reject_metrics(config.source)),
            config.table_path("transactions_rejected"),
            transactions_rejected_spec(batch.source_columns),
            mode=batch.mode,
            overwrite_schema=not batch.delivery.incremental,
        )
        progress.step(f"writing the clean lines to transactions_clean ({rejected.rows_written:,} rejected)")
        clean = lakehouse.write_table(
            select_clean(parsed_df, batch.run_id, batch.ingested_at),
            config.table_path("transactions_clean"),
            TRANSACTIONS_CLEAN,
            mode=batch.mode,
        )
        per_file = (
            lines_per_file(state.batch_df, texts, batch.source_columns, rejected.rows_written)
            if batch.delivery.files
            else {}
        )
    versions = batch.delivery.versions
    counts = replace(
        counts_from_metrics(rejected_metrics.get, state.rows_in, clean.rows_written),
        latest_timestamp=batch.latest,
        incremental=batch.delivery.incremental,
        files_read=len(batch.delivery.files),
        files_skipped=batch.delivery.skipped,
        source_versions=None if versions is None else (versions.from_version, versions.to_version),
    )
    reconcile(counts, clean.rows_written, rejected.rows_written)
    if per_file:
        check_file_counts(per_file, counts.rows_clean, counts.rejected_by_reason)
    logs = _write_read_logs(spark, config, batch, per_file, counts)
    ledger = "ingested_files" if batch.delivery.files else "ingested_versions" if versions is not None else None
    totals = _reconcile_totals(
        spark, config, clean.version, rejected.version, None if ledger is None else (ledger, logs[ledger])
    )
    counts = replace(counts, totals=totals)
    tables = {"transactions_clean": clean.version, "transactions_rejected": rejected.version, **logs}
    tables["ingest_fingerprints"] = state.version
    publication.publish(spark, config, batch.run_id, "ingest", tables, counts=published_counts(counts))
    return counts


def _write_read_logs(
    spark: SparkSession, config: Config, batch: _Batch, per_file: dict[str, FileLines], counts: IngestCounts
) -> dict[str, int]:
    """Write what the batch read: ``ingested_files`` (its files; emptied by a full run of another source) and
    ``ingested_versions`` (the Delta source's versions; emptied by a full run of another source, if it exists).
    Returns the versions written."""
    delivery, logs = batch.delivery, {}
    if delivery.files or not delivery.incremental:
        file_rows = ingested_file_rows(spark, delivery.files, per_file, batch.run_id, batch.ingested_at)
        path = config.table_path("ingested_files")
        logs["ingested_files"] = lakehouse.write_table(file_rows, path, INGESTED_FILES, mode=batch.mode).version
    path = config.table_path("ingested_versions")
    if delivery.versions is not None or (not delivery.incremental and lakehouse.table_exists(spark, path)):
        version_rows = ingested_version_rows(spark, delivery.versions, counts, batch.run_id, batch.ingested_at)
        logs["ingested_versions"] = lakehouse.write_table(
            version_rows, path, INGESTED_VERSIONS, mode=batch.mode
        ).version
    return logs


def _reconcile_totals(
    spark: SparkSession, config: Config, clean_version: int, rejected_version: int, ledger: tuple[str, int] | None
) -> dict[str, int]:
    """Every line the source's ledger (``ingested_files`` or ``ingested_versions`` at its version) records is
    in exactly one table, after this batch too."""

    def rows(table: str, version: int) -> int:
        # A count of a Delta table is answered from its file statistics.
        return lakehouse.read_table(spark, config.table_path(table), version=version).count()

    totals = {
        "total_rows_clean": rows("transactions_clean", clean_version),
        "total_rows_rejected": rows("transactions_rejected", rejected_version),
    }
    if ledger is None:
        return totals
    table, version = ledger
    read = lakehouse.read_table(spark, config.table_path(table), version=version)
    total_in = int(lakehouse.one_row(read.agg(F.sum("lines_in")), f"the lines of {table}")[0] or 0)
    if total_in != totals["total_rows_clean"] + totals["total_rows_rejected"]:
        raise ReconciliationError(
            f"rows do not reconcile in total: {table} holds {total_in:,} lines, the tables "
            f"{totals['total_rows_clean']:,} clean + {totals['total_rows_rejected']:,} rejected"
        )
    totals["total_rows_in"] = total_in
    return totals

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
   reconciled against the observed line count and the row counts Delta recorded for both commits. If the
   counts do not hold, or a write fails, both tables are restored to the versions they had before the run.
5. Fail the stage when no line is clean or too many lines are rejected (``ingest.max_reject_share``); the
   tables stay written, so the rejects can be read.

Each write reads and parses the source again: on this project's benchmark that costs less than caching the
parsed lines, and Delta has no public way to commit one job's files to two tables (see
``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import Config, SourceSettings
from segspark.contracts.schemas import (
    AMOUNT_TYPE,
    COUNTRY,
    CUSTOMER_ID,
    DESCRIPTION,
    INGEST_FINGERPRINTS,
    INGESTED_AT,
    INGESTED_FILES,
    INVOICE_DATE,
    INVOICE_ID,
    INVOICE_TS,
    IS_RETURN,
    LINE_AMOUNT,
    PRICE_TYPE,
    PRODUCT_ID,
    QUANTITY,
    REJECT_REASON,
    REJECT_REASONS,
    REJECTED_EXTRA_FIELDS,
    RUN_ID,
    TRANSACTIONS_CLEAN,
    UNIT_PRICE,
    transactions_rejected_spec,
)
from segspark.errors import InputError, InputPathError, ReconciliationError, RejectThresholdError, SchemaError
from segspark.platform import lakehouse, privacy, progress, publication
from segspark.platform.compat import try_cast
from segspark.platform.stage_log import StageRun
from segspark.stages.ingest.deliveries import Delivery, plan_delivery, reader_path
from segspark.stages.ingest.preflight import require_path

__all__ = [
    "SEEN_LATEST",
    "batch_fingerprints",
    "repeated_in_batch",
    "row_fingerprint2",
    "seen_before",
    "with_earlier_duplicates",
    "with_seen_latest",
    "BROADCAST_REPEATS",
    "COPIES",
    "EXAMPLE_CHARS",
    "FINGERPRINT",
    "NUMBER_PATTERN",
    "REPLACEMENT_CHARACTER",
    "IngestCounts",
    "check_reject_share",
    "check_source_columns",
    "count_identical_rows",
    "counts_from_metrics",
    "describe_reason",
    "distinct_rows",
    "normalized_customer_id",
    "parsed_decimal",
    "parsed_number",
    "parsed_quantity",
    "parsed_timestamp",
    "private_columns",
    "read_source",
    "reason_columns",
    "reconcile",
    "reject_metrics",
    "repeated_rows",
    "reject_example_text",
    "repeated_fingerprints",
    "row_fingerprint",
    "run_ingest",
    "select_clean",
    "select_rejected",
    "source_column",
    "undecodable_text",
    "unique_rows",
    "utc_timestamp_literal",
    "with_canonical_columns",
    "with_reject_reason",
    "with_text_columns",
]

log = logging.getLogger("segspark")

#: A decimal number as text: sign, digits, optional fraction and exponent. Anything else is unparseable.
NUMBER_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
#: Internal column holding how many identical source rows a distinct row stands for.
COPIES = "_copies"
#: Internal column holding a row's fingerprint: a 64-bit hash of its text (with where its nulls are).
FINGERPRINT = "__fingerprint"
#: Repeated fingerprints up to this many are broadcast to every task; more are joined by a shuffle.
BROADCAST_REPEATS = 1_000_000
_INT_LIMIT = 2**31


def utc_timestamp_literal(moment: dt.datetime) -> Column:
    """A timestamp literal for an aware datetime, independent of the session time zone."""
    return F.timestamp_seconds(F.lit(moment.timestamp()))


def source_column(name: str) -> Column:
    """A source column by its exact name, even if it has dots, spaces or backticks."""
    return F.col("`" + name.replace("`", "``") + "`")


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


# --- column functions: parse one source text column into a canonical value (null when invalid) ---


def normalized_customer_id(raw: Column) -> Column:
    """Trimmed id; null for null, blank or NaN; ``17850.0`` and ``1.7850E4`` become ``17850``.

    Leading zeros stay (``"007"`` is kept as given): only float renderings of integers are rewritten.
    """
    text = F.trim(raw)
    # One regex for the common float rendering ("17850.0" -> "17850"); the rest is guarded by cheap tests,
    # since this runs on every source line.
    integer_part = F.regexp_extract(text, r"^([+-]?\d+)\.0+$", 1)
    as_double = try_cast(text, T.DoubleType())
    is_scientific_integer = (
        (text.contains("e") | text.contains("E"))
        & text.rlike(r"^[+-]?\d(\.\d+)?[eE]\+?\d+$")
        & (as_double == F.floor(as_double))
    )
    is_nan = (F.length(text) == 3) & (F.lower(text) == "nan")
    return (
        F.when(text.isNull() | (text == "") | is_nan, F.lit(None).cast(T.StringType()))
        .when(integer_part != "", integer_part)
        .when(is_scientific_integer & (F.abs(as_double) < 1e15), as_double.cast(T.LongType()).cast(T.StringType()))
        .otherwise(text)
    )


def parsed_timestamp(raw: Column, formats: list[str], timezone: str) -> Column:
    """First format that parses the trimmed text (then a bare ``yyyy-MM-dd`` date), shifted to UTC."""
    text = F.trim(raw)
    candidates = [F.try_to_timestamp(text, F.lit(fmt)) for fmt in [*formats, "yyyy-MM-dd"]]
    parsed = F.coalesce(*candidates)
    return parsed if timezone == "UTC" else F.to_utc_timestamp(parsed, timezone)


def parsed_number(raw: Column) -> Column:
    """The text as a double when it is a plain decimal number (sign, fraction, exponent), else null."""
    text = F.trim(raw)
    return F.when(text.rlike(NUMBER_PATTERN), try_cast(text, T.DoubleType()))


def parsed_quantity(raw: Column) -> Column:
    """A non-zero whole number within int range (``"3"``, ``"-2"``, ``"4.0"``), else null."""
    number = parsed_number(raw)
    is_valid = number.isNotNull() & (number == F.floor(number)) & (number != 0) & (F.abs(number) < _INT_LIMIT)
    return F.when(is_valid, number.cast(T.IntegerType()))


def parsed_decimal(raw: Column, data_type: T.DecimalType) -> Column:
    """The text as an exact decimal (rounded half-up to the type's scale), null when unparseable or too big."""
    text = F.trim(raw)
    return F.when(text.rlike(NUMBER_PATTERN), try_cast(text, data_type))


def with_canonical_columns(
    df: DataFrame, source: SourceSettings, id_key: bytes | None = None, keep_descriptions: bool = True
) -> DataFrame:
    """Add the parsed canonical columns (null where the text is invalid) next to the source text.

    Output adds ``customer_id, invoice_ts, invoice_date, quantity, unit_price, line_amount, invoice_id,
    product_id, description, country, is_return``; existing columns are kept. Names are prefixed with ``__``
    while source columns are alongside, to avoid clashes with source columns of the same name.

    ``id_key``: pseudonymise customer ids with this key (``privacy.pseudonymise_ids``); the pseudonym is
    taken after normalisation, so ``17850.0`` and ``17850`` stay one customer. ``keep_descriptions=False``
    leaves ``description`` null.
    """
    cols = source.columns
    quantity = parsed_quantity(source_column(cols.quantity)) if cols.quantity else F.lit(1)
    if source.price_kind == "unit":
        unit_price = parsed_decimal(source_column(cols.price), PRICE_TYPE)
        # try_cast: a product beyond decimal(28,4) is an invalid_price reject, not a failed job (ANSI mode).
        line_amount = try_cast(quantity * unit_price, AMOUNT_TYPE)
    else:
        line_amount = parsed_decimal(source_column(cols.price), AMOUNT_TYPE)
        unit_price = F.round(line_amount / quantity, PRICE_TYPE.scale).cast(PRICE_TYPE)
    invoice_ts = parsed_timestamp(source_column(cols.invoice_ts), source.timestamp_formats, source.timezone)
    customer_id = normalized_customer_id(source_column(cols.customer_id))

    def optional_text(name: str | None) -> Column:
        return F.trim(source_column(name)) if name else F.lit(None).cast(T.StringType())

    out = (
        df.withColumn(f"__{CUSTOMER_ID}", privacy.pseudonymised(customer_id, id_key))
        .withColumn(f"__{INVOICE_TS}", invoice_ts)
        .withColumn(f"__{INVOICE_DATE}", F.to_date(F.col(f"__{INVOICE_TS}")))
        .withColumn(f"__{QUANTITY}", quantity.cast(T.IntegerType()))
        .withColumn(f"__{UNIT_PRICE}", unit_price)
        .withColumn(f"__{LINE_AMOUNT}", line_amount)
    )
    if cols.invoice_id:
        invoice_id = optional_text(cols.invoice_id)
    else:
        # No invoice column: one invoice per customer per day.
        invoice_id = F.concat_ws("-", F.col(f"__{CUSTOMER_ID}"), F.date_format(f"__{INVOICE_DATE}", "yyyy-MM-dd"))
    is_prefixed = (
        F.coalesce(invoice_id.startswith(source.returns_prefix), F.lit(False))
        if cols.invoice_id and source.returns_prefix
        else F.lit(False)
    )
    return (
        out.withColumn(f"__{INVOICE_ID}", invoice_id)
        .withColumn(f"__{PRODUCT_ID}", optional_text(cols.product_id))
        .withColumn(
            f"__{DESCRIPTION}",
            source_column(cols.description) if cols.description and keep_descriptions else F.lit(None),
        )
        .withColumn(f"__{COUNTRY}", optional_text(cols.country))
        .withColumn(f"__{IS_RETURN}", is_prefixed | F.coalesce(F.col(f"__{QUANTITY}") < 0, F.lit(False)))
    )


#: What a text decoder puts in place of bytes that are not valid in the source's encoding.
REPLACEMENT_CHARACTER = "\ufffd"


def undecodable_text(source: SourceSettings) -> Column:
    """The first mapped text column's text that holds bytes the configured encoding could not decode, else null.

    Spark's CSV reader turns such bytes into U+FFFD: a Latin-1 export read as UTF-8 would otherwise merge
    distinct ids ("José" and "Josè" both become "Jos\ufffd") and garble names without a word.
    """
    cols = source.columns
    names = [cols.customer_id, cols.invoice_id, cols.product_id, cols.description, cols.country]
    texts = [source_column(n) for n in dict.fromkeys(n for n in names if n)]
    return F.coalesce(*[F.when(t.contains(REPLACEMENT_CHARACTER), t) for t in texts])


def with_reject_reason(df: DataFrame, source: SourceSettings, latest: dt.datetime) -> DataFrame:
    """Add ``reject_reason``: the first failed check in :data:`REJECT_REASONS` order; null when the row is valid.

    ``latest``: the latest valid timestamp (UTC); later lines are ``future_timestamp``. ``duplicate`` is not
    set here: it depends on the copy count, not on the row's values.
    """
    price = F.col(f"__{UNIT_PRICE}")
    reason = (
        F.when(F.col(f"__{CUSTOMER_ID}").isNull(), "missing_customer_id")
        .when(undecodable_text(source).isNotNull(), "invalid_encoding")
        .when(F.col(f"__{INVOICE_TS}").isNull(), "invalid_timestamp")
        .when(F.col(f"__{INVOICE_TS}") > utc_timestamp_literal(latest), "future_timestamp")
        .when(F.col(f"__{QUANTITY}").isNull(), "invalid_quantity")
        .when(price.isNull() | (price <= 0) | F.col(f"__{LINE_AMOUNT}").isNull(), "invalid_price")
    )
    # Spark pushes a filter on a computed column below the projection that computes it by copying the
    # expression, so every parse would run twice (in the filter and in the projection). A nondeterministic
    # term that is always true keeps the writers' filters above the parse.
    return df.withColumn(REJECT_REASON, F.when(F.spark_partition_id() >= 0, reason))


def select_clean(parsed_df: DataFrame, run_id: str, ingested_at: dt.datetime) -> DataFrame:
    """One clean line per valid distinct row (its first copy), in the ``transactions_clean`` layout."""
    canonical = [f.name for f in TRANSACTIONS_CLEAN.schema.fields if f.name not in (RUN_ID, INGESTED_AT)]
    return parsed_df.where(F.col(REJECT_REASON).isNull()).select(
        *[F.col(f"__{name}").alias(name) for name in canonical],
        F.lit(run_id).alias(RUN_ID),
        utc_timestamp_literal(ingested_at).alias(INGESTED_AT),
    )


def private_columns(config: Config) -> dict[str, Column]:
    """The source columns ``transactions_rejected`` must not copy as text under the privacy settings."""
    cols = config.source.columns
    replaced: dict[str, Column] = {}
    if config.privacy.pseudonymise_ids:
        replaced[cols.customer_id] = F.col(f"__{CUSTOMER_ID}")  # the pseudonym; null when there was no id
    if not config.privacy.keep_descriptions and cols.description:
        replaced[cols.description] = F.lit(None).cast(T.StringType())
    return replaced


def select_rejected(
    parsed_df: DataFrame,
    source_columns: list[str],
    run_id: str,
    ingested_at: dt.datetime,
    replaced: dict[str, Column] | None = None,
) -> DataFrame:
    """One row per rejected source line: every copy of an invalid row, all but the first copy of a valid one.

    ``replaced``: source column name -> what to store instead of its text (privacy settings: the pseudonymised
    customer id, a blank description).
    """
    replaced = replaced or {}
    is_valid = F.col(REJECT_REASON).isNull()
    rejected_copies = F.when(is_valid, F.col(COPIES) - 1).otherwise(F.col(COPIES))
    return (
        parsed_df.withColumn("__rejected_copies", rejected_copies)
        .where(F.col("__rejected_copies") > 0)
        .withColumn(REJECT_REASON, F.coalesce(F.col(REJECT_REASON), F.lit("duplicate")))
        # Expand back to one row per source line: n identical rejected lines become n rows.
        .withColumn("__copy", F.explode(F.array_repeat(F.lit(True), F.col("__rejected_copies").cast("int"))))
        .select(
            *[replaced[c].alias(c) if c in replaced else source_column(c) for c in source_columns],
            F.col(REJECT_REASON),
            F.lit(run_id).alias(RUN_ID),
            utc_timestamp_literal(ingested_at).alias(INGESTED_AT),
        )
    )


@dataclass(frozen=True)
class IngestCounts:
    """Row counts of one ingest; ``rejected_by_reason`` has every reason, zeros included.

    ``reject_examples`` holds, per reason that rejected lines, one source text of the column that decided it
    (the least non-null one in sort order; None when all are null); ``duplicate`` has none.
    """

    rows_in: int
    rows_clean: int
    rejected_by_reason: dict[str, int]
    reject_examples: dict[str, str | None] = field(default_factory=dict)
    #: The latest valid timestamp of the run (later lines are ``future_timestamp``).
    latest_timestamp: dt.datetime | None = None
    #: Whether the run appended a batch of new files (False: it replaced both tables).
    incremental: bool = False
    #: Source files read, and (incremental runs) files left out because they were ingested already.
    files_read: int = 0
    files_skipped: int = 0
    #: Lines in both tables after the run (``total_rows_clean``, ``total_rows_rejected``) and, for file
    #: sources, in every file ingested so far (``total_rows_in``).
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        """Lines rejected for any reason: the sum of ``rejected_by_reason``."""
        return sum(self.rejected_by_reason.values())


#: Longest example text kept per reason; longer ones end in "...".
EXAMPLE_CHARS = 60


def reason_columns(source: SourceSettings) -> dict[str, str]:
    """Reason -> the source column whose text decides it (reasons whose column the source lacks are left out)."""
    cols = source.columns
    by_reason = {
        "missing_customer_id": cols.customer_id,
        "invalid_encoding": cols.description or cols.customer_id,
        "invalid_timestamp": cols.invoice_ts,
        "future_timestamp": cols.invoice_ts,
        "invalid_quantity": cols.quantity,
        "invalid_price": cols.price,
    }
    return {reason: name for reason, name in by_reason.items() if name is not None}


def reject_example_text(source: SourceSettings) -> Column:
    """The source text behind each row's ``reject_reason``, cut to ``EXAMPLE_CHARS + 1``; null for clean rows."""
    example = F.lit(None).cast(T.StringType())
    for reason, name in reason_columns(source).items():
        text = undecodable_text(source) if reason == "invalid_encoding" else source_column(name)
        example = F.when(F.col(REJECT_REASON) == reason, text).otherwise(example)
    return F.substring(example, 1, EXAMPLE_CHARS + 1)


def reject_metrics(source: SourceSettings) -> list[Column]:
    """Aggregates over rejected lines: ``lines:<reason>`` for every reason, ``example:<reason>`` for each but
    ``duplicate`` (the least example text; see :class:`IngestCounts`).

    Observed on the rejected write itself (``DataFrame.observe``), so the counts cost no read of the table.
    """
    example = reject_example_text(source)
    metrics = []
    for reason in REJECT_REASONS:
        is_reason = F.col(REJECT_REASON) == reason
        metrics.append(F.count(F.when(is_reason, True)).alias(f"lines:{reason}"))
        if reason != "duplicate":
            metrics.append(F.min(F.when(is_reason, example)).alias(f"example:{reason}"))
    return metrics


def counts_from_metrics(metrics: dict[str, object], rows_in: int, rows_clean: int) -> IngestCounts:
    """:class:`IngestCounts` from the values of :func:`reject_metrics`; reasons without lines have no example."""
    rejected = {reason: int(str(metrics[f"lines:{reason}"])) for reason in REJECT_REASONS}
    examples = {
        reason: None if metrics[f"example:{reason}"] is None else str(metrics[f"example:{reason}"])
        for reason in REJECT_REASONS
        if reason != "duplicate" and rejected[reason]
    }
    return IngestCounts(rows_in=rows_in, rows_clean=rows_clean, rejected_by_reason=rejected, reject_examples=examples)


def check_reject_share(counts: IngestCounts, config: Config) -> None:
    """Raise RejectThresholdError when no line is clean, or too large a share of all input lines is rejected.

    An incremental batch without clean lines passes when some of its lines are duplicates (a re-delivery).

    The share is (lines rejected for reasons outside ``ingest.tolerated_reject_reasons``) / ``rows_in``, where
    ``rows_in`` counts every source line, duplicates and tolerated rejects included; it fails when above
    ``ingest.max_reject_share``. The message names the reasons, largest first (ties in check order), each with
    its count and one example.
    """
    settings = config.ingest
    if counts.rows_in == 0:
        return
    counted = {r: n for r, n in counts.rejected_by_reason.items() if r not in settings.tolerated_reject_reasons}
    counted_lines = sum(counted.values())
    share = counted_lines / counts.rows_in
    # A batch of re-delivered lines has no clean line and nothing wrong with it.
    no_clean = counts.rows_clean == 0 and not (counts.incremental and counts.rejected_by_reason["duplicate"])
    if not no_clean and share <= settings.max_reject_share:
        return
    if no_clean:
        headline = f"no input line is clean ({counts.rows_rejected:,} of {counts.rows_in:,} rejected)"
        shown = counts.rejected_by_reason
    else:
        tolerated = settings.tolerated_reject_reasons
        other_than = f" for reasons other than {', '.join(tolerated)}" if tolerated else ""
        headline = (
            f"{counted_lines:,} of {counts.rows_in:,} input lines ({share:.1%}) were rejected{other_than}; "
            f"ingest.max_reject_share is {settings.max_reject_share * 100:g}%"
        )
        shown = counted
    order = sorted((r for r, n in shown.items() if n), key=lambda r: (-shown[r], REJECT_REASONS.index(r)))
    details = "; ".join(
        describe_reason(r, shown[r], counts.reject_examples.get(r), config.source, counts.latest_timestamp)
        for r in order
    )
    raise RejectThresholdError(
        f"{headline}. {details}. Both tables were written; the rejected lines are in "
        f"{config.table_path('transactions_rejected')}"
    )


def describe_reason(
    reason: str, lines: int, example: str | None, source: SourceSettings, latest: dt.datetime | None = None
) -> str:
    """``invalid_timestamp: 2 lines, e.g. '01.12.2010 08:26' (column InvoiceDate; configured formats: ...)``."""
    text = f"{reason}: {lines:,} line{'s' if lines != 1 else ''}"
    column = reason_columns(source).get(reason)
    if column is None:
        return text
    if example is None:
        shown = "empty"
    elif len(example) > EXAMPLE_CHARS:
        shown = repr(example[:EXAMPLE_CHARS]) + "..."
    else:
        shown = repr(example)
    hint = f"column {column}"
    if reason == "invalid_timestamp":
        hint += f"; configured formats: {', '.join(source.timestamp_formats)}"
    elif reason == "invalid_encoding":
        encoding = source.csv_options.get("encoding", "UTF-8")
        hint = (
            f"bytes that are not {encoding}; a Latin-1 export needs source.csv_options.encoding: ISO-8859-1"
            if source.format == "csv"
            else "text holding U+FFFD, the mark of bytes a decoder could not read"
        )
    elif reason == "future_timestamp" and latest is not None:
        hint += f"; later than {latest:%Y-%m-%d %H:%M:%S} UTC (ingest.latest_timestamp, default the run's start)"
    return f"{text}, e.g. {shown} ({hint})"


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
    if delivery.incremental and not delivery.files:
        log.info("no new source file: %s file(s) already ingested, skipped", f"{delivery.skipped:,}")
        counts = IngestCounts(0, 0, dict.fromkeys(REJECT_REASONS, 0), incremental=True, files_skipped=delivery.skipped)
        _record(stage, counts)
        return counts
    batch_df = raw_df
    if delivery.incremental:
        batch_df = read_source(spark, source, delivery.paths)
        _check_batch_columns(spark, config, batch_df)
    ingested_at = dt.datetime.now(dt.UTC)
    latest = config.ingest.latest_timestamp or ingested_at.replace(microsecond=0)
    batch = _Batch(
        run_id, delivery, ingested_at, latest, raw_df.columns if not delivery.incremental else batch_df.columns
    )

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
    log.info(
        "ingested %s %sfile(s), %s lines (%s clean, %s rejected)%s",
        f"{counts.files_read:,}",
        "new " if delivery.incremental else "",
        f"{counts.rows_in:,}",
        f"{counts.rows_clean:,}",
        f"{counts.rows_rejected:,}",
        f"; {delivery.skipped:,} file(s) already ingested, skipped" if delivery.incremental else "",
    )
    _record(stage, counts)
    # After the writes and outside the restore: the tables are valid and stay for inspection; the stage fails.
    check_reject_share(counts, config)
    return counts


def _record(stage: StageRun | None, counts: IngestCounts) -> None:
    """The run's counts in its stage record (``pipeline_runs``)."""
    if stage is None:
        return
    stage.rows_in = counts.rows_in
    stage.rows_out = counts.rows_clean
    stage.counts = {
        "rows_clean": counts.rows_clean,
        "rows_rejected": counts.rows_rejected,
        "files_read": counts.files_read,
        "files_skipped": counts.files_skipped,
    }
    stage.counts.update({f"rejected_{k}": v for k, v in counts.rejected_by_reason.items()})
    stage.counts.update(counts.totals)


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
    """The batch's distinct rows with ``_copies`` and :data:`SEEN_LATEST`; the small caches go on exit.

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


def _file_rows(spark: SparkSession, batch: _Batch, state: _State) -> DataFrame:
    """The batch's ``ingested_files`` rows: each file read, with its lines (from its fingerprint rows)."""
    lines = {
        reader_path(r["path"]): int(r["lines"])
        for r in state.batch_df.groupBy("path").agg(F.sum("copies").alias("lines")).collect()  # one row per file
    }
    rows = [
        INGESTED_FILES.row(
            {
                "path": f.path,
                "size": f.size,
                "modification_time": f.modified,
                "lines_in": lines.get(reader_path(f.path), 0),
                RUN_ID: batch.run_id,
                INGESTED_AT: batch.ingested_at,
            }
        )
        for f in batch.delivery.files
    ]
    return spark.createDataFrame(rows, INGESTED_FILES.schema)


def _write_tables(
    spark: SparkSession, config: Config, batch: _Batch, parsed_df: DataFrame, state: _State
) -> IngestCounts:
    """Write the rejected lines, the clean ones and the files read; reconcile and publish all four tables."""
    rejected_metrics = Observation("rejected_lines")
    rejected_df = select_rejected(
        parsed_df, batch.source_columns, batch.run_id, batch.ingested_at, private_columns(config)
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
    files = lakehouse.write_table(
        _file_rows(spark, batch, state), config.table_path("ingested_files"), INGESTED_FILES, mode=batch.mode
    )
    counts = replace(
        counts_from_metrics(rejected_metrics.get, state.rows_in, clean.rows_written),
        latest_timestamp=batch.latest,
        incremental=batch.delivery.incremental,
        files_read=len(batch.delivery.files),
        files_skipped=batch.delivery.skipped,
    )
    reconcile(counts, clean.rows_written, rejected.rows_written)
    totals = _reconcile_totals(spark, config, clean.version, rejected.version, files.version, batch)
    counts = replace(counts, totals=totals)
    publication.publish(
        spark,
        config,
        batch.run_id,
        "ingest",
        {
            "transactions_clean": clean.version,
            "transactions_rejected": rejected.version,
            "ingested_files": files.version,
            "ingest_fingerprints": state.version,
        },
        counts={
            "rows_in": counts.rows_in,
            "rows_clean": counts.rows_clean,
            "rows_rejected": counts.rows_rejected,
            "files_read": counts.files_read,
            "files_skipped": counts.files_skipped,
            **totals,
        },
    )
    return counts


def _reconcile_totals(
    spark: SparkSession, config: Config, clean_version: int, rejected_version: int, files_version: int, batch: _Batch
) -> dict[str, int]:
    """Every line of every ingested file is in exactly one table, after this batch too (file sources)."""

    def rows(table: str, version: int) -> int:
        # A count of a Delta table is answered from its file statistics.
        return lakehouse.read_table(spark, config.table_path(table), version=version).count()

    totals = {
        "total_rows_clean": rows("transactions_clean", clean_version),
        "total_rows_rejected": rows("transactions_rejected", rejected_version),
    }
    if batch.delivery.files:
        file_lines = lakehouse.read_table(spark, config.table_path("ingested_files"), version=files_version)
        total_in = int(lakehouse.one_row(file_lines.agg(F.sum("lines_in")), "the lines of ingested_files")[0] or 0)
        if total_in != totals["total_rows_clean"] + totals["total_rows_rejected"]:
            raise ReconciliationError(
                f"rows do not reconcile in total: the ingested files hold {total_in:,} lines, the tables "
                f"{totals['total_rows_clean']:,} clean + {totals['total_rows_rejected']:,} rejected"
            )
        totals["total_rows_in"] = total_in
    return totals


def reconcile(counts: IngestCounts, clean_written: int, rejected_written: int) -> None:
    """Fail loudly unless every source line landed in exactly one table.

    ``counts.rows_in`` is the source's own line count and ``counts.rows_rejected`` the rejected lines observed on
    the rejected write, so a commit whose recorded row count disagrees with its rows fails too.
    """
    if clean_written + rejected_written != counts.rows_in or counts.rows_rejected != rejected_written:
        raise ReconciliationError(
            f"rows do not reconcile: {counts.rows_in:,} source lines, {clean_written:,} clean + "
            f"{rejected_written:,} rejected written ({counts.rows_rejected:,} rejected lines in the table)"
        )

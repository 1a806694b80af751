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
    INGESTED_AT,
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
    RUN_ID,
    TRANSACTIONS_CLEAN,
    UNIT_PRICE,
    transactions_rejected_spec,
)
from segspark.errors import InputError, InputPathError, ReconciliationError, RejectThresholdError, SchemaError
from segspark.platform import lakehouse, privacy, progress, publication
from segspark.platform.compat import try_cast
from segspark.platform.stage_log import StageRun
from segspark.stages.ingest.preflight import require_path

__all__ = [
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


def read_source(spark: SparkSession, source: SourceSettings) -> DataFrame:
    """Read the raw transactions as configured; CSV columns are all text (no inference)."""
    path = require_path(source)
    return lakehouse.read_input(spark, source.format, path, source.csv_options, what="input")


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
    if counts.rows_clean > 0 and share <= settings.max_reject_share:
        return
    if counts.rows_clean == 0:
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
    ingested_at = dt.datetime.now(dt.UTC)
    latest = config.ingest.latest_timestamp or ingested_at.replace(microsecond=0)

    text_df = raw_df.transform(with_text_columns)
    progress.step("counting the source lines and finding repeated ones by their fingerprints")
    with _distinct_source_rows(text_df, source) as (rows_in, distinct_df):
        if stage is not None:
            stage.rows_in = rows_in
        parsed_df = distinct_df.transform(
            with_canonical_columns, source, id_key, config.privacy.keep_descriptions
        ).transform(with_reject_reason, source, latest)
        counts = replace(
            _write_tables(spark, config, run_id, parsed_df, raw_df.columns, rows_in, ingested_at),
            latest_timestamp=latest,
        )

    if stage is not None:
        stage.rows_out = counts.rows_clean
        stage.counts = {"rows_clean": counts.rows_clean, "rows_rejected": counts.rows_rejected}
        stage.counts.update({f"rejected_{k}": v for k, v in counts.rejected_by_reason.items()})
    # After the writes and outside the restore: the tables are valid and stay for inspection; the stage fails.
    check_reject_share(counts, config)
    return counts


@contextlib.contextmanager
def _distinct_source_rows(text_df: DataFrame, source: SourceSettings) -> Iterator[tuple[int, DataFrame]]:
    """The source's line count and its distinct rows with ``_copies``; the caches are dropped on exit.

    One job reads the source for the line count and the repeated fingerprints; a second one groups the rows
    that carry one (as few as the repeated lines) into a cache. Each action on the distinct rows then reads
    the source once more.
    """
    if text_df.isEmpty():  # reads one row; an observation over no rows has no values to get
        raise InputError(f"input '{source.path}' has no rows")
    lines = Observation("source_lines")
    repeated = repeated_fingerprints(text_df.observe(lines, F.count(F.lit(1)).alias("lines")))
    repeated = repeated.persist(StorageLevel.MEMORY_AND_DISK)
    grouped: DataFrame | None = None
    try:
        n_repeated = repeated.count()
        rows_in = int(lines.get["lines"])
        broadcast = n_repeated <= BROADCAST_REPEATS
        if n_repeated == 0:
            yield rows_in, unique_rows(text_df, None, broadcast)
            return
        progress.step(f"grouping the lines that share one of {n_repeated:,} repeated fingerprints")
        grouped = repeated_rows(text_df, repeated, broadcast).persist(StorageLevel.MEMORY_AND_DISK)
        grouped.count()
        yield rows_in, distinct_rows(text_df, repeated, broadcast, grouped)
    finally:
        repeated.unpersist()
        if grouped is not None:
            grouped.unpersist()


def _write_tables(
    spark: SparkSession,
    config: Config,
    run_id: str,
    parsed_df: DataFrame,
    source_columns: list[str],
    rows_in: int,
    ingested_at: dt.datetime,
) -> IngestCounts:
    """Write the rejected lines, then the clean ones, reconcile and publish both; restore both on failure."""
    rejected_metrics = Observation("rejected_lines")
    rejected_df = select_rejected(parsed_df, source_columns, run_id, ingested_at, private_columns(config))
    publication.ensure_log(spark, config, run_id)
    with publication.publishing(
        spark, config, run_id, failed="ingest failed: transactions tables restored to their published versions"
    ):
        progress.step("checking every line and writing the rejected ones to transactions_rejected")
        rejected = lakehouse.write_table(
            rejected_df.observe(rejected_metrics, *reject_metrics(config.source)),
            config.table_path("transactions_rejected"),
            transactions_rejected_spec(source_columns),
            overwrite_schema=True,
        )
        progress.step(f"writing the clean lines to transactions_clean ({rejected.rows_written:,} rejected)")
        clean = lakehouse.write_table(
            select_clean(parsed_df, run_id, ingested_at), config.table_path("transactions_clean"), TRANSACTIONS_CLEAN
        )
        counts = counts_from_metrics(rejected_metrics.get, rows_in, clean.rows_written)
        reconcile(counts, clean.rows_written, rejected.rows_written)
        publication.publish(
            spark,
            config,
            run_id,
            "ingest",
            {"transactions_clean": clean.version, "transactions_rejected": rejected.version},
            counts={"rows_in": rows_in, "rows_clean": counts.rows_clean, "rows_rejected": counts.rows_rejected},
        )
    return counts


def reconcile(counts: IngestCounts, clean_written: int, rejected_written: int) -> None:
    """Fail loudly unless every source line landed in exactly one table.

    ``counts.rows_in`` is the source's own line count; the rejected lines per reason were read back from the
    table, so a commit whose recorded row count disagrees with its rows fails too.
    """
    if clean_written + rejected_written != counts.rows_in or counts.rows_rejected != rejected_written:
        raise ReconciliationError(
            f"rows do not reconcile: {counts.rows_in:,} source lines, {clean_written:,} clean + "
            f"{rejected_written:,} rejected written ({counts.rows_rejected:,} rejected lines in the table)"
        )

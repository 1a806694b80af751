"""Ingest's rules: each source text parsed into its canonical value, and each row's first reject reason.

The column functions parse one source text column each (null when the text is invalid);
:func:`with_canonical_columns` adds the parsed columns next to the source text and :func:`with_reject_reason`
the first failed check. :func:`select_clean` and :func:`select_rejected` lay the checked rows out as
``transactions_clean`` and ``transactions_rejected`` (one row per rejected source line), the latter with the
texts the privacy settings keep out replaced (:func:`private_columns`).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
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
    RUN_ID,
    TRANSACTIONS_CLEAN,
    UNIT_PRICE,
)
from segspark.platform import privacy
from segspark.platform.compat import try_cast
from segspark.stages.ingest.fingerprints import COPIES, source_column

__all__ = [
    "NUMBER_PATTERN",
    "REJECTED_COPIES",
    "REPLACEMENT_CHARACTER",
    "expand_rejected",
    "normalized_customer_id",
    "parsed_decimal",
    "parsed_number",
    "parsed_quantity",
    "parsed_timestamp",
    "private_columns",
    "rejected_texts",
    "select_clean",
    "select_rejected",
    "undecodable_text",
    "utc_timestamp_literal",
    "with_canonical_columns",
    "with_reject_reason",
]

#: A decimal number as text: sign, digits, optional fraction and exponent. Anything else is unparseable.
NUMBER_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_INT_LIMIT = 2**31


def utc_timestamp_literal(moment: dt.datetime) -> Column:
    """A timestamp literal for an aware datetime, independent of the session time zone."""
    return F.timestamp_seconds(F.lit(moment.timestamp()))


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
    """Add ``reject_reason``: the first failed check in :data:`~segspark.contracts.schemas.REJECT_REASONS` order;
    null when the row is valid.

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


#: Internal column: how many copies of a distinct row are rejected (all, or all but the clean first copy).
REJECTED_COPIES = "__rejected_copies"


def rejected_texts(parsed_df: DataFrame) -> DataFrame:
    """The distinct rows with a rejected copy, with :data:`REJECTED_COPIES` and ``reject_reason`` set
    (``duplicate`` for the copies after a valid row's first)."""
    is_valid = F.col(REJECT_REASON).isNull()
    rejected_copies = F.when(is_valid, F.col(COPIES) - 1).otherwise(F.col(COPIES))
    return (
        parsed_df.withColumn(REJECTED_COPIES, rejected_copies)
        .where(F.col(REJECTED_COPIES) > 0)
        .withColumn(REJECT_REASON, F.coalesce(F.col(REJECT_REASON), F.lit("duplicate")))
    )


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
    return expand_rejected(rejected_texts(parsed_df), source_columns, run_id, ingested_at, replaced)


def expand_rejected(
    texts: DataFrame,
    source_columns: list[str],
    run_id: str,
    ingested_at: dt.datetime,
    replaced: dict[str, Column] | None = None,
) -> DataFrame:
    """:func:`select_rejected` of :func:`rejected_texts` already selected: n rejected copies become n rows."""
    replaced = replaced or {}
    return texts.withColumn(
        "__copy", F.explode(F.array_repeat(F.lit(True), F.col(REJECTED_COPIES).cast("int")))
    ).select(
        *[replaced[c].alias(c) if c in replaced else source_column(c) for c in source_columns],
        F.col(REJECT_REASON),
        F.lit(run_id).alias(RUN_ID),
        utc_timestamp_literal(ingested_at).alias(INGESTED_AT),
    )

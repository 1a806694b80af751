"""``segspark export``: one published output table, optionally filtered, written as a folder a person can hand on.

``segspark export --table NAME --format csv|parquet --out PATH [--where CLAUSE] [--overwrite]`` reads the
table as its latest publication left it (:func:`segspark.platform.publication.read_published`), keeps the rows the
``--where`` clause selects, orders them and writes them with Spark into the folder ``PATH``:

- CSV: a header row; one file when at most :data:`SINGLE_FILE_MAX_ROWS` rows are selected, otherwise several
  part files (each with its own header), in order. Quotes inside values are doubled (RFC 4180), not
  backslash-escaped as Spark does by default. CSV has no nested types: arrays of strings become their elements
  joined with ``"; "`` (null elements are skipped), every other array, map and struct becomes JSON text.
- Parquet: as Spark writes it, nested types kept.

Rows are ordered by the key columns the table has (:data:`KEY_COLUMNS`), then by its other flat columns, so
the same table version and clause always give the same files.

The clause is a user's text, so it is never pasted into Spark as given:
:func:`segspark.stages.export.where_clause.validate_where` tokenises it,
accepts only the column names of the table, literals, comparisons and boolean logic, and renders the
accepted tokens again (columns backquoted in the table's spelling, string literals re-escaped); anything else
is a usage error naming the token and its place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.errors import AnalysisException, ArithmeticException, DateTimeException, NumberFormatException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, CUSTOMER_ID, PUBLISHED_TABLES, SEGMENT_ID
from segspark.errors import ConfigError, InputError
from segspark.platform import filesystem, progress, publication
from segspark.stages.export.where_clause import validate_where, where_error

__all__ = [
    "ARRAY_SEPARATOR",
    "FORMATS",
    "KEY_COLUMNS",
    "SINGLE_FILE_MAX_ROWS",
    "ExportResult",
    "csv_column",
    "order_columns",
    "run_export",
    "with_export_layout",
]

log = logging.getLogger("segspark")

#: Formats ``--format`` takes.
FORMATS = ("csv", "parquet")
#: Columns the written rows are ordered by first, those of them the table has, in this order.
KEY_COLUMNS = (AS_OF_DATE, SEGMENT_ID, CUSTOMER_ID)
#: A CSV export of at most this many rows is one file; a larger one is written as several part files, so one
#: task does not have to write (and hold the sort of) the whole table.
SINGLE_FILE_MAX_ROWS = 1_000_000
#: Separator of the elements of an array of strings in a CSV cell.
ARRAY_SEPARATOR = "; "


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote."""

    #: Logical table name, e.g. ``customer_segments``.
    table: str
    #: ``csv`` or ``parquet``.
    format: str
    #: The folder written, as Hadoop qualifies it (``file:/...`` for a local folder).
    path: str
    #: Rows written (those the clause selected).
    rows: int
    #: Names of the data files in ``path``, in row order (Spark's ``_SUCCESS`` and checksum files left out).
    files: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------
# The export


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _output_tables(config: Config) -> dict[str, str]:
    """Logical name -> configured folder name of every table the publication log covers."""
    folders = config.tables.model_dump()
    return {t: folders[t] for t in PUBLISHED_TABLES if t in folders}


def _published_tables(spark: SparkSession, config: Config) -> list[str]:
    return [t for t in _output_tables(config) if publication.is_published(spark, config, t)]


def _logical_table(config: Config, table: str) -> str | None:
    """The logical name of ``table``, given as its logical name or as the folder name ``tables.*`` gives it; None
    when it is not a table the publication log covers."""
    names = _output_tables(config)
    if table in names:
        return table
    return next((t for t, folder in names.items() if folder == table), None)


def _read_published(spark: SparkSession, config: Config, table: str) -> tuple[str, DataFrame]:
    """(logical name, rows as published) of ``table``; InputError listing the published tables otherwise."""
    logical = _logical_table(config, table)
    if logical is not None:
        try:
            return logical, publication.read_published(spark, config, logical)
        except InputError:
            pass  # not published yet: said below, with the tables that are
    published = ", ".join(_published_tables(spark, config)) or "none yet (run 'segspark run' first)"
    reason = "is not an output table segspark publishes" if logical is None else "has not been published"
    raise InputError(f"cannot export {table!r}: it {reason} in {config.lakehouse}; published tables: {published}")


def _check_out(spark: SparkSession, config: Config, out: str, overwrite: bool) -> str:
    """The qualified output folder; it must lie outside the lakehouse and, without ``overwrite``, not exist."""
    if not out or not out.strip():
        raise ConfigError("--out: give the folder to write, e.g. --out exports/champions")
    qualified = filesystem.qualified(spark, out.strip())  # as Spark's writer will resolve it
    target = qualified.rstrip("/")
    lake = filesystem.qualified(spark, config.lakehouse).rstrip("/")
    # An overwrite of the lakehouse, a folder holding it or one of its tables would delete published data.
    if target == lake or lake.startswith(target + "/") or target.startswith(lake + "/"):
        raise ConfigError(f"--out '{out}' overlaps the lakehouse {lake}: export to a folder outside it")
    if not overwrite and filesystem.exists(spark, qualified):
        raise InputError(f"--out '{out}' already exists: pass --overwrite to replace it, or choose another path")
    return target


def _is_flat(data_type: T.DataType) -> bool:
    """Orderable and plain text in CSV (by type name for variant: Spark 3.5's types have no VariantType)."""
    nested = isinstance(data_type, (T.ArrayType, T.MapType, T.StructType, T.BinaryType))
    return not nested and data_type.typeName() != "variant"


def csv_column(field: T.StructField) -> Column:
    """``field`` as a column CSV can hold: an array of strings joined with :data:`ARRAY_SEPARATOR` (null
    elements skipped), another array, a map or a struct as JSON text (null struct fields left out), binary as
    base64; others unchanged."""
    column = F.col(field.name)
    data_type = field.dataType
    if isinstance(data_type, T.ArrayType) and isinstance(data_type.elementType, T.StringType):
        column = F.array_join(column, ARRAY_SEPARATOR)
    elif isinstance(data_type, (T.ArrayType, T.MapType, T.StructType)):
        column = F.to_json(column)
    elif isinstance(data_type, T.BinaryType):
        column = F.base64(column)
    return column.alias(field.name)


def order_columns(df: DataFrame) -> list[str]:
    """The columns export orders rows by: the :data:`KEY_COLUMNS` ``df`` has, then its other flat columns (a
    total order as far as the table's flat columns tell rows apart; maps cannot be ordered)."""
    keys = [c for c in KEY_COLUMNS if c in df.columns]
    rest = [f.name for f in df.schema.fields if f.name not in keys and _is_flat(f.dataType)]
    return keys + rest


def with_export_layout(df: DataFrame, fmt: str) -> DataFrame:
    """``df`` ordered for export (:func:`order_columns`), with CSV-safe columns when ``fmt`` is ``csv``."""
    ordered_df = df.orderBy(*[F.col(c).asc_nulls_first() for c in order_columns(df)])
    if fmt != "csv":
        return ordered_df
    return ordered_df.select(*[csv_column(f) for f in df.schema.fields])


def _filtered(table_df: DataFrame, where: str, spark: SparkSession) -> DataFrame:
    clause = validate_where(where, table_df.columns)
    escaped = str(spark.conf.get("spark.sql.parser.escapedStringLiterals", "false")).lower() == "true"
    if escaped and "\\" in clause:
        # The clause's literals are escaped for Spark's default parser; under this setting they would mean
        # other text, and the filter would silently select other rows.
        raise where_error(
            "string literals with a quote or backslash need spark.sql.parser.escapedStringLiterals=false"
        )
    try:
        return table_df.filter(F.expr(clause))
    except AnalysisException as exc:  # ParseException too: both are the clause's fault, not a job failure
        raise where_error(f"Spark cannot apply {clause}: {_first_line(exc)}") from None


def _data_files(spark: SparkSession, path: str) -> tuple[str, ...]:
    names = filesystem.list_names(spark, filesystem.qualified(spark, path), files_only=True)
    return tuple(n for n in names if not n.startswith(("_", ".")))


def run_export(
    spark: SparkSession,
    config: Config,
    table: str,
    fmt: str,
    out: str,
    where: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the published version of one output table, filtered by ``where``, as a CSV or Parquet folder.

    Parameters
    ----------
    table : a table of :data:`segspark.contracts.schemas.PUBLISHED_TABLES` (its logical or configured folder name).
    fmt : ``csv`` or ``parquet``.
    out : the folder to write; Hadoop qualifies it (a local path, ``s3a://...``). It must lie outside the
        lakehouse.
    where : an optional clause selecting rows, checked by :func:`validate_where`; None exports every row.
    overwrite : replace ``out`` when it exists.

    Output columns are the table's, in its order; for CSV nested columns become text (:func:`csv_column`).
    Null values are empty CSV fields (an empty string is ``""``).

    Raises
    ------
    ConfigError
        (exit 2) ``fmt`` is not csv or parquet; the clause is rejected by :func:`validate_where`, cannot be
        parsed or analysed by Spark (a type mismatch, not a condition), or fails on the data (ANSI casts,
        division by zero); ``out`` overlaps the lakehouse.
    InputError
        (exit 1) ``table`` is not a published output table (the message lists those that are); ``out``
        exists and ``overwrite`` is False.
    """
    fmt_name = (fmt or "").strip().lower()
    if fmt_name not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    logical, table_df = _read_published(spark, config, table)
    path = _check_out(spark, config, out, overwrite)
    selected_df = table_df if where is None else _filtered(table_df, where, spark)

    progress.step(f"counting the rows of {logical} to export")
    try:
        rows = selected_df.count()  # decides the CSV file layout; one pass over the table before the write
    except (ArithmeticException, NumberFormatException, DateTimeException) as exc:
        raise where_error(f"the clause fails on the table's rows: {_first_line(exc)}") from None
    if rows == 0:
        what = f"{logical} has no rows" if where is None else f"no rows of {logical} match the --where clause"
        log.warning("export: %s; the output holds none (a CSV holds its header row)", what)

    export_df = selected_df.transform(with_export_layout, fmt_name)
    writer_df = export_df.coalesce(1) if fmt_name == "csv" and rows <= SINGLE_FILE_MAX_ROWS else export_df
    writer = writer_df.write.mode("overwrite" if overwrite else "errorifexists")
    progress.step(f"writing {rows:,} rows of {logical} to {path} as {fmt_name}")
    try:
        if fmt_name == "csv":
            # RFC 4180 quoting (a quote inside a value is doubled), which spreadsheets read; Spark's default
            # escapes it with a backslash.
            writer.option("header", "true").option("escape", '"').csv(path)
        else:
            writer.parquet(path)
    except AnalysisException as exc:  # the folder appeared since the check above
        raise InputError(f"cannot write --out '{out}': {_first_line(exc)}") from None
    files = _data_files(spark, path)
    if fmt_name == "csv" and rows > SINGLE_FILE_MAX_ROWS:
        log.info(
            "export: %s rows is more than %s, so the CSV is %d part files (in order, each with its header row)",
            f"{rows:,}",
            f"{SINGLE_FILE_MAX_ROWS:,}",
            len(files),
        )
    log.info(
        "export: %s rows of the published %s%s written to %s as %d %s file(s)",
        f"{rows:,}",
        logical,
        "" if where is None else " selected by the --where clause",
        path,
        len(files),
        fmt_name,
    )
    return ExportResult(table=logical, format=fmt_name, path=path, rows=rows, files=files)

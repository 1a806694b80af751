"""segspark export: the --where clause is validated token by token, and the published rows it selects are written
as CSV or Parquet, in key order, nested columns as text in CSV."""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.contracts.schemas import CUSTOMER_SEGMENTS
from segspark.errors import ConfigError, InputError
from segspark.platform import lakehouse, publication
from segspark.stages.export.stage import ExportResult, order_columns, run_export, with_export_layout
from segspark.stages.export.where_clause import validate_where
from tests.helpers.config import make_config

COLUMNS = ["as_of_date", "customer_id", "segment_id", "distance_to_centroid", "Segment_Name", "recency_days"]


# ---------------------------------------------------------------------------------------------------------
# validate_where: pure Python


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        (
            "segment_name = 'Champions' and recency_days < 30",
            "`Segment_Name` = 'Champions' AND `recency_days` < 30",
        ),
        ("SEGMENT_ID in (1, 2,3)", "`segment_id` IN (1, 2, 3)"),
        (
            "not (customer_id like 'C1%') or customer_id NOT LIKE '%9'",
            "NOT (`customer_id` LIKE 'C1%') OR `customer_id` NOT LIKE '%9'",
        ),
        (
            "as_of_date between date'2011-01-01' and DATE '2011-12-31'",
            "`as_of_date` BETWEEN DATE '2011-01-01' AND DATE '2011-12-31'",
        ),
        ("as_of_date >= TIMESTAMP '2011-12-01 10:30:00'", "`as_of_date` >= TIMESTAMP '2011-12-01 10:30:00'"),
        ("customer_id is not null or `Segment_ID` IS NULL", "`customer_id` IS NOT NULL OR `segment_id` IS NULL"),
        ("distance_to_centroid * 2 + 1 >= .5e1 / 4 - 1.25", "`distance_to_centroid` * 2 + 1 >= .5e1 / 4 - 1.25"),
        (
            "recency_days <> -3 and recency_days != 4 and recency_days == 5",
            "`recency_days` <> - 3 AND `recency_days` != 4 AND `recency_days` == 5",
        ),
        ("(segment_id = 1) = true OR false", "(`segment_id` = 1) = TRUE OR FALSE"),
        # A quote inside a literal ('' in the clause) stays inside it: Spark sees one string, not "or '1'='1'".
        ("customer_id = 'x'' or ''1''=''1'", "`customer_id` = 'x\\' or \\'1\\'=\\'1'"),
        # A backslash is an ordinary character of the value; Spark would otherwise read \' as an escape.
        ("customer_id = 'a\\'", "`customer_id` = 'a\\\\'"),
        ("customer_id = '-- not a comment; nor /* this */'", "`customer_id` = '-- not a comment; nor /* this */'"),
        ("  segment_id=1  ", "`segment_id` = 1"),
    ],
)
def test_accepted_clauses_are_rendered_with_the_tables_spelling(clause, expected):
    assert validate_where(clause, COLUMNS) == expected


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        (
            "segmnt_name = 'Champions'",
            "--where: unknown column 'segmnt_name' at character 1; columns are as_of_date, customer_id, segment_id, "
            "distance_to_centroid, Segment_Name, recency_days",
        ),
        ("segment_id = 1 and `nope` = 2", "--where: unknown column '`nope`' at character 20; columns are "),
        ("segment_name = 'Champions'; drop", "--where: ';' is not allowed at character 27"),
        ("1=1; drop table x", "--where: ';' is not allowed at character 4"),
        ("segment_id = (select 1)", "--where: 'select' is not allowed at character 15: subqueries are not allowed"),
        ("segment_id = 1 UNION SELECT 1", "--where: 'UNION' is not allowed at character 16: subqueries"),
        ("exists (segment_id)", "--where: function calls are not allowed: 'exists(' at character 1"),
        ("lower(customer_id) = 'a'", "--where: function calls are not allowed: 'lower(' at character 1"),
        ("`segment_id` (1) = 1", "--where: function calls are not allowed: '`segment_id`(' at character 1"),
        ("segment_id = 1 -- and the rest", "--where: '--' (a comment) is not allowed at character 16"),
        ("/* hi */ segment_id = 1", "--where: '/*' (a comment) is not allowed at character 1"),
        ("(segment_id = 1", "--where: '(' at character 1 is never closed"),
        ("segment_id = 1)", "--where: ')' at character 15 has no matching '('"),
        ("customer_id = 'x", "--where: unterminated string starting at character 15"),
        ("customer_id = 'x'' or 1=1", "--where: unterminated string starting at character 15"),
        ("`segment_id = 1", "--where: unterminated quoted column name starting at character 1"),
        ("", "--where: the clause is empty"),
        ("   ", "--where: the clause is empty"),
        ('customer_id = "x"', "--where: '\"' is not allowed at character 15; quote text with single quotes"),
        ("segment_id % 2 = 0", "--where: '%' is not allowed at character 12"),
        ("customer_id.x = 1", "--where: '.' is not allowed at character 12"),
        ("segment_id in 1", "--where: IN at character 12 must be followed by a list"),
        ("segment_id in ()", "--where: empty parentheses at character 15"),
        ("customer_id is 'x'", "--where: IS at character 13 must be followed by NULL or NOT NULL"),
        ("segment_id, customer_id", "--where: ',' is not allowed at character 11: commas only separate"),
        ("segment_id 1", "--where: an operator is missing before '1' at character 12"),
        ("customer_id = 'x' 'y'", "--where: an operator is missing before ''y'' at character 19"),
        ("segment_id =", "--where: the clause ends after '=' at character 12: a value is missing"),
        ("as_of_date = DATE '2011-13-01'", "--where: DATE '2011-13-01' at character 14 is not a date yyyy-mm-dd"),
        ("as_of_date = TIMESTAMP 'soon'", "--where: TIMESTAMP 'soon' at character 14 is not a timestamp"),
        ("recency_days < 30d", "--where: '30d' at character 16 is neither a number nor a column name"),
        ("case when segment_id = 1 then true end", "--where: 'case' is not allowed at character 1"),
    ],
)
def test_rejected_clauses_name_the_token_and_its_place(clause, message):
    with pytest.raises(ConfigError) as caught:
        validate_where(clause, COLUMNS)
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == 2


def test_a_column_spelled_like_a_keyword_is_reached_by_backquotes():
    assert validate_where("`date` = DATE '2011-12-01' and `In` = 1", ["date", "in"]) == (
        "`date` = DATE '2011-12-01' AND `in` = 1"
    )
    with pytest.raises(ConfigError, match="ambiguous"):
        validate_where("id = 1", ["ID", "Id"])


# ---------------------------------------------------------------------------------------------------------
# with_export_layout: the rows' order and CSV's text columns, on an in-memory frame


def test_csv_layout_orders_by_key_columns_and_turns_nested_columns_into_text(spark):
    nested_df = spark.createDataFrame(
        [
            (2, dt.date(2011, 12, 1), ["a", None, "b"], [1, 2], {"x": 1.5}, ("n", 1), bytearray(b"hi"), 1.0),
            (1, dt.date(2011, 12, 1), [], None, {}, None, None, None),
            (1, None, None, [3], {"y": -0.5}, ("m", None), None, 2.0),
            (1, dt.date(2011, 12, 1), ["c"], [], None, ("o", 2), None, 0.5),
        ],
        "segment_id INT, as_of_date DATE, tags ARRAY<STRING>, counts ARRAY<INT>, centroid MAP<STRING, DOUBLE>, "
        "profile STRUCT<name: STRING, rank: INT>, raw BINARY, share DOUBLE",
    )
    expected_df = spark.createDataFrame(
        [  # as_of_date (nulls first), then segment_id, then the other flat columns (share, nulls first)
            (1, None, None, "[3]", '{"y":-0.5}', '{"name":"m"}', None, 2.0),
            (1, dt.date(2011, 12, 1), "", None, "{}", None, None, None),
            (1, dt.date(2011, 12, 1), "c", "[]", None, '{"name":"o","rank":2}', None, 0.5),
            (2, dt.date(2011, 12, 1), "a; b", "[1,2]", '{"x":1.5}', '{"name":"n","rank":1}', "aGk=", 1.0),
        ],
        "segment_id INT, as_of_date DATE, tags STRING, counts STRING, centroid STRING, profile STRING, raw STRING, "
        "share DOUBLE",
    )
    assert order_columns(nested_df) == ["as_of_date", "segment_id", "share"]
    assert_df_equality(with_export_layout(nested_df, "csv"), expected_df, ignore_nullable=True)
    assert with_export_layout(nested_df, "parquet").schema == nested_df.schema  # Parquet keeps the types


# ---------------------------------------------------------------------------------------------------------
# run_export: a tiny published lakehouse

#: The customer_segments columns the rows below give, typed as its spec types them; any other column of the spec
#: (one added later) is written as null.
SEGMENTS_COLUMNS = ["as_of_date", "customer_id", "segment_id", "distance_to_centroid", "model_version", "run_id",
                    "segment_name"]  # fmt: skip
SEGMENTS_SCHEMA = T.StructType([T.StructField(c, CUSTOMER_SEGMENTS.schema[c].dataType) for c in SEGMENTS_COLUMNS])
#: customer_segments as an exported CSV is read back.
CSV_SCHEMA = T.StructType([T.StructField(f.name, f.dataType) for f in CUSTOMER_SEGMENTS.schema.fields])
DEC_1, NOV_1 = dt.date(2011, 12, 1), dt.date(2011, 11, 1)
AWKWARD_ID = 'it\'s "x", too'


def _segments(spark, rows: list[tuple]):
    """customer_segments rows in the spec's columns; a spec column not in :data:`SEGMENTS_COLUMNS` is null."""
    df = spark.createDataFrame(rows, SEGMENTS_SCHEMA)
    return df.select(
        *[F.col(c) if c in SEGMENTS_COLUMNS else F.lit(None).cast(CSV_SCHEMA[c].dataType).alias(c) for c in
          CSV_SCHEMA.names]
    )  # fmt: skip


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    """customer_segments published by one run, then a row appended by a run that never published."""
    config = make_config(tmp_path_factory.mktemp("export") / "lakehouse")
    publication.ensure_log(spark, config, "r0")
    path = config.table_path("customer_segments")
    rows = [
        (DEC_1, "c3", 2, 0.5, "m1", "r1", "Champions"),
        (DEC_1, "c1", 2, 1.25, "m1", "r1", "Champions"),
        (DEC_1, "c2", 1, 0.75, "m1", "r1", "At Risk"),
        (DEC_1, "c4", 2, 3.0, "m1", "r1", "Champions"),
        (DEC_1, AWKWARD_ID, 2, 0.2, "m1", "r1", "Champions"),
        (NOV_1, "c5", 2, 0.1, "m0", "r0", None),
        (NOV_1, "c6", 2, 0.1, "m0", "r0", "Champions"),
    ]
    version = lakehouse.write_table(_segments(spark, rows), path, CUSTOMER_SEGMENTS).version
    publication.publish(spark, config, "r1", "train", {"customer_segments": version})
    # Export must not see this row: its run died before publishing.
    unpublished_df = _segments(spark, [(DEC_1, "c9", 2, 0.0, "m2", "r2", "Champions")])
    lakehouse.write_table(unpublished_df, path, CUSTOMER_SEGMENTS, mode="append")
    return config


def _read_csv(spark, path: str):
    return spark.read.option("header", "true").option("escape", '"').schema(CSV_SCHEMA).csv(path)


def test_csv_export_writes_the_published_rows_the_clause_selects_in_key_order(spark, published, tmp_path):
    out = str(tmp_path / "champions")
    result = run_export(
        spark,
        published,
        "customer_segments",
        "csv",
        out,
        where="segment_name = 'Champions' and Distance_To_Centroid < 1.5 or segment_name is null",
    )

    expected_df = _segments(
        spark,
        [  # as_of_date, then segment_id, then customer_id; the row appended after the publication is not there
            (NOV_1, "c5", 2, 0.1, "m0", "r0", None),
            (NOV_1, "c6", 2, 0.1, "m0", "r0", "Champions"),
            (DEC_1, "c1", 2, 1.25, "m1", "r1", "Champions"),
            (DEC_1, "c3", 2, 0.5, "m1", "r1", "Champions"),
            (DEC_1, AWKWARD_ID, 2, 0.2, "m1", "r1", "Champions"),
        ],
    )
    assert_df_equality(_read_csv(spark, out), expected_df, ignore_nullable=True)  # row order too: one file
    assert result == ExportResult("customer_segments", "csv", f"file:{out}", 5, result.files)
    assert len(result.files) == 1 and result.files[0].endswith(".csv")
    text = (tmp_path / "champions" / result.files[0]).read_text()
    assert text.splitlines()[0] == ",".join(CUSTOMER_SEGMENTS.columns)
    assert '"it\'s ""x"", too"' in text  # RFC 4180: the quotes inside the value are doubled

    with pytest.raises(InputError, match=f"--out '{out}' already exists: pass --overwrite"):
        run_export(spark, published, "customer_segments", "csv", out)
    again = run_export(spark, published, "customer_segments", "csv", out, where="customer_id = 'c2'", overwrite=True)
    assert again.rows == 1
    assert_df_equality(
        _read_csv(spark, out), _segments(spark, [(DEC_1, "c2", 1, 0.75, "m1", "r1", "At Risk")]), ignore_nullable=True
    )


def test_parquet_export_writes_the_selected_rows_in_order(spark, published, tmp_path):
    out = str(tmp_path / "segments.parquet")
    result = run_export(
        spark, published, "customer_segments", "Parquet", out, where="as_of_date = DATE '2011-12-01' AND NOT "
        "customer_id IN ('c4', 'c5') AND distance_to_centroid BETWEEN 0.5 AND 2"
    )  # fmt: skip

    # Each file read on its own and appended in name order: Spark would otherwise pack files by size.
    read_df = reduce(lambda a, b: a.unionByName(b), [spark.read.parquet(f"{out}/{name}") for name in result.files])
    expected_df = _segments(
        spark,
        [
            (DEC_1, "c2", 1, 0.75, "m1", "r1", "At Risk"),
            (DEC_1, "c1", 2, 1.25, "m1", "r1", "Champions"),
            (DEC_1, "c3", 2, 0.5, "m1", "r1", "Champions"),
        ],
    )
    assert result.rows == 3 and result.format == "parquet"
    assert result.files and all(name.endswith(".parquet") for name in result.files)
    assert_df_equality(read_df, expected_df, ignore_nullable=True, ignore_metadata=True)


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("segmnt_id = 2", "--where: unknown column 'segmnt_id' at character 1"),
        ("segment_id + 1", "--where: Spark cannot apply `segment_id` + 1: [DATATYPE_MISMATCH.FILTER_NOT_BOOLEAN]"),
        ("as_of_date = TRUE", "--where: Spark cannot apply `as_of_date` = TRUE: [DATATYPE_MISMATCH"),
        ("segment_id = = 1", "--where: Spark cannot apply `segment_id` = = 1: [PARSE_SYNTAX_ERROR]"),
    ],
)
def test_a_bad_clause_is_a_one_line_usage_error_and_writes_nothing(spark, published, tmp_path, clause, message):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as caught:
        run_export(spark, published, "customer_segments", "csv", str(out), where=clause)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
    assert not out.exists()


def test_a_clause_that_fails_on_the_data_is_a_usage_error(spark, published, tmp_path):
    if spark.conf.get("spark.sql.ansi.enabled") != "true":
        pytest.skip("without ANSI mode a division by zero is null, not an error")
    with pytest.raises(ConfigError, match=r"--where: the clause fails on the table's rows: \[DIVIDE_BY_ZERO\]"):
        run_export(spark, published, "customer_segments", "csv", str(tmp_path / "x"), where="segment_id / 0 > 1")


def test_unknown_unpublished_and_bad_arguments(spark, published, lakehouse, tmp_path):
    out = str(tmp_path / "x")
    with pytest.raises(
        InputError, match="'segment_names': it is not an output table .*; published tables: customer_segments$"
    ):
        run_export(spark, published, "segment_names", "csv", out)
    with pytest.raises(
        InputError, match="'segment_centroids': it has not been published .*; published tables: customer_segments$"
    ):
        run_export(spark, published, "segment_centroids", "csv", out)
    with pytest.raises(InputError, match="published tables: none yet"):
        run_export(spark, make_config(lakehouse), "customer_segments", "csv", out)
    with pytest.raises(ConfigError, match="--format must be one of csv, parquet, got 'xlsx'"):
        run_export(spark, published, "customer_segments", "xlsx", out)
    with pytest.raises(ConfigError, match="overlaps the lakehouse"):
        run_export(
            spark, published, "customer_segments", "csv", f"{published.lakehouse}/customer_segments", overwrite=True
        )

"""Ingest: parsing rules, every rejection reason, reconciliation, re-runs, layouts and bad input."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal

import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F

from segspark.config.paths import local_path
from segspark.errors import InputError, InputPathError, ReconciliationError, RejectThresholdError, SchemaError
from segspark.platform import lakehouse
from segspark.platform.compat import DELTA_VERSION
from segspark.platform.stage_log import StageRun
from segspark.stages.ingest import stage as ingest
from segspark.stages.ingest.counts import IngestCounts, check_reject_share, reconcile
from segspark.stages.ingest.fingerprints import (
    FINGERPRINT,
    count_identical_rows,
    distinct_rows,
    repeated_fingerprints,
    row_fingerprint,
)
from segspark.stages.ingest.rules import (
    normalized_customer_id,
    parsed_quantity,
    parsed_timestamp,
    select_clean,
    select_rejected,
    with_canonical_columns,
    with_reject_reason,
)
from tests.helpers.config import REAL_DATA, make_config, requires_real_data, retail_config
from tests.helpers.data import LINES, write_csv
from tests.helpers.data import RETAIL_HEADER as HEADER

CLEAN_DDL = (
    "invoice_id string, customer_id string, product_id string, description string, quantity int, "
    "unit_price decimal(18,4), line_amount decimal(28,4), invoice_ts timestamp, invoice_date date, "
    "country string, is_return boolean"
)


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


EXPECTED_CLEAN = [
    ("536365", "17850", "85123A", "WHITE HEART", 6, Decimal("2.55"), Decimal("15.30"),
     _ts("2010-12-01 08:26:00"), dt.date(2010, 12, 1), "United Kingdom", False),
    ("C536379", "14527", "D", "Discount", -1, Decimal("27.50"), Decimal("-27.50"),
     _ts("2010-12-01 09:41:00"), dt.date(2010, 12, 1), "United Kingdom", True),
    ("536380", "007", "22961", "JAM", -3, Decimal("1.45"), Decimal("-4.35"),
     _ts("2010-12-01 09:45:00"), dt.date(2010, 12, 1), "United Kingdom", True),
    ("536381", "12583", "22962", "JAM, LARGE", 4, Decimal("1.455"), Decimal("5.82"),
     _ts("2010-12-01 09:45:00"), dt.date(2010, 12, 1), "France", False),
    ("536381", "12583", "22962", "JAM, LARGE", 4, Decimal("1.455"), Decimal("5.82"),
     _ts("2010-12-01 09:45:00"), dt.date(2010, 12, 1), "France", False),
    ("C536382", "12583", "22963", "MUG", 3, Decimal("0.85"), Decimal("2.55"),
     _ts("2010-12-02 00:00:00"), dt.date(2010, 12, 2), None, True),
]

EXPECTED_REASONS = {
    "duplicate": 2,
    "missing_customer_id": 4,
    "invalid_encoding": 0,
    "invalid_timestamp": 1,
    "future_timestamp": 0,
    "invalid_quantity": 4,
    "invalid_price": 4,
}


def clean_rows(spark, config):
    return lakehouse.read_table(spark, config.table_path("transactions_clean")).drop("run_id", "ingested_at")


# --- repeated rows ---

TEXT_ROWS = [
    ("a", "1", None),
    ("a", "1", None),  # copy of the first
    ("a", "1", None),  # copy of the first
    ("a", None, "1"),  # same texts, nulls elsewhere: a different row
    (None, "a", "1"),
    ("b", "2", "x"),
    ("b", "2", "x "),  # trailing space: not a copy
]
EXPECTED_DISTINCT = [
    ("a", "1", None, 3),
    ("a", None, "1", 1),
    (None, "a", "1", 1),
    ("b", "2", "x", 1),
    ("b", "2", "x ", 1),
]


@pytest.mark.parametrize("broadcast", [True, False])
def test_distinct_rows_counts_copies_by_full_text(spark, broadcast):
    text = spark.createDataFrame(TEXT_ROWS, "c1 string, c2 string, c3 string")
    got = distinct_rows(text, repeated_fingerprints(text), broadcast)
    expected = spark.createDataFrame(EXPECTED_DISTINCT, "c1 string, c2 string, c3 string, _copies long")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_distinct_rows_keeps_rows_apart_when_fingerprints_collide(spark):
    """Every fingerprint marked repeated (as if all collided): the exact grouping still separates the rows."""
    text = spark.createDataFrame(TEXT_ROWS, "c1 string, c2 string, c3 string")
    everything = text.select(row_fingerprint(text.columns).alias(FINGERPRINT)).distinct()
    got = distinct_rows(text, everything, broadcast=True)
    expected = spark.createDataFrame(EXPECTED_DISTINCT, "c1 string, c2 string, c3 string, _copies long")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_reconcile_checks_lines_in_against_both_tables():
    counts = IngestCounts(rows_in=10, rows_clean=7, rejected_by_reason={"duplicate": 1, "invalid_price": 2})
    reconcile(counts, clean_written=7, rejected_written=3)
    with pytest.raises(ReconciliationError, match="10 source lines, 7 clean \\+ 2 rejected written"):
        reconcile(counts, clean_written=7, rejected_written=2)
    with pytest.raises(ReconciliationError, match="3 rejected lines in the table"):
        reconcile(counts, clean_written=8, rejected_written=2)


# --- column functions ---


def test_normalized_customer_id(spark):
    df = spark.createDataFrame(
        [("17850.0", "17850"), (" 17850 ", "17850"), ("17850.00", "17850"), ("007", "007"), ("007.0", "007"),
         ("1.785E4", "17850"), ("12.5", "12.5"), ("A-12", "A-12"), ("", None), ("   ", None), ("NaN", None),
         ("nan", None), (None, None)],
        "raw string, expected string",
    )
    out = df.withColumn("actual", normalized_customer_id(F.col("raw")))
    assert_column_equality(out, "actual", "expected")


def test_parsed_quantity(spark):
    df = spark.createDataFrame(
        [("6", 6), ("-2", -2), (" 3 ", 3), ("4.0", 4), ("1e2", 100), ("0", None), ("-0.0", None), ("1.5", None),
         ("abc", None), ("", None), (None, None), ("99999999999", None), ("NaN", None), ("Infinity", None)],
        "raw string, expected int",
    )
    assert_column_equality(df.withColumn("actual", parsed_quantity(F.col("raw"))), "actual", "expected")


def test_parsed_timestamp_tries_formats_then_bare_date(spark):
    df = spark.createDataFrame(
        [("2010-12-01 08:26:00", _ts("2010-12-01 08:26:00")), ("12/1/2010 8:26", _ts("2010-12-01 08:26:00")),
         ("2010-12-01", _ts("2010-12-01 00:00:00")), ("2010-13-01 08:26:00", None), ("yesterday", None),
         (None, None)],
        "raw string, expected timestamp",
    )
    formats = ["yyyy-MM-dd HH:mm:ss", "M/d/yyyy H:mm"]
    out = df.withColumn("actual", parsed_timestamp(F.col("raw"), formats, "UTC"))
    assert_column_equality(out, "actual", "expected")


def test_parsed_timestamp_converts_source_time_zone_to_utc(spark):
    df = spark.createDataFrame([("2011-06-01 12:00:00", _ts("2011-06-01 11:00:00"))], "raw string, expected timestamp")
    out = df.withColumn("actual", parsed_timestamp(F.col("raw"), ["yyyy-MM-dd HH:mm:ss"], "Europe/London"))
    assert_column_equality(out, "actual", "expected")


# --- the whole stage ---


def ingest_lines(spark, tmp_path):
    config = retail_config(tmp_path / "lakehouse", write_csv(tmp_path / "in", LINES))
    stage = StageRun(spark, config, "run-1", "ingest")
    with stage:
        counts = ingest.run_ingest(spark, config, "run-1", stage)
    return config, counts, stage


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    """One ingest of LINES shared by the read-only tests."""
    return ingest_lines(spark, tmp_path_factory.mktemp("ingested"))


def test_clean_rows_match_hand_built_expectation(spark, ingested):
    config, _, _ = ingested
    expected = spark.createDataFrame(EXPECTED_CLEAN, CLEAN_DDL)
    assert_df_equality(
        clean_rows(spark, config), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )


def test_every_reject_keeps_original_text_and_first_reason(spark, ingested):
    config, _, _ = ingested
    rejected = lakehouse.read_table(spark, config.table_path("transactions_rejected"))
    assert rejected.columns[:8] == HEADER.split(",")
    got = rejected.select("InvoiceNo", "StockCode", "Quantity", "UnitPrice", "CustomerID", "reject_reason")
    expected = spark.createDataFrame(
        [
            ("536365", "85123A", "6", "2.55", "17850.0", "duplicate"),
            ("536365", "85123A", "6", "2.55", "17850.0", "duplicate"),
            ("536366", "22633", "6", "1.85", None, "missing_customer_id"),
            ("536366", "22633", "6", "1.85", None, "missing_customer_id"),
            ("536366", "22633", "6", "1.85", "NaN", "missing_customer_id"),
            ("536366", "22633", "6", "0", "   ", "missing_customer_id"),
            ("536367", "22633", "6", "1.85", "13047.0", "invalid_timestamp"),
            ("536367", "22634", "0", "1.85", "13047.0", "invalid_quantity"),
            ("536367", "22635", "abc", "abc", "13047.0", "invalid_quantity"),
            ("536367", "22636", None, "1.85", "13047.0", "invalid_quantity"),
            ("536367", "22637", "2.5", "1.85", "13047.0", "invalid_quantity"),
            ("536367", "22638", "2", "0", "13047.0", "invalid_price"),
            ("536367", "22639", "2", "-1.5", "13047.0", "invalid_price"),
            ("536367", "22640", "2", None, "13047.0", "invalid_price"),
            ("536367", "22641", "2", "£3", "13047.0", "invalid_price"),
        ],
        "InvoiceNo string, StockCode string, Quantity string, UnitPrice string, CustomerID string, "
        "reject_reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_counts_reconcile_and_are_recorded_in_pipeline_runs(spark, ingested):
    config, counts, _ = ingested
    assert counts.rows_in == len(LINES) == 21
    assert counts.rows_clean == 6
    assert counts.rejected_by_reason == EXPECTED_REASONS
    run = lakehouse.read_table(spark, config.table_path("pipeline_runs")).collect()
    assert len(run) == 1
    assert (run[0]["stage"], run[0]["status"], run[0]["rows_in"], run[0]["rows_out"]) == ("ingest", "succeeded", 21, 6)
    assert run[0]["counts"]["rejected_invalid_price"] == 4
    assert run[0]["counts"]["rows_rejected"] == 15
    assert run[0]["versions"]["delta"] == DELTA_VERSION


@pytest.mark.slow
def test_rerun_replaces_instead_of_duplicating(spark, ingested, tmp_path):
    shared, _, _ = ingested
    lake = tmp_path / "lakehouse"
    shutil.copytree(local_path(shared.table_path("transactions_clean")), lake / "transactions_clean")
    shutil.copytree(local_path(shared.table_path("transactions_rejected")), lake / "transactions_rejected")
    config = retail_config(lake, shared.source.path)
    first = clean_rows(spark, config)
    first_rows = sorted(first.collect())
    ingest.run_ingest(spark, config, "run-2")
    again = lakehouse.read_table(spark, config.table_path("transactions_clean"))
    assert sorted(again.drop("run_id", "ingested_at").collect()) == first_rows
    assert {r.run_id for r in again.select("run_id").distinct().collect()} == {"run-2"}
    assert lakehouse.read_table(spark, config.table_path("transactions_rejected")).count() == 15


@pytest.mark.slow
def test_failed_run_restores_previous_tables(spark, monkeypatch, tmp_path):
    config, _, _ = ingest_lines(spark, tmp_path)
    clean_path = config.table_path("transactions_clean")
    version_before = lakehouse.current_version(spark, clean_path)
    other_input = write_csv(tmp_path / "other", LINES[:1])
    config2 = config.model_copy(
        update={
            "source": config.source.model_copy(update={"path": str(other_input)}),
            "ingest": config.ingest.model_copy(update={"mode": "full"}),  # replacing both tables
        }
    )

    def broken(*_args, **_kwargs):
        raise ReconciliationError("forced for the test")

    monkeypatch.setattr(ingest, "reconcile", broken)
    with pytest.raises(ReconciliationError):
        ingest.run_ingest(spark, config2, "run-broken")
    assert clean_rows(spark, config).count() == 6
    restored = lakehouse.read_table(spark, config.table_path("transactions_rejected"))
    assert restored.count() == 15
    assert lakehouse.current_version(spark, clean_path) > version_before  # a RESTORE commit, not a rewrite


@pytest.mark.slow
def test_file_layout_does_not_change_the_tables(spark, tmp_path):
    one = retail_config(tmp_path / "lh1", write_csv(tmp_path / "one", LINES))
    split_dir = tmp_path / "split"
    for i in range(3):
        write_csv(split_dir, list(reversed(LINES))[i::3], name=f"part-{i}.csv")
    many = retail_config(tmp_path / "lh2", split_dir)
    ingest.run_ingest(spark, one, "a")
    ingest.run_ingest(spark, many, "b")
    order = ["invoice_id", "product_id", "quantity", "invoice_ts"]
    assert_df_equality(clean_rows(spark, one).orderBy(order), clean_rows(spark, many).orderBy(order))
    rejected = [
        lakehouse.read_table(spark, c.table_path("transactions_rejected")).drop("run_id", "ingested_at")
        for c in (one, many)
    ]
    assert_df_equality(*rejected, ignore_row_order=True)


@pytest.mark.slow
def test_parquet_source_with_line_totals_and_no_invoice_column(spark, tmp_path):
    source = spark.createDataFrame(
        [
            ("c1", "2011-03-04 10:00:00", "12.50", "p1"),
            ("c1", "2011-03-04 15:30:00", "-5.00", "p2"),
            ("c2", "2011-03-05 09:00:00", "7", "p1"),
        ],
        "cust string, ts string, total string, sku string",
    ).withColumn("total", F.col("total").cast("double"))
    source.write.parquet(str(tmp_path / "pq"))
    config = make_config(
        tmp_path / "lh",
        source={
            "format": "parquet",
            "path": str(tmp_path / "pq"),
            "price_kind": "line_total",
            "columns": {"customer_id": "cust", "invoice_ts": "ts", "price": "total", "quantity": None,
                        "invoice_id": None, "product_id": "sku", "description": None, "country": None},
        },
    )
    counts = ingest.run_ingest(spark, config, "r")
    assert counts.rows_clean == 2 and counts.rejected_by_reason["invalid_price"] == 1
    expected = spark.createDataFrame(
        [
            ("c1-2011-03-04", "c1", "p1", None, 1, Decimal("12.5"), Decimal("12.5"), _ts("2011-03-04 10:00:00"),
             dt.date(2011, 3, 4), None, False),
            ("c2-2011-03-05", "c2", "p1", None, 1, Decimal("7"), Decimal("7"), _ts("2011-03-05 09:00:00"),
             dt.date(2011, 3, 5), None, False),
        ],
        CLEAN_DDL,
    )
    assert_df_equality(clean_rows(spark, config), expected, ignore_row_order=True, ignore_nullable=True,
                       ignore_metadata=True)


def test_missing_mapped_column_is_named(spark, tmp_path):
    folder = write_csv(tmp_path / "in", ["1,2"], header="InvoiceNo,Quantity")
    with pytest.raises(SchemaError, match=r"'CustomerID' \(for customer_id\)"):
        ingest.run_ingest(spark, retail_config(tmp_path / "lh", folder), "r")


def test_empty_input_is_a_clear_error(spark, tmp_path):
    folder = write_csv(tmp_path / "in", [])
    with pytest.raises(InputError, match="has no rows"):
        ingest.run_ingest(spark, retail_config(tmp_path / "lh", folder), "r")


def test_zero_byte_csv_is_reported_as_empty(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.csv").write_bytes(b"")
    with pytest.raises(InputPathError, match=r"^input '.*in' is empty \(0 bytes\): no header line and no rows$"):
        ingest.run_ingest(spark, retail_config(tmp_path / "lh", tmp_path / "in"), "r")


# --- unusable output: no clean line, or too many rejects ---

# The timestamp formats the reason texts below name (the layout's own list has a third, M/d/yyyy H:mm).
TWO_FORMATS = {"timestamp_formats": ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"]}

NOTHING_CLEAN = [
    "536365,85123A,WHITE HEART,6,01.12.2010 08:26,2.55,17850.0,United Kingdom",  # invalid_timestamp
    "536366,22633,HAND WARMER,6,01.12.2010 08:28,1.85,17850.0,United Kingdom",  # invalid_timestamp
    "536367,22634,X,6,01.12.2010 08:28,1.85,NaN,United Kingdom",  # missing_customer_id (tolerated)
]

# 7 lines; 4 rejected for counted reasons (57%): above the default 50% when all are present.
MOSTLY_REJECTED = [
    "536370,1,A,2,2010-12-01 08:26:00,1.00,12345,France",  # clean
    "536370,1,A,2,2010-12-01 08:26:00,1.00,12345,France",  # duplicate (tolerated)
    "536374,5,E,2,2010-12-01 08:26:00,1.00,,France",  # missing_customer_id (tolerated)
    "536371,2,B,2,2010-12-01 08:26:00,-1,12345,France",  # invalid_price
    "536372,3,C,2,2010-12-01 08:26:00,abc,12345,France",  # invalid_price
    "536373,4,D,x,2010-12-01 08:26:00,1.00,12345,France",  # invalid_quantity
    "536375,6,F,2,2010-13-45 08:26:00,1.00,12345,France",  # invalid_timestamp
]


def test_nothing_clean_fails_after_writing_and_recording_both_tables(spark, tmp_path):
    config = retail_config(tmp_path / "lh", write_csv(tmp_path / "in", NOTHING_CLEAN), source=TWO_FORMATS)
    stage = StageRun(spark, config, "run-eu", "ingest")
    with pytest.raises(RejectThresholdError) as raised, stage:
        ingest.run_ingest(spark, config, "run-eu", stage)
    rejected_path = config.table_path("transactions_rejected")
    assert str(raised.value) == (
        "no input line is clean (3 of 3 rejected). "
        "invalid_timestamp: 2 lines, e.g. '01.12.2010 08:26' "
        "(column InvoiceDate; configured formats: yyyy-MM-dd HH:mm:ss, yyyy-MM-dd HH:mm); "
        "missing_customer_id: 1 line, e.g. 'NaN' (column CustomerID). "
        f"Both tables were written; the rejected lines are in {rejected_path}"
    )
    assert raised.value.exit_code == 1
    # The tables stay as written (not restored): the rejects are there to be read.
    got = lakehouse.read_table(spark, rejected_path).select("InvoiceNo", "InvoiceDate", "CustomerID", "reject_reason")
    expected = spark.createDataFrame(
        [
            ("536365", "01.12.2010 08:26", "17850.0", "invalid_timestamp"),
            ("536366", "01.12.2010 08:28", "17850.0", "invalid_timestamp"),
            ("536367", "01.12.2010 08:28", "NaN", "missing_customer_id"),
        ],
        "InvoiceNo string, InvoiceDate string, CustomerID string, reject_reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    assert clean_rows(spark, config).count() == 0
    [run] = lakehouse.read_table(spark, config.table_path("pipeline_runs")).collect()
    assert (run["status"], run["rows_in"], run["rows_out"]) == ("failed", 3, 0)
    assert run["message"].startswith("RejectThresholdError: no input line is clean (3 of 3 rejected). ")
    assert {k: v for k, v in run["counts"].items() if v} == {
        "rows_rejected": 3,
        "rejected_invalid_timestamp": 2,
        "rejected_missing_customer_id": 1,
        "files_read": 1,
        "total_rows_rejected": 3,
        "total_rows_in": 3,
    }


@pytest.mark.slow
def test_too_many_rejects_name_the_reasons_largest_first_then_in_check_order(spark, tmp_path):
    config = retail_config(tmp_path / "lh", write_csv(tmp_path / "in", MOSTLY_REJECTED), source=TWO_FORMATS)
    with pytest.raises(RejectThresholdError) as raised:
        ingest.run_ingest(spark, config, "r")
    assert str(raised.value) == (
        "4 of 7 input lines (57.1%) were rejected for reasons other than duplicate, missing_customer_id; "
        "ingest.max_reject_share is 50%. "
        "invalid_price: 2 lines, e.g. '-1' (column UnitPrice); "
        "invalid_timestamp: 1 line, e.g. '2010-13-45 08:26:00' "
        "(column InvoiceDate; configured formats: yyyy-MM-dd HH:mm:ss, yyyy-MM-dd HH:mm); "
        "invalid_quantity: 1 line, e.g. 'x' (column Quantity). "
        f"Both tables were written; the rejected lines are in {config.table_path('transactions_rejected')}"
    )
    assert clean_rows(spark, config).count() == 1
    assert lakehouse.read_table(spark, config.table_path("transactions_rejected")).count() == 6


def mostly_rejected_counts(lines: int = 7) -> IngestCounts:
    """MOSTLY_REJECTED's counts as its comments give them (``lines=6`` drops the invalid_timestamp line)."""
    by_reason = {"duplicate": 1, "missing_customer_id": 1, "invalid_price": 2, "invalid_quantity": 1,
                 "invalid_timestamp": 1 if lines == 7 else 0}
    return IngestCounts(rows_in=lines, rows_clean=1, rejected_by_reason=by_reason)


@pytest.mark.parametrize(
    ("lines", "ingest_settings"),
    [
        (6, {}),  # 3 of 6 counted: exactly 50% is not more than 50%
        (7, {"tolerated_reject_reasons": ["duplicate", "missing_customer_id", "invalid_timestamp"]}),
        (7, {"max_reject_share": 0.6}),
    ],
    ids=["at-threshold", "more-tolerated", "higher-threshold"],
)
def test_rejects_within_the_threshold_pass_the_check(lines, ingest_settings):
    """The share rule alone, on MOSTLY_REJECTED's counts (the end-to-end failure is tested above, and the
    shared ingest of LINES passes with 15 of 21 lines rejected but only 9 for counted reasons)."""
    config = make_config("/tmp/unused")
    config = config.model_copy(update={"ingest": config.ingest.model_copy(update=ingest_settings)})
    check_reject_share(mostly_rejected_counts(lines), config)


def test_rejects_over_the_threshold_fail_the_check():
    with pytest.raises(RejectThresholdError, match=r"^4 of 7 input lines \(57.1%\) were rejected"):
        check_reject_share(mostly_rejected_counts(), make_config("/tmp/unused"))


def test_missing_input_path_is_a_clear_error(spark, tmp_path):
    with pytest.raises(InputError, match="cannot read csv input"):
        ingest.run_ingest(spark, retail_config(tmp_path / "lh", tmp_path / "nothing-here"), "r")


def test_tables_are_readable_by_the_deltalake_package(spark, ingested):
    deltalake = pytest.importorskip("deltalake")
    config, _, _ = ingested
    clean = deltalake.DeltaTable(config.table_path("transactions_clean"))
    assert clean.to_pyarrow_table().num_rows == 6
    assert "passed ingest checks" in clean.metadata().description
    assert deltalake.DeltaTable(config.table_path("transactions_rejected")).to_pyarrow_table().num_rows == 15


@pytest.mark.slow
@pytest.mark.real_data
@requires_real_data
def test_online_retail_counts(spark, tmp_path):
    config = retail_config(tmp_path / "lh", REAL_DATA, source={"timestamp_formats": ["yyyy-MM-dd HH:mm:ss"]})
    counts = ingest.run_ingest(spark, config, "real")
    assert counts.rows_in == 541_909
    assert counts.rows_clean == 401_564
    assert counts.rejected_by_reason == {
        "missing_customer_id": 135_080,
        "invalid_encoding": 0,
        "invalid_timestamp": 0,
        "future_timestamp": 0,
        "invalid_quantity": 0,
        "invalid_price": 40,
        "duplicate": 5_225,
    }


@pytest.mark.slow
def test_gzipped_csv_glob_and_catalog_table_sources(spark, tmp_path):
    import gzip

    folder = tmp_path / "gz"
    folder.mkdir()
    for i in range(2):
        with gzip.open(folder / f"day-{i}.csv.gz", "wt", encoding="utf-8") as handle:
            handle.write("\n".join([HEADER, *LINES[i::2]]) + "\n")
    (folder / "notes.txt").write_text("not matched by the glob\n")
    config = retail_config(tmp_path / "lh", f"{folder}/day-*.csv.gz")
    counts = ingest.run_ingest(spark, config, "gz")
    assert (counts.rows_in, counts.rows_clean, counts.rejected_by_reason) == (21, 6, EXPECTED_REASONS)

    raw = spark.read.option("header", "true").csv(str(folder / "day-*.csv.gz"))
    raw.write.format("delta").saveAsTable("raw_retail_lines")
    table_config = retail_config(tmp_path / "lh2", "raw_retail_lines", source={"format": "table"})
    assert ingest.run_ingest(spark, table_config, "tbl").rows_clean == 6
    spark.sql("DROP TABLE raw_retail_lines")


@pytest.mark.slow
def test_spark_submit_keeps_the_submitters_settings(tmp_path):
    """scripts/submit.sh from a fresh shell (venv not activated, its bin not on PATH, no SPARK_HOME nor
    PYSPARK_*): jobs/ingest.py runs, and the submitted master and settings win over segspark's defaults."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from segspark.platform.session import cached_delta_jars

    root = Path(__file__).resolve().parents[1]
    if cached_delta_jars(os.path.expanduser("~/.cache/segspark/ivy")) is None:
        # submit.sh would fall back to --packages, which needs the package repository.
        pytest.skip("Delta jars are not in the default cache folder")
    folder = write_csv(tmp_path / "in", LINES)
    venv = Path(sys.prefix)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "VIRTUAL_ENV", "SPARK_LOCAL_IP",
                       "PYTHONPATH"}
    }
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != venv / "bin")
    env["SEGSPARK_VENV"] = str(venv)  # the test may run from a worktree whose own .venv does not exist
    result = subprocess.run(
        ["bash", str(root / "scripts" / "submit.sh"), "--master", "local[1]",
         "--conf", "spark.sql.shuffle.partitions=3", "--conf", "spark.ui.enabled=false",
         str(root / "jobs" / "ingest.py"), "--layout", "online_retail",
         "--input", str(folder), "--lakehouse", str(tmp_path / "lh")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    # spark-submit merges the Python driver's stderr into its stdout.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    from segspark.platform.compat import DELTA_VERSION

    assert f"master local[1], shuffle partitions 3, Delta {DELTA_VERSION} (under spark-submit)" in output
    assert "stage ingest succeeded: rows in 21, rows out 6" in output


def test_malformed_values_are_rejects_in_ansi_mode(spark, tmp_path):
    """Spark 4 runs with ANSI mode on: a plain cast of bad text, or an overflowing decimal, would fail the job.
    Every such value must instead become a reasoned reject (try_cast / try_to_timestamp). Checked on the
    stage's own transforms (the writes around them are covered by the ingest runs above)."""
    from segspark.platform.compat import SPARK_LINE

    if SPARK_LINE >= (4, 0):
        assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    lines = [
        "536401,A1,OK,2,2010-12-01 09:00:00,1.50,A-12,France",  # a non-numeric customer id is kept as text
        "536402,A2,HUGE PRICE,2,2010-12-01 09:00:00,1e30,17850,France",  # beyond decimal(18,4)
        "536403,A3,BIG LINE,99999,2010-12-01 09:00:00,99999999999999,17850,France",  # fits decimal(28,4)
        "536404,A4,WORDS,two,2010-12-01 09:00:00,1.00,17850,France",
        "536405,A5,BAD DATE,1,01.12.2010 08:26,1.00,17850,France",
    ]
    source = retail_config(tmp_path / "lh", write_csv(tmp_path / "in", lines)).source
    raw_df = ingest.read_source(spark, source)
    parsed = (
        raw_df.transform(ingest.with_text_columns)
        .transform(count_identical_rows)
        .transform(with_canonical_columns, source)
        .transform(with_reject_reason, source, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .cache()
    )
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rejected = select_rejected(parsed, raw_df.columns, "ansi", now)
    assert sorted((r["Description"], r["reject_reason"]) for r in rejected.collect()) == [
        ("BAD DATE", "invalid_timestamp"), ("HUGE PRICE", "invalid_price"), ("WORDS", "invalid_quantity"),
    ]
    clean = select_clean(parsed, "ansi", now)
    assert sorted((r["customer_id"], str(r["line_amount"])) for r in clean.collect()) == [
        ("17850", "9999899999999900001.0000"), ("A-12", "3.0000"),
    ]
    parsed.unpersist()

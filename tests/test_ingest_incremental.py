"""Incremental ingest: a source that grows file by file gives the tables a from-scratch run gives."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from segspark.contracts.schemas import REJECT_REASONS
from segspark.errors import InputError
from segspark.platform import lakehouse, publication
from segspark.stages.features.stage import run_features
from segspark.stages.ingest import stage as ingest
from segspark.stages.ingest.file_counts import file_counts
from segspark.synthetic import generate
from tests.helpers.config import REAL_DATA, requires_real_data, retail_config
from tests.helpers.data import write_csv

LATEST = "2012-01-01 00:00:00"
#: Columns that name the run, not the data.
RUN_COLUMNS = ["run_id", "ingested_at"]


#: Snapshots whose features an incremental lakehouse and a full one must agree on (one mid-history).
AS_OF_DATES = ["2011-06-01", "2011-12-11"]


def config_for(lake: Path, source: Path, **ingest_keys):
    ingest_settings = {"latest_timestamp": LATEST, "max_reject_share": 1.0, **ingest_keys}
    return retail_config(lake, source, ingest=ingest_settings, as_of_dates=AS_OF_DATES)


def table(spark, config, name):
    return publication.read_published(spark, config, name).drop(*RUN_COLUMNS)


def assert_same_tables(spark, got_config, want_config):
    for name in ("transactions_clean", "transactions_rejected"):
        got, want = table(spark, got_config, name), table(spark, want_config, name)
        assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Five generated CSV files (1,000 lines each) and a hand-written sixth with a line of the first."""
    folder = tmp_path_factory.mktemp("parts")
    generate(folder, 5_000, seed=7, chunk_rows=1_000, fmt="csv")
    return sorted(folder.glob("*.csv"))


def deliver(source: Path, files: list[Path]) -> None:
    source.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, source / f.name)


@pytest.mark.slow
def test_five_deliveries_equal_one_full_ingest(spark, tmp_path, parts):
    """One file per delivery, five deliveries: each append after one and after several batches (a batch of
    many files is the Online Retail test below)."""
    check_deliveries(spark, tmp_path, [[part] for part in parts])


def check_deliveries(spark, tmp_path, deliveries):
    """Ingest each delivery into one lakehouse, then check against a full ingest, then nothing new, then a
    re-delivered file. Features run after every other delivery and the last, so the rollup takes in one batch
    at a time and two at once."""
    source = tmp_path / "source"
    config = config_for(tmp_path / "lh", source)
    runs = []
    for i, delivery in enumerate(deliveries):
        deliver(source, delivery)
        runs.append(ingest.run_ingest(spark, config, f"inc-{i}"))
        if i % 2 == 0 or i == len(deliveries) - 1:
            run_features(spark, config, f"features-{i}")
    sizes = [len(d) for d in deliveries]
    assert [r.files_read for r in runs] == sizes
    assert [r.files_skipped for r in runs] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert [r.incremental for r in runs] == [False] + [True] * (len(sizes) - 1)
    parts = [p for d in deliveries for p in d]

    full = config_for(tmp_path / "full", source)
    whole = ingest.run_ingest(spark, full, "full")
    assert_same_tables(spark, config, full)
    run_features(spark, full, "features-full")
    assert_df_equality(
        table(spark, config, "customer_features"),
        table(spark, full, "customer_features"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert sum(r.rows_in for r in runs) == whole.rows_in == 5_000
    for reason in whole.rejected_by_reason:
        assert sum(r.rejected_by_reason[reason] for r in runs) == whole.rejected_by_reason[reason], reason

    files = table(spark, config, "ingested_files").orderBy("path").collect()
    assert [Path(r["path"].removeprefix("file://")).name for r in files] == [p.name for p in parts]
    assert [r["lines_in"] for r in files] == [1_000] * 5

    # Nothing new: the run says so and writes nothing.
    versions = publication.published_versions(spark, config)
    again = ingest.run_ingest(spark, config, "inc-none")
    assert (again.files_read, again.files_skipped, again.rows_in) == (0, len(parts), 0)
    assert publication.published_versions(spark, config) == versions

    # A re-delivered file under a new name adds no clean line: every line is a duplicate or its own reject.
    shutil.copy2(parts[0], source / "resent.csv")
    resent = ingest.run_ingest(spark, config, "inc-resent")
    assert resent.rows_clean == 0
    assert resent.rows_in == 1_000
    first_file = ingest.run_ingest(spark, config_for(tmp_path / "first", parts[0]), "first-file")
    assert resent.rejected_by_reason["duplicate"] == 1_000 - sum(
        n for r, n in first_file.rejected_by_reason.items() if r != "duplicate"
    )


L1 = "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom"
L2 = "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,17851,United Kingdom"
NO_CUSTOMER = "536367,84879,BIRD,32,2010-12-01 08:34:00,1.69,,United Kingdom"
NO_PRICE = "536368,22745,POPPY,6,2010-12-01 08:35:00,0,17852,United Kingdom"
L5 = "536369,21730,LANTERN,6,2011-01-04 10:00:00,4.25,17853,France"


def file_lines(spark, config):
    """Per file name: (lines in, clean, rejected, the reasons with lines)."""
    rows = table(spark, config, "ingested_files").collect()
    return {
        Path(r["path"]).name: (
            r["lines_in"],
            r["lines_clean"],
            r["lines_rejected"],
            {k: v for k, v in r["rejected_by_reason"].items() if v},
        )
        for r in rows
    }


def test_each_file_has_its_lines_clean_and_rejected_by_reason(spark, tmp_path):
    """A line repeated across a batch's files is clean in the first file by path and a duplicate in the rest;
    a line an earlier batch ingested is a duplicate in every file of the next; a line's own reason counts in
    each file that holds it. Every reason is in the map, zeros included."""
    source = tmp_path / "source"
    write_csv(source, [L1, L2, L2, NO_CUSTOMER], name="a.csv")
    write_csv(source, [L1, NO_PRICE, NO_CUSTOMER], name="b.csv")
    config = config_for(tmp_path / "lh", source)
    ingest.run_ingest(spark, config, "first")
    assert file_lines(spark, config) == {
        "a.csv": (4, 2, 2, {"duplicate": 1, "missing_customer_id": 1}),
        "b.csv": (3, 0, 3, {"duplicate": 1, "missing_customer_id": 1, "invalid_price": 1}),
    }
    write_csv(source, [L2, L5, L5], name="c.csv")
    ingest.run_ingest(spark, config, "second")
    assert file_lines(spark, config)["c.csv"] == (3, 1, 2, {"duplicate": 2})
    reasons = table(spark, config, "ingested_files").select("rejected_by_reason").first()[0]
    assert sorted(reasons) == sorted(REJECT_REASONS)


def test_file_counts_by_hand(spark):
    """The attribution rule on explicit frames: a valid text repeated across files is clean once, in the first
    file by path; a text seen in an earlier batch has no clean copy; an own reason counts in every file."""
    fingerprints = spark.createDataFrame(
        [
            (1, 1, "a.csv", 2), (1, 1, "b.csv", 1),  # valid, three copies over two files
            (2, 2, "b.csv", 1),  # no customer id
            (3, 3, "a.csv", 1),  # valid, once: not among the rejected texts
            (4, 4, "c.csv", 2),  # ingested by an earlier batch: every copy a duplicate
            (5, 5, "a.csv", 1), (5, 5, "c.csv", 1),  # invalid price, in two files
        ],
        "fingerprint long, fingerprint2 long, path string, copies long",
    )
    keys = spark.createDataFrame(
        [(1, 1, "duplicate", 2), (2, 2, "missing_customer_id", 1), (4, 4, "duplicate", 2), (5, 5, "invalid_price", 2)],
        "fingerprint long, fingerprint2 long, reject_reason string, rejected long",
    )
    got = file_counts(fingerprints, keys, broadcast=True).select(
        "path", "lines_in", "lines_clean", "`rejected:duplicate`", "`rejected:missing_customer_id`",
        "`rejected:invalid_price`", "`rejected:invalid_quantity`",
    )
    expected = spark.createDataFrame(
        [("a.csv", 4, 2, 1, 0, 1, 0), ("b.csv", 2, 0, 1, 1, 0, 0), ("c.csv", 3, 0, 2, 0, 1, 0)],
        "path string, lines_in long, lines_clean long, `rejected:duplicate` long, "
        "`rejected:missing_customer_id` long, `rejected:invalid_price` long, `rejected:invalid_quantity` long",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.slow
def test_a_changed_file_is_an_error_naming_it_and_full_refresh_equals_a_first_run(spark, tmp_path, parts):
    source = tmp_path / "source"
    deliver(source, parts[:2])
    config = config_for(tmp_path / "lh", source)
    ingest.run_ingest(spark, config, "first")
    changed = source / parts[1].name
    with changed.open("a") as f:
        f.write("536365,85123A,EXTRA LINE,1,2010-12-01 08:26:00,2.55,17850,United Kingdom\n")
    with pytest.raises(InputError, match=rf"1 source file\(s\) changed since they were ingested.*{changed.name}"):
        ingest.run_ingest(spark, config, "second")

    refreshed = ingest.run_ingest(spark, config_for(tmp_path / "lh", source, mode="full"), "refresh")
    assert refreshed.rows_in == 2_001 and not refreshed.incremental
    first_run = config_for(tmp_path / "fresh", source)
    ingest.run_ingest(spark, first_run, "fresh")
    assert_same_tables(spark, config, first_run)


@pytest.mark.slow
def test_a_gone_file_keeps_its_lines_and_a_new_file_with_other_columns_is_an_error(spark, tmp_path):
    source = tmp_path / "source"
    rows = [("536365", "85123A", "HEART", 6, "2010-12-01 08:26:00", 2.55, 17850, "United Kingdom")]
    write_csv(source, rows, name="a.csv")
    write_csv(source, [(*rows[0][:6], 17851, "France")], name="b.csv")
    config = config_for(tmp_path / "lh", source)
    ingest.run_ingest(spark, config, "first")
    os.remove(source / "a.csv")
    write_csv(source, [(*rows[0][:6], 17852, "Spain")], name="c.csv")
    counts = ingest.run_ingest(spark, config, "second")
    assert (counts.files_read, counts.files_skipped, counts.rows_clean) == (1, 1, 1)
    clean = table(spark, config, "transactions_clean")
    assert sorted(r["customer_id"] for r in clean.collect()) == ["17850", "17851", "17852"]

    write_csv(
        source,
        [(*rows[0], "extra")],
        header="InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country,Note",
        name="d.csv",
    )
    with pytest.raises(InputError, match="the new source files have columns"):
        ingest.run_ingest(spark, config, "third")
    assert (
        lakehouse.read_table(spark, config.table_path("transactions_clean")).where(F.col("run_id") == "third").count()
        == 0
    )


@pytest.mark.slow
@requires_real_data
def test_online_retail_in_two_deliveries_equals_one_full_ingest(spark, tmp_path):
    """The real files: the first 250 days, then the other 55; against a full ingest of all 305."""
    days = sorted(REAL_DATA.glob("*.csv"))
    source = tmp_path / "source"
    source.mkdir()
    formats = {"timestamp_formats": ["yyyy-MM-dd HH:mm:ss"]}
    config = retail_config(tmp_path / "lh", source, source=formats, ingest={"latest_timestamp": LATEST})
    for delivery in (days[:250], days[250:]):
        for day in delivery:
            os.symlink(day, source / day.name)
        ingest.run_ingest(spark, config, f"delivery-{len(delivery)}")
    full = retail_config(tmp_path / "full", REAL_DATA, source=formats, ingest={"latest_timestamp": LATEST})
    whole = ingest.run_ingest(spark, full, "full")
    assert (whole.rows_in, whole.rows_clean, whole.rejected_by_reason["duplicate"]) == (541_909, 401_564, 5_225)
    assert_same_tables(spark, config, full)

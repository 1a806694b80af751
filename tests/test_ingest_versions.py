"""Incremental ingest of a Delta source: the versions after the last one ingested, from its change data feed."""

from __future__ import annotations

import shutil

import pytest
from delta.tables import DeltaTable

from segspark.errors import InputError
from segspark.platform import publication
from segspark.stages.ingest import stage as ingest
from segspark.synthetic import generate
from tests.test_ingest_incremental import L1, L2, L5, NO_CUSTOMER, NO_PRICE, assert_same_tables, config_for, table

COLUMNS = (
    "InvoiceNo string, StockCode string, Description string, Quantity string, InvoiceDate string, "
    "UnitPrice string, CustomerID string, Country string"
)


def write_lines(spark, path, lines, mode="append"):
    """Source lines (comma-separated text, an empty field null) appended to the Delta table at ``path``."""
    rows = [tuple(v or None for v in line.split(",")) for line in lines]
    spark.createDataFrame(rows, COLUMNS).write.format("delta").mode(mode).save(str(path))


def delta_config(lake, source, **ingest_keys):
    config = config_for(lake, source, **ingest_keys)
    return config.model_copy(update={"source": config.source.model_copy(update={"format": "delta"})})


def version_rows(spark, config):
    rows = table(spark, config, "ingested_versions").orderBy("to_version").collect()
    return [
        (r["from_version"], r["to_version"], r["lines_in"], r["lines_clean"],
         {k: v for k, v in r["rejected_by_reason"].items() if v})
        for r in rows
    ]


def test_a_delta_source_is_read_whole_at_a_version_then_only_its_new_versions(spark, tmp_path):
    source = tmp_path / "source"
    write_lines(spark, source, [L1, L2, NO_CUSTOMER], mode="overwrite")  # v0
    spark.sql(f"ALTER TABLE delta.`{source}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")  # v1
    config = delta_config(tmp_path / "lh", source)
    first = ingest.run_ingest(spark, config, "first")
    assert (first.rows_in, first.rows_clean, first.incremental, first.source_versions) == (3, 2, False, (None, 1))

    write_lines(spark, source, [L5, L1])  # v2: L1 again is a duplicate of a line ingested before
    DeltaTable.forPath(spark, str(source)).optimize().executeCompaction()  # v3: the same rows in other files
    second = ingest.run_ingest(spark, config, "second")
    assert (second.rows_in, second.rows_clean, second.incremental, second.source_versions) == (2, 1, True, (2, 3))
    assert version_rows(spark, config) == [
        (None, 1, 3, 2, {"missing_customer_id": 1}),
        (2, 3, 2, 1, {"duplicate": 1}),
    ]
    assert second.totals == {"total_rows_in": 5, "total_rows_clean": 3, "total_rows_rejected": 2}
    clean = table(spark, config, "transactions_clean").select("customer_id", "invoice_id").collect()
    assert sorted(tuple(r) for r in clean) == [("17850", "536365"), ("17851", "536366"), ("17853", "536369")]
    rejected = table(spark, config, "transactions_rejected").select("CustomerID", "reject_reason").collect()
    assert sorted((tuple(r) for r in rejected), key=repr) == [("17850", "duplicate"), (None, "missing_customer_id")]

    versions = publication.published_versions(spark, config)
    again = ingest.run_ingest(spark, config, "nothing-new")
    assert (again.rows_in, again.incremental) == (0, True)
    # Rows deleted in the source are in the tables already: an error naming the version, nothing written.
    write_lines(spark, source, [NO_PRICE])  # v4
    spark.sql(f"DELETE FROM delta.`{source}` WHERE CustomerID = '17851'")  # v5
    with pytest.raises(InputError, match=r"deleted or updated 1 row\(s\) since it was ingested \(from version 5\)"):
        ingest.run_ingest(spark, config, "after-delete")
    assert publication.published_versions(spark, config) == versions


@pytest.mark.slow
def test_appends_and_compactions_of_a_delta_source_equal_one_full_ingest(spark, tmp_path):
    """Generated lines appended to a Delta source in three commits with a compaction between; an ingest after
    each equals one full ingest of the last version; a resent part adds no clean line."""
    generate(tmp_path / "parts", 5_000, seed=7, chunk_rows=1_000, fmt="csv")
    parts = sorted((tmp_path / "parts").glob("*.csv"))
    source = tmp_path / "source"
    csv = spark.read.option("header", "true").csv
    csv([str(p) for p in parts[:2]]).write.format("delta").option("delta.enableChangeDataFeed", "true").save(
        str(source)
    )
    config = delta_config(tmp_path / "lh", source)
    runs = [ingest.run_ingest(spark, config, "inc-0")]
    for i, delivery in enumerate([parts[2:4], parts[4:]], start=1):
        csv([str(p) for p in delivery]).write.format("delta").mode("append").save(str(source))
        DeltaTable.forPath(spark, str(source)).optimize().executeCompaction()
        runs.append(ingest.run_ingest(spark, config, f"inc-{i}"))
    assert [r.incremental for r in runs] == [False, True, True]
    whole = delta_config(tmp_path / "whole", source)
    full = ingest.run_ingest(spark, whole, "whole")
    assert_same_tables(spark, config, whole)
    assert sum(r.rows_in for r in runs) == full.rows_in == 5_000
    for reason in full.rejected_by_reason:
        assert sum(r.rejected_by_reason[reason] for r in runs) == full.rejected_by_reason[reason], reason

    csv(str(parts[0])).write.format("delta").mode("append").save(str(source))
    resent = ingest.run_ingest(spark, config, "resent")
    assert (resent.rows_in, resent.rows_clean) == (1_000, 0)


@pytest.mark.slow
def test_without_a_change_feed_a_table_created_anew_and_a_full_refresh(spark, tmp_path, caplog):
    """No change data feed: every run reads the whole table again and says why. A table created anew at the
    same place is an error; --full-refresh then re-ingests it and equals a first run."""
    source = tmp_path / "source"
    write_lines(spark, source, [L1, NO_CUSTOMER], mode="overwrite")
    config = delta_config(tmp_path / "lh", source)
    ingest.run_ingest(spark, config, "first")
    write_lines(spark, source, [L2])
    with caplog.at_level("INFO", logger="segspark"):
        again = ingest.run_ingest(spark, config, "no-feed")
    assert "no change data feed for versions 1-1" in caplog.text
    assert (again.rows_in, again.incremental, again.source_versions) == (3, False, (None, 1))
    assert version_rows(spark, config) == [(None, 1, 3, 2, {"missing_customer_id": 1})]

    shutil.rmtree(source)  # the same place, a new table
    write_lines(spark, source, [L5], mode="overwrite")
    with pytest.raises(InputError, match="was created anew since it was ingested"):
        ingest.run_ingest(spark, config, "recreated")
    refreshed = ingest.run_ingest(spark, delta_config(tmp_path / "lh", source, mode="full"), "refresh")
    assert (refreshed.rows_in, refreshed.rows_clean) == (1, 1)
    first_run = delta_config(tmp_path / "fresh", source)
    ingest.run_ingest(spark, first_run, "fresh")
    assert_same_tables(spark, config, first_run)
    assert version_rows(spark, config) == [(None, 0, 1, 1, {})]

"""Publication log and lakehouse lock: unpublished versions are never read and are rolled back; one command at a
time holds a lakehouse. The end-to-end kill harness is in test_reliability.py."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.contracts.schemas import CUSTOMER_FEATURES, TRANSACTIONS_CLEAN, TableSpec
from segspark.errors import InputError
from segspark.platform import lakehouse, publication
from segspark.platform.lock import LOCK_NAME, STALE_SECONDS, LakehouseBusyError, LakehouseLock
from tests.helpers.config import make_config


def _value(data_type: T.DataType, tag: str):
    """A non-null literal of ``data_type``; strings carry ``tag`` so versions can be told apart."""
    if isinstance(data_type, T.StringType):
        return F.concat(F.lit(tag + "-"), F.col("id").cast("string"))
    if isinstance(data_type, (T.MapType, T.ArrayType)):
        return F.lit(None).cast(data_type)
    if isinstance(data_type, T.TimestampType):
        return F.lit("2011-12-01 10:00:00").cast(data_type)
    if isinstance(data_type, T.DateType):
        return F.lit("2011-12-01").cast(data_type)
    if isinstance(data_type, T.BooleanType):
        return F.lit(False)
    return F.col("id").cast(data_type)


def write_rows(spark, config, table: str, spec: TableSpec, rows: int, tag: str) -> int:
    """Write ``rows`` generated rows to ``table`` (overwrite); returns the committed version."""
    df = spark.range(rows).select(*[_value(f.dataType, tag).alias(f.name) for f in spec.schema.fields])
    return lakehouse.write_table(df, config.table_path(table), spec).version


def tags(spark, config, table: str) -> set[str]:
    df = publication.read_published(spark, config, table)
    return {r[0].split("-")[0] for r in df.select("customer_id").distinct().collect()}  # a few rows


def test_unpublished_versions_are_never_read_and_repair_rolls_them_back(spark, tmp_path, caplog):
    config = make_config(tmp_path / "lake")
    publication.ensure_log(spark, config, "r0")
    v1 = write_rows(spark, config, "transactions_clean", TRANSACTIONS_CLEAN, 3, "one")
    publication.publish(spark, config, "r1", "ingest", {"transactions_clean": v1}, counts={"rows_in": 3})
    # A second run writes, then dies before publishing.
    v2 = write_rows(spark, config, "transactions_clean", TRANSACTIONS_CLEAN, 5, "two")
    assert v2 == v1 + 1
    assert tags(spark, config, "transactions_clean") == {"one"}
    assert publication.last_publication(spark, config, "ingest")["counts"] == {"rows_in": 3}

    with caplog.at_level(logging.WARNING, logger="segspark"):
        rolled = publication.repair(spark, config, "r3")
    assert rolled == {"transactions_clean": (v2, v1)}
    assert f"transactions_clean v{v2} -> v{v1}" in caplog.text
    path = config.table_path("transactions_clean")
    latest = lakehouse.read_table(spark, path)  # what a BI tool reading the latest version sees
    assert latest.count() == 3 and {r[0].split("-")[0] for r in latest.select("customer_id").collect()} == {"one"}
    assert publication.published_versions(spark, config)["transactions_clean"] == lakehouse.current_version(spark, path)
    assert publication.repair(spark, config, "r4") == {}  # once repaired, nothing more to do


@pytest.mark.slow  # a second RESTORE (about 15 s); the kill harness covers the same path end to end
def test_a_table_never_published_goes_back_to_empty_and_names_its_command(spark, tmp_path):
    config = make_config(tmp_path / "lake")
    publication.ensure_log(spark, config, "r0")
    write_rows(spark, config, "customer_features", CUSTOMER_FEATURES, 4, "half")  # the first run died here
    with pytest.raises(InputError, match="no published customer_features table .*run 'segspark features' first"):
        publication.read_published(spark, config, "customer_features")
    publication.repair(spark, config, "r1")
    assert lakehouse.read_table(spark, config.table_path("customer_features")).count() == 0


def test_a_lakehouse_older_than_the_log_is_adopted_as_published(spark, tmp_path, caplog):
    config = make_config(tmp_path / "lake")
    version = write_rows(spark, config, "transactions_clean", TRANSACTIONS_CLEAN, 2, "old")
    assert tags(spark, config, "transactions_clean") == {"old"}  # no log yet: the latest version is read
    with caplog.at_level(logging.INFO, logger="segspark"):
        assert publication.repair(spark, config, "r1") == {}
    assert "taken as published" in caplog.text
    assert publication.published_versions(spark, config) == {"transactions_clean": version}
    row = lakehouse.read_table(spark, config.table_path("published_runs")).collect()  # one row
    assert [(r["stage"], r["kind"]) for r in row] == [("adopt", "adopt")]


def test_a_table_whose_first_commit_never_landed_is_created_afresh(spark, tmp_path, caplog):
    config = make_config(tmp_path / "lake")
    # What a driver killed inside Delta's first commit leaves: a log folder without any commit.
    (tmp_path / "lake" / "customer_features" / "_delta_log" / "_staged_commits").mkdir(parents=True)
    assert publication.published_version(spark, config, "customer_features") is None
    with caplog.at_level(logging.WARNING, logger="segspark"):
        version = write_rows(spark, config, "customer_features", CUSTOMER_FEATURES, 2, "new")
    assert "its first commit never finished" in caplog.text
    assert lakehouse.read_table(spark, config.table_path("customer_features"), version=version).count() == 2


def test_a_table_another_process_created_is_seen_and_never_taken_for_an_unfinished_one(spark, tmp_path):
    """This session first sees a log folder without a commit; then another process (here: files copied behind
    Delta's back) commits the table. Delta's cached log still says "no table"; segspark must see the table, read
    it, and never delete it as unfinished."""
    config = make_config(tmp_path / "lake")
    path = config.table_path("customer_features")
    folder = tmp_path / "lake" / "customer_features"
    (folder / "_delta_log").mkdir(parents=True)
    assert not lakehouse.table_exists(spark, path)  # Delta now caches this path's log as empty
    elsewhere = make_config(tmp_path / "elsewhere")
    write_rows(spark, elsewhere, "customer_features", CUSTOMER_FEATURES, 3, "theirs")
    for item in (tmp_path / "elsewhere" / "customer_features").iterdir():  # the other process's commit lands
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    assert lakehouse.table_exists(spark, path)
    assert lakehouse.current_version(spark, path) == 1
    version = write_rows(spark, config, "customer_features", CUSTOMER_FEATURES, 2, "ours")  # no delete first
    assert version == 2
    assert lakehouse.read_table(spark, path, version=1).count() == 3


# --- the lock ---


def test_a_second_command_is_refused_with_the_holder_named(tmp_path):
    lake = tmp_path / "lake"
    config = make_config(lake)
    lake.mkdir(parents=True)
    with LakehouseLock(None, config, "run-one"):
        holder = json.loads((lake / LOCK_NAME).read_text())
        assert holder["run_id"] == "run-one" and holder["pid"] == os.getpid()
        with pytest.raises(LakehouseBusyError, match=r"in use by run run-one \(process \d+ on .*\)") as err:
            LakehouseLock(None, config, "run-two").acquire()
        assert err.value.exit_code == 3
    assert not (lake / LOCK_NAME).exists()  # released
    with LakehouseLock(None, config, "run-two"):
        pass


def test_the_first_command_on_a_new_lakehouse_creates_its_folder(tmp_path):
    lake = tmp_path / "new" / "lake"  # nothing exists yet: a relative or fresh lakehouse
    with LakehouseLock(None, make_config(lake), "first"):
        assert (lake / LOCK_NAME).is_file()
    assert lake.is_dir() and not (lake / LOCK_NAME).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    lake = tmp_path / "lake"
    config = make_config(lake)
    lake.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (lake / LOCK_NAME).write_text(json.dumps({"run_id": "killed", "host": socket.gethostname(), "pid": pid}))
    with caplog.at_level(logging.WARNING, logger="segspark"), LakehouseLock(None, config, "next") as lock:
        assert lock.holds()
    assert f"run killed (process {pid}) ended without releasing the lakehouse" in caplog.text


def test_a_lock_not_refreshed_from_another_host_is_stale(tmp_path):
    lake = tmp_path / "lake"
    config = make_config(lake)
    lake.mkdir(parents=True)
    lock_file = lake / LOCK_NAME
    lock_file.write_text(json.dumps({"run_id": "far", "host": "another-host", "pid": 1}))
    with pytest.raises(LakehouseBusyError, match="far"):  # fresh: it may still be running
        LakehouseLock(None, config, "near").acquire()
    old = time.time() - STALE_SECONDS - 5
    os.utime(lock_file, (old, old))
    with LakehouseLock(None, config, "near") as lock:
        assert lock.holds()


# --- predicates ---


def test_replace_where_is_built_only_from_dates_and_a_plain_column():
    assert lakehouse.dates_predicate("as_of_date", [dt.date(2011, 12, 10), dt.date(2011, 9, 1)]) == (
        "as_of_date IN (DATE'2011-12-10', DATE'2011-09-01')"
    )
    for column, dates in [
        ("as_of_date", ["2011-12-10' OR 1=1 --"]),  # text is never pasted
        ("as_of_date", [dt.datetime(2011, 12, 10)]),
        ("as_of_date", []),
        ("as_of_date) OR (1=1", [dt.date(2011, 12, 10)]),
    ]:
        with pytest.raises(ValueError):
            lakehouse.dates_predicate(column, dates)

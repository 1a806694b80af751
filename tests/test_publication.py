"""Publication log, stage log and lakehouse lock: unpublished versions are never read and are rolled back; stages
published together land in one commit or roll back together; the command that takes over a dead run's lock
records it in pipeline_runs as the publication log has it; one command at a time holds a lakehouse. The
end-to-end kill harness is in test_reliability.py."""

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

from segspark import pipeline
from segspark.contracts.schemas import CUSTOMER_FEATURES, CUSTOMER_SEGMENTS, TRANSACTIONS_CLEAN, TableSpec
from segspark.errors import InputError
from segspark.platform import lakehouse, publication
from segspark.platform.lock import LOCK_NAME, STALE_SECONDS, LakehouseBusyError, LakehouseLock
from tests.helpers.config import make_config
from tests.helpers.runs import log_disagreements


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


def stage_rows(spark, config) -> dict[tuple[str, str], dict]:
    """(run id, stage) -> its pipeline_runs row (a few rows)."""
    rows = lakehouse.read_table(spark, config.table_path("pipeline_runs")).collect()
    return {(r["run_id"], r["stage"]): r.asDict() for r in rows}


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_the_command_taking_over_a_dead_run_records_its_stages_as_the_publication_log_has_them(
    spark, tmp_path, monkeypatch
):
    """A run killed after ingest published and before it recorded itself, then during features (before any
    write): the next command records ingest as interrupted after publishing, with its published counts, and
    features as rolled back; both logs then agree."""
    lake = tmp_path / "lake"
    config = make_config(lake)
    publication.ensure_log(spark, config, "killed")
    version = write_rows(spark, config, "transactions_clean", TRANSACTIONS_CLEAN, 3, "new")
    counts = {"rows_in": 4, "rows_clean": 3, "rows_rejected": 1}
    publication.publish(spark, config, "killed", "ingest", {"transactions_clean": version}, counts=counts)
    assert log_disagreements(spark, config) == ["('killed', 'ingest') published without a pipeline_runs row"]
    started = [dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 5, 9, 0, 49, tzinfo=dt.UTC)]
    holder = {
        "run_id": "killed",
        "host": socket.gethostname(),
        "pid": dead_pid(),
        "config_hash": "hash-of-killed",
        "stages": [
            {"stage": s, "started_at": t.isoformat()} for s, t in zip(["ingest", "features"], started, strict=True)
        ],
    }
    (lake / LOCK_NAME).write_text(json.dumps(holder))
    last_seen = started[1] + dt.timedelta(seconds=7)
    os.utime(lake / LOCK_NAME, (last_seen.timestamp(), last_seen.timestamp()))
    ran = []
    monkeypatch.setitem(pipeline.STAGES, "report", lambda spark, config, run_id, stage: ran.append(run_id))

    pipeline.run_stages(spark, config, ["report"], "next")

    assert ran == ["next"] and not (lake / LOCK_NAME).exists()
    rows = stage_rows(spark, config)
    assert set(rows) == {("killed", "ingest"), ("killed", "features"), ("next", "report")}
    ingest, features = rows[("killed", "ingest")], rows[("killed", "features")]
    assert (ingest["status"], ingest["rows_in"], ingest["rows_out"], ingest["counts"]) == (
        "interrupted_after_publishing",
        4,
        None,
        counts,
    )
    assert (features["status"], features["rows_in"], features["counts"]) == ("rolled_back", None, {})
    # Timings from the lock: a stage ends when the next starts; the last when the dead lock was last refreshed.
    utc = dt.UTC
    assert [(r["started_at"].astimezone(utc), r["ended_at"].astimezone(utc)) for r in (ingest, features)] == [
        (started[0], started[1]),
        (started[1], last_seen),
    ]
    assert features["seconds"] == 7.0
    assert {ingest["config_hash"], features["config_hash"]} == {"hash-of-killed"}
    assert "ended after this stage published" in ingest["message"] and "recorded by run next" in ingest["message"]
    assert "rolled back what it left" in features["message"]
    assert rows[("next", "report")]["status"] == "succeeded"
    assert log_disagreements(spark, config) == []


def _features_stage(rows_written: list[int], cleaned: list[str]):
    """A features stand-in: writes customer_features and publishes it, with a cleanup like train's."""

    def run(spark, config, run_id, stage):
        publication.ensure_log(spark, config, run_id)
        with publication.publishing(spark, config, run_id, cleanup=lambda: cleaned.append(run_id)):
            version = write_rows(spark, config, "customer_features", CUSTOMER_FEATURES, rows_written[0], run_id)
            publication.publish(spark, config, run_id, "features", {"customer_features": version}, counts={"n": 2})
        stage.counts = {"n": 2}

    return run


def _profile_stage(seen: dict, fail: bool):
    """A profile stand-in: reads customer_features as published, then writes customer_segments (or fails)."""

    def run(spark, config, run_id, stage):
        seen["features"] = tags(spark, config, "customer_features")
        seen["committed"] = publication.last_publication(spark, config, "features")
        if fail:
            raise InputError("no customer to profile")
        with publication.publishing(spark, config, run_id):
            version = write_rows(spark, config, "customer_segments", CUSTOMER_SEGMENTS, 2, run_id)
            publication.publish(spark, config, run_id, "profile", {"customer_segments": version}, counts={"n": 1})
        stage.counts = {"n": 1}

    return run


def test_stages_published_together_become_visible_in_one_commit_or_roll_back_together(spark, tmp_path, monkeypatch):
    config = make_config(tmp_path / "lake")
    seen: dict = {}
    cleaned: list[str] = []
    monkeypatch.setitem(pipeline.STAGES, "features", _features_stage([2], cleaned))
    monkeypatch.setitem(pipeline.STAGES, "profile", _profile_stage(seen, fail=False))
    pipeline.run_stages(spark, config, ["features", "profile"], "one")

    # profile read what features wrote before anything was committed; both rows landed in one commit.
    assert seen == {"features": {"one"}, "committed": None}
    log_df = lakehouse.read_table(spark, config.table_path("published_runs"))
    rows = log_df.filter(F.col("run_id") == "one").collect()
    assert sorted(r["stage"] for r in rows) == ["features", "profile"] and len({r["published_at"] for r in rows}) == 1
    history = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path('published_runs')}`")
    assert history.filter(F.col("operation") == "WRITE").count() == 1  # created empty, then one append
    assert tags(spark, config, "customer_segments") == {"one"}
    assert {k: r["status"] for k, r in stage_rows(spark, config).items()} == {
        ("one", "features"): "succeeded",
        ("one", "profile"): "succeeded",
    }

    # Now profile fails: features' new version is rolled back with it, and its cleanup runs.
    monkeypatch.setitem(pipeline.STAGES, "profile", _profile_stage(seen, fail=True))
    with pytest.raises(InputError, match="no customer to profile"):
        pipeline.run_stages(spark, config, ["features", "profile"], "two")
    assert seen["features"] == {"two"}  # it had read the held version
    assert cleaned == ["two"]
    assert tags(spark, config, "customer_features") == {"one"}
    latest = lakehouse.read_table(spark, config.table_path("customer_features"))  # what a BI tool reads
    assert {r[0].split("-")[0] for r in latest.select("customer_id").distinct().collect()} == {"one"}
    assert log_df.filter((F.col("run_id") == "two") & (F.col("kind") == "run")).count() == 0
    rows = stage_rows(spark, config)
    assert (rows[("two", "features")]["status"], rows[("two", "profile")]["status"]) == ("rolled_back", "failed")
    assert rows[("two", "features")]["message"].startswith("rolled back unpublished: profile failed")
    assert rows[("two", "profile")]["message"] == "InputError: no customer to profile"
    assert log_disagreements(spark, config) == []


# --- the lock ---


def test_a_second_command_is_refused_with_the_holder_named(tmp_path):
    lake = tmp_path / "lake"
    config = make_config(lake)
    lake.mkdir(parents=True)
    with LakehouseLock(None, config, "run-one") as lock:
        assert lock.taken_over is None
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


def test_a_lock_left_by_a_dead_process_is_taken_over_with_its_record(tmp_path, caplog):
    lake = tmp_path / "lake"
    config = make_config(lake)
    lake.mkdir(parents=True)
    pid = dead_pid()
    with LakehouseLock(None, config, "killed") as first:  # what the holder writes as it goes
        first.at_stage("ingest")
        first.at_stage("features")
        text = (lake / LOCK_NAME).read_text()
    record = json.loads(text)
    assert record["config_hash"] == config.config_hash()
    assert [s["stage"] for s in record["stages"]] == ["ingest", "features"]
    (lake / LOCK_NAME).write_text(text.replace(f'"pid": {os.getpid()}', f'"pid": {pid}'))  # then it is killed
    with caplog.at_level(logging.WARNING, logger="segspark"), LakehouseLock(None, config, "next") as lock:
        assert lock.holds()
        dead = lock.taken_over
    assert f"run killed (process {pid}) ended without releasing the lakehouse" in caplog.text
    assert (dead.run_id, dead.pid, dead.config_hash) == ("killed", pid, config.config_hash())
    assert [s for s, _ in dead.stages] == ["ingest", "features"]
    assert dead.stages[0][1] <= dead.stages[1][1] <= dead.last_seen
    assert not list(lake.iterdir())  # released, and nothing staged left beside it


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


def test_an_older_table_gains_added_columns_and_loses_not_null_on_relaxed_ones(spark, tmp_path):
    """A table written by an earlier release: the next write adds the new column (null on old rows) and drops
    NOT NULL from a column that may now be null, then writes its null."""
    path = str(tmp_path / "t")
    old = TableSpec("t", T.StructType([T.StructField("k", T.IntegerType(), False)]))
    lakehouse.write_table(spark.createDataFrame([(1,)], old.schema), path, old)
    new = TableSpec(
        "t",
        T.StructType([T.StructField("k", T.IntegerType(), True), T.StructField("note", T.StringType(), True)]),
        added_columns=("note",),
        relaxed_columns=("k",),
    )
    lakehouse.write_table(spark.createDataFrame([(None, "all")], new.schema), path, new, mode="append")
    table = lakehouse.read_table(spark, path)
    assert [(f.name, f.nullable) for f in table.schema.fields] == [("k", True), ("note", True)]
    assert sorted(table.collect(), key=str) == sorted([T.Row(k=1, note=None), T.Row(k=None, note="all")], key=str)

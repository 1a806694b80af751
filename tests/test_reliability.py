"""Killed and concurrent runs, end to end with real processes.

The kill harness starts real ``segspark`` commands in their own process groups and kills each group with
SIGKILL at a moment chosen from the command's own log lines (plus a delay), at 13 points spread over ingest,
features, train and profile, and over a ``segspark run --retrain`` between train and profile and in monitor; a
backfill is killed while it builds its second snapshot. After every kill
it checks what readers see: one consistent published run per stage, and after the ``run`` kills one model per
snapshot in customer_segments, segment_profiles and campaign_audiences; and that the stage log agrees with the
publication log for every run a later command took over. Then a complete run on the same lakehouse must equal
a clean run on a fresh one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from segspark.contracts.schemas import PUBLISHED_TABLES
from segspark.pipeline import run_stages
from segspark.platform import lakehouse, publication
from tests.helpers.config import retail_config
from tests.helpers.runs import QUICK_RUN_SETTINGS, cli_environment, comparable, log_disagreements

pytestmark = pytest.mark.slow

# (command, log line to wait for, seconds after it). A kill that comes after the command ended is not counted.
# Each point costs a killed command and the next one's takeover (about a minute on CI): one per write a reader
# could see half done. An ingest killed while writing the rejected lines is in the incremental harness below.
# The ``run --retrain`` points fit a new model (a new model_version) on the same snapshot and are killed
# between train and profile, while profile writes campaign_audiences (after it named customer_segments), and
# right after the run's stages after ingest were published together, and while monitor measures the new model's
# drift (its tables publish with the rest).
KILL_POINTS = [
    ("ingest", r"ingest: counting the source lines", 0.0),
    ("ingest", r"ingest: writing the clean lines", 0.0),
    ("ingest", r"ingest published", 0.0),
    ("features", r"features: aggregating invoices", 0.0),
    ("features", r"features published", 0.0),
    ("train", r"train: writing customer_segments", 0.3),
    ("train", r"train published", 0.0),
    ("profile", r"profile: naming customer_segments", 0.3),
    ("profile", r"profile published", 0.0),
    ("run --retrain", r"stage train succeeded", 0.0),
    ("run --retrain", r"profile: writing campaign_audiences", 0.3),
    ("run --retrain", r"profile published", 0.0),
    ("run --retrain", r"monitor: feature drift of", 0.3),
]


def command(args: list[str], lake: Path, data: Path) -> list[str]:
    argv = [sys.executable, "-m", "segspark.cli", *args, "--lakehouse", str(lake)]
    if args[0] in ("run", "ingest"):
        argv += ["--layout", "online_retail", "--input", str(data)]
    for setting in QUICK_RUN_SETTINGS:
        argv += ["--set", setting]
    return argv


def run_to_end(args: list[str], lake: Path, data: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command(args, lake, data), env=cli_environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_and_kill(args: list[str], lake: Path, data: Path, marker: str, delay: float) -> tuple[bool, str]:
    """Start the command in its own process group; SIGKILL the group ``delay`` s after ``marker`` is logged.

    Returns whether the kill landed while the command ran, and its log.
    """
    proc = subprocess.Popen(
        command(args, lake, data),
        env=cli_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if re.search(marker, line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    try:
        deadline = time.monotonic() + 300
        while not seen.is_set() and proc.poll() is None and time.monotonic() < deadline:
            seen.wait(0.05)
        if seen.is_set():
            time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    reader.join(timeout=10)
    return killed and seen.is_set(), "".join(lines)


def check_published_run_is_consistent(spark, lake: Path) -> None:
    """What every reader sees: each stage's tables come from one published run, and they agree.

    Each table is read once, aggregated to a few rows.
    """
    config = retail_config(lake)
    ingest = publication.last_publication(spark, config, "ingest")
    if ingest is not None:
        lines = (
            publication.read_published(spark, config, "transactions_clean")
            .select("run_id")
            .union(publication.read_published(spark, config, "transactions_rejected").select("run_id"))
        )
        by_run = {r[0]: r[1] for r in lines.groupBy("run_id").count().collect()}
        assert by_run == {ingest["run_id"]: ingest["counts"]["rows_in"]}
    features = publication.last_publication(spark, config, "features")
    if features is not None:
        # Each snapshot comes from one features run (a backfill builds each in its own), as that run counted it.
        customer_features = publication.read_published(spark, config, "customer_features")
        by_snapshot: dict = {}
        for r in customer_features.groupBy("as_of_date", "run_id").count().collect():  # snapshots x runs
            by_snapshot.setdefault(r[0], {})[r[1]] = r[2]
        for as_of, runs in by_snapshot.items():
            assert len(runs) == 1, (as_of, runs)
            ((run, customers),) = runs.items()
            counts = publication.run_publications(spark, config, run)["features"]["counts"]
            assert counts[f"customers_{as_of.isoformat()}"] == customers, (as_of, run, counts)
    train = publication.last_publication(spark, config, "train")
    if train is not None:
        model = train["model_version"]
        centroids = (
            publication.read_published(spark, config, "segment_centroids")
            .filter(F.col("model_version") == model)
            .collect()
        )
        # The training snapshot's segments are the centroids' sizes (later snapshots the model scored differ).
        trained_on = centroids[0]["as_of_date"] if centroids else None
        segments = publication.read_published(spark, config, "customer_segments").filter(
            F.col("as_of_date") == F.lit(trained_on)
        )
        sizes = {(r[0], r[1]): r[2] for r in segments.groupBy("model_version", "segment_id").count().collect()}
        assert sizes == {(model, r["segment_id"]): r["customers"] for r in centroids}
        chosen = (
            publication.read_published(spark, config, "model_selection")
            .filter((F.col("model_version") == model) & F.col("is_chosen"))
            .collect()
        )
        assert len(chosen) == 1 and chosen[0]["k"] == train["counts"]["k"] == len(centroids)
        swept = publication.read_published(spark, config, "sweep_segments").filter(F.col("model_version") == model)
        assert swept.limit(1).count() == 1
        assert (lake / "models" / model).is_dir()
    profile = publication.last_publication(spark, config, "profile")
    # A segspark run publishes train and profile in one commit: the same published_at.
    if profile is not None and (train is None or profile["published_at"] >= train["published_at"]):
        run = profile["run_id"]
        profiles = publication.read_published(spark, config, "segment_profiles").filter(F.col("run_id") == run)
        names = {r["segment_id"]: r["segment_name"] for r in profiles.collect()}
        as_of = profiles.select("as_of_date").first()[0]
        assert len(names) == profile["counts"]["segments"]
        audience = publication.read_published(spark, config, "campaign_audiences").filter(F.col("run_id") == run)
        assert audience.count() == profile["counts"]["customers"]
        named = (
            publication.read_published(spark, config, "customer_segments")
            .filter(F.col("as_of_date") == as_of)
            .select("segment_id", "segment_name")
            .distinct()
            .collect()
        )
        assert {r[0]: r[1] for r in named} == names


def check_each_snapshot_has_one_model(spark, lake: Path) -> None:
    """customer_segments, segment_profiles and campaign_audiences of every profiled snapshot name one model,
    and customer_segments carries that model's segment names (a segspark run publishes them together)."""
    config = retail_config(lake)
    if not publication.is_published(spark, config, "segment_profiles"):
        return
    models: dict[str, dict] = {}
    for table in ("customer_segments", "segment_profiles", "campaign_audiences"):
        rows = publication.read_published(spark, config, table).groupBy("as_of_date", "model_version").count()
        for r in rows.collect():  # snapshots x models: a few rows
            models.setdefault(table, {}).setdefault(r["as_of_date"], set()).add(r["model_version"])
    for as_of, profiled in models["segment_profiles"].items():
        assert len(profiled) == 1, (as_of, profiled)
        assert models["customer_segments"][as_of] == profiled == models["campaign_audiences"][as_of], (as_of, models)
    assigned = (
        publication.read_published(spark, config, "customer_segments")
        .filter(F.col("as_of_date").isin(list(models["segment_profiles"])))
        .select("as_of_date", "segment_id", F.col("segment_name").alias("assigned_name"))
    )
    profiles = publication.read_published(spark, config, "segment_profiles").select(
        "as_of_date", "segment_id", "segment_name"
    )
    unnamed = assigned.join(profiles, ["as_of_date", "segment_id"], "left").filter(
        F.col("segment_name").isNull() | ~F.col("assigned_name").eqNullSafe(F.col("segment_name"))
    )
    assert unnamed.limit(1).count() == 0, "a customer's segment_name is not its segment's in segment_profiles"


def check_latest_versions_are_published(spark, lake: Path) -> None:
    """After a later command's repair, a BI tool reading each table's latest version sees the published set."""
    config = retail_config(lake)
    published = publication.published_versions(spark, config)
    for table in PUBLISHED_TABLES:
        current = lakehouse.current_version(spark, config.table_path(table))
        if current is not None:
            assert current == published.get(table, 0), table


@pytest.fixture(scope="module")
def busy_then_clean(spark, small_input, tmp_path_factory):
    """A complete run on a fresh lakehouse, with a second command started while it runs.

    Returns the lakehouse (the clean reference run of the kill harness), the holder's run id as its lock
    file named it, and the second command's outcome.
    """
    lake = tmp_path_factory.mktemp("busy") / "lake"
    first = subprocess.Popen(
        command(["run"], lake, small_input),
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = lake / "_segspark_lock"
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.exists(), "the first run never took the lakehouse"
        holder = re.search(r'"run_id": "([^"]+)"', lock.read_text()).group(1)
        second = subprocess.run(
            command(["features"], lake, small_input), env=cli_environment(), capture_output=True, text=True, timeout=300
        )
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    return lake, holder, second


def test_a_second_command_on_a_busy_lakehouse_stops_naming_the_holder(spark, busy_then_clean):
    lake, holder, second = busy_then_clean
    assert second.returncode == 3, second.stderr[-2000:]
    message = [line for line in second.stderr.splitlines() if line.startswith("segspark: error:")]
    assert len(message) == 1 and f"in use by run {holder}" in message[0], second.stderr[-2000:]
    check_published_run_is_consistent(spark, lake)
    check_latest_versions_are_published(spark, lake)
    check_each_snapshot_has_one_model(spark, lake)
    assert log_disagreements(spark, retail_config(lake)) == []
    assert not (lake / "_segspark_lock").exists()


def test_killed_runs_leave_one_consistent_published_run_and_a_rerun_equals_a_clean_run(
    spark, small_input, busy_then_clean, tmp_path
):
    data = small_input
    lake = tmp_path / "lake"
    config = retail_config(lake)
    landed = []
    killed_runs = []
    for i, (args, marker, delay) in enumerate(KILL_POINTS):
        killed, output = run_and_kill(args.split(), lake, data, marker, delay)
        started = re.search(r"run (\S+): stages", output)
        killed_runs += [started.group(1)] if started else []
        if killed:
            landed.append((args, marker, delay))
        assert "Traceback" not in output, output[-3000:]
        check_published_run_is_consistent(spark, lake)
        if args.startswith("run"):
            check_each_snapshot_has_one_model(spark, lake)
        # Every run before this one was taken over by the next command, which recorded it in pipeline_runs.
        assert log_disagreements(spark, config, pending=killed_runs[-1:]) == [], (args, marker)
        if i % 2 == 1:  # every other time, repair here; otherwise the next command repairs
            publication.repair(spark, config, f"check-{i}")
            check_latest_versions_are_published(spark, lake)
    assert len(landed) >= 10, landed

    rerun = run_to_end(["run"], lake, data)
    check_published_run_is_consistent(spark, lake)
    check_latest_versions_are_published(spark, lake)
    check_each_snapshot_has_one_model(spark, lake)
    assert log_disagreements(spark, config) == []
    stage_log = lakehouse.read_table(spark, config.table_path("pipeline_runs"))
    recorded = {r[0] for r in stage_log.select("run_id").distinct().collect()}  # one row per run
    assert set(killed_runs) <= recorded, set(killed_runs) - recorded  # every killed run is in the stage log
    clean_lake = busy_then_clean[0]
    for table in ("transactions_clean", "transactions_rejected", "customer_features", "customer_segments"):
        assert_df_equality(
            comparable(spark, lake, table),
            comparable(spark, clean_lake, table),
            ignore_row_order=True,
            ignore_nullable=True,
            ignore_metadata=True,
        )
    keep = ["segment_id", "customers", "k", "algorithm"]
    run_id = re.search(r"run (\S+) finished", rerun.stdout).group(1)
    assert_df_equality(
        publication.read_published(spark, retail_config(lake), "segment_centroids")
        .filter(F.col("run_id") == run_id)
        .select(*keep),
        publication.read_published(spark, retail_config(clean_lake), "segment_centroids").select(*keep),
        ignore_row_order=True,
        ignore_nullable=True,
    )


#: Kill points of an incremental batch (a new file added to an ingested source).
INCREMENTAL_KILL_POINTS = [
    (r"ingest: counting the source lines", 0.0),
    (r"ingest: checking every line and writing the rejected", 0.5),
    (r"ingest: writing the clean lines", 0.5),
    (r"ingest published", 0.0),
]


def check_ingested_lines_reconcile(spark, lake: Path) -> None:
    """The published transactions tables hold exactly the lines of the published ingested_files, each batch's
    lines under a run that published."""
    config = retail_config(lake)
    lines = (
        publication.read_published(spark, config, "transactions_clean")
        .select("run_id")
        .union(publication.read_published(spark, config, "transactions_rejected").select("run_id"))
    )
    by_run = {r[0]: r[1] for r in lines.groupBy("run_id").count().collect()}  # one row per ingest run
    files = publication.read_published(spark, config, "ingested_files").groupBy("run_id").agg(F.sum("lines_in"))
    assert by_run == {r[0]: r[1] for r in files.collect()}


def test_a_killed_incremental_batch_is_ingested_once_by_the_next_run(spark, small_input, tmp_path):
    parts = sorted(small_input.glob("*.csv"))
    source = tmp_path / "source"
    source.mkdir()
    for part in parts[:-1]:
        os.link(part, source / part.name)
    lake = tmp_path / "lake"
    run_to_end(["ingest"], lake, source)
    os.link(parts[-1], source / parts[-1].name)  # the new delivery
    config = retail_config(lake)
    landed = 0
    for marker, delay in INCREMENTAL_KILL_POINTS:
        killed, output = run_and_kill(["ingest"], lake, source, marker, delay)
        landed += killed
        assert "Traceback" not in output, output[-3000:]
        check_ingested_lines_reconcile(spark, lake)
    assert landed >= 3
    run_to_end(["ingest"], lake, source)
    check_ingested_lines_reconcile(spark, lake)
    check_latest_versions_are_published(spark, lake)
    assert log_disagreements(spark, config) == []
    clean_lake = tmp_path / "clean"
    run_to_end(["ingest"], clean_lake, source)
    for table in ("transactions_clean", "transactions_rejected"):
        assert_df_equality(
            comparable(spark, lake, table),
            comparable(spark, clean_lake, table),
            ignore_row_order=True,
            ignore_nullable=True,
            ignore_metadata=True,
        )


BACKFILL = ["backfill", "--from", "2011-10-01", "--to", "2011-11-01", "--every", "month"]


def test_a_killed_backfill_keeps_its_published_snapshots_and_a_rerun_continues_from_the_first_unpublished(
    spark, small_input, tmp_path
):
    lake = tmp_path / "lake"
    config = retail_config(lake)
    run_stages(spark, retail_config(lake, small_input), ["ingest"])  # in this process: one JVM start fewer
    killed, output = run_and_kill(BACKFILL, lake, small_input, r"backfill: snapshot 2011-11-01", 2.0)
    assert killed, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    check_published_run_is_consistent(spark, lake)
    first_run = re.findall(r"run (\S+): stages", output)
    assert log_disagreements(spark, config, pending=first_run[-1:]) == []
    profiled = publication.read_published(spark, config, "segment_profiles").select("as_of_date").distinct()
    assert [r[0].isoformat() for r in profiled.collect()] == ["2011-10-01"]  # the snapshot before the kill

    done = run_to_end(BACKFILL, lake, small_input)
    check_published_run_is_consistent(spark, lake)
    check_latest_versions_are_published(spark, lake)
    assert log_disagreements(spark, config) == []
    model = re.search(r"2011-10-01: already published, model (\S+)", done.stdout)
    assert model, done.stdout
    assert re.search(rf"2011-11-01: run \S+, score, model {model.group(1)}; ", done.stdout), done.stdout
    assert "backfill of 2 snapshot(s) finished: 1 built, 1 skipped" in done.stdout
    segments = publication.read_published(spark, config, "customer_segments")
    assert {r[0] for r in segments.select("model_version").distinct().collect()} == {model.group(1)}
    customers = {r[0]: r[1] for r in segments.groupBy("as_of_date").count().collect()}  # two snapshots
    moved = publication.read_published(spark, config, "segment_migration").filter(F.col("to_segment_id").isNotNull())
    assert {r[0]: r[1] for r in moved.groupBy("to_as_of_date").agg(F.sum("customers")).collect()} == {
        d: n for d, n in customers.items() if d.isoformat() != "2011-10-01"
    }
    drift = publication.read_published(spark, config, "feature_drift").select("as_of_date").distinct()
    assert len(drift.collect()) == 2  # one row set per snapshot, the model's own included

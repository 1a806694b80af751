"""The command line as a new user meets it: paths, the lakehouse, progress, what a run prints at the end."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segspark.config.paths import absolute_uri, local_path
from segspark.config.settings import load_config
from segspark.console import format_segments
from segspark.errors import ConfigError
from segspark.pipeline import run_stages
from segspark.platform import progress
from segspark.platform.lakehouse import check_lakehouse, table_exists
from tests.helpers.config import RETAIL_LAYOUT, ROOT, retail_config
from tests.helpers.data import write_csv

LINES = [
    "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536366,22633,HAND WARMER,6,2010-12-02 08:28:00,1.85,17851,United Kingdom",
    "536367,84879,ASSORTED BIRD,32,2010-12-03 08:34:00,1.69,13047,France",
]


# --- every path is an absolute URI once config is loaded ---


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("lh", "file:{cwd}/lh"),
        ("./a/../lh/", "file:{cwd}/lh"),
        ("~/lh", "file:{home}/lh"),
        ("/data/tx/*.csv", "file:/data/tx/*.csv"),
        ("file:///data/lh", "file:/data/lh"),
        ("file:/data/lh/", "file:/data/lh"),
        ("s3a://bucket/lh/", "s3a://bucket/lh"),
        ("abfss://c@acct.dfs.core.windows.net/lh", "abfss://c@acct.dfs.core.windows.net/lh"),
        ("gs://bucket/lh", "gs://bucket/lh"),
        ("hdfs://nn:8020/lh", "hdfs://nn:8020/lh"),
    ],
)
def test_paths_become_absolute_uris(given, expected, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    want = expected.format(cwd=tmp_path.resolve(), home=os.path.expanduser("~"))
    assert absolute_uri(given) == want


def test_config_resolves_lakehouse_and_input_once(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = load_config(env=None, flags={"lakehouse": "lh", "source": {"path": "in/*.csv"}})
    assert config.lakehouse == f"file:{tmp_path.resolve()}/lh"
    assert config.table_path("customer_segments") == f"file:{tmp_path.resolve()}/lh/customer_segments"
    assert config.model_path("m1") == f"file:{tmp_path.resolve()}/lh/models/m1"
    assert config.source.path == f"file:{tmp_path.resolve()}/in/*.csv"
    assert local_path(config.lakehouse) == tmp_path.resolve() / "lh"
    # A catalog table name is not a path.
    table = load_config(env=None, flags={"source": {"format": "table", "path": "raw.retail_lines"}})
    assert table.source.path == "raw.retail_lines"
    remote = load_config(env=None, flags={"lakehouse": "s3a://bucket/segments/"})
    assert remote.table_path("pipeline_runs") == "s3a://bucket/segments/pipeline_runs"
    assert remote.lakehouse_local_path is None


@pytest.mark.slow
def test_relative_lakehouse_lands_where_the_user_ran(spark, monkeypatch, tmp_path):
    """The JVM's working directory is not the user's: a relative lakehouse must mean the user's folder."""
    write_csv(tmp_path / "in", LINES, name="day.csv")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = retail_config("lh", "../in")
    run_stages(spark, config, ["ingest", "features"], run_id="rel")
    for table in ("transactions_clean", "transactions_rejected", "customer_features", "pipeline_runs"):
        assert (work / "lh" / table / "_delta_log").is_dir(), table
        assert table_exists(spark, config.table_path(table))
    assert not (ROOT / "lh").exists()


def test_check_lakehouse_creates_the_folder_or_names_the_problem(tmp_path):
    config = load_config(env=None, flags={"lakehouse": str(tmp_path / "new" / "lh")})
    check_lakehouse(config)
    assert (tmp_path / "new" / "lh").is_dir()

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_lakehouse(load_config(env=None, flags={"lakehouse": str(tmp_path / "a-file")}))
    with pytest.raises(ConfigError, match="cannot be created"):
        check_lakehouse(load_config(env=None, flags={"lakehouse": str(tmp_path / "a-file" / "lh")}))
    # Remote lakehouses are checked by their first write, not here.
    check_lakehouse(load_config(env=None, flags={"lakehouse": "s3a://bucket/lh"}))


# --- what a run prints ---


def test_format_segments_golden():
    segments = [
        {
            "segment_id": 1,
            "customers": 1543,
            "share": 0.3557,
            "centroid_original": {"recency_days": 24.04, "frequency": 6.7, "monetary": 2566.4},
        },
        {
            "segment_id": 0,
            "customers": 2795,
            "share": 0.6443,
            "centroid_original": {"recency_days": 139.4, "frequency": 1.25, "monetary": 356.0},
        },
    ]
    text = format_segments(segments, ["recency_days", "frequency", "monetary"], "Segments:", "K=2: best silhouette")
    assert text.splitlines() == [
        "Segments:",
        "  segment  customers  share  recency_days  frequency  monetary",
        "        0      2,795  64.4%           139       1.25       356",
        "        1      1,543  35.6%          24.0       6.70     2,566",
        "",
        "Decision: K=2: best silhouette",
    ]


def test_progress_prints_plain_lines_when_not_a_terminal(spark):
    stream = io.StringIO()
    progress.start_stage("ingest")
    progress.step("grouping identical source rows")

    def slow(rows):
        time.sleep(1.5)
        return rows

    with progress.ProgressReporter(spark, interval=0.3, stream=stream, interactive=False):
        spark.sparkContext.parallelize(range(4), 2).mapPartitions(slow).count()
    lines = stream.getvalue().splitlines()
    assert lines, "no progress line in 1.5 s at a 0.3 s interval"
    assert all(line.startswith("segspark: ingest · grouping identical source rows") for line in lines)
    assert any("Spark stage" in line and "/2 tasks" in line for line in lines), lines
    assert "\r" not in stream.getvalue()
    assert progress.status_line(spark) is None  # the reporter's end clears the stage


@pytest.mark.slow
def test_run_from_a_fresh_shell_prints_segments_and_keeps_its_folder_clean(tmp_path):
    """`segspark run` with a relative lakehouse, as a person runs it: exit 0, the segment table and decision
    at the end, Spark's own chatter in the run's log file, no spark-warehouse/ where the user stands."""
    from segspark import synthetic as generator

    generator.main(["--rows", "3000", "--out", str(tmp_path / "tx"), "--seed", "3"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segspark.cli",
            "run",
            "--config",
            str(RETAIL_LAYOUT),
            "--input",
            "tx",
            "--lakehouse",
            "lh",
            "--set",
            "model.k_max=3",
            "--set",
            "model.restarts=1",
            "--set",
            "model.stability_runs=0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Segments of model" in result.stdout and "Decision: " in result.stdout, result.stdout
    assert "recency_days" in result.stdout and "monetary" in result.stdout
    assert (tmp_path / "lh" / "customer_segments" / "_delta_log").is_dir()
    page = re.search(r"^segspark: report file:(\S+)$", result.stdout, re.M)
    assert page and Path(page.group(1)).is_file() and Path(page.group(1)).parent.parent == tmp_path / "lh" / "reports"
    assert not (tmp_path / "spark-warehouse").exists()
    assert not (ROOT / "spark-warehouse").exists() or (ROOT / "spark-warehouse").stat().st_mtime < time.time() - seconds
    logs = list((tmp_path / "lh" / "_logs").glob("*.log"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0
    # Only segspark's own lines reach the person: no JVM/Ivy/log4j lines.
    foreign = [
        line for line in output.splitlines() if line and not line.startswith(("segspark", " ", "Segments", "Decision"))
    ]
    assert foreign == [], foreign
    # A report of a run that does not exist: exit 2, naming it and the runs that do.
    unknown = subprocess.run(
        [sys.executable, "-m", "segspark.cli", "report", "--lakehouse", "lh", "--run-id", "no-such-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert unknown.returncode == 2, unknown.stderr[-2000:]
    assert "segspark: error: run 'no-such-run' wrote no published segments snapshot" in unknown.stderr
    assert Path(page.group(1)).parent.name in unknown.stderr


def test_packaging_metadata_gives_setuptools_nothing_to_warn_about():
    """`project.license` as a TOML table made every install print ~45 lines of deprecation warnings."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)  # an SPDX expression
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_a_spark_connect_session_is_refused_before_spark_starts(monkeypatch, tmp_path, capsys):
    """SPARK_REMOTE would make pyspark build a Spark Connect session, without the driver JVM segspark uses:
    the command stops with exit 2 and says why, instead of failing mid-stage."""
    from segspark import cli

    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:15002")
    code = cli.main(["features", "--lakehouse", str(tmp_path / "lake")])
    assert code == 2
    err = capsys.readouterr().err
    assert "SPARK_REMOTE=sc://127.0.0.1:15002 asks for a Spark Connect session" in err
    assert "docs/deployment.md, 'Spark Connect'" in err


def test_maintain_and_catalog_options_reach_the_config():
    from segspark import cli

    args = cli.build_parser().parse_args(
        ["maintain", "--lakehouse", "lh", "--catalog-db", "segmentation", "--as-of", "2011-12-10"]
    )
    config = cli.config_from_args(args)
    assert config.catalog.database == "segmentation"
    assert [d.isoformat() for d in config.as_of_dates] == ["2011-12-10"]
    assert cli.COMMANDS["maintain"].stages == ["maintain"]


def test_backfill_dates_step_by_week_or_month_and_keep_the_day_of_the_month():
    from segspark.backfill import snapshot_dates

    d = dt.date
    assert snapshot_dates(d(2011, 1, 31), d(2011, 5, 1), "month") == [
        d(2011, 1, 31),
        d(2011, 2, 28),
        d(2011, 3, 31),
        d(2011, 4, 30),
    ]
    assert snapshot_dates(d(2011, 11, 15), d(2012, 1, 15), "month") == [
        d(2011, 11, 15),
        d(2011, 12, 15),
        d(2012, 1, 15),
    ]
    assert snapshot_dates(d(2011, 3, 1), d(2011, 3, 22), "week") == [
        d(2011, 3, 1),
        d(2011, 3, 8),
        d(2011, 3, 15),
        d(2011, 3, 22),
    ]
    assert snapshot_dates(d(2011, 3, 1), d(2011, 3, 1), "month") == [d(2011, 3, 1)]
    with pytest.raises(ConfigError, match="--to 2011-02-01 is before --from 2011-03-01"):
        snapshot_dates(d(2011, 3, 1), d(2011, 2, 1), "month")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2011-03-01", "--every", "month"], "--from, --to and --every go together"),
        ([], "backfill needs snapshot dates"),
        (["--from", "2011-03-01", "--to", "2011-01-01", "--every", "week"], "is before --from"),
    ],
)
def test_backfill_without_usable_dates_is_a_usage_error_before_spark_starts(argv, message, tmp_path, capsys):
    from segspark import cli

    started = time.monotonic()
    assert cli.main(["backfill", "--lakehouse", str(tmp_path / "lake"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert time.monotonic() - started < 5  # no JVM started


def test_backfill_dates_join_as_of_and_the_series():
    from segspark import cli

    args = cli.build_parser().parse_args(
        [
            "backfill",
            "--from",
            "2011-03-01",
            "--to",
            "2011-05-01",
            "--every",
            "month",
            "--as-of",
            "2011-04-15",
            "--as-of",
            "2011-04-01",
            "--model",
            "m1",
        ]
    )
    assert cli.backfill_dates(args) == [
        dt.date(2011, 3, 1),
        dt.date(2011, 4, 1),
        dt.date(2011, 4, 15),
        dt.date(2011, 5, 1),
    ]
    assert cli.config_from_args(args).score.model_version == "m1"

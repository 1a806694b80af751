"""The cluster path end to end: the packaged artefacts submitted to a real standalone cluster.

A master and two workers start on 127.0.0.1 with pyspark's own ``spark-class``. ``segspark run`` is submitted
with ``spark-submit --master spark://...`` from the files ``scripts/package.sh`` builds (the zip on
``--py-files``, the job file and conf folder it copies), by a Python that cannot import segspark from anywhere
else. It loses one executor (killed by its process id while it runs a task) and its published tables must
still equal a local-mode run on the same input and seed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark import __version__
from segspark.contracts.schemas import PUBLISHED_TABLES
from segspark.platform.session import cached_delta_jars
from tests.helpers.config import ROOT
from tests.helpers.runs import QUICK_RUN_SETTINGS, cli_environment, comparable
from tests.helpers.servers import (
    SPARK_HOME,
    bare_python,
    executor_processes,
    free_port,
    get_json,
    spark_env,
    standalone_cluster,
)

pytestmark = pytest.mark.slow

#: The model settings of the kill harness (small and quick), without its local master and report switch.
MODEL_SETTINGS = [s for s in QUICK_RUN_SETTINGS if s.startswith("model.")]
#: Executors that fit the test's workers (1 core each); spark-submit's values win over conf/cluster.yaml's.
EXECUTOR_CONF = {
    "spark.executor.cores": "1",
    "spark.executor.memory": "1g",
    "spark.executor.memoryOverhead": "512m",
    "spark.dynamicAllocation.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.memory": "2g",
    # Re-run a lost task sooner than the default 1 s of locality wait on a two-node cluster.
    "spark.locality.wait": "0s",
}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, SEGSPARK_VENV=sys.prefix)  # the venv this test runs in (a worktree may have none)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package.sh"), "--out", str(out)], env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (f"segspark-{__version__}.zip", f"segspark-{__version__}-py3-none-any.whl",
                 f"segspark-conf-{__version__}.zip", "conf/base.yaml", "conf/cluster.yaml", "jobs/run.py"):
        assert (out / name).is_file(), name
    assert f"--py-files {out}/segspark-{__version__}.zip" in done.stdout
    return out


@pytest.fixture(scope="module")
def local_run(small_input, tmp_path_factory) -> Path:
    """The reference: ``segspark run`` in local mode (the local overlay) on the same input and settings."""
    lake = tmp_path_factory.mktemp("local") / "lake"
    argv = [sys.executable, "-m", "segspark.cli", "run", "--layout", "online_retail", "--input", str(small_input),
            "--lakehouse", str(lake), "--set", "report.enabled=false"]
    for setting in MODEL_SETTINGS:
        argv += ["--set", setting]
    done = subprocess.run(argv, env=cli_environment(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return lake


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with standalone_cluster(tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="2g") as running:
        yield running


def submit_command(packaged: Path, master: str, data: Path, lake: Path, ui_port: int, *extra: str) -> list[str]:
    jars = cached_delta_jars(os.path.expanduser("~/.cache/segspark/ivy"))
    assert jars, "the Delta jars are cached by the session fixture's first start"
    argv = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master, "--deploy-mode", "client",
            "--jars", ",".join(jars), "--py-files", str(packaged / f"segspark-{__version__}.zip"),
            "--conf", f"spark.ui.port={ui_port}"]
    for key, value in EXECUTOR_CONF.items():
        argv += ["--conf", f"{key}={value}"]
    argv += [str(packaged / "jobs" / "run.py"), "--conf-dir", str(packaged / "conf"), "--layout", "online_retail",
             "--input", str(data), "--lakehouse", str(lake)]
    for setting in [*MODEL_SETTINGS, *extra]:
        argv += ["--set", setting]
    return argv


def submit(argv: list[str], python: Path, cwd: Path, on_line=None) -> tuple[int, str]:
    """Run spark-submit with ``python`` as driver and executor Python; call ``on_line(line)`` per output line."""
    env = spark_env(PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=60)
    return proc.returncode, "".join(lines)


def sortable(df):
    """Maps as arrays of their entries sorted by key: chispa orders rows by every column, and Spark cannot order
    by a map."""
    return df.select(
        *[
            F.array_sort(F.map_entries(f.name)).alias(f.name) if isinstance(f.dataType, T.MapType) else F.col(f.name)
            for f in df.schema.fields
        ]
    )


def assert_published_tables_equal(spark, lake: Path, reference: Path) -> None:
    for table in PUBLISHED_TABLES:
        if not (reference / table).exists():
            assert not (lake / table).exists(), table
            continue
        timings = ["fit_seconds", "seconds"]  # model_selection: how long each candidate took
        expected = sortable(comparable(spark, reference, table).drop(*timings))
        actual = sortable(comparable(spark, lake, table).drop(*timings))
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    python = bare_python(tmp_path_factory.mktemp("bare") / "venv")
    # As spark-submit will run it: without this process's PYTHONPATH (a worktree's checkout may be on it).
    probe = subprocess.run([str(python), "-c", "import segspark"], capture_output=True, text=True, cwd="/",
                           env=spark_env())
    assert probe.returncode != 0, "the bare Python must not find segspark outside the packaged zip"
    return python


def test_the_packaged_job_losing_an_executor_mid_stage_equals_a_local_run(
    spark, packaged, bare, cluster, small_input, local_run, tmp_path
):
    """One submission (a cluster run costs minutes): the packaged job runs on the standalone master, loses an
    executor to SIGKILL while features runs a task, and still publishes a local run's tables and its report."""
    lake = tmp_path / "lake"
    ui_port = free_port()
    killed: dict[str, int] = {}
    started = threading.Event()

    def on_line(line: str) -> None:
        if re.search(r"features: aggregating invoices", line):
            started.set()

    def kill_a_busy_executor() -> None:
        """After features starts, wait for a running task, then SIGKILL the executor running it."""
        if not started.wait(600):
            return
        api = f"http://127.0.0.1:{ui_port}/api/v1/applications"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            try:
                app = get_json(api)[0]["id"]
                busy = [e["id"] for e in get_json(f"{api}/{app}/executors") if e["id"] != "driver" and e["activeTasks"]]
            except (OSError, ValueError, IndexError, KeyError):
                busy = []
            pids = executor_processes()
            for executor in busy:
                if executor in pids:
                    os.kill(pids[executor], 9)
                    killed[executor] = pids[executor]
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_executor, daemon=True)
    killer.start()
    argv = submit_command(packaged, cluster.master_url, small_input, lake, ui_port)
    code, output = submit(argv, bare, cwd=tmp_path, on_line=on_line)
    killer.join(timeout=10)
    assert killed, "no executor was seen running a task after features started"
    assert code == 0, output[-4000:]
    executor = next(iter(killed))
    assert re.search(rf"Lost executor {executor}\b", output), output[-4000:]
    # The driver ran on the standalone master (not local mode), with conf/cluster.yaml's settings where the
    # submit command set none, and imported segspark from the packaged zip.
    assert f"master {cluster.master_url}, shuffle partitions 200" in output, output[-3000:]
    assert f"segspark-{__version__}.zip/segspark" in output, output[-3000:]
    # The master saw the application finish (spark-submit names it after the job file).
    assert any(app["name"] == "run.py" for app in cluster.status()["completedapps"]), cluster.status()
    report = next((lake / "reports").glob("*/index.html"))
    assert "<h2>Choosing K" in report.read_text()
    assert_published_tables_equal(spark, lake, local_run)

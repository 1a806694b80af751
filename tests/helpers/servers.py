"""Real Spark servers for tests: a standalone master with workers, and a Spark Connect server, bound to 127.0.0.1
only.

Every process is started by this module in its own session (process group) and stopped by the process id it
was started with: first SIGTERM to its group, then SIGKILL, whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_env(**extra: str) -> dict[str, str]:
    """Environment for Spark's own launchers: this pyspark as SPARK_HOME, loopback only, no inherited PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYSPARK_GATEWAY_PORT", "SPARK_REMOTE"}}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1", **extra)
    return env


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a loopback URL built here)
        return json.loads(response.read().decode())


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop the process group started with ``proc``: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children it left behind (executors of a dead worker)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Standalone:
    """A running standalone cluster: its master URL, web UI, and the processes started for it."""

    master_url: str
    ui_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def status(self) -> dict:
        return get_json(f"{self.ui_url}/json/")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in self.logs:
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else []
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


def _launch(args: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 (closed when the process is stopped; the child holds it)
    try:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            env=spark_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        handle.close()


@contextlib.contextmanager
def standalone_cluster(
    folder: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g", timeout: float = 120.0
) -> Iterator[Standalone]:
    """A master and ``workers`` workers on 127.0.0.1, started with pyspark's ``spark-class``."""
    folder.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    cluster = Standalone(master_url=f"spark://127.0.0.1:{port}", ui_url=f"http://127.0.0.1:{ui_port}")
    try:
        cluster.logs.append(folder / "master.log")
        cluster.processes.append(
            _launch(
                ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui_port)],
                cluster.logs[-1],
            )
        )
        for n in range(workers):
            cluster.logs.append(folder / f"worker{n}.log")
            cluster.processes.append(
                _launch(
                    ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
                     "--memory", memory, "--work-dir", str(folder / f"worker{n}"), "--webui-port", str(free_port()),
                     cluster.master_url],
                    cluster.logs[-1],
                )
            )
        deadline = time.monotonic() + timeout
        alive = 0
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in cluster.processes):
                raise RuntimeError(f"a cluster process exited at start:\n{cluster.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                alive = sum(w["state"] == "ALIVE" for w in cluster.status()["workers"])
                if alive == workers:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{alive} of {workers} workers registered in {timeout} s:\n{cluster.log_tail()}")
        yield cluster
    finally:
        for proc in reversed(cluster.processes):  # workers (and their executors) first, the master last
            stop(proc)


def executor_processes() -> dict[str, int]:
    """Executor id -> process id of every standalone executor JVM on this machine (from /proc)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in words and "--executor-id" in words:
            found[words[words.index("--executor-id") + 1]] = int(entry.name)
    return found


def bare_python(folder: Path) -> Path:
    """A Python that sees this environment's installed packages but not segspark (neither this checkout nor
    its editable install): what a cluster node with the dependencies but without segspark has.

    A venv without pip whose one ``.pth`` line names this environment's site-packages as a plain folder, so the
    editable install's own ``.pth`` hook in it is never run.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "segspark-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@contextlib.contextmanager
def connect_server(folder: Path, jars: list[str], timeout: float = 120.0) -> Iterator[str]:
    """A Spark Connect server (local mode, Delta's extension and catalog) on 127.0.0.1; yields its ``sc://`` URL.

    Started with pyspark's own ``spark-submit`` and the server class its ``spark-connect`` jar holds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "connect-server.log"
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.warehouse.dir": str(folder / "warehouse"),
    }
    argv = [str(SPARK_HOME / "bin" / "spark-submit"), "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]", "--jars", ",".join(jars)]
    for key, value in settings.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append("spark-internal")
    with open(log, "wb") as handle:
        proc = subprocess.Popen(argv, env=spark_env(), stdout=handle, stderr=subprocess.STDOUT, cwd=folder,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the Connect server exited at start:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Connect server did not listen in {timeout} s") from None
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop(proc)

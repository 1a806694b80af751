"""The one place a SparkSession is made.

Run as plain Python (the CLI, tests), segspark builds a local-mode session with Delta configured, resolving
Delta's jars through delta-spark's pip helper into a cache folder once and loading them from that folder
afterwards (no repository access on later runs). Run under ``spark-submit``, the submitter owns the master,
the jars and every key it set: segspark only fills in keys that are missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

import segspark
from segspark import __version__
from segspark.config.settings import SparkSettings
from segspark.errors import ConfigError, EnvironmentProblem
from segspark.platform import filesystem
from segspark.platform.compat import DELTA_VERSION, delta_artifact

__all__ = [
    "BASE_CONF",
    "MANIFEST",
    "build_spark_session",
    "cached_delta_jars",
    "delta_cache_dir",
    "running_under_spark_submit",
    "versions",
]

log = logging.getLogger("segspark")


#: Settings every segspark session needs; a submitter's own value for any of them is kept.
BASE_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    # segspark prints its own progress lines (segspark.platform.progress); Spark's bar would interleave with them.
    "spark.ui.showConsoleProgress": "false",
    # Spark's own default since 3.0, stated so a cluster's legacy setting cannot change how dates parse.
    # ANSI mode is left as the cluster has it: every parse that may fail is a try_* function.
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.sources.partitionOverwriteMode": "static",
    # Delta write statistics (numOutputRows) are used to reconcile counts.
    "spark.databricks.delta.history.metricsEnabled": "true",
    # Spark keeps 100 compiled query classes by default; one features run alone compiles about 270 (ingest 110,
    # train 160), so every later stage, snapshot and run in the same session compiled them all again. With room
    # for 2,000 a second run compiles almost nothing (docs/performance.md, "The codegen cache").
    "spark.sql.codegen.cache.maxEntries": "2000",
}


def delta_cache_dir(cache_root: str | Path) -> Path:
    """Ivy folder for this Delta artifact: one per artifact, so the 3.5 and 4.1 lines never mix jars."""
    group, artifact, version = delta_artifact().split(":")
    return Path(cache_root).expanduser() / f"{group}_{artifact}-{version}"


#: Written into the Ivy folder once Spark started with the resolved jars: their file names, one a line.
MANIFEST = "segspark-jars.txt"


def cached_delta_jars(cache_root: str | Path) -> list[str] | None:
    """Paths of every jar the Delta artifact resolved to (itself and its dependencies), or None when the
    cache has no complete resolution yet."""
    folder = delta_cache_dir(cache_root)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    paths = [folder / "jars" / name for name in manifest.read_text().split()]
    return [str(p) for p in paths] if paths and all(p.is_file() for p in paths) else None


def _write_manifest(cache_folder: Path) -> None:
    jars = sorted(p.name for p in (cache_folder / "jars").glob("*.jar"))
    (cache_folder / MANIFEST).write_text("\n".join(jars) + "\n")


def running_under_spark_submit() -> bool:
    """True inside spark-submit or the pyspark shell: the JVM (and its conf) exists before Python runs."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise EnvironmentProblem(
            "Java was not found: Spark needs Java 17 or newer (install a JDK and put java on PATH or set JAVA_HOME)."
        )


@contextlib.contextmanager
def _console_output_to(log_file: Path | None) -> Iterator[None]:
    """While the JVM is launched, point this process's stdout/stderr at ``log_file``.

    The JVM inherits them: Ivy's resolution report, log4j's console lines and Spark's warnings go to the
    file for the session's whole life, while Python's own output goes back to the terminal at once.
    """
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_file, "ab") as handle:
        try:
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    return "\n".join(text)


def build_spark_session(
    settings: SparkSettings,
    *,
    jvm_log: Path | None = None,
    warehouse_dir: str | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """Build (or join) the SparkSession segspark runs in.

    Parameters
    ----------
    settings : the ``spark`` section of the configuration.
    jvm_log : when segspark launches the JVM itself, the file its console output (Ivy, log4j) goes to;
        ``None`` leaves it on this process's stdout/stderr.
    warehouse_dir : ``spark.sql.warehouse.dir`` unless set elsewhere, so that no ``spark-warehouse/``
        folder appears in the current directory.
    extra_conf : settings for a session segspark starts itself (the local catalog's metastore); ignored under
        spark-submit, where the cluster's own settings hold. ``settings.conf`` wins over them.

    Returns
    -------
    A session with Delta's SQL extension and catalog, UTC session time zone and adaptive execution, unless
    the submitter chose otherwise.
    """
    _refuse_spark_connect()
    submitted = running_under_spark_submit()
    if submitted:
        # The JVM already holds the submitter's settings; read them so that none is overridden.
        SparkContext._ensure_initialized()
        existing = SparkConf()
    else:
        _require_java()
        existing = SparkConf(loadDefaults=False)

    wanted = dict(BASE_CONF)
    wanted["spark.app.name"] = settings.app_name
    if warehouse_dir is not None:
        wanted["spark.sql.warehouse.dir"] = warehouse_dir
    if extra_conf and not submitted:
        wanted.update(extra_conf)
    wanted.update(settings.conf)
    builder = SparkSession.builder
    for key, value in wanted.items():
        if not existing.contains(key):
            builder = builder.config(key, value)

    if not submitted:
        if settings.master.startswith("local"):
            # Local mode needs no network: bind the driver to loopback, not the machine's other address.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers (the sweep's tasks) run this interpreter, the one with segspark's packages, not
            # whatever python3 is first on the PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(settings.master)
        cache_folder = delta_cache_dir(settings.jars_cache_dir)
        jars = cached_delta_jars(settings.jars_cache_dir)
        resolving = jars is None
        if jars is not None:
            builder = builder.config("spark.jars", ",".join(jars))
        elif settings.resolve_delta_jars:
            log.info("resolving %s and its dependencies into %s (first run only)", delta_artifact(), cache_folder)
            builder = builder.config("spark.jars.ivy", str(cache_folder)).config(
                "spark.jars.packages", delta_artifact()
            )
        else:
            raise EnvironmentProblem(f"Delta jars not found in {cache_folder} and spark.resolve_delta_jars is false")

    try:
        with _console_output_to(None if submitted else jvm_log):
            session = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: say why in one line, then what the JVM printed
        detail = _tail(jvm_log)
        where = f"\nlast lines of {jvm_log}:\n{detail}" if detail else ""
        raise EnvironmentProblem(f"could not start Spark: {str(exc).splitlines()[0]}{where}") from exc
    if not submitted and resolving:
        _write_manifest(cache_folder)
    session.sparkContext.setLogLevel(settings.log_level)
    _require_delta_classes(session)
    log.info(
        "segspark %s from %s; Spark %s, master %s, shuffle partitions %s, Delta %s%s",
        __version__,
        Path(segspark.__file__).parent,
        session.version,
        session.sparkContext.master,
        session.conf.get("spark.sql.shuffle.partitions"),
        DELTA_VERSION,
        " (under spark-submit)" if submitted else "",
    )
    return session


def _refuse_spark_connect() -> None:
    """Stop before a Spark Connect session is made: segspark needs the driver's JVM.

    See docs/deployment.md, "Spark Connect".
    """
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        raise ConfigError(
            f"SPARK_REMOTE={remote} asks for a Spark Connect session, which segspark "
            "cannot use yet: its lakehouse lock, table checks, model build and report write through the driver's "
            "JVM (docs/deployment.md, 'Spark Connect'). Unset SPARK_REMOTE and run in local mode or with spark-submit."
        )


def _require_delta_classes(session: SparkSession) -> None:
    try:
        filesystem.require_java_class(session, "io.delta.tables.DeltaTable")
    except LookupError as exc:
        raise EnvironmentProblem(
            "Delta Lake classes are not on Spark's classpath; submit with "
            f"--packages {delta_artifact()} "
            "(or use a cluster runtime that ships Delta)"
        ) from exc


def versions(session: SparkSession) -> dict[str, str]:
    """Versions recorded with every pipeline run."""
    return {"segspark": __version__, "spark": session.version, "delta": DELTA_VERSION}

"""The one place a SparkSession is made.

Run as plain Python (the CLI, tests), segspark builds a local-mode session with Delta configured, resolving
Delta's jars through delta-spark's pip helper into a cache folder once and loading them from that folder
afterwards (no repository access on later runs). Run under ``spark-submit``, the submitter owns the master,
the jars and every key it set: segspark only fills in keys that are missing.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
from pathlib import Path

from delta import configure_spark_with_delta_pip
from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from segspark.config import SparkSettings
from segspark.errors import EnvironmentProblem

log = logging.getLogger("segspark")

#: PySpark 3.5 wheels are built for Scala 2.12; the Delta artifact must match.
SCALA_BINARY_VERSION = "2.12"
DELTA_VERSION = importlib.metadata.version("delta-spark")

#: Settings every segspark session needs; a submitter's own value for any of them is kept.
BASE_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    # Malformed dates and numbers become rejects, not exceptions; the parsers are chosen for that.
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
    # Delta write statistics (numOutputRows) are used to reconcile counts.
    "spark.databricks.delta.history.metricsEnabled": "true",
}


def delta_jar_names() -> list[str]:
    """File names Ivy gives Delta's two jars when it retrieves them into ``<cache>/jars``."""
    return [
        f"io.delta_delta-spark_{SCALA_BINARY_VERSION}-{DELTA_VERSION}.jar",
        f"io.delta_delta-storage-{DELTA_VERSION}.jar",
    ]


def cached_delta_jars(cache_dir: str | Path) -> list[str] | None:
    """Paths of Delta's jars in the cache folder, or None when any is missing."""
    jars_dir = Path(cache_dir).expanduser() / "jars"
    paths = [jars_dir / name for name in delta_jar_names()]
    return [str(p) for p in paths] if all(p.is_file() for p in paths) else None


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


def build_spark_session(settings: SparkSettings) -> SparkSession:
    """Build (or join) the SparkSession segspark runs in.

    Parameters
    ----------
    settings : the ``spark`` section of the configuration.

    Returns
    -------
    A session with Delta's SQL extension and catalog, UTC session time zone and adaptive execution, unless
    the submitter chose otherwise.
    """
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
    wanted.update(settings.conf)
    builder = SparkSession.builder
    for key, value in wanted.items():
        if not existing.contains(key):
            builder = builder.config(key, value)

    if not submitted:
        if settings.master.startswith("local"):
            # Local mode needs no network: bind the driver to loopback, not the machine's other address.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(settings.master)
        cache_dir = str(Path(settings.jars_cache_dir).expanduser())
        jars = cached_delta_jars(cache_dir)
        if jars is not None:
            builder = builder.config("spark.jars", ",".join(jars))
        elif settings.resolve_delta_jars:
            log.info("resolving Delta %s jars into %s (first run only)", DELTA_VERSION, cache_dir)
            builder = configure_spark_with_delta_pip(builder.config("spark.jars.ivy", cache_dir))
        else:
            raise EnvironmentProblem(
                f"Delta jars not found in {cache_dir}/jars and spark.resolve_delta_jars is false"
            )

    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: say why in one line before the Java detail
        raise EnvironmentProblem(f"could not start Spark: {str(exc).splitlines()[0]}") from exc
    session.sparkContext.setLogLevel(settings.log_level)
    _require_delta_classes(session)
    log.info(
        "Spark %s, master %s, shuffle partitions %s, Delta %s%s",
        session.version,
        session.sparkContext.master,
        session.conf.get("spark.sql.shuffle.partitions"),
        DELTA_VERSION,
        " (under spark-submit)" if submitted else "",
    )
    return session


def _require_delta_classes(session: SparkSession) -> None:
    jvm = session.sparkContext._jvm
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()
        jvm.Class.forName("io.delta.tables.DeltaTable", True, loader)
    except Exception as exc:
        raise EnvironmentProblem(
            "Delta Lake classes are not on Spark's classpath; submit with "
            f"--packages io.delta:delta-spark_{SCALA_BINARY_VERSION}:{DELTA_VERSION} "
            "(or use a cluster runtime that ships Delta)"
        ) from exc


def versions(session: SparkSession) -> dict[str, str]:
    """Versions recorded with every pipeline run."""
    from segspark import __version__

    return {"segspark": __version__, "spark": session.version, "delta": DELTA_VERSION}

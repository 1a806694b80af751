"""Shared fixtures: one local SparkSession with Delta for the whole test session, and the generated and trained
lakehouses several modules read. Plain helpers live in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from segspark.config.paths import local_path
from segspark.config.settings import SparkSettings
from segspark.platform.session import build_spark_session
from segspark.stages.features.stage import run_features
from segspark.stages.ingest.stage import run_ingest
from segspark.stages.train.stage import run_train
from segspark.synthetic import generate
from tests.helpers.config import FAST_MODEL, retail_config
from tests.helpers.data import read_truth


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("warehouse")
    settings = SparkSettings(
        master="local[2]",
        app_name="segspark-tests",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.memory": "2g",
            # Delta's small-table defaults: fewer files and no stats collection cost in tests.
            "spark.databricks.delta.snapshotPartitions": "2",
        },
        log_level="ERROR",
    )
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = build_spark_session(settings)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def small_input(tmp_path_factory) -> Path:
    """10,000 generated Online Retail lines (about 110 customers) for end-to-end runs in a fresh process."""
    data = tmp_path_factory.mktemp("small_input") / "tx"
    generate(data, rows=10_000, seed=5, chunk_rows=4_000)
    return data


@pytest.fixture
def lakehouse(tmp_path) -> Path:
    return tmp_path / "lakehouse"


@pytest.fixture(scope="session")
def planted(spark, tmp_path_factory):
    """30,000 generated lines with 4 planted behaviour types, ingested, featurised and trained once (read-only:
    tests that write copy its lakehouse)."""
    root = tmp_path_factory.mktemp("planted")
    data, truth = root / "tx", root / "truth.csv"
    generate(data, rows=30_000, seed=7, truth_path=truth)
    config = retail_config(root / "lake", data, model=FAST_MODEL)
    run_ingest(spark, config, "run-ingest")
    run_features(spark, config, "run-features")
    result = run_train(spark, config, "run-train")
    return {"config": config, "result": result, "truth": read_truth(truth), "root": root}


@pytest.fixture(scope="session")
def profiled(spark, planted, tmp_path_factory):
    """The planted lakehouse copied, then profiled (read-only too: tests that write copy it)."""
    from segspark.stages.profile.stage import run_profile

    lake = tmp_path_factory.mktemp("profiled") / "lake"
    shutil.copytree(local_path(planted["config"].lakehouse), lake)
    config = retail_config(lake, planted["root"] / "tx", model=FAST_MODEL)
    return config, run_profile(spark, config, "profile-1")

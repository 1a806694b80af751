"""Shared fixtures: one local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segspark.config import Config, SparkSettings, load_config
from segspark.session import build_spark_session

ROOT = Path(__file__).resolve().parents[1]
#: The real UCI Online Retail files, beside the project root; absent on a user's fresh clone.
REAL_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
requires_real_data = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real Online Retail data not found at {REAL_DATA} (only in the dev workspace)"
)


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


@pytest.fixture
def lakehouse(tmp_path) -> Path:
    return tmp_path / "lakehouse"


def make_config(lakehouse: Path, **overrides) -> Config:
    """A config on the repository's base.yaml with the given nested overrides (no env overlay)."""
    flags = {"lakehouse": str(lakehouse)}
    flags.update(overrides)
    return load_config(env=None, flags=flags)

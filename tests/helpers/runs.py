"""``segspark`` commands in fresh processes, and what their published tables are compared on."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from segspark.platform import publication
from tests.helpers.config import ROOT, retail_config

__all__ = ["QUICK_RUN_SETTINGS", "cli_environment", "comparable"]

#: ``--set`` values for a small and quick run: about 110 customers, K 2..4, one stability run, no report.
QUICK_RUN_SETTINGS = [
    "model.k_min=2",
    "model.k_max=4",
    "model.restarts=2",
    "model.stability_runs=1",
    "spark.master=local[2]",
    # The report publishes no table (it writes files); test_cli runs it end to end.
    "report.enabled=false",
]

#: Columns that name the run or its time, so differ between two runs that publish the same rows.
RUN_COLUMNS = ("run_id", "ingested_at", "model_version", "created_at", "previous_model_version")


def cli_environment() -> dict[str, str]:
    """This process's environment for a ``segspark`` child: loopback only, this checkout first on the path."""
    return dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYTHONPATH=str(ROOT))


def comparable(spark: SparkSession, lake: Path, table: str) -> DataFrame:
    """A published table of an Online Retail lakehouse without the columns that name the run or its time."""
    df = publication.read_published(spark, retail_config(lake), table)
    return df.drop(*[c for c in RUN_COLUMNS if c in df.columns])

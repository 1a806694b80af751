"""``segspark`` commands in fresh processes, what their published tables are compared on, and whether the run
logs agree."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.platform import lakehouse, publication
from tests.helpers.config import ROOT, retail_config

__all__ = ["QUICK_RUN_SETTINGS", "cli_environment", "comparable", "log_disagreements"]

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

#: Columns that name the run, its time or its tables' Delta ids, so differ between two runs that publish the
#: same rows (``latest_timestamp``: ingest_fingerprints' future_timestamp bound, the run's start by default;
#: ``lines_by_ingest_run``: rollup_batches' lines per ingest run id, whose total ``lines`` is kept).
RUN_COLUMNS = (
    "run_id",
    "ingest_run_id",
    "ingested_at",
    "model_version",
    "created_at",
    "previous_model_version",
    "segments_run_id",
    "from_segments_run_id",
    "to_segments_run_id",
    "from_model_version",
    "to_model_version",
    "latest_timestamp",
    "clean_table_id",
    "lines_by_ingest_run",
)


def cli_environment() -> dict[str, str]:
    """This process's environment for a ``segspark`` child: loopback only, this checkout first on the path."""
    return dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYTHONPATH=str(ROOT))


def comparable(spark: SparkSession, lake: Path, table: str) -> DataFrame:
    """A published table of an Online Retail lakehouse without the columns that name the run or its time."""
    df = publication.read_published(spark, retail_config(lake), table)
    return df.drop(*[c for c in RUN_COLUMNS if c in df.columns])


def log_disagreements(spark: SparkSession, config: Config, pending: Iterable[str] = ()) -> list[str]:
    """Where ``pipeline_runs`` and ``published_runs`` disagree; [] when they agree.

    They agree when every stage run ``published_runs`` names (``kind = run``) has exactly one ``pipeline_runs``
    row, not ``rolled_back``, whose counts include the publication's (``rows_in`` may be the column), and every
    ``rolled_back`` or ``interrupted_after_publishing`` row is a stage without or with a publication.
    ``pending``: runs killed that no command has taken over yet, so not recorded yet.
    """
    skip = set(pending)
    published_df = lakehouse.read_table(spark, config.table_path("published_runs")).filter(F.col("kind") == "run")
    every = published_df.collect()  # a few rows per run
    published = [r for r in every if r["run_id"] not in skip]
    stage_path = config.table_path("pipeline_runs")
    stage_rows = lakehouse.read_table(spark, stage_path).collect() if lakehouse.table_exists(spark, stage_path) else []
    by_key: dict[tuple[str, str], list] = {}
    for row in stage_rows:
        by_key.setdefault((row["run_id"], row["stage"]), []).append(row)
    problems = [f"{key}: {len(rows)} pipeline_runs rows" for key, rows in by_key.items() if len(rows) > 1]
    for pub in published:
        key = (pub["run_id"], pub["stage"])
        if key not in by_key:
            problems.append(f"{key} published without a pipeline_runs row")
            continue
        row = by_key[key][0]
        if row["status"] == "rolled_back":
            problems.append(f"{key} published, yet its pipeline_runs row says rolled_back")
        counts = row["counts"] or {}
        for name, value in (pub["counts"] or {}).items():
            if counts.get(name, row["rows_in"] if name == "rows_in" else None) != value:
                problems.append(f"{key}: published {name}={value}, pipeline_runs {counts.get(name)} ({row['status']})")
    published_keys = {(r["run_id"], r["stage"]) for r in every}
    for key, rows in by_key.items():
        status = rows[0]["status"]
        if status == "interrupted_after_publishing" and key not in published_keys:
            problems.append(f"{key} is interrupted_after_publishing without a publication")
        if status == "rolled_back" and key in published_keys:
            problems.append(f"{key} is rolled_back with a publication")
    return problems

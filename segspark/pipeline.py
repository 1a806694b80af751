"""Stages in pipeline order; ``segspark run`` runs them all, each subcommand runs one."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import SparkSession

from segspark import progress, publication
from segspark.config import Config
from segspark.features import run_features
from segspark.ingest import run_ingest
from segspark.lock import LakehouseLock
from segspark.runs import StageRun, new_run_id
from segspark.score import run_score
from segspark.train import run_train

log = logging.getLogger("segspark")

#: Stage name -> function(spark, config, run_id, stage_run). Later stages are appended in pipeline order.
STAGES: dict[str, Callable[..., object]] = {
    "ingest": run_ingest,
    "features": run_features,
    "train": run_train,
    "score": run_score,
}


def run_stages(spark: SparkSession, config: Config, stages: list[str], run_id: str | None = None) -> str:
    """Run ``stages`` in order under one run id; each records a row in ``pipeline_runs``. Returns the run id."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    run_id = run_id or new_run_id()
    log.info("run %s: stages %s, lakehouse %s", run_id, ", ".join(stages), config.lakehouse)
    # One command at a time holds the lakehouse; it first rolls back what an unfinished run left unpublished.
    with LakehouseLock(spark, config, run_id):
        publication.repair(spark, config, run_id)
        for name in stages:
            progress.start_stage(name)
            with StageRun(spark, config, run_id, name) as stage:
                STAGES[name](spark, config, run_id, stage)
    return run_id

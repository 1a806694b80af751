"""Stages in pipeline order; ``segspark run`` runs them all, each subcommand runs one.

The stages whose tables readers join (:data:`JOINED`: features, train or score, profile) publish together in
one command: ``segspark run``'s stages after ingest become visible at once when the last of them succeeded,
and a failure or a kill in any of them leaves the previous publication of all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import SparkSession

from segspark.config.settings import Config
from segspark.platform import catalog, progress, publication, stage_log
from segspark.platform.lock import LakehouseLock
from segspark.platform.stage_log import StageRun, new_run_id
from segspark.segmentation.scoring import latest_snapshot
from segspark.stages.features.stage import run_features
from segspark.stages.ingest.stage import run_ingest
from segspark.stages.maintain.stage import run_maintain
from segspark.stages.monitor.stage import MonitorResult, run_monitor
from segspark.stages.profile.stage import run_profile
from segspark.stages.report.stage import run_report
from segspark.stages.score.stage import model_snapshot, run_score
from segspark.stages.train.stage import run_train

__all__ = ["DECIDED", "JOINED", "RETRAIN", "STAGES", "run_stages", "segment_stage"]

log = logging.getLogger("segspark")

#: Stage name -> function(spark, config, run_id, stage_run). Later stages are appended in pipeline order.
STAGES: dict[str, Callable[..., object]] = {
    "ingest": run_ingest,
    "features": run_features,
    "train": run_train,
    "score": run_score,
    "profile": run_profile,
    "monitor": run_monitor,
    "report": run_report,
    "maintain": run_maintain,
}
#: Stages decided when their turn comes: ``segment`` is train or score (:func:`segment_stage`).
DECIDED = ("segment",)
#: Stages whose tables readers join: within one command, the span from the first to the last of them publishes
#: as one unit (:func:`segspark.platform.publication.together`). Ingest publishes on its own (its tables are
#: the input, read whole), report publishes nothing, maintain publishes twice by design.
JOINED = ("features", "segment", "train", "score", "profile", "monitor")
#: What segspark run does, within the same publication, after monitor recommends a new model for the snapshot it
#: just scored and ``monitor.auto_retrain`` is on: fit the model on that snapshot, profile and monitor it again.
RETRAIN = ("train", "profile", "monitor")


def segment_stage(spark: SparkSession, config: Config) -> str:
    """``train`` or ``score`` for ``segspark run``, with the reason logged.

    Score when a published model exists, retraining is not asked for (``run.retrain``), the model reads
    customer_features only, and the snapshot to segment is later than the one the model was trained on.
    Otherwise train: a rerun on the model's own snapshot refits it (same seed, same result).
    """
    if config.run.retrain:
        log.info("run: training a new model (--retrain)")
        return "train"
    if config.model.input == "attributes" or config.model.attributes.path is not None:
        return "train"
    model = model_snapshot(spark, config)
    if model is None:
        return "train"
    model_version, trained_on = model
    as_of = max(config.as_of_dates) if config.as_of_dates else None
    if as_of is None and publication.is_published(spark, config, "customer_features"):
        as_of = latest_snapshot(publication.read_published(spark, config, "customer_features"))
    if as_of is None or trained_on is None or as_of <= trained_on:
        log.info("run: training (snapshot %s is not later than model %s's %s)", as_of, model_version, trained_on)
        return "train"
    log.info(
        "run: scoring snapshot %s with model %s (trained on %s); pass --retrain to fit a new model",
        as_of,
        model_version,
        trained_on,
    )
    return "score"


def _spans(stages: list[str]) -> list[tuple[bool, list[str]]]:
    """``stages`` cut into (published together, stages): the span of :data:`JOINED` stages, and each other."""
    joined = [i for i, name in enumerate(stages) if name in JOINED]
    if not joined:
        return [(False, [name]) for name in stages]
    first, last = joined[0], joined[-1]
    return [
        *[(False, [name]) for name in stages[:first]],
        (True, stages[first : last + 1]),
        *[(False, [name]) for name in stages[last + 1 :]],
    ]


def _run_stage(
    spark: SparkSession,
    config: Config,
    run_id: str,
    name: str,
    lock: LakehouseLock,
    results: dict[str, object] | None,
    held: list[StageRun] | None = None,
) -> object:
    """Run one stage under its ``pipeline_runs`` row; with ``held``, the row is held there for record_held.
    Returns the stage's own result."""
    if name == "segment":
        name = segment_stage(spark, config)
    lock.at_stage(name)  # what a command taking over after a kill records in pipeline_runs
    progress.start_stage(name)
    stage = StageRun(spark, config, run_id, name, hold=held is not None)
    if held is not None:
        held.append(stage)
    with stage:
        result = STAGES[name](spark, config, run_id, stage)
    if results is not None:
        results[name] = result
    return result


def _retrains(config: Config, result: object, held: list[StageRun]) -> bool:
    """Whether monitor's ``result`` recommends a new model for the snapshot this command just scored and
    ``monitor.auto_retrain`` lets segspark run fit it."""
    return (
        config.monitor.auto_retrain
        and isinstance(result, MonitorResult)
        and result.decision is not None
        and result.decision.retrain
        and any(r.stage == "score" for r in held)
    )


def _run_together(
    spark: SparkSession,
    config: Config,
    run_id: str,
    names: list[str],
    lock: LakehouseLock,
    results: dict[str, object] | None,
) -> None:
    """Run ``names`` with their publications held back and committed together; then record their rows."""
    held: list[StageRun] = []
    try:
        with publication.together(spark, config, run_id):
            for name in names:
                result = _run_stage(spark, config, run_id, name, lock, results, held)
                if name == "monitor" and _retrains(config, result, held):
                    assert isinstance(result, MonitorResult) and result.decision is not None  # _retrains checked
                    held[-1].decision = result.decision.line(retrained=True)
                    if results is not None:
                        results["retrained"] = held[-1].decision
                    log.info(
                        "run %s: %s; fitting a new model on the snapshot (monitor.auto_retrain)",
                        run_id,
                        result.decision.line(),
                    )
                    for again in RETRAIN:
                        _run_stage(spark, config, run_id, again, lock, results, held)
    except Exception as exc:
        finished = [r.stage for r in held if r.status == "succeeded"]
        if finished:
            log.warning(
                "run %s: %s rolled back too: the stages %s publish together",
                run_id,
                ", ".join(finished),
                ", ".join(r.stage for r in held),
            )
        stage_log.record_held(spark, config, held, exc)
        raise
    stage_log.record_held(spark, config, held)


def run_stages(
    spark: SparkSession,
    config: Config,
    stages: list[str],
    run_id: str | None = None,
    results: dict[str, object] | None = None,
) -> str:
    """Run ``stages`` in order under one run id; each records a row in ``pipeline_runs``. Returns the run id;
    each stage's own result goes into ``results`` under the stage's name, when given.

    The :data:`JOINED` stages among them publish together. A command that takes over the lock of one that died
    first records the dead run's unrecorded stages (:func:`segspark.platform.stage_log.record_dead_run`), then
    rolls back what it left unpublished.
    """
    unknown = [s for s in stages if s not in STAGES and s not in DECIDED]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    run_id = run_id or new_run_id()
    log.info("run %s: stages %s, lakehouse %s", run_id, ", ".join(stages), config.lakehouse)
    # One command at a time holds the lakehouse; it first rolls back what an unfinished run left unpublished.
    with LakehouseLock(spark, config, run_id) as lock:
        if lock.taken_over is not None:
            stage_log.record_dead_run(spark, config, run_id, lock.taken_over)
        publication.repair(spark, config, run_id)
        for together, names in _spans(stages):
            if together:
                _run_together(spark, config, run_id, names, lock, results)
            else:
                _run_stage(spark, config, run_id, names[0], lock, results)
        if config.catalog.database:
            progress.step(f"registering the tables in catalog database {config.catalog.database}")
            registration = catalog.register_tables(spark, config)
            if results is not None:
                results["catalog"] = registration
    return run_id

"""``segspark backfill``: a series of past snapshots, each built, segmented, profiled and monitored in turn.

Each snapshot is one run of ``features``, ``train`` (the first snapshot, unless ``--model`` names a saved model)
or ``score`` (the others, with the backfill's model), ``profile`` and ``monitor``, published on its own
(:mod:`segspark.pipeline`): a backfill killed halfway leaves every snapshot before the kill published, and a
re-run skips the snapshots already profiled and continues from the first that is not. With
``monitor.auto_retrain`` a snapshot monitor finds drifted is refitted, and the snapshots after it are scored
with the new model.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, MODEL_VERSION
from segspark.errors import ConfigError
from segspark.pipeline import run_stages
from segspark.platform import publication
from segspark.stages.monitor.stage import MonitorResult
from segspark.stages.train.stage import TrainResult

__all__ = ["EVERY", "BackfilledSnapshot", "run_backfill", "snapshot_dates"]

log = logging.getLogger("segspark")

#: The steps ``--every`` takes.
EVERY = ("week", "month")


def snapshot_dates(start: dt.date, end: dt.date, every: str) -> list[dt.date]:
    """``start``, then every week or month after it up to ``end`` (inclusive). A monthly step keeps the start's
    day of the month, or the month's last day when it is shorter (31 January, 28 February, 31 March).

    Raises
    ------
    ConfigError
        ``end`` is before ``start``, or ``every`` is not in :data:`EVERY`.
    """
    if every not in EVERY:
        raise ConfigError(f"--every must be one of {', '.join(EVERY)}, got {every!r}")
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    dates: list[dt.date] = []
    step = 0
    while True:
        if every == "week":
            day = start + dt.timedelta(weeks=step)
        else:
            year, month = divmod(start.month - 1 + step, 12)
            year, month = start.year + year, month + 1
            day = dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))
        if day > end:
            return dates
        dates.append(day)
        step += 1


@dataclass(frozen=True)
class BackfilledSnapshot:
    """One snapshot of a backfill: the run that built it (None when it was already published and skipped), how it
    was segmented (``train``, ``score`` or ``skipped``), with which model, and monitor's decision line."""

    as_of: dt.date
    run_id: str | None
    segmented_by: str
    model_version: str | None
    decision: str | None


def _profiled(spark: SparkSession, config: Config) -> dict[dt.date, str]:
    """Snapshot -> the model of its published segment_profiles (one row per snapshot)."""
    if not publication.is_published(spark, config, "segment_profiles"):
        return {}
    rows = (
        publication.read_published(spark, config, "segment_profiles")
        .groupBy(AS_OF_DATE)
        .agg(F.max(MODEL_VERSION).alias(MODEL_VERSION))
        .collect()  # one row per snapshot
    )
    return {r[AS_OF_DATE]: r[MODEL_VERSION] for r in rows}


def run_backfill(
    spark: SparkSession, config: Config, dates: list[dt.date], model: str | None = None
) -> list[BackfilledSnapshot]:
    """Build, segment, profile and monitor each of ``dates`` in order, each as its own published run.

    ``model`` scores every snapshot with that saved model; without it the first snapshot is trained on (or, on
    a re-run, the model of the first snapshot, which the earlier run trained) and the rest are scored with it.
    """
    if not dates:
        raise ConfigError("backfill needs snapshot dates: --from, --to and --every, or --as-of (repeatable)")
    ordered = sorted(set(dates))
    done = _profiled(spark, config)
    pinned = model or done.get(ordered[0])
    outcome = []
    for as_of in ordered:
        if as_of in done:
            log.info("backfill: %s is already published (model %s): skipped", as_of, done[as_of])
            outcome.append(BackfilledSnapshot(as_of, None, "skipped", done[as_of], None))
            continue
        segmenting = "score" if pinned is not None else "train"
        snapshot_config = config.model_copy(
            update={"as_of_dates": [as_of], "score": config.score.model_copy(update={"model_version": pinned})}
        )
        log.info("backfill: snapshot %s (%s)", as_of, f"scored with model {pinned}" if pinned else "trained on")
        results: dict[str, object] = {}
        run_id = run_stages(spark, snapshot_config, ["features", segmenting, "profile", "monitor"], results=results)
        trained = results.get("train")
        if isinstance(trained, TrainResult):  # the first snapshot, or a refit under monitor.auto_retrain
            pinned = trained.model_version
        monitored = results.get("monitor")
        decision = results.get("retrained")  # monitor.auto_retrain refitted: the first monitor's decision
        if not isinstance(decision, str):
            decision = (
                monitored.decision.line() if isinstance(monitored, MonitorResult) and monitored.decision else None
            )
        outcome.append(BackfilledSnapshot(as_of, run_id, segmenting, pinned, decision))
    return outcome

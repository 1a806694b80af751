"""Run ids and the ``pipeline_runs`` table: one row per stage per run, whatever became of the stage.

A stage records its row when it ends (:class:`StageRun`): ``succeeded`` or ``failed``. A stage that publishes
with later ones (:func:`segspark.platform.publication.together`) holds its row until the group's outcome is
known, then :func:`record_held` writes the group's rows in one commit, a finished stage's as ``rolled_back``
when the group failed. A process that dies leaves no rows for the stages it had started and not recorded; the
command that takes over its lock writes them (:func:`record_dead_run`): ``interrupted_after_publishing`` with
the counts of the stage's publication, or ``rolled_back``. So every stage run ``published_runs`` names has a
row here whose counts agree with it. The status values: :data:`segspark.contracts.schemas.STAGE_STATUSES`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import PIPELINE_RUNS, RUN_ID, StageStatus
from segspark.errors import InternalError
from segspark.maths.numbers import number
from segspark.platform import lakehouse, publication
from segspark.platform.lock import DeadRun
from segspark.platform.session import versions

__all__ = ["StageRun", "new_run_id", "record_dead_run", "record_held"]

log = logging.getLogger("segspark")


def new_run_id(now: dt.datetime | None = None) -> str:
    """``20261122T125501Z-3fa2c1``: sortable by start time, unique across concurrent runs."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


@dataclass
class StageRun:
    """Timing and counts of one stage of one run, recorded into ``pipeline_runs`` when the stage ends.

    Use as a context manager; the stage sets ``rows_in``, ``rows_out`` and ``counts`` as it learns them. With
    ``hold`` the row is not written at the end of the block but by :func:`record_held`.
    """

    spark: SparkSession
    config: Config
    run_id: str
    stage: str
    rows_in: int | None = None
    rows_out: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    hold: bool = False
    #: Set when the block ends.
    status: StageStatus | None = None
    ended_at: dt.datetime | None = None
    seconds: float | None = None
    message: str | None = None
    #: The stage's decision in words (monitor's retrain decision), recorded with its row.
    decision: str | None = None
    _t0: float = field(default_factory=time.perf_counter)

    def __enter__(self) -> StageRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.ended_at = dt.datetime.now(dt.UTC)
        self.status = "succeeded" if exc is None else "failed"
        self.message = None if exc is None else _first_line(exc)
        if not self.hold:
            _record_quietly(self.spark, self.config, [self], exc)
        log.info(
            "stage %s %s: rows in %s, rows out %s, %.1f s",
            self.stage,
            self.status,
            number(self.rows_in, 0, missing="-"),
            number(self.rows_out, 0, missing="-"),
            self.seconds,
        )

    def row(self) -> tuple[Any, ...]:
        """The stage's ``pipeline_runs`` row, in the contract's column order (the block must have ended)."""
        if self.status is None or self.ended_at is None or self.seconds is None:
            raise InternalError(f"stage {self.stage} of run {self.run_id} is recorded before it ended")
        return (
            self.run_id,
            self.stage,
            self.status,
            self.started_at,
            self.ended_at,
            float(self.seconds),
            self.rows_in,
            self.rows_out,
            {k: int(v) for k, v in self.counts.items()},
            self.config.config_hash(),
            versions(self.spark),
            self.message,
            self.decision,
        )


def _write_rows(spark: SparkSession, config: Config, rows: list[tuple[Any, ...]]) -> None:
    # Aware datetimes: PySpark converts them by their own offset, not the driver's local zone.
    df = spark.createDataFrame(rows, PIPELINE_RUNS.schema)
    lakehouse.write_table(df, config.table_path("pipeline_runs"), PIPELINE_RUNS, mode="append")


def _record_quietly(spark: SparkSession, config: Config, runs: list[StageRun], error: BaseException | None) -> None:
    """Write the rows of ``runs`` in one commit; a failure to write is logged, and raised only when the stages
    themselves raised nothing (recording must never hide a stage's own error)."""
    if not runs:
        return
    try:
        _write_rows(spark, config, [r.row() for r in runs])
    except Exception as record_error:
        stages = ", ".join(r.stage for r in runs)
        log.error("could not record stage %s in pipeline_runs: %s", stages, _first_line(record_error))
        log.debug("pipeline_runs write failure", exc_info=True)
        if error is None:
            raise


def record_held(spark: SparkSession, config: Config, runs: list[StageRun], error: BaseException | None = None) -> None:
    """Write the held rows of stages published together, in one commit.

    With ``error`` (a stage of the group failed; or something between them, such as choosing train or score,
    or the publication itself), the tables of the stages that had finished were rolled back unpublished: their
    rows say ``rolled_back`` and why.
    """
    if error is not None:
        failed = next((r.stage for r in runs if r.status == "failed"), None)
        why = f"{failed} failed" if failed is not None else f"the command failed ({_first_line(error)})"
        for run in runs:
            if run.status == "succeeded":
                run.status = "rolled_back"
                run.message = f"rolled back unpublished: {why}, and this command's stages publish together"
    _record_quietly(spark, config, runs, error)


def _recorded_stages(spark: SparkSession, config: Config, run_id: str) -> set[str]:
    path = config.table_path("pipeline_runs")
    if not lakehouse.table_exists(spark, path):
        return set()
    rows = lakehouse.read_table(spark, path).filter(F.col(RUN_ID) == F.lit(run_id)).select("stage").collect()
    return {r["stage"] for r in rows}  # one row per stage of one run


def record_dead_run(spark: SparkSession, config: Config, run_id: str, dead: DeadRun) -> dict[str, StageStatus]:
    """Record in ``pipeline_runs`` the stages a dead run started and never recorded; say so in one line.

    Run ``run_id`` took over the lock of ``dead``. A stage whose publication is in ``published_runs`` is
    ``interrupted_after_publishing``, with that publication's counts (and ``rows_in`` when it names one); any
    other is ``rolled_back``: this command's repair, which follows, restores what it left. Its end is the next
    stage's start, or the dead lock's last refresh.

    Returns
    -------
    dict
        Stage -> the status recorded, for the stages recorded.
    """
    published = publication.run_publications(spark, config, dead.run_id)
    recorded = _recorded_stages(spark, config, dead.run_id)
    who = f"run {dead.run_id} (process {dead.pid if dead.pid is not None else '?'} on {dead.host})"
    rows: list[tuple[Any, ...]] = []
    statuses: dict[str, StageStatus] = {}
    for i, (stage, started) in enumerate(dead.stages):
        if stage in recorded or stage in statuses:
            continue
        ended = dead.stages[i + 1][1] if i + 1 < len(dead.stages) else max(dead.last_seen, started)
        row = published.get(stage)
        counts: Mapping[str, int] = (row or {}).get("counts") or {}
        status: StageStatus
        if row is not None:
            status = "interrupted_after_publishing"
            message = (
                f"{who} ended after this stage published, before it recorded itself; recorded by run {run_id}, "
                "which took over the lakehouse, with the counts of its publication"
            )
        else:
            status = "rolled_back"
            message = (
                f"{who} ended before this stage's tables were published; run {run_id}, which took over the "
                "lakehouse, rolled back what it left"
            )
        statuses[stage] = status
        rows.append(
            (
                dead.run_id,
                stage,
                status,
                started,
                ended,
                max((ended - started).total_seconds(), 0.0),
                counts.get("rows_in"),
                None,
                {k: int(v) for k, v in counts.items()},
                dead.config_hash or "unknown",
                None,
                message,
                None,
            )
        )
    if rows:
        _write_rows(spark, config, rows)
        log.warning(
            "run %s ended without recording %s in pipeline_runs; recorded now: %s",
            dead.run_id,
            "its stage" if len(rows) == 1 else "its stages",
            ", ".join(f"{stage} {status}" for stage, status in statuses.items()),
        )
    return statuses

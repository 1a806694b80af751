"""Run ids and the ``pipeline_runs`` table: one row per stage per run, written whether the stage succeeds or not."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType

from pyspark.sql import SparkSession

from segspark.config.settings import Config
from segspark.contracts.schemas import PIPELINE_RUNS
from segspark.maths.numbers import number
from segspark.platform.lakehouse import write_table
from segspark.platform.session import versions

__all__ = ["StageRun", "new_run_id"]

log = logging.getLogger("segspark")


def new_run_id(now: dt.datetime | None = None) -> str:
    """``20261122T125501Z-3fa2c1``: sortable by start time, unique across concurrent runs."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class StageRun:
    """Timing and counts of one stage of one run, recorded into ``pipeline_runs`` when the stage ends.

    Use as a context manager; the stage sets ``rows_in``, ``rows_out`` and ``counts`` as it learns them.
    """

    spark: SparkSession
    config: Config
    run_id: str
    stage: str
    rows_in: int | None = None
    rows_out: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    _t0: float = field(default_factory=time.perf_counter)

    def __enter__(self) -> StageRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._t0
        status = "succeeded" if exc is None else "failed"
        message = None if exc is None else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            self._record(status, seconds, message)
        except Exception as record_error:  # recording must never hide the stage's own error
            first = str(record_error).strip().splitlines()[0] if str(record_error).strip() else ""
            log.error(
                "could not record stage %s in pipeline_runs: %s: %s", self.stage, type(record_error).__name__, first
            )
            log.debug("pipeline_runs write failure", exc_info=True)
            if exc is None:
                raise
        log.info(
            "stage %s %s: rows in %s, rows out %s, %.1f s",
            self.stage,
            status,
            number(self.rows_in, 0, missing="-"),
            number(self.rows_out, 0, missing="-"),
            seconds,
        )

    def _record(self, status: str, seconds: float, message: str | None) -> None:
        ended = dt.datetime.now(dt.UTC)
        row = (
            self.run_id,
            self.stage,
            status,
            self.started_at,
            ended,
            float(seconds),
            self.rows_in,
            self.rows_out,
            {k: int(v) for k, v in self.counts.items()},
            self.config.config_hash(),
            versions(self.spark),
            message,
        )
        # Aware datetimes: PySpark converts them by their own offset, not the driver's local zone.
        df = self.spark.createDataFrame([row], PIPELINE_RUNS.schema)
        write_table(df, self.config.table_path("pipeline_runs"), PIPELINE_RUNS, mode="append")

"""Progress a person can read while a stage runs: stage, step, Spark stage and tasks, elapsed time.

Stages say which step they are on with :func:`step`; a :class:`ProgressReporter` thread polls Spark's status
tracker (job and stage ids, task counts; no Spark job of its own) and shows one line:

    segspark: ingest · writing transactions_clean · Spark stage 7: 12/50 tasks · 0:42

On a terminal the line is redrawn in place twice a second; otherwise (CI, spark-submit logs, a pipe) it is
printed as a plain line every ``interval`` seconds while a stage runs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TextIO, TypedDict

from pyspark.sql import SparkSession

log = logging.getLogger("segspark")


class _State(TypedDict):
    """What the progress line shows: the stage, its current step, and when the stage started (monotonic s)."""

    stage: str
    step: str
    started: float


_lock = threading.Lock()
_state: _State = {"stage": "", "step": "", "started": time.monotonic()}


_active: ProgressReporter | None = None


def clear_line() -> None:
    """Erase the active reporter's in-place line, so that a log line does not land in the middle of it."""
    reporter = _active
    if reporter is not None:
        reporter.clear()


def start_stage(name: str) -> None:
    """A pipeline stage begins: the elapsed clock restarts."""
    with _lock:
        _state["stage"], _state["step"], _state["started"] = name, "", time.monotonic()


def step(text: str, *, logged: bool = True) -> None:
    """The current stage moves on to ``text``: shown on the progress line, and logged unless ``logged`` is
    False (for steps that log their own result line)."""
    with _lock:
        _state["step"] = text
        stage = _state["stage"]
    if logged:
        log.info("%s: %s", stage, text) if stage else log.info("%s", text)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def spark_activity(spark: SparkSession) -> str | None:
    """``Spark stage 7: 12/50 tasks`` for the active stages, from the status tracker; None when idle."""
    tracker = spark.sparkContext.statusTracker()
    parts = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            parts.append(f"Spark stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
    return ", ".join(parts) if parts else None


def status_line(spark: SparkSession) -> str | None:
    """The progress line now, or None when no stage has started."""
    with _lock:
        stage, current, started = _state["stage"], _state["step"], _state["started"]
    if not stage:
        return None
    parts = [stage]
    if current:
        parts.append(current)
    activity = spark_activity(spark)
    if activity:
        parts.append(activity)
    parts.append(_elapsed(time.monotonic() - started))
    return "segspark: " + " · ".join(parts)


class ProgressReporter:
    """Shows :func:`status_line` on ``stream`` until stopped. Use as a context manager."""

    def __init__(
        self,
        spark: SparkSession,
        *,
        interval: float = 30.0,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.spark = spark
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = 0.5 if self.interactive else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="segspark-progress", daemon=True)
        self._width = 0
        self._write = threading.Lock()

    def __enter__(self) -> ProgressReporter:
        global _active
        _active = self
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        self._stop.set()
        self._thread.join(timeout=5)
        self.clear()
        _active = None
        with _lock:
            _state["stage"], _state["step"] = "", ""

    def clear(self) -> None:
        """Erase the in-place line (before other output is written to the terminal)."""
        with self._write:
            if self.interactive and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                line = status_line(self.spark)
            except Exception:  # the session is stopping; progress must never fail a run
                return
            if line is None:
                continue
            with self._write:
                if self.interactive:
                    padded = line.ljust(self._width)
                    self._width = len(line)
                    self.stream.write("\r" + padded)
                else:
                    self.stream.write(line + "\n")
                self.stream.flush()

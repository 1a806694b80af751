"""One segspark command at a time per lakehouse: a lock file ``<lakehouse>/_segspark_lock``.

The holder writes its run id, host, process id, start time and configuration hash into the file, adds each
stage it starts (:meth:`LakehouseLock.at_stage`), and refreshes the file's modification time every
:data:`HEARTBEAT_SECONDS`. A second command finds the file and stops with :class:`LakehouseBusyError` naming
the holder, unless the holder is gone:

- on the same host, its process no longer exists (a killed driver), or
- the file has not been refreshed for :data:`STALE_SECONDS` (a driver on another machine that died).

Then the lock is taken over: the new command gets the dead run's record (:attr:`LakehouseLock.taken_over`,
a :class:`DeadRun`) to write the dead run's stages into ``pipeline_runs``, and its repair rolls back whatever
the dead run left unpublished.

A local lakehouse uses an exclusive create (``O_CREAT | O_EXCL``), which is atomic. Elsewhere the lock goes
through Hadoop's FileSystem ``create(overwrite=false)``: atomic on HDFS; on object stores it is best effort
(two commands started within the same second may both proceed), so schedule runs one after another there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pyspark.sql import SparkSession

from segspark.config.settings import Config
from segspark.errors import SegsparkError
from segspark.platform import filesystem

__all__ = ["HEARTBEAT_SECONDS", "LOCK_NAME", "STALE_SECONDS", "DeadRun", "LakehouseBusyError", "LakehouseLock"]

log = logging.getLogger("segspark")

LOCK_NAME = "_segspark_lock"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0


class LakehouseBusyError(SegsparkError):
    """Another segspark command holds the lakehouse; exit code 3 (retry later)."""

    exit_code = 3


@dataclass(frozen=True)
class DeadRun:
    """What the lock file of a command that ended without releasing the lakehouse said about it."""

    run_id: str
    host: str
    pid: int | None
    #: The configuration hash it ran with; None in a lock file written before it was recorded.
    config_hash: str | None
    #: The stages it started, in order, with their start times (UTC).
    stages: tuple[tuple[str, dt.datetime], ...]
    #: The lock file's last refresh: within :data:`HEARTBEAT_SECONDS` of the moment the process ended.
    last_seen: dt.datetime

    @classmethod
    def of(cls, holder: dict[str, object], modified: float) -> DeadRun | None:
        """The record in a lock file's parsed text, or None when it names no run."""
        run_id = holder.get("run_id")
        if not isinstance(run_id, str):
            return None
        pid = holder.get("pid")
        config_hash = holder.get("config_hash")
        stages: list[tuple[str, dt.datetime]] = []
        listed = holder.get("stages")
        for item in listed if isinstance(listed, list) else []:
            try:
                stages.append((str(item["stage"]), dt.datetime.fromisoformat(str(item["started_at"]))))
            except (KeyError, TypeError, ValueError):
                continue  # a stage entry this version cannot read is left out, not guessed
        return cls(
            run_id=run_id,
            host=str(holder.get("host", "?")),
            pid=pid if isinstance(pid, int) else None,
            config_hash=config_hash if isinstance(config_hash, str) else None,
            stages=tuple(stages),
            last_seen=dt.datetime.fromtimestamp(modified, dt.UTC),
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class _LocalFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def create_exclusive(self, text: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # the first command on a new lakehouse
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True

    def read(self) -> tuple[str, float] | None:
        try:
            return self.path.read_text(encoding="utf-8"), self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def touch(self) -> None:
        os.utime(self.path)

    def replace(self, text: str) -> None:
        """Write the whole file anew in one step (a reader sees the old text or the new, never a part)."""
        staged = self.path.with_name(f"{self.path.name}.{os.getpid()}.new")
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, self.path)

    def rename_to(self, suffix: str) -> bool:
        """Move the file aside (atomic: of two commands taking over, one moves it) and delete it."""
        aside = self.path.with_name(self.path.name + suffix)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        aside.unlink(missing_ok=True)
        return True

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class _HadoopFile:
    """The lock file through :mod:`segspark.platform.filesystem` (Hadoop's FileSystem), for a lakehouse that is
    not a local folder."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self._spark = spark
        self.uri = uri

    def create_exclusive(self, text: str) -> bool:
        return filesystem.write_text(self._spark, self.uri, text, overwrite=False)

    def read(self) -> tuple[str, float] | None:
        if not filesystem.exists(self._spark, self.uri):
            return None
        modified = filesystem.modification_time(self._spark, self.uri)
        return filesystem.read_text(self._spark, self.uri), modified

    def touch(self) -> None:
        filesystem.touch(self._spark, self.uri)

    def replace(self, text: str) -> None:
        # An overwriting create replaces the file in one namenode operation on HDFS and one PUT on object stores.
        filesystem.write_text(self._spark, self.uri, text, overwrite=True)

    def rename_to(self, suffix: str) -> bool:
        aside = self.uri + suffix
        moved = filesystem.rename(self._spark, self.uri, aside)
        if moved:
            filesystem.delete(self._spark, aside)
        return moved

    def delete(self) -> None:
        filesystem.delete(self._spark, self.uri)


class LakehouseLock:
    """Context manager holding the lakehouse for one command (``with LakehouseLock(spark, config, run_id):``)."""

    def __init__(self, spark: SparkSession, config: Config, run_id: str) -> None:
        local = config.lakehouse_local_path
        self._file = (
            _LocalFile(local / LOCK_NAME)
            if local is not None
            else _HadoopFile(spark, f"{config.lakehouse}/{LOCK_NAME}")
        )
        self.location = str(local / LOCK_NAME) if local is not None else f"{config.lakehouse}/{LOCK_NAME}"
        self.run_id = run_id
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._record: dict[str, object] = {
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config_hash": config.config_hash(),
        }
        self._stages: list[dict[str, str]] = []
        #: The run whose lock this command took over, when it did (see :meth:`acquire`).
        self.taken_over: DeadRun | None = None

    @property
    def _text(self) -> str:
        return json.dumps({**self._record, "stages": self._stages})

    def __enter__(self) -> LakehouseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock and start refreshing it; a stale lock (its holder gone) is taken over with a warning.

        Raises
        ------
        LakehouseBusyError
            When another command holds the lock and may still be running, or took it between our two tries.
        """
        if not self._file.create_exclusive(self._text):
            found = self._file.read()
            if found is not None:
                holder = _parse(found[0])
                why = self._gone(holder, found[1])
                if why is None:
                    raise LakehouseBusyError(
                        f"the lakehouse is in use by run {holder.get('run_id', '?')} (process {holder.get('pid', '?')} "
                        f"on {holder.get('host', '?')}, started {holder.get('started_at', '?')}); run again when it "
                        f"has finished (if that process is gone, delete {self.location})"
                    )
                log.warning(
                    "run %s %s without releasing the lakehouse; taking it over",
                    holder.get("run_id", "?"),
                    why,
                )
                self._file.rename_to(f".stale-{self.run_id}")
                # Whichever command gets the lock below records the dead run, whether or not it moved the file.
                self.taken_over = DeadRun.of(holder, found[1])
            if not self._file.create_exclusive(self._text):
                self.taken_over = None
                raise LakehouseBusyError(f"another segspark command took the lakehouse ({self.location}) just now")
        self._beat = threading.Thread(target=self._heartbeat, name="segspark-lock", daemon=True)
        self._beat.start()

    def at_stage(self, stage: str) -> None:
        """Add ``stage`` to the stages this command started, in the lock file (what a takeover records).

        A failure to write it is logged and ignored: the lock still holds, and a takeover then records fewer
        stages of this run.
        """
        self._stages.append({"stage": stage, "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")})
        try:
            if self.holds():  # never write over the lock of a command that took this one over as stale
                self._file.replace(self._text)
        except Exception:  # noqa: BLE001 - the lock file still exists and names this run
            log.warning("could not note stage %s in the lakehouse lock %s", stage, self.location)
            log.debug("lock file write failure", exc_info=True)

    def _gone(self, holder: dict[str, object], modified: float) -> str | None:
        """Why the holder is no longer running, or None when it may be."""
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
            return f"(process {pid}) ended"
        age = time.time() - modified
        if age > STALE_SECONDS:
            return f"has not refreshed its lock for {age:.0f} s and ended"
        return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._file.touch()
            except Exception:  # noqa: BLE001 - a missed beat only makes the lock look older
                log.debug("could not refresh the lakehouse lock", exc_info=True)

    def holds(self) -> bool:
        """Whether the lock file still names this run (another command may have taken over a stale lock)."""
        found = self._file.read()
        return found is not None and _parse(found[0]).get("run_id") == self.run_id

    def release(self) -> None:
        """Stop refreshing and delete the lock file if it still names this run; never raises (a lock left
        behind is taken over by the next command)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        try:
            if self.holds():
                self._file.delete()
        except Exception:  # noqa: BLE001 - a lock left behind is taken over by the next command
            log.debug("could not release the lakehouse lock", exc_info=True)


def _parse(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

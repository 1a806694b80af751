"""Which source files an ingest run reads: all of them, or those ``ingested_files`` lacks (Delta sources: which
versions, see :mod:`segspark.stages.ingest.versions`).

An incremental run lists the source's files (Spark's own listing, so globs and hidden files are treated as
its readers treat them), looks each one up by path in the published ``ingested_files`` and reads only the new
ones. A file whose size or modification time changed since it was ingested is an error naming it: its lines are
in the tables already, and which of them changed cannot be known. A file that is gone is reported; its lines
stay. Lakehouses without a file log, and catalog tables that are not Delta tables, are ingested whole.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from segspark.config.settings import Config
from segspark.errors import InputError
from segspark.platform import filesystem, publication
from segspark.stages.ingest.versions import SourceVersions, delta_location, plan_versions

__all__ = ["FILE_FORMATS", "Delivery", "SourceFile", "plan_delivery", "reader_path"]

log = logging.getLogger("segspark")

#: Source formats whose files an incremental run tracks.
FILE_FORMATS = ("csv", "parquet")
#: Changed files named in the error message (the rest are counted).
_NAMED = 5


@dataclass(frozen=True)
class SourceFile:
    """A source file's identity when it was listed: its path, size in bytes and modification time (UTC)."""

    path: str
    size: int
    modified: dt.datetime


@dataclass(frozen=True)
class Delivery:
    """What one ingest run reads.

    ``incremental`` runs append the lines of ``files``; full runs replace both tables with them. ``skipped``
    counts the files an incremental run left out because they were ingested already, ``gone`` names the
    ingested files the source no longer has. ``files`` is empty for a source that is not files; a Delta source
    has ``versions`` instead.
    """

    incremental: bool
    files: tuple[SourceFile, ...]
    skipped: int = 0
    gone: tuple[str, ...] = ()
    why_full: str | None = None
    #: A Delta source's versions to read (see :mod:`segspark.stages.ingest.versions`); None for other sources.
    versions: SourceVersions | None = None

    @property
    def nothing_new(self) -> bool:
        """Whether an incremental run has nothing to read: no new file, or no new version of the table."""
        if not self.incremental:
            return False
        return self.versions.empty if self.versions is not None else not self.files

    @property
    def paths(self) -> list[str]:
        """The files to read, as paths Spark's readers take (see :func:`reader_path`)."""
        return [reader_path(f.path) for f in self.files]


def reader_path(listed: str) -> str:
    """A path as Spark lists it (``file:///x%20y``) as its readers take and report it (``file:/x y``).

    Spark's listing and ``_metadata.file_path`` escape characters such as spaces; its readers take a path
    unescaped (an escaped one would name a file called ``x%20y``).
    """
    decoded = urllib.parse.unquote(listed)
    return "file:/" + decoded[len("file:///") :] if decoded.startswith("file:///") else decoded


def _listed(spark: SparkSession, raw_df: DataFrame) -> tuple[SourceFile, ...]:
    """The source's files as Spark lists them, sorted by path, with their sizes and modification times."""
    paths = sorted(raw_df.inputFiles())
    statuses = filesystem.file_statuses(spark, paths)
    return tuple(
        SourceFile(p, size, dt.datetime.fromtimestamp(ms // 1000, dt.UTC).replace(microsecond=ms % 1000 * 1000))
        for p, (size, ms) in statuses.items()
    )


def _ingested(spark: SparkSession, config: Config) -> dict[str, tuple[int, dt.datetime]] | None:
    """Path -> (size, modification time) of every published ingested file; None when there is no file log."""
    files = publication.read_if_published(spark, config, "ingested_files", "transactions_clean")
    if files is None:
        return None
    rows = (
        files.select("path", "size", "modification_time")
        .collect()  # one row per source file ingested: as many as the source has files
    )
    if not rows:
        return None
    return {r["path"]: (int(r["size"]), r["modification_time"].replace(tzinfo=dt.UTC)) for r in rows}


def plan_delivery(spark: SparkSession, config: Config, raw_df: DataFrame) -> Delivery:
    """The files this run reads, per ``ingest.mode`` and what ``ingested_files`` holds.

    Raises
    ------
    InputError
        An incremental run finds files whose size or modification time changed since they were ingested.
    """
    source = config.source
    if source.format not in FILE_FORMATS:
        location = delta_location(spark, source)
        if location is None:
            return Delivery(False, (), why_full=f"a {source.format} source that is not a Delta table is ingested whole")
        versions, why_full = plan_versions(spark, config, location)
        return Delivery(why_full is None, (), versions=versions, why_full=why_full)
    listed = _listed(spark, raw_df)
    if config.ingest.mode == "full":
        return Delivery(False, listed, why_full="ingest.mode is full")
    ingested = _ingested(spark, config)
    if ingested is None:
        return Delivery(False, listed, why_full="nothing ingested before")
    changed = [f for f in listed if f.path in ingested and (f.size, f.modified) != ingested[f.path]]
    if changed:
        named = ", ".join(f.path for f in changed[:_NAMED])
        more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
        raise InputError(
            f"{len(changed)} source file(s) changed since they were ingested (size or modification time): "
            f"{named}{more}. Their lines are in the tables already; re-ingest everything with --full-refresh "
            "(ingest.mode: full), or restore the files"
        )
    present = {f.path for f in listed}
    gone = tuple(sorted(p for p in ingested if p not in present))
    if gone:
        log.warning(
            "%d ingested file(s) are no longer in the source; their lines stay in the tables: %s",
            len(gone),
            ", ".join(gone[:_NAMED]) + (" ..." if len(gone) > _NAMED else ""),
        )
    new = tuple(f for f in listed if f.path not in ingested)
    return Delivery(True, new, skipped=len(listed) - len(new), gone=gone)

"""Which versions of a Delta source table an ingest run reads: the whole table, or the changes since the last run.

A Delta source (``source.format: delta``, or a catalog table stored as Delta) is read at a pinned version, so
the lines ingested and the version recorded in ``ingested_versions`` always agree, even while the source is
being written. On a lakehouse that has ingested the table before, an incremental run reads only the versions
after the last one ingested, from the table's change data feed (``delta.enableChangeDataFeed``), and appends
their inserted rows. Rows the source deleted or updated since (its lines are in the tables already) and a table
created anew or restored to an older version are errors naming what changed, as a changed source file is. A
table without the change data feed for those versions is ingested whole again, and the run says why.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config, SourceSettings
from segspark.contracts.schemas import INGESTED_AT, INGESTED_VERSIONS, RUN_ID
from segspark.errors import InputError
from segspark.platform import lakehouse, publication
from segspark.stages.ingest.counts import IngestCounts

__all__ = ["SourceVersions", "delta_location", "ingested_version_rows", "plan_versions", "read_versions"]

log = logging.getLogger("segspark")

#: The change data feed's own columns (dropped from the lines read).
_CHANGE_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


@dataclass(frozen=True)
class SourceVersions:
    """The versions of a Delta source one run reads: the whole table at ``to_version`` (``from_version`` None),
    or the changes of ``from_version`` to ``to_version`` (none when ``from_version > to_version``)."""

    source: str
    location: str
    table_id: str
    from_version: int | None
    to_version: int

    @property
    def empty(self) -> bool:
        """Whether there is no version to read (an incremental run with nothing new)."""
        return self.from_version is not None and self.from_version > self.to_version


def delta_location(spark: SparkSession, source: SourceSettings) -> str | None:
    """The Delta table location behind a ``delta`` or ``table`` source; None for a catalog table of another
    format (and for file formats)."""
    if source.format == "delta":
        return source.path
    if source.format != "table":
        return None
    try:
        detail = lakehouse.one_row(spark.sql(f"DESCRIBE DETAIL {source.path}"), f"DESCRIBE DETAIL {source.path}")
    except AnalysisException:  # not a Delta table (Delta answers only for its own)
        return None
    return str(detail["location"]) if str(detail["format"]).lower() == "delta" else None


def plan_versions(spark: SparkSession, config: Config, location: str) -> tuple[SourceVersions, str | None]:
    """The versions this run reads and, when it reads the whole table, why.

    Raises
    ------
    InputError
        The table was created anew, or restored to a version older than the one ingested, since the last run.
    """
    source = config.source
    name = source.path or location
    current = lakehouse.existing_version(spark, location, "as the ingest source")
    table_id = lakehouse.table_id(spark, location)
    whole = SourceVersions(name, location, table_id, None, current)
    if config.ingest.mode == "full":
        return whole, "ingest.mode is full"
    last = _last_ingested(spark, config)
    if last is None:
        return whole, "nothing ingested before"
    last_id, last_version = last
    refresh = "re-ingest everything with --full-refresh (ingest.mode: full)"
    if last_id != table_id:
        raise InputError(
            f"the source table {name} was created anew since it was ingested (Delta table id {table_id}, "
            f"ingested {last_id}): its lines may differ from those in the tables; {refresh}"
        )
    if current < last_version:
        raise InputError(
            f"the source table {name} is at version {current}, older than version {last_version} "
            f"ingested before (was it restored?); {refresh}"
        )
    batch = SourceVersions(name, location, table_id, last_version + 1, current)
    if batch.empty or _has_change_feed(spark, batch):
        return batch, None
    return whole, (
        f"the source table has no change data feed for versions {batch.from_version}-{current}; set "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true) on it so later runs read only new versions"
    )


def _last_ingested(spark: SparkSession, config: Config) -> tuple[str, int] | None:
    """(table id, version) of the source as the published ``ingested_versions`` last read it; None if never."""
    versions = publication.read_if_published(spark, config, "ingested_versions", "transactions_clean")
    if versions is None:
        return None
    last = (
        versions.orderBy(F.col("to_version").desc(), F.col("ingested_at").desc())
        .select("table_id", "to_version")
        .first()  # one row per ingest run of the source
    )
    return None if last is None else (str(last["table_id"]), int(last["to_version"]))


def _changes(spark: SparkSession, versions: SourceVersions) -> DataFrame:
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", versions.from_version)
        .option("endingVersion", versions.to_version)
        .load(versions.location)
    )


def _has_change_feed(spark: SparkSession, versions: SourceVersions) -> bool:
    """Whether the table recorded its changes for every version of ``versions`` (Delta checks when it plans the
    read: one row is read)."""
    try:
        _changes(spark, versions).select("_commit_version").limit(1).collect()  # at most one row
    except Exception as exc:  # Delta reports a version without change data as an error of its own class
        if "DELTA_MISSING_CHANGE_DATA" in str(exc) or "change data was not recorded" in str(exc):
            return False
        raise
    return True


def read_versions(spark: SparkSession, versions: SourceVersions) -> DataFrame:
    """The source lines of ``versions``: the whole table at its version, or the rows inserted in the range.

    Raises
    ------
    InputError
        The range deletes or updates rows (their lines are in the tables already); names the first version.
    """
    if versions.from_version is None:
        return spark.read.format("delta").option("versionAsOf", versions.to_version).load(versions.location)
    changes = _changes(spark, versions)
    changed = (
        changes.where(F.col("_change_type") != "insert")
        .agg(F.min("_commit_version").alias("version"), F.count(F.lit(1)).alias("rows"))
        .first()  # one row
    )
    if changed is not None and changed["rows"]:
        raise InputError(
            f"the source table {versions.source} deleted or updated {changed['rows']:,} row(s) since it was "
            f"ingested (from version {changed['version']}): their lines are in the tables already; re-ingest "
            "everything with --full-refresh (ingest.mode: full)"
        )
    return changes.where(F.col("_change_type") == "insert").drop(*_CHANGE_COLUMNS)


def ingested_version_rows(
    spark: SparkSession, versions: SourceVersions | None, counts: IngestCounts, run_id: str, ingested_at: dt.datetime
) -> DataFrame:
    """The run's ``ingested_versions`` row (none when ``versions`` is None: a full run of another source)."""
    rows = []
    if versions is not None:
        values = {
            "source": versions.source,
            "table_id": versions.table_id,
            "from_version": versions.from_version,
            "to_version": versions.to_version,
            "lines_in": counts.rows_in,
            "lines_clean": counts.rows_clean,
            "lines_rejected": counts.rows_rejected,
            "rejected_by_reason": dict(counts.rejected_by_reason),
            RUN_ID: run_id,
            INGESTED_AT: ingested_at,
        }
        rows.append(INGESTED_VERSIONS.row(values))
    return spark.createDataFrame(rows, INGESTED_VERSIONS.schema)

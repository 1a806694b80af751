"""The maintain stage: ``segspark maintain [--as-of DATE ...]``: compact, Z-order and vacuum the lakehouse.

For every table segspark writes (:data:`segspark.contracts.schemas.TABLE_NAMES`) that exists:

1. adds the table properties its spec asks for and an older table lacks (change data feed);
2. ``OPTIMIZE``: rewrites small files into large ones, Z-ordered by ``customer_id`` where the table has it and
   ``maintain.zorder`` is on (partitioned tables are clustered within each snapshot); ``--as-of`` limits it to
   those snapshots;
3. ``VACUUM`` with ``maintain.vacuum_retain_hours``: deletes files no version of that window needs;

and reports the table's active files before and after, and the files the vacuum deleted.

``OPTIMIZE`` commits a new table version with the same rows (``dataChange = false``). The stage publishes those
versions (one ``published_runs`` row) before any vacuum, and the vacuumed versions after (a second row), so
readers and the rollback of an unfinished run only ever return to versions whose files are kept. Liquid clustering
(``CLUSTER BY``) would replace Z-ordering but cannot be combined with the ``as_of_date`` partitioning that lets
a run replace one snapshot, so segspark keeps partitions and Z-orders within them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, cast

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, CUSTOMER_ID, PUBLISHED_TABLES, TABLE_NAMES, TABLE_SPECS
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun

__all__ = ["TableMaintenance", "compact_table", "files_per_snapshot", "run_maintain", "vacuum_table"]

log = logging.getLogger("segspark")


@dataclass(frozen=True)
class TableMaintenance:
    """What maintaining one table did: versions, data files and bytes before and after, and the vacuum's count."""

    table: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    #: Snapshots (as_of_date partitions) and the most files any one of them has after; 0 for other tables.
    snapshots: int
    max_files_per_snapshot: int
    zorder_by: tuple[str, ...]
    files_vacuumed: int
    properties_added: tuple[str, ...]


#: Spark's default listing parallelism (``spark.sql.sources.parallelPartitionDiscovery.parallelism``), which VACUUM
#: uses for its file listing: 10,000 tasks per table, most of them empty, cost a small lakehouse a minute a table.
_LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
_LISTING_DEFAULT = "10000"


def run_maintain(
    spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None
) -> list[TableMaintenance]:
    """Maintain every existing table; publish the compacted versions of the published tables.

    Every table is compacted first and the compacted versions published, then every table is vacuumed and
    the final versions published. A command killed in between leaves nothing a reader or a rollback needs
    deleted: a rollback only ever returns to a published version, whose files the vacuum of this or an
    earlier run kept, because they were that version's current files.
    """
    tables = [(t, config.table_path(t)) for t in TABLE_NAMES]
    tables = [(t, path) for t, path in tables if lakehouse.table_exists(spark, path)]
    # RuntimeConfig.get with a str default never returns None; pyspark's stubs type it Optional regardless.
    listing = cast(str, spark.conf.get(_LISTING, _LISTING_DEFAULT))
    if listing == _LISTING_DEFAULT:  # not chosen by the user: a few tasks per core
        spark.conf.set(_LISTING, str(max(8, 4 * spark.sparkContext.defaultParallelism)))
    try:
        compacted: list[TableMaintenance] = []
        for table, path in tables:
            progress.step(f"compacting {table}")
            compacted.append(compact_table(spark, config, table, path))
        _publish(spark, config, run_id, compacted)
        done: list[TableMaintenance] = []
        for table, path in tables:
            progress.step(f"vacuuming {table}")
            done.append(vacuum_table(spark, config, path, compacted[len(done)]))
        _publish(spark, config, run_id, done)
    finally:
        spark.conf.set(_LISTING, listing)
    for m in done:
        log.info(
            "maintain %s: files %d -> %d (%.1f -> %.1f MB)%s, vacuum deleted %d%s",
            m.table,
            m.files_before,
            m.files_after,
            m.bytes_before / 1e6,
            m.bytes_after / 1e6,
            f", {m.snapshots} snapshots, at most {m.max_files_per_snapshot} files each" if m.snapshots else "",
            m.files_vacuumed,
            f", z-ordered by {', '.join(m.zorder_by)}" if m.zorder_by else "",
        )
    if stage is not None:
        stage.rows_in = sum(m.files_before for m in done)
        stage.rows_out = sum(m.files_after for m in done)
        stage.counts.update({"tables": len(done), "files_vacuumed": sum(m.files_vacuumed for m in done)})
    return done


def _publish(spark: SparkSession, config: Config, run_id: str, tables: list[TableMaintenance]) -> None:
    versions = {m.table: m.version_after for m in tables if m.table in PUBLISHED_TABLES}
    if versions:
        publication.publish(spark, config, run_id, "maintain", versions)


def compact_table(spark: SparkSession, config: Config, table: str, path: str) -> TableMaintenance:
    """Set the table's missing properties and OPTIMIZE it (Z-ordered by customer_id where it has the column)."""
    delta = DeltaTable.forPath(spark, path)
    before = _detail(spark, delta, path)
    wanted = dict(TABLE_SPECS[table].properties) if table in TABLE_SPECS else {}
    # Delta 4 ignores VACUUM's own retention argument (other than 0) and reads this table property instead.
    wanted["delta.deletedFileRetentionDuration"] = f"interval {config.maintain.vacuum_retain_hours} hours"
    added = _set_properties(spark, path, table, before["properties"], wanted)
    zorder = (CUSTOMER_ID,) if config.maintain.zorder and CUSTOMER_ID in delta.toDF().columns else ()
    optimizer = delta.optimize()
    dates = sorted(set(config.as_of_dates))
    if dates and AS_OF_DATE in before["partitionColumns"]:
        optimizer = optimizer.where(lakehouse.dates_predicate(AS_OF_DATE, dates))
    if zorder:
        optimizer.executeZOrderBy(*zorder)
    else:
        optimizer.executeCompaction()
    # The compacted version is published before the vacuum; the files after are counted once, after it.
    return TableMaintenance(
        table=table,
        version_before=before["version"],
        version_after=lakehouse.existing_version(spark, path, "while maintain was working on it"),
        files_before=before["numFiles"],
        files_after=before["numFiles"],
        bytes_before=before["sizeInBytes"],
        bytes_after=before["sizeInBytes"],
        snapshots=0,
        max_files_per_snapshot=0,
        zorder_by=zorder,
        files_vacuumed=0,
        properties_added=added,
    )


def vacuum_table(spark: SparkSession, config: Config, path: str, compacted: TableMaintenance) -> TableMaintenance:
    """VACUUM the compacted table; the result adds the files deleted, the final version and the snapshot counts."""
    delta = DeltaTable.forPath(spark, path)
    vacuumed = _vacuum(spark, delta, config.maintain.vacuum_retain_hours)
    after = _detail(spark, delta, path)
    snapshots, most = files_per_snapshot(spark, path) if AS_OF_DATE in after["partitionColumns"] else (0, 0)
    return replace(
        compacted,
        version_after=after["version"],
        files_after=after["numFiles"],
        bytes_after=after["sizeInBytes"],
        snapshots=snapshots,
        max_files_per_snapshot=most,
        files_vacuumed=vacuumed,
    )


def _detail(spark: SparkSession, delta: DeltaTable, path: str) -> dict[str, Any]:
    detail_df = delta.detail().select("numFiles", "sizeInBytes", "partitionColumns", "properties")
    row = lakehouse.one_row(detail_df, f"DESCRIBE DETAIL of the Delta table at {path}")
    version = lakehouse.existing_version(spark, path, "while maintain was working on it")
    return {
        "numFiles": int(row["numFiles"]),
        "sizeInBytes": int(row["sizeInBytes"]),
        "partitionColumns": list(row["partitionColumns"]),
        "properties": dict(row["properties"] or {}),
        "version": version,
    }


def _set_properties(
    spark: SparkSession, path: str, table: str, current: dict[str, str], wanted: dict[str, str]
) -> tuple[str, ...]:
    missing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not missing:
        return ()
    # Keys and values are segspark's own (the hours an int); the path is quoted as a Delta path identifier.
    settings = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
    spark.sql(f"ALTER TABLE {lakehouse.path_identifier(path)} SET TBLPROPERTIES ({settings})")
    log.info("maintain %s: set %s", table, settings)
    return tuple(missing)


def _vacuum(spark: SparkSession, delta: DeltaTable, hours: int) -> int:
    """VACUUM the table with ``hours`` of retention; returns how many files it deleted (from its own log entry)."""
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    previous = cast(str, spark.conf.get(check, "true"))  # a str default: never None (see run_maintain)
    if hours < 168:  # allowed by maintain.allow_short_retention (checked when the config was loaded)
        spark.conf.set(check, "false")
    # VACUUM START / END entries in the table's history: the count of deleted files comes from there.
    spark.conf.set("spark.databricks.delta.vacuum.logging.enabled", "true")
    try:
        delta.vacuum()  # the retention is the table's delta.deletedFileRetentionDuration, set to ``hours`` above
    finally:
        spark.conf.set(check, previous)
    # The vacuum has just committed its own entries.
    last = lakehouse.one_row(delta.history(1).select("operation", "operationMetrics"), "the history after VACUUM")
    metrics = last["operationMetrics"] or {}
    return int(metrics.get("numDeletedFiles", 0)) if last["operation"] == "VACUUM END" else 0


def files_per_snapshot(spark: SparkSession, path: str) -> tuple[int, int]:
    """(snapshots, most data files any snapshot has) of a table partitioned by ``as_of_date``.

    Reads only the partition column and each row's file name (no data columns), grouped on the executors.
    """
    counts_df = (
        lakehouse.read_table(spark, path)
        .select(AS_OF_DATE, "_metadata.file_path")
        .distinct()
        .groupBy(AS_OF_DATE)
        .count()
        .agg({"count": "max", AS_OF_DATE: "count"})
    )
    row = lakehouse.one_row(counts_df, f"the count of files per snapshot of {path}")
    return int(row[f"count({AS_OF_DATE})"] or 0), int(row["max(count)"] or 0)


"""Registering the lakehouse's tables in a catalog (``--catalog-db NAME``, ``catalog.database``).

Every output table is registered as an *external* table over its lakehouse folder: the catalog holds only the
name and the location; schema, table comment and column comments stay in the Delta log, so they are never out
of date. Dropping a registered table leaves its data alone. ``spark.sql("select * from NAME.customer_segments")``
then works in the session, and in any later session that uses the same metastore:

- segspark starting Spark itself (local mode): a Derby metastore in ``catalog.metastore_dir`` (default
  ``<lakehouse>/_metastore``), see :func:`session_conf`;
- under spark-submit: the cluster's own catalog (a Hive metastore, AWS Glue), as the cluster configures it.

A registered table reads the table's latest version, which is the published one whenever no segspark command
is running (every command first rolls back what an unfinished run left; see :mod:`segspark.platform.publication`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from segspark.config.paths import local_path
from segspark.config.settings import Config
from segspark.contracts.schemas import TABLE_NAMES
from segspark.errors import ConfigError
from segspark.platform import filesystem, lakehouse

log = logging.getLogger("segspark")


def metastore_folder(config: Config) -> Path | None:
    """The Derby metastore folder of a local session, or None (in-memory catalog) when there is none to use."""
    if config.catalog.metastore_dir is not None:
        return Path(config.catalog.metastore_dir).expanduser().resolve()
    lake = local_path(config.lakehouse)
    return None if lake is None else Path(lake) / "_metastore"


def session_conf(config: Config) -> dict[str, str]:
    """Spark settings for a session segspark starts itself: a persistent catalog when ``catalog.database`` is set.

    Spark's Hive catalog with an embedded Derby database (both ship with pyspark) in :func:`metastore_folder`.
    Derby allows one process at a time: two local commands on one metastore wait for the lakehouse lock anyway.
    """
    folder = metastore_folder(config) if config.catalog.database else None
    if folder is None:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    derby = f"jdbc:derby:;databaseName={folder / 'metastore_db'};create=true"
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": derby,
        # Derby's own log goes beside its database instead of derby.log in the current folder.
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={folder}",
    }


@dataclass(frozen=True)
class Registration:
    """What :func:`register_tables` did: the database it registered in and the tables it registered there."""

    database: str
    #: Qualified names registered (or already registered at the same location), in pipeline order.
    tables: list[str]


def register_tables(spark: SparkSession, config: Config, database: str | None = None) -> Registration | None:
    """Register every existing output table in ``database`` (default ``catalog.database``); None when unset.

    Idempotent: a table already registered at the same location is left as it is. A name registered at
    another location (another lakehouse) is an error naming both, never silently repointed.
    """
    database = database or config.catalog.database
    if not database:
        return None
    # The name was checked to be a plain identifier when the config was loaded; quoting keeps it one.
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}` COMMENT 'segspark output tables'")
    registered = []
    for table in TABLE_NAMES:
        path = config.table_path(table)
        if not lakehouse.table_exists(spark, path):
            continue
        name = f"`{database}`.`{getattr(config.tables, table)}`"
        if spark.catalog.tableExists(name):
            location = _location(spark, name)
            if location is not None and location.rstrip("/") != filesystem.qualified(spark, path).rstrip("/"):
                raise ConfigError(
                    f"catalog table {name} points at {location}, not at this lakehouse's {path}: "
                    f"drop it (DROP TABLE {name}) or choose another --catalog-db"
                )
        else:
            spark.catalog.createTable(name, path=path, source="delta")
        registered.append(name)
    log.info("catalog: %d tables registered in database %s", len(registered), database)
    return Registration(database=database, tables=registered)


def _location(spark: SparkSession, name: str) -> str | None:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").filter("col_name = 'Location'").collect()  # one row
    return rows[0]["data_type"] if rows else None

"""What BI tools and downstream jobs see: independent readers, comments, change data feed, catalog, maintain."""

from __future__ import annotations

import shutil

import duckdb
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RustDeltaTable
from pyspark.sql.pandas.types import to_arrow_type

from segspark.config.paths import local_path
from segspark.contracts.schemas import TABLE_NAMES, TABLE_SPECS
from segspark.errors import ConfigError
from segspark.pipeline import run_stages
from segspark.platform import catalog, lakehouse, publication
from tests.helpers.config import retail_config
from tests.helpers.runs import cli_environment

CHANGE_FEED_TABLES = ("customer_segments", "segment_profiles", "campaign_audiences")


def _tables(config) -> list[str]:
    return [t for t in TABLE_NAMES if RustDeltaTable.is_deltatable(local_path(config.table_path(t)))]


def _unify(arrow_type: pa.DataType) -> pa.DataType:
    """Arrow types with Spark's and delta-rs's spelling differences removed (large vs plain strings, lists)."""
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    if pa.types.is_large_list(arrow_type) or pa.types.is_list(arrow_type):
        return pa.list_(_unify(arrow_type.value_type))
    if pa.types.is_map(arrow_type):
        return pa.map_(_unify(arrow_type.key_type), _unify(arrow_type.item_type))
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, _unify(f.type)) for f in arrow_type])
    return arrow_type


def test_every_table_reads_the_same_in_deltalake_and_duckdb_with_its_comments(spark, profiled):
    """The Rust Delta reader (no Spark, no JVM) and DuckDB over its Arrow dataset see every output table with
    Spark's columns, types and row count; the table comment and every column comment travel in the log."""
    config, _ = profiled
    tables = _tables(config)
    assert {"transactions_clean", "customer_segments", "segment_profiles", "campaign_audiences"} <= set(tables)
    for table in tables:
        path = local_path(config.table_path(table))
        theirs = RustDeltaTable(path)
        ours = lakehouse.read_table(spark, config.table_path(table))
        arrow_schema = pa.schema(theirs.schema().to_arrow())
        assert arrow_schema.names == ours.columns, table
        for field in ours.schema.fields:
            assert _unify(arrow_schema.field(field.name).type) == _unify(to_arrow_type(field.dataType)), (table, field)
            assert arrow_schema.field(field.name).metadata[b"comment"].decode() == field.metadata["comment"]
            assert field.metadata["comment"].strip(), (table, field.name)
        dataset = theirs.to_pyarrow_dataset()  # noqa: F841 (DuckDB finds it by its Python name)
        [(count,)] = duckdb.sql("select count(*) from dataset").fetchall()
        assert count == ours.count(), table
        spec = TABLE_SPECS.get(table)
        if spec is not None:
            assert theirs.metadata().description == spec.comment, table


def test_campaign_tables_record_their_changes(spark, profiled):
    """Change data feed on the tables downstream jobs refresh from, from the table's first version: the last
    commit's inserted rows are exactly the rows it wrote, and all changes replayed give the table's rows."""
    config, _ = profiled
    for table in CHANGE_FEED_TABLES:
        path = config.table_path(table)
        assert RustDeltaTable(local_path(path)).metadata().configuration["delta.enableChangeDataFeed"] == "true"
        last = lakehouse.current_version(spark, path)
        changes = (
            spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", last).load(path)
        )
        inserted = changes.filter("_change_type = 'insert'").drop(
            "_change_type", "_commit_version", "_commit_timestamp"
        )
        assert_df_equality(inserted, lakehouse.read_table(spark, path), ignore_row_order=True, ignore_nullable=True)
        kinds = {r[0] for r in changes.select("_change_type").distinct().collect()}  # at most four
        assert kinds <= {"insert", "delete", "update_preimage", "update_postimage"}, (table, kinds)
        # Recorded from version 0: replaying every change gives today's row count.
        history = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path)
        net = history.groupBy("_change_type").count().collect()  # at most four rows
        counts = {r["_change_type"]: r["count"] for r in net}
        assert counts.get("insert", 0) - counts.get("delete", 0) == lakehouse.read_table(spark, path).count(), table


def test_registered_tables_answer_sql_and_a_second_lakehouse_cannot_take_their_names(spark, profiled, tmp_path):
    config, _ = profiled
    registration = catalog.register_tables(spark, config, "segmentation_test")
    try:
        assert "`segmentation_test`.`customer_segments`" in registration.tables
        expected = lakehouse.read_table(spark, config.table_path("customer_segments")).count()
        assert spark.sql("select count(*) from segmentation_test.customer_segments").first()[0] == expected
        # The comments come from the Delta log, not from a copy in the catalog.
        assert spark.catalog.getTable("segmentation_test.customer_segments").description == TABLE_SPECS[
            "customer_segments"].comment
        assert catalog.register_tables(spark, config, "segmentation_test").tables == registration.tables  # idempotent
        other = tmp_path / "other"
        shutil.copytree(local_path(config.table_path("customer_segments")), other / "customer_segments")
        with pytest.raises(ConfigError, match="points at .* not at this lakehouse"):
            catalog.register_tables(spark, retail_config(other), "segmentation_test")
    finally:
        spark.sql("DROP DATABASE IF EXISTS segmentation_test CASCADE")
    # External tables: dropping them leaves the data.
    assert lakehouse.read_table(spark, config.table_path("customer_segments")).count() == expected


def test_catalog_database_names_are_identifiers():
    from segspark.config.settings import load_config

    with pytest.raises(ConfigError, match="is not a database name"):
        load_config(env=None, flags={"catalog": {"database": "x; drop table y"}})
    with pytest.raises(ConfigError, match="allow_short_retention"):
        load_config(env=None, flags={"maintain": {"vacuum_retain_hours": 1}})


@pytest.mark.slow
def test_maintain_compacts_publishes_and_keeps_every_row(spark, profiled, tmp_path):
    """customer_segments rewritten into four files: maintain leaves one file per snapshot, Z-ordered by customer,
    publishes the compacted versions, and every table holds the same rows as before."""
    source, _ = profiled
    lake = tmp_path / "lake"
    for table in ("customer_segments", "segment_profiles"):
        shutil.copytree(local_path(source.table_path(table)), lake / table)
    config = retail_config(lake)
    segments = config.table_path("customer_segments")
    lakehouse.read_table(spark, segments).repartition(4).write.format("delta").mode("overwrite").save(segments)
    before = {t: lakehouse.read_table(spark, config.table_path(t)) for t in ("customer_segments", "segment_profiles")}
    before = {t: spark.createDataFrame(df.collect(), df.schema) for t, df in before.items()}  # a few hundred rows
    assert len(RustDeltaTable(local_path(segments)).file_uris()) == 4
    results: dict = {}
    run_stages(spark, config, ["maintain"], "maintain-1", results=results)
    done = {m.table: m for m in results["maintain"]}
    assert set(done) == {"customer_segments", "segment_profiles", "published_runs"}
    assert done["customer_segments"].zorder_by == ("customer_id",)
    assert done["segment_profiles"].zorder_by == ()
    for table in ("customer_segments", "segment_profiles"):
        m = done[table]
        assert m.max_files_per_snapshot == 1 and m.snapshots == 1
        assert_df_equality(
            lakehouse.read_table(spark, config.table_path(table)), before[table], ignore_row_order=True,
            ignore_nullable=True,
        )
        # Readers follow the compacted version: the publication names it.
        assert publication.published_version(spark, config, table) == lakehouse.current_version(
            spark, config.table_path(table)) == m.version_after
        properties = RustDeltaTable(local_path(config.table_path(table))).metadata().configuration
        assert properties["delta.deletedFileRetentionDuration"] == "interval 168 hours"
    runs = spark.read.format("delta").load(config.table_path("pipeline_runs")).filter("stage = 'maintain'")
    assert runs.select("status").first()[0] == "succeeded"
    assert (done["customer_segments"].files_before, done["customer_segments"].files_after) == (4, 1)


@pytest.mark.slow
def test_registered_tables_are_found_by_a_new_session_on_the_same_metastore(profiled, tmp_path):
    """``segspark maintain --catalog-db`` in one process; a plain PySpark session in another, given only the
    metastore settings, answers SQL on the tables by name."""
    import subprocess
    import sys

    source, _ = profiled
    lake = tmp_path / "lake"
    for table in ("customer_segments", "campaign_audiences"):
        shutil.copytree(local_path(source.table_path(table)), lake / table)
    env = cli_environment()
    done = subprocess.run(
        [sys.executable, "-m", "segspark.cli", "maintain", "--lakehouse", str(lake), "--catalog-db", "segmentation"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 tables registered in catalog database segmentation" in done.stdout  # with the two run logs
    assert "customer_segments" in done.stdout and not (tmp_path / "derby.log").exists()
    reader = f"""
from segspark.config.settings import load_config
from segspark.platform.catalog import session_conf
from segspark.platform.session import build_spark_session
config = load_config(env=None, flags={{"lakehouse": {str(lake)!r}, "catalog": {{"database": "segmentation"}}}})
spark = build_spark_session(config.spark.model_copy(update={{"master": "local[1]"}}), extra_conf=session_conf(config))
print("tables", sorted(r.tableName for r in spark.sql("show tables in segmentation").collect()))
print("count", spark.sql("select count(*) from segmentation.customer_segments").first()[0])
"""
    read = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert read.returncode == 0, read.stderr[-3000:]
    expected = RustDeltaTable(str(lake / "customer_segments")).to_pyarrow_dataset().count_rows()
    assert f"count {expected}" in read.stdout
    assert "'campaign_audiences', 'customer_segments', 'pipeline_runs', 'published_runs'" in read.stdout

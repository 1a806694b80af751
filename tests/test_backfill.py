"""segspark backfill on the real Online Retail lines: ten monthly snapshots, each published on its own."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from segspark.backfill import run_backfill, snapshot_dates
from segspark.platform import lakehouse, publication
from segspark.stages.ingest.stage import run_ingest
from tests.helpers.config import FAST_MODEL, REAL_DATA, requires_real_data, retail_config


@requires_real_data
@pytest.mark.slow  # about 6 min: Online Retail ingested, then ten snapshots built, scored, profiled, monitored
def test_online_retail_monthly_backfill_publishes_every_snapshot_with_its_migration_and_decision(spark, tmp_path):
    config = retail_config(
        tmp_path / "lh", REAL_DATA, source={"timestamp_formats": ["yyyy-MM-dd HH:mm:ss"]}, model=FAST_MODEL
    )
    run_ingest(spark, config, "ingest")
    dates = snapshot_dates(dt.date(2011, 3, 1), dt.date(2011, 12, 1), "month")
    assert len(dates) == 10
    outcome = run_backfill(spark, config, dates)
    assert [s.as_of for s in outcome] == dates
    assert [s.segmented_by for s in outcome] == ["train"] + ["score"] * 9
    assert len({s.model_version for s in outcome}) == 1  # auto_retrain is off: one model throughout

    profiled = publication.read_published(spark, config, "segment_profiles").select("as_of_date").distinct()
    assert sorted(r[0] for r in profiled.collect()) == dates
    segments = publication.read_published(spark, config, "customer_segments")
    customers = {r[0]: r[1] for r in segments.groupBy("as_of_date").count().collect()}  # ten rows
    moved = (
        publication.read_published(spark, config, "segment_migration")
        .filter(F.col("to_segment_id").isNotNull())
        .groupBy("to_as_of_date")
        .agg(F.sum("customers"))
    )
    assert {r[0]: r[1] for r in moved.collect()} == {d: customers[d] for d in dates[1:]}
    drifted = publication.read_published(spark, config, "feature_drift").select("as_of_date").distinct()
    assert sorted(r[0] for r in drifted.collect()) == dates

    runs = lakehouse.read_table(spark, config.table_path("pipeline_runs")).filter(F.col("stage") == "monitor")
    decisions = [r["decision"] for r in runs.orderBy("started_at").collect()]  # ten rows
    assert decisions[0].startswith(f"model kept for {dates[0]}: the model was fitted on this snapshot")
    for decision, as_of in zip(decisions[1:], dates[1:], strict=True):
        assert decision.startswith((f"model kept for {as_of}: ", "retrain recommended: ")), decision
    assert [s.decision for s in outcome] == decisions

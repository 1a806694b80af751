"""The monitor stage: its transformations by hand (segment migration between two snapshots, feature values
counted into fixed bins) and segment_migration written for each consecutive pair of hand-scored snapshots."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from segspark.contracts.schemas import CUSTOMER_SEGMENTS
from segspark.errors import InputError
from segspark.maths.drift import population_stability
from segspark.platform import lakehouse, publication
from segspark.segmentation.binning import MISSING_BIN, bin_counts
from segspark.stages.monitor.migration import GONE, NEW, segment_migration
from segspark.stages.monitor.stage import run_monitor
from tests.helpers.config import make_config

SEGMENTS_DDL = "customer_id string, segment_id int, segment_name string"
MIGRATION_DDL = (
    "from_segment_id int, from_segment_name string, to_segment_id int, to_segment_name string, customers long, "
    "share_of_from double"
)


def test_segment_migration_by_hand(spark):
    before = spark.createDataFrame(
        [
            ("a", 1, "Champions"),
            ("b", 1, "Champions"),
            ("c", 1, "Champions"),
            ("d", 2, "Lapsed"),
            ("e", 2, "Lapsed"),
            ("f", 3, None),  # a segment not profiled yet keeps its null name
        ],
        SEGMENTS_DDL,
    )
    after = spark.createDataFrame(
        [
            ("a", 1, "Champions"),  # stays
            ("b", 2, "Lapsed"),  # moves down
            ("d", 1, "Champions"),  # moves up
            ("f", 3, None),
            ("g", 2, "Lapsed"),  # new
            ("h", 2, "Lapsed"),  # new
        ],
        SEGMENTS_DDL,
    )
    expected = spark.createDataFrame(
        [
            (1, "Champions", 1, "Champions", 1, 1 / 3),
            (1, "Champions", 2, "Lapsed", 1, 1 / 3),
            (1, "Champions", None, GONE, 1, 1 / 3),  # c
            (2, "Lapsed", 1, "Champions", 1, 1 / 2),
            (2, "Lapsed", None, GONE, 1, 1 / 2),  # e
            (3, None, 3, None, 1, 1.0),
            (None, NEW, 2, "Lapsed", 2, 1.0),
        ],
        MIGRATION_DDL,
    )
    got = segment_migration(before, after)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_segment_migration_of_a_snapshot_with_itself_and_with_nobody(spark):
    same = spark.createDataFrame([("a", 1, "One"), ("b", 1, "One"), ("c", 2, "Two")], SEGMENTS_DDL)
    expected = spark.createDataFrame([(1, "One", 1, "One", 2, 1.0), (2, "Two", 2, "Two", 1, 1.0)], MIGRATION_DDL)
    assert_df_equality(segment_migration(same, same), expected, ignore_row_order=True, ignore_nullable=True)
    empty = spark.createDataFrame([], SEGMENTS_DDL)
    everyone_gone = spark.createDataFrame(
        [(1, "One", None, GONE, 2, 1.0), (2, "Two", None, GONE, 1, 1.0)], MIGRATION_DDL
    )
    assert_df_equality(segment_migration(same, empty), everyone_gone, ignore_row_order=True, ignore_nullable=True)


def test_bin_counts_by_hand(spark):
    customers = spark.createDataFrame(
        [
            ("a", 1.0, 5),
            ("b", 2.0, 5),  # on an edge: the bin below it
            ("c", 2.5, 5),
            ("d", 9.0, 5),
            ("e", None, 5),  # missing
            ("f", float("nan"), 5),  # missing too
        ],
        "customer_id string, recency double, frequency int",
    )
    edges = {"recency": [2.0, 3.0], "frequency": [5.0]}  # frequency: one edge, every value on it
    expected = spark.createDataFrame(
        [
            ("recency", 0, 2, 3.0, 5.0),
            ("recency", 1, 1, 2.5, 6.25),
            ("recency", 2, 1, 9.0, 81.0),
            ("recency", MISSING_BIN, 2, 0.0, 0.0),
            ("frequency", 0, 6, 30.0, 150.0),
        ],
        "feature string, bin int, customers long, value_sum double, value_squares double",
    )
    got = bin_counts(customers, edges)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_snapshot_binned_on_its_own_deciles_has_no_drift_and_a_shifted_one_has(spark):
    """The PSI of a snapshot against itself is 0 on any edges; shifting every value past the edges shows."""
    values = [(str(i), float(i)) for i in range(100)]
    edges = {"x": [9.5 + 10 * i for i in range(9)]}  # the deciles of 0..99
    reference = {r["bin"]: r["customers"] for r in bin_counts(spark.createDataFrame(values, "c string, x double"),
                                                                edges).collect()}
    shifted = [(c, x + 30.0) for c, x in values]
    current = {r["bin"]: r["customers"] for r in bin_counts(spark.createDataFrame(shifted, "c string, x double"),
                                                              edges).collect()}
    bins = range(10)
    assert [reference.get(b, 0) for b in bins] == [10] * 10
    assert population_stability([reference.get(b, 0) for b in bins], [reference.get(b, 0) for b in bins]) == 0.0
    # 0..99 + 30: bins 0-2 empty, bins 3-8 hold 10 each, bin 9 holds 40.
    assert [current.get(b, 0) for b in bins] == [0, 0, 0, 10, 10, 10, 10, 10, 10, 40]
    assert population_stability([reference.get(b, 0) for b in bins], [current.get(b, 0) for b in bins]) > 0.25


S1, S2, S3 = dt.date(2011, 9, 1), dt.date(2011, 10, 1), dt.date(2011, 11, 1)


def score_snapshot(spark, config, as_of, assignments, run_id, model="m1"):
    """Publish ``assignments`` (customer -> segment) as customer_segments of ``as_of``, as score would."""
    rows = [(as_of, c, s, 0.5, model, run_id, f"Segment {s}") for c, s in sorted(assignments.items())]
    df = spark.createDataFrame(rows, CUSTOMER_SEGMENTS.schema)
    path = config.table_path("customer_segments")
    publication.ensure_log(spark, config, run_id)
    written = lakehouse.write_table(df, path, CUSTOMER_SEGMENTS,
                                    replace_where=lakehouse.dates_predicate("as_of_date", [as_of]))
    publication.publish(spark, config, run_id, "score", {"customer_segments": written.version}, model_version=model)


def migration(spark, config):
    df = publication.read_published(spark, config, "segment_migration")
    return {
        (r["from_as_of_date"], r["to_as_of_date"], r["from_segment_name"], r["to_segment_name"]): r["customers"]
        for r in df.collect()
    }


def test_monitor_writes_each_consecutive_pair_once_and_again_when_a_snapshot_is_rescored(spark, tmp_path):
    config = make_config(tmp_path / "lake")
    with pytest.raises(InputError, match="run 'segspark train'"):
        run_monitor(spark, config, "mon-0")
    score_snapshot(spark, config, S1, {"a": 1, "b": 1, "c": 2}, "score-1")
    assert run_monitor(spark, config, "mon-1").pairs == []  # one snapshot: nothing to compare

    score_snapshot(spark, config, S2, {"a": 1, "b": 2, "d": 2}, "score-2")
    first = run_monitor(spark, config, "mon-2")
    assert first.pairs == [(S1, S2)]
    assert migration(spark, config) == {
        (S1, S2, "Segment 1", "Segment 1"): 1,
        (S1, S2, "Segment 1", "Segment 2"): 1,
        (S1, S2, "Segment 2", GONE): 1,
        (S1, S2, NEW, "Segment 2"): 1,
    }
    versions = publication.published_versions(spark, config)
    assert run_monitor(spark, config, "mon-3").pairs == []  # nothing new: nothing written
    assert publication.published_versions(spark, config) == versions

    score_snapshot(spark, config, S3, {"a": 2, "b": 2, "d": 2}, "score-3")
    score_snapshot(spark, config, S2, {"a": 2, "b": 2, "d": 1}, "rescore-2", model="m2")  # S2 rescored
    again = run_monitor(spark, config, "mon-4")
    assert again.pairs == [(S1, S2), (S2, S3)]
    got = migration(spark, config)
    assert {k: v for k, v in got.items() if k[1] == S2} == {
        (S1, S2, "Segment 1", "Segment 2"): 2,
        (S1, S2, "Segment 2", GONE): 1,
        (S1, S2, NEW, "Segment 1"): 1,
    }
    assert {k: v for k, v in got.items() if k[1] == S3} == {
        (S2, S3, "Segment 2", "Segment 2"): 2,
        (S2, S3, "Segment 1", "Segment 2"): 1,
    }
    s2 = publication.read_published(spark, config, "segment_migration").filter(F.col("to_as_of_date") == S2)
    assert {(r["from_model_version"], r["to_model_version"], r["to_segments_run_id"]) for r in s2.collect()} == {
        ("m1", "m2", "rescore-2")
    }
    assert publication.last_publication(spark, config, "monitor")["counts"] == {"pairs": 2}

"""The monitor stage: its transformations by hand (segment migration between two snapshots, feature values
counted into fixed bins) and segment_migration written for each consecutive pair of hand-scored snapshots."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from segspark.config.paths import local_path
from segspark.contracts.schemas import CUSTOMER_FEATURES, CUSTOMER_SEGMENTS
from segspark.errors import InputError
from segspark.maths.drift import population_stability
from segspark.pipeline import run_stages
from segspark.platform import lakehouse, publication
from segspark.segmentation.binning import CATEGORICAL, MISSING_BIN, NUMERIC, FeatureBins, bin_counts
from segspark.stages.features.stage import run_features
from segspark.stages.ingest.stage import run_ingest
from segspark.stages.monitor.migration import GONE, NEW, segment_migration
from segspark.stages.monitor.stage import run_monitor
from segspark.stages.score.stage import run_score
from tests.helpers.config import FAST_MODEL, make_config, retail_config

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
            ("a", 1.0, 5, "UK"),
            ("b", 2.0, 5, "FR"),  # on an edge: the bin below it
            ("c", 2.5, 5, "UK"),
            ("d", 9.0, 5, "DE"),  # a country training never saw: (unseen)
            ("e", None, 5, "(missing)"),  # missing
            ("f", float("nan"), 5, None),  # missing too
        ],
        "customer_id string, recency double, frequency int, country string",
    )
    bins = [
        FeatureBins("recency", NUMERIC, (2.0, 3.0)),
        FeatureBins("frequency", NUMERIC, (5.0,)),  # one edge, every value on it
        FeatureBins("country", CATEGORICAL, categories=("FR", "UK"), missing_category="(missing)"),
    ]
    d = Decimal
    expected = spark.createDataFrame(
        [
            ("recency", 0, 2, d("3"), d("5")),
            ("recency", 1, 1, d("2.5"), d("6.25")),
            ("recency", 2, 1, d("9"), d("81")),
            ("recency", MISSING_BIN, 2, d("0"), d("0")),
            ("frequency", 0, 6, d("30"), d("150")),
            ("country", 0, 1, d("0"), d("0")),
            ("country", 1, 2, d("0"), d("0")),
            ("country", 2, 1, d("0"), d("0")),
            ("country", MISSING_BIN, 2, d("0"), d("0")),
        ],
        "feature string, bin int, customers long, value_sum decimal(38,8), value_squares decimal(38,8)",
    )
    assert_df_equality(bin_counts(customers, bins), expected, ignore_row_order=True, ignore_nullable=True)


def test_a_snapshot_binned_on_its_own_deciles_has_no_drift_and_a_shifted_one_has(spark):
    """The PSI of a snapshot against itself is 0 on any edges; shifting every value past the edges shows."""
    values = [(str(i), float(i)) for i in range(100)]
    edges = {"x": [9.5 + 10 * i for i in range(9)]}  # the deciles of 0..99
    reference = {
        r["bin"]: r["customers"]
        for r in bin_counts(spark.createDataFrame(values, "c string, x double"), edges).collect()
    }
    shifted = [(c, x + 30.0) for c, x in values]
    current = {
        r["bin"]: r["customers"]
        for r in bin_counts(spark.createDataFrame(shifted, "c string, x double"), edges).collect()
    }
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
    written = lakehouse.write_table(
        df, path, CUSTOMER_SEGMENTS, replace_where=lakehouse.dates_predicate("as_of_date", [as_of])
    )
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
    assert publication.last_publication(spark, config, "monitor")["counts"] == {"pairs": 2, "drift_snapshots": 0}


def model_view(features: pd.DataFrame, config) -> dict[str, np.ndarray]:
    """Each numeric model feature as the model sees it (signed log where configured), by numpy."""
    seen = {}
    for name in config.model.numeric_features:
        x = features[name].astype(float).to_numpy()
        seen[name] = np.sign(x) * np.log1p(np.abs(x)) if name in config.model.log_features else x
    return seen


def test_the_planted_model_is_saved_with_its_drift_reference(spark, planted):
    """Every feature's edges are the deciles of its training values (all customers: fewer than the reference
    sample), and each bin holds the customers numpy puts there."""
    config, result = planted["config"], planted["result"]
    reference = (
        publication.read_published(spark, config, "drift_reference")
        .filter(F.col("model_version") == result.model_version)
        .toPandas()
    )
    features = (
        publication.read_published(spark, config, "customer_features")
        .filter(F.col("as_of_date") == result.as_of_date)
        .toPandas()
    )  # a few hundred customers
    assert set(reference["feature"]) == set(config.model.numeric_features)
    for name, values in model_view(features, config).items():
        rows = reference[reference["feature"] == name].sort_values("bin")
        inner = rows[rows["bin"] >= 0]
        edges = sorted(set(np.percentile(values, [10 * i for i in range(1, 10)])))
        assert inner["upper"].iloc[:-1].tolist() == pytest.approx(edges, rel=1e-12), name
        counts = np.bincount((values[:, None] > np.array(edges)[None, :]).sum(axis=1), minlength=len(edges) + 1)
        assert inner["customers"].tolist() == counts.tolist(), name
        assert rows.loc[rows["bin"] == MISSING_BIN, "customers"].tolist() == [0]
        assert rows["feature_mean"].iloc[0] == pytest.approx(values.mean(), rel=1e-9)
        assert rows["feature_std"].iloc[0] == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert rows["share"].sum() == pytest.approx(1.0)


def shifted_copy(source: Path, out: Path, days: int, stopped: set[str], since: dt.datetime) -> Path:
    """The generated lines with every date moved ``days`` later; the ``stopped`` customers' lines dated at or
    after ``since`` (in the moved dates) left out: those customers stop buying then."""
    out.mkdir(parents=True)
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in sorted(source.glob("*.csv"))]
    lines = pd.concat(frames, ignore_index=True)
    moved = pd.to_datetime(lines["InvoiceDate"]) + pd.Timedelta(days=days)
    lines["InvoiceDate"] = moved.dt.strftime("%Y-%m-%d %H:%M:%S")
    customer = lines["CustomerID"].str.replace(".0", "", regex=False)
    lines = lines[~(customer.isin(stopped) & (moved >= since))]
    lines.to_csv(out / "part-00000.csv", index=False)
    return out


def publish_snapshot(spark, config, snapshot_df, as_of, run_id):
    """``snapshot_df`` (customer_features rows) published as the ``as_of`` snapshot of ``config``'s lakehouse."""
    written = lakehouse.write_table(
        snapshot_df.withColumn("as_of_date", F.lit(as_of)),
        config.table_path("customer_features"),
        CUSTOMER_FEATURES,
        replace_where=lakehouse.dates_predicate("as_of_date", [as_of]),
    )
    publication.publish(spark, config, run_id, "features", {"customer_features": written.version})


@pytest.mark.slow  # about 5 min: two more deliveries ingested and featurised, four snapshots scored, one refitted
def test_a_planted_stop_shows_in_migration_and_drift_and_auto_retrain_refits_while_a_control_pair_raises_nothing(
    spark, planted, tmp_path
):
    """S1 is the planted model's snapshot. S2 is the same business 63 days later: every date moved, so every
    feature is the same (the control). At S3, half a year on, 30% of the loyal regulars have stopped buying
    since S2; at S4, 63 days further, all of them have, and segspark run's stages with monitor.auto_retrain
    refit the model there.

    30% of one type is 9% of these customers: moved between deciles, 9% of customers can raise a PSI to about
    0.1 at most, so S3 shows the migration and recency as the one feature that moved; S4 (30% of customers
    gone quiet) shows recency at act and the retrain.
    """
    lake = tmp_path / "lake"
    shutil.copytree(local_path(planted["config"].lakehouse), lake)
    s1, old_model = planted["result"].as_of_date, planted["result"].model_version
    s2 = s1 + dt.timedelta(days=63)
    s3 = s2 + dt.timedelta(days=182)
    s4 = s3 + dt.timedelta(days=63)
    loyal = sorted(c for c, kind in planted["truth"].items() if kind == "loyal_regulars")
    some = set(loyal[: round(0.3 * len(loyal))])
    since = dt.datetime.combine(s2, dt.time())
    source = planted["root"] / "tx"
    config = retail_config(lake, source, model=FAST_MODEL)
    features = publication.read_published(spark, config, "customer_features")
    publish_snapshot(spark, config, features.filter(F.col("as_of_date") == s1), s2, "features-s2")
    for as_of, stopped in ((s3, some), (s4, set(loyal))):
        scratch = tmp_path / f"lake-{as_of}"
        data = shifted_copy(source, tmp_path / f"tx-{as_of}", (as_of - s1).days, stopped, since)
        other = retail_config(scratch, data, model=FAST_MODEL, as_of_dates=[as_of])
        run_ingest(spark, other, f"ingest-{as_of}")
        run_features(spark, other, f"features-{as_of}")
        publish_snapshot(
            spark, config, publication.read_published(spark, other, "customer_features"), as_of, f"f-{as_of}"
        )
    for as_of in (s2, s3):
        run_score(spark, retail_config(lake, source, model=FAST_MODEL, as_of_dates=[as_of]), f"score-{as_of}")
    result = run_monitor(spark, config, "monitor-1")
    assert result.pairs == [(s1, s2), (s2, s3)] and result.drift_snapshots == [s1, s2, s3]
    assert result.decision is not None and not result.decision.retrain, result.decision

    drift = publication.read_published(spark, config, "feature_drift").toPandas()
    control = drift[drift["as_of_date"] == s2]
    assert (control["psi"].dropna() < 0.1).all() and set(control["alert"]) == {"ok"}, control.to_string()
    some_quiet = drift[(drift["as_of_date"] == s3) & (drift["kind"] == "numeric")].set_index("feature")
    assert some_quiet["psi"].idxmax() == "recency_days", some_quiet.to_string()
    assert set(some_quiet["alert"]) == {"ok"}, some_quiet.to_string()

    moves = publication.read_published(spark, config, "segment_migration").toPandas()
    assert (moves.loc[moves["to_as_of_date"] == s2, "share_of_from"] == 1.0).all()  # nobody moved
    segments = publication.read_published(spark, config, "customer_segments").filter(F.col("as_of_date") == s2)
    home = (
        segments.filter(F.col("customer_id").isin(loyal))
        .groupBy("segment_id")
        .count()
        .orderBy(F.col("count").desc())
        .first()["segment_id"]
    )
    into_s3 = moves[(moves["to_as_of_date"] == s3) & (moves["from_segment_id"] == home)]
    left = into_s3.loc[into_s3["to_segment_id"] != home, "share_of_from"].sum()
    home_size = segments.filter(F.col("segment_id") == home).count()
    assert left == pytest.approx(len(some) / home_size, abs=0.01), into_s3.to_string()

    # S4 as segspark run scores it, with monitor.auto_retrain: the old model's drift acts, a new model is fitted.
    refitting = retail_config(lake, source, model=FAST_MODEL, as_of_dates=[s4], monitor={"auto_retrain": True})
    results: dict = {}
    run_stages(spark, refitting, ["segment", "profile", "monitor"], "run-4", results=results)
    drift = publication.read_published(spark, config, "feature_drift").toPandas()
    all_quiet = drift[(drift["as_of_date"] == s4) & (drift["model_version"] == old_model)]
    all_quiet = all_quiet[all_quiet["kind"] == "numeric"].set_index("feature")
    assert all_quiet.loc["recency_days", "alert"] == "act", all_quiet.to_string()
    assert all_quiet.loc["tenure_days", "alert"] == "ok", all_quiet.to_string()
    top = all_quiet["psi"].idxmax()  # recency and frequency both act: the decision names the larger PSI
    retrained = f"retrained: PSI of {top} {all_quiet.loc[top, 'psi']:.3g} >= 0.25 since the model's snapshot {s1}"
    assert results["retrained"] == retrained

    runs = lakehouse.read_table(spark, config.table_path("pipeline_runs")).filter(F.col("run_id") == "run-4")
    recorded = [(r["stage"], r["status"], r["decision"]) for r in runs.orderBy("started_at").collect()]
    assert [stage for stage, _, _ in recorded] == ["score", "profile", "monitor", "train", "profile", "monitor"]
    assert {status for _, status, _ in recorded} == {"succeeded"}
    assert [decision for stage, _, decision in recorded if stage == "monitor"] == [
        retrained,
        f"model kept for {s4}: the model was fitted on this snapshot",
    ]

    def at_s4(table):
        return publication.read_published(spark, config, table).filter(F.col("as_of_date") == s4)

    assert {r["model_version"] for r in at_s4("customer_segments").select("model_version").distinct().collect()} == {
        "run-4"
    }
    assert {r["model_version"] for r in at_s4("segment_profiles").collect()} == {"run-4"}
    refitted = at_s4("feature_drift").filter(F.col("feature") == "recency_days").collect()
    assert {(r["model_version"], r["alert"]) for r in refitted} == {(old_model, "act"), ("run-4", "ok")}
    moved = publication.read_published(spark, config, "segment_migration").filter(F.col("to_as_of_date") == s4)
    assert {r["to_model_version"] for r in moved.collect()} == {"run-4"}

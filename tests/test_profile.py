"""The profile stage: hand-computed profile figures, the holdout, campaign outcomes, and the stage end to end on
the planted lakehouse (names, plays, audiences, products, rules, a later snapshot scored by run, results)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from scipy import stats

from segspark.config.paths import local_path
from segspark.errors import InputError
from segspark.pipeline import run_stages
from segspark.platform import publication
from segspark.stages.features.stage import run_features
from segspark.stages.profile.campaigns import ALL_SEGMENTS, LiftSettings, group_totals, outcome_rows, with_control_group
from segspark.stages.profile.segment_stats import (
    dominant_rfm_segments,
    segment_members,
    segment_stat_rows,
    to_segment_stats,
    window_revenue,
)
from segspark.stages.profile.stage import run_profile
from tests.helpers.config import FAST_MODEL, retail_config

COLUMNS = ["recency_days", "frequency", "monetary", "tenure_days"]
D = dt.date


def features_frame(spark):
    """Four customers of snapshot 2011-07-01, two per segment (segment 1: c1, c2; segment 2: c3, c4)."""
    return spark.createDataFrame(
        [
            ("c1", 10, 4, Decimal("100.00"), 100, "Champions", D(2011, 6, 21)),
            ("c2", 20, 2, Decimal("300.00"), 200, "Loyal Customers", D(2011, 6, 11)),
            ("c3", 70, 1, Decimal("50.00"), 80, "At Risk", D(2011, 4, 22)),
            ("c4", 100, 1, Decimal("30.00"), 120, "At Risk", D(2011, 3, 23)),
        ],
        "customer_id string, recency_days int, frequency long, monetary decimal(20,2), tenure_days int, "
        "rfm_segment string, last_purchase_date date",
    )


def test_window_revenue_counts_purchases_of_the_window_only(spark):
    lines = spark.createDataFrame(
        [
            ("c1", D(2011, 1, 10), False, Decimal("50.0000")),  # in the window
            ("c1", D(2011, 2, 10), False, Decimal("25.5000")),  # in the window
            ("c1", D(2011, 2, 11), True, Decimal("-20.0000")),  # a return: not revenue at stake
            ("c2", D(2010, 6, 30), False, Decimal("99.0000")),  # 366 days before: outside
            ("c2", D(2010, 7, 1), False, Decimal("1.0000")),  # exactly 365 days before: inside
            ("c3", D(2011, 7, 1), False, Decimal("70.0000")),  # on the snapshot date: after it
        ],
        "customer_id string, invoice_date date, is_return boolean, line_amount decimal(28,4)",
    )
    expected = spark.createDataFrame(
        [("c1", Decimal("75.5000")), ("c2", Decimal("1.0000"))], "customer_id string, value_at_stake decimal(38,4)"
    )
    assert_df_equality(window_revenue(lines, D(2011, 7, 1), 365), expected, ignore_row_order=True, ignore_nullable=True)


def test_profile_figures_by_hand(spark):
    segments = spark.createDataFrame([("c1", 1), ("c2", 1), ("c3", 2), ("c4", 2)], "customer_id string, segment_id int")
    value = spark.createDataFrame(
        [("c1", Decimal("40.0000")), ("c3", Decimal("5.5000"))], "customer_id string, value_at_stake decimal(28,4)"
    )
    previous = spark.createDataFrame([("c1", 5), ("c2", 25)], "customer_id string, recency_days int")
    members = segment_members(segments, features_frame(spark), COLUMNS, value, previous)
    rows = segment_stat_rows(members, COLUMNS, ["monetary"], 10_000).collect()
    figures = to_segment_stats(rows, dominant_rfm_segments(members).collect(), COLUMNS, has_previous=True)

    one, two = figures.segments
    assert (one.segment_id, one.customers, one.revenue, one.value_at_stake) == (1, 2, 400.0, 40.0)
    assert (two.segment_id, two.customers, two.revenue, two.value_at_stake) == (2, 2, 80.0, 5.5)
    assert figures.population.customers == 4 and figures.population.revenue == 480.0
    assert figures.exact == {1: (Decimal("400.00"), Decimal("40.00")), 2: (Decimal("80.00"), Decimal("5.50"))}
    # recency 10, 20, 70, 100: mean 50, population sd sqrt((40² + 30² + 20² + 50²) / 4) = sqrt(1350).
    sd = math.sqrt(1350)
    assert one.features["recency_days"].mean == 15.0 and two.features["recency_days"].mean == 85.0
    assert one.features["recency_days"].effect == pytest.approx((15 - 50) / sd)
    assert two.features["recency_days"].effect == pytest.approx((85 - 50) / sd)
    # percentile_approx gives a value of the data: the lower middle one of an even count.
    assert one.features["recency_days"].median == 10.0 and figures.population.features["recency_days"].median == 20.0
    # monetary is a log column: its effect size is measured on ln(1 + x).
    logs = [math.log1p(v) for v in (100, 300, 50, 30)]
    mean = sum(logs) / 4
    log_sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 4)
    assert one.features["monetary"].effect == pytest.approx(((logs[0] + logs[1]) / 2 - mean) / log_sd)
    assert one.features["monetary"].mean == 200.0  # means and medians stay in original units
    assert figures.population.features["monetary"].effect is None
    # c1's recency rose (5 -> 10), c2's fell (25 -> 20: a purchase since); c3 and c4 are new.
    assert figures.recency == {1: (2, 1), 2: (0, 0)}
    # Segment 1: one Champion, one Loyal Customer: the tie goes to the first name.
    assert figures.dominant_rfm == {1: ("Champions", 0.5), 2: ("At Risk", 1.0)}


def test_no_previous_snapshot_leaves_the_recency_change_unknown(spark):
    segments = spark.createDataFrame([("c1", 1), ("c3", 2)], "customer_id string, segment_id int")
    value = spark.createDataFrame([], "customer_id string, value_at_stake decimal(28,4)")
    members = segment_members(segments, features_frame(spark), COLUMNS, value)
    rows = segment_stat_rows(members, COLUMNS, [], 10_000).collect()
    figures = to_segment_stats(rows, dominant_rfm_segments(members).collect(), COLUMNS, has_previous=False)
    assert figures.recency == {1: None, 2: None}
    assert [p.value_at_stake for p in figures.segments] == [0.0, 0.0]  # no lines in the window: nothing at stake


def test_holdout_is_exact_per_segment_seeded_and_stable(spark):
    members = spark.createDataFrame(
        [(f"a{i:02d}", 1) for i in range(25)] + [(f"b{i}", 2) for i in range(5)] + [("c0", 3)],
        "customer_id string, segment_id int",
    )

    def control(df, key):
        return {r["customer_id"] for r in with_control_group(df, 0.1, key).filter("is_control").collect()}

    chosen = control(members, "42:2011-07-01")
    # round half up: 25 x 0.1 = 2.5 -> 3; 5 x 0.1 = 0.5 -> 1; 1 x 0.1 = 0.1 -> 0.
    assert sum(c.startswith("a") for c in chosen) == 3 and sum(c.startswith("b") for c in chosen) == 1
    assert "c0" not in chosen
    assert control(members.repartition(7).orderBy(F.rand(3)), "42:2011-07-01") == chosen  # any layout
    assert control(members, "42:2011-08-01") != chosen  # another campaign, another holdout


def test_campaign_group_totals_by_hand(spark):
    audience = spark.createDataFrame(
        [
            ("c1", 1, "Champions", "upsell", False),
            ("c2", 1, "Champions", "upsell", False),
            ("c3", 1, "Champions", "upsell", True),
            ("c4", 1, "Champions", "upsell", True),
            ("c5", 2, "Lapsed", "win_back", False),
        ],
        "customer_id string, segment_id int, segment_name string, play string, is_control boolean",
    )
    lines = spark.createDataFrame(
        [
            ("c1", D(2011, 7, 1), False, Decimal("60.0000")),  # the window starts on the audience's snapshot
            ("c1", D(2011, 7, 20), False, Decimal("40.0000")),
            ("c2", D(2011, 7, 5), True, Decimal("-15.0000")),  # a return is no purchase
            ("c3", D(2011, 7, 31), False, Decimal("10.0000")),
            ("c4", D(2011, 6, 30), False, Decimal("99.0000")),  # before the audience
            ("c4", D(2011, 8, 1), False, Decimal("99.0000")),  # on the next snapshot: after the window
        ],
        "customer_id string, invoice_date date, is_return boolean, line_amount decimal(28,4)",
    )
    expected = spark.createDataFrame(
        [
            # c1 spent 100 in two lines (100^2, not 60^2 + 40^2), c2 nothing; c3 spent 10, c4 nothing in the window
            (1, "Champions", "upsell", False, 2, 1, Decimal("100.00"), 10_000.0),
            (1, "Champions", "upsell", True, 2, 1, Decimal("10.00"), 100.0),
            (2, "Lapsed", "win_back", False, 1, 0, Decimal("0.00"), 0.0),
        ],
        "segment_id int, segment_name string, play string, is_control boolean, customers long, purchasers long, "
        "spend decimal(28,2), spend_squares double",
    )
    got = group_totals(audience, lines, D(2011, 7, 1), D(2011, 8, 1))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


GROUP_TOTALS = [
    {"segment_id": 1, "segment_name": "Champions", "play": "upsell", "is_control": False, "customers": 2,
     "purchasers": 1, "spend": Decimal("100.00"), "spend_squares": 10_000.0},
    {"segment_id": 1, "segment_name": "Champions", "play": "upsell", "is_control": True, "customers": 2,
     "purchasers": 1, "spend": Decimal("10.00"), "spend_squares": 100.0},
    {"segment_id": 2, "segment_name": "Lapsed", "play": "win_back", "is_control": False, "customers": 1,
     "purchasers": 0, "spend": Decimal("0.00"), "spend_squares": 0.0},
]


def test_campaign_outcome_rows_by_hand():
    rows = outcome_rows(GROUP_TOTALS, LiftSettings(holdout_share=0.5, min_group_customers=2))
    by_key = {(r["segment_id"], r["is_control"]): r for r in rows}
    assert set(by_key) == {(1, False), (1, True), (2, False), (None, False), (None, True)}

    champions, champions_control = by_key[1, False], by_key[1, True]
    assert (champions["purchase_rate"], champions["spend_per_customer"]) == (0.5, 50.0)
    assert (champions_control["purchase_rate"], champions_control["spend_per_customer"]) == (0.5, 5.0)
    for row in (champions, champions_control):  # the lift is on both rows of the segment
        assert row["purchase_rate_uplift"] == 0.0 and row["purchase_rate_p_value"] == pytest.approx(1.0)
        assert row["purchase_rate_uplift_low"] == pytest.approx(-row["purchase_rate_uplift_high"])
        assert row["spend_per_customer_uplift"] == 45.0
        welch = stats.ttest_ind([100.0, 0.0], [10.0, 0.0], equal_var=False)
        interval = welch.confidence_interval(0.95)
        assert row["spend_per_customer_uplift_low"] == pytest.approx(interval.low)
        assert row["spend_per_customer_uplift_high"] == pytest.approx(interval.high)
        assert row["spend_per_customer_p_value"] == pytest.approx(welch.pvalue)
        assert (row["control_share"], row["sample_ratio_alert"]) == (0.5, False)
        assert row["sample_ratio_p_value"] == pytest.approx(1.0)
        assert row["verdict"] == "no detectable effect"

    lapsed = by_key[2, False]  # no control customer: no uplift, no interval, and the verdict says why
    assert [lapsed[c] for c in ("purchase_rate_uplift", "purchase_rate_uplift_low", "spend_per_customer_uplift",
                                "spend_per_customer_uplift_low")] == [None] * 4
    assert lapsed["control_share"] == 0.0
    assert lapsed["sample_ratio_p_value"] == pytest.approx(stats.chi2.sf(1.0, 1))  # 0 of 1 where 0.5 was due
    assert lapsed["verdict"] == "too few customers: 0 in control, at least 2 needed"

    everyone, everyone_control = by_key[None, False], by_key[None, True]
    assert (everyone["segment_name"], everyone["play"]) == (ALL_SEGMENTS, None)
    assert (everyone["customers"], everyone["purchasers"], everyone["spend"]) == (3, 1, Decimal("100.00"))
    assert (everyone_control["customers"], everyone_control["spend"]) == (2, Decimal("10.00"))
    assert everyone["purchase_rate_uplift"] == pytest.approx(1 / 3 - 1 / 2)
    assert everyone["control_share"] == pytest.approx(2 / 5)
    assert everyone["verdict"] == "no detectable effect"


def test_campaign_outcome_rows_without_a_control_group_anywhere():
    rows = outcome_rows(GROUP_TOTALS[2:], LiftSettings(holdout_share=0.0, min_group_customers=1))
    assert [(r["segment_id"], r["is_control"]) for r in rows] == [(2, False), (None, False)]
    assert {r["sample_ratio_p_value"] for r in rows} == {None}  # no holdout configured: nothing to check
    assert {r["verdict"] for r in rows} == {"too few customers: 0 in control, at least 1 needed"}


def test_profile_stage_writes_named_segments_plays_and_audiences(spark, planted, profiled):
    config, result = profiled
    trained = planted["result"]
    assert (result.as_of_date, result.model_version, result.customers) == (
        trained.as_of_date,
        trained.model_version,
        trained.customers,
    )
    profiles_df = publication.read_published(spark, config, "segment_profiles")
    rows = profiles_df.orderBy("segment_id").collect()
    assert [r["segment_id"] for r in rows] == [1, 2, 3, 4]
    names = [r["segment_name"] for r in rows]
    assert len(set(names)) == 4 and all(names)
    assert sorted(r["priority"] for r in rows) == [1, 2, 3, 4]
    assert sum(r["customers"] for r in rows) == trained.customers
    assert sum(r["customer_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["revenue_share"] for r in rows) == pytest.approx(1.0)
    assert {r["structure"] for r in rows} == {trained.chosen.structure}
    # Revenue per segment equals the sum of its customers' monetary, from the tables themselves.
    features = publication.read_published(spark, config, "customer_features")
    segments = publication.read_published(spark, config, "customer_segments")
    by_segment = {
        r["segment_id"]: r["revenue"]
        for r in segments.join(features, ["customer_id", "as_of_date"], "inner")
        .groupBy("segment_id")
        .agg(F.sum("monetary").alias("revenue"))
        .collect()
    }
    assert {r["segment_id"]: r["revenue"] for r in rows} == by_segment
    for r in rows:
        assert r["play"] in {"retain", "win_back", "upsell", "cross_sell", "nurture", "deprioritise"}
        assert "of customers and" in r["play_reason"] and r["top_features"] == [
            f["feature"] for f in r["feature_profile"][:3]
        ]
        assert r["recency_rose_share"] is None and r["previous_as_of_date"] is None
    # customer_segments carries the names; the audience is every customer, 10% per segment held out.
    named = {
        r["segment_id"]: r["segment_name"] for r in segments.select("segment_id", "segment_name").distinct().collect()
    }
    assert named == {r["segment_id"]: r["segment_name"] for r in rows}
    audience = publication.read_published(spark, config, "campaign_audiences")
    assert audience.count() == trained.customers
    control = {
        r["segment_id"]: r["n"]
        for r in audience.filter("is_control").groupBy("segment_id").agg(F.count("*").alias("n")).collect()
    }
    assert control == {r["segment_id"]: math.floor(r["customers"] * 0.1 + 0.5) for r in rows}
    # Products and rules: per segment, ranked, with lift against the population.
    top = publication.read_published(spark, config, "segment_top_products")
    assert {r["segment_id"] for r in top.select("segment_id").distinct().collect()} == {1, 2, 3, 4}
    assert top.filter(F.col("rank") > 10).count() == 0
    rules = publication.read_published(spark, config, "segment_cross_sell")
    assert rules.filter(F.col("lift") <= 1).count() == 0


@pytest.mark.slow  # 60 s: features, score, profile, monitor and report of a second snapshot
def test_run_scores_a_later_snapshot_measures_the_campaign_and_reports_both(spark, planted, profiled, tmp_path):
    config, first = profiled
    lake = tmp_path / "lake"
    shutil.copytree(local_path(config.lakehouse), lake)
    config = retail_config(lake, planted["root"] / "tx", model=FAST_MODEL)
    later = first.as_of_date + dt.timedelta(days=30)
    # The first snapshot's best sellers, declared fees (profile.non_products), must leave products and rules.
    top = publication.read_published(spark, config, "segment_top_products").filter(F.col("rank") == 1)
    fees = sorted({r["product_id"] for r in top.select("product_id").collect()})
    later_config = config.model_copy(
        update={"as_of_dates": [later], "profile": config.profile.model_copy(update={"non_products": fees})}
    )
    run_features(spark, later_config, "features-2")
    results = {}
    run_stages(spark, later_config, ["segment", "profile", "monitor", "report"], "run-2", results=results)
    # Two snapshots: the report adds sizes over time, where the first snapshot's customers went (from
    # segment_migration), the drift of both snapshots and the lift of the first snapshot's campaign.
    report = results["report"]
    assert report.run_id == "run-2" and report.as_of_date == later
    assert {"sizes_over_time.png", "migration.png", "drift_over_time.png", "lift.png"} <= set(report.figures)
    later_top = publication.read_published(spark, config, "segment_top_products").filter(F.col("as_of_date") == later)
    assert later_top.count() > 0 and later_top.filter(F.col("product_id").isin(fees)).count() == 0
    later_rules = publication.read_published(spark, config, "segment_cross_sell").filter(F.col("as_of_date") == later)
    mentions = F.arrays_overlap("antecedent", F.array(*[F.lit(f) for f in fees])) | F.col("consequent").isin(fees)
    assert later_rules.filter(mentions).count() == 0

    runs = publication.read_published(spark, config, "customer_segments").filter(F.col("as_of_date") == later)
    assert {r["model_version"] for r in runs.select("model_version").distinct().collect()} == {first.model_version}
    # Every customer of the later snapshot is scored, those new since training too, into the model's segments.
    features_then = publication.read_published(spark, config, "customer_features").filter(F.col("as_of_date") == later)
    assert runs.count() == features_then.count() >= first.customers
    assert runs.join(features_then, "customer_id", "left_anti").count() == 0
    assert {r["segment_id"] for r in runs.select("segment_id").distinct().collect()} <= set(first.segments)
    earlier = publication.read_published(spark, config, "customer_segments").filter(
        F.col("as_of_date") == first.as_of_date
    )
    assert earlier.count() == first.customers  # the earlier snapshot's partition is kept
    assert publication.last_publication(spark, config, "score") is not None  # scored, not retrained
    profiles_df = publication.read_published(spark, config, "segment_profiles").filter(F.col("as_of_date") == later)
    for r in profiles_df.collect():
        assert r["previous_as_of_date"] == first.as_of_date
        assert 0 <= r["recency_rose_share"] <= 1 and r["customers_with_previous"] > 0
    results = publication.read_published(spark, config, "campaign_results").orderBy("segment_id", "is_control")
    rows = results.collect()
    assert {(r["as_of_date"], r["next_as_of_date"]) for r in rows} == {(first.as_of_date, later)}
    segment_rows = [r for r in rows if r["segment_id"] is not None]
    everyone = {r["is_control"]: r for r in rows if r["segment_id"] is None}
    assert {(r["segment_id"], r["is_control"]) for r in segment_rows} == {
        (s, c) for s in first.segments for c in (False, True)
    }
    audience = publication.read_published(spark, config, "campaign_audiences").filter(
        F.col("as_of_date") == first.as_of_date
    )
    assert sum(r["customers"] for r in segment_rows) == audience.count()
    for control in (False, True):  # all segments together: the sums of the segments' groups
        mine = [r for r in segment_rows if r["is_control"] == control]
        assert everyone[control]["customers"] == sum(r["customers"] for r in mine)
        assert everyone[control]["purchasers"] == sum(r["purchasers"] for r in mine)
        assert everyone[control]["segment_name"] == "All segments"
    for r in rows:  # no campaign was sent: every interval holds its uplift, and the verdict is in words
        assert r["purchase_rate_uplift_low"] <= r["purchase_rate_uplift"] <= r["purchase_rate_uplift_high"]
        assert 0 <= r["purchase_rate_p_value"] <= 1
        assert not r["sample_ratio_alert"]  # the holdout is exact: the split is as configured
        assert r["verdict"].startswith(("uplift", "no detectable effect", "too few customers"))


def test_profile_without_segments_names_the_command(spark, tmp_path):
    config = retail_config(tmp_path / "empty")
    with pytest.raises(InputError, match="run 'segspark train' first"):
        run_profile(spark, config, "p")

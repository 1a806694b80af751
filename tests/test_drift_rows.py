"""feature_drift's rows and the retrain decision, on hand-built counts (no Spark): every figure by hand."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from segspark.config.settings import MonitorSettings, RetrainWhen
from segspark.segmentation.binning import CATEGORICAL, NUMERIC, FeatureBins
from segspark.segmentation.drift_reference import FeatureSummary, bins_from_reference, reference_rows
from segspark.stages.monitor.decision import decide
from segspark.stages.monitor.drift import centroid_rows, feature_rows, fit_row, segment_row

THRESHOLDS = MonitorSettings().thresholds
MODEL_AS_OF, AS_OF = dt.date(2011, 11, 1), dt.date(2011, 12, 1)


def psi_by_hand(expected, actual):
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


def test_a_numeric_feature_by_hand():
    bins = [FeatureBins("recency_days", NUMERIC, (1.0, 2.0, 3.0))]
    reference = {"recency_days": FeatureSummary("recency_days", NUMERIC, (25, 25, 25, 25), 0, 2.0, 1.0)}
    current = {"recency_days": FeatureSummary("recency_days", NUMERIC, (10, 20, 30, 40), 12, 3.2, 1.1)}
    (row,) = feature_rows(bins, reference, current, THRESHOLDS)
    # The missing customers are one more bin: 0 of 100 in training (floored at 1e-4), 12 of 112 now.
    expected = psi_by_hand([0.25, 0.25, 0.25, 0.25, 1e-4], [10 / 112, 20 / 112, 30 / 112, 40 / 112, 12 / 112])
    assert row["psi"] == pytest.approx(expected, rel=1e-12)
    assert row["mean_shift"] == pytest.approx(1.2)
    assert row["missing_share_change"] == pytest.approx(12 / 112)
    assert (row["customers"], row["js_distance"], row["alert"]) == (112, None, "act")
    assert row["reason"] == (
        f"PSI {expected:.3g} >= 0.25; mean shift (sd) +1.2, beyond ±1; missing share change +0.107, beyond ±0.1"
    )


def test_an_unchanged_feature_and_a_categorical_one_are_ok():
    bins = [
        FeatureBins("monetary", NUMERIC, (5.0,)),
        FeatureBins("country", CATEGORICAL, categories=("FR", "UK"), missing_category="(missing)"),
    ]
    reference = {
        "monetary": FeatureSummary("monetary", NUMERIC, (40, 60), 0, 5.5, 2.0),
        "country": FeatureSummary("country", CATEGORICAL, (20, 80, 0), 0, None, None),
    }
    current = {
        "monetary": FeatureSummary("monetary", NUMERIC, (80, 120), 0, 5.6, 2.1),
        "country": FeatureSummary("country", CATEGORICAL, (38, 150, 12), 0, None, None),
    }
    money, country = feature_rows(bins, reference, current, THRESHOLDS)
    assert (money["psi"], money["alert"], money["reason"]) == (0.0, "ok", None)
    assert money["mean_shift"] == pytest.approx(0.05)
    # JS distance by hand (base 2) of (0.2, 0.8, 0) against (0.19, 0.75, 0.06).
    p, q = [0.2, 0.8, 0.0], [0.19, 0.75, 0.06]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    kl = lambda x: sum(a * math.log2(a / c) for a, c in zip(x, m, strict=True) if a > 0)  # noqa: E731
    assert country["js_distance"] == pytest.approx(math.sqrt((kl(p) + kl(q)) / 2), rel=1e-12)
    assert (country["psi"], country["mean_shift"], country["alert"]) == (None, None, "watch")
    assert country["reason"] == f"JS distance {country['js_distance']:.3g} >= 0.1"


def test_segment_shares_centroids_and_silhouette_rows():
    row = segment_row({1: 50, 2: 50}, {1: 80, 2: 20, 3: 0}, THRESHOLDS)
    assert row["psi"] == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4))  # 0.416
    assert (row["kind"], row["feature"], row["customers"], row["alert"]) == ("segments", "segment_id", 100, "act")
    shifted = centroid_rows({1: 0.2, 2: 1.5, 3: None}, 100, THRESHOLDS)
    assert [(r["feature"], r["alert"]) for r in shifted] == [("1", "ok"), ("2", "act"), ("3", "ok")]
    assert fit_row(0.39, 0.45, 100, 0.1)["alert"] == "watch"  # a drop of 0.06: past half the threshold
    assert fit_row(0.50, 0.45, 100, 0.1)["alert"] == "ok"  # better than training
    assert fit_row(None, 0.45, 100, 0.1)["alert"] == "ok"


def test_the_reference_rows_round_trip():
    bins = [
        FeatureBins("recency_days", NUMERIC, (1.0, 2.0)),
        FeatureBins("country", CATEGORICAL, categories=("FR", "UK"), missing_category="(missing)"),
    ]
    summaries = {
        "recency_days": FeatureSummary("recency_days", NUMERIC, (3, 0, 5), 2, 1.5, 0.5),
        "country": FeatureSummary("country", CATEGORICAL, (4, 6, 0), 0, None, None),
    }
    rows = reference_rows(bins, summaries)
    assert [(r["bin"], r["lower"], r["upper"], r["category"], r["customers"]) for r in rows] == [
        (0, None, 1.0, None, 3),
        (1, 1.0, 2.0, None, 0),
        (2, 2.0, None, None, 5),
        (-1, None, None, None, 2),
        (0, None, None, "FR", 4),
        (1, None, None, "UK", 6),
        (2, None, None, "(unseen)", 0),
        (-1, None, None, None, 0),
    ]
    assert sum(r["share"] for r in rows if r["feature"] == "recency_days") == pytest.approx(1.0)
    back_bins, back_summaries = bins_from_reference(rows)
    assert sorted(back_bins, key=lambda f: f.feature) == sorted(bins, key=lambda f: f.feature)
    assert back_summaries == summaries


def drift(kind, feature, **figures):
    row = {
        "kind": kind,
        "feature": feature,
        "psi": None,
        "js_distance": None,
        "mean": None,
        "reference_mean": None,
        "mean_shift": None,
        "missing_share_change": None,
        "centroid_shift": None,
    }
    return {**row, **figures}


ROWS = [
    drift("numeric", "frequency", psi=0.04, mean_shift=0.1),
    drift("numeric", "recency_days", psi=0.31, mean_shift=0.3),
    drift("segments", "segment_id", psi=0.3, js_distance=0.2),
    drift("fit", "silhouette", mean=0.30, reference_mean=0.45),
]


def test_the_decision_names_the_first_condition_that_holds_in_figures():
    settings = MonitorSettings()
    decision = decide(ROWS, AS_OF, "m1", MODEL_AS_OF, settings)
    assert decision.retrain
    assert decision.line() == (
        "retrain recommended: PSI of recency_days 0.31 >= 0.25 since the model's snapshot 2011-11-01"
    )
    assert decision.line(retrained=True).startswith("retrained: PSI of recency_days 0.31")

    no_features = MonitorSettings(retrain_when=RetrainWhen(feature_at_act=False))
    assert decide(ROWS, AS_OF, "m1", MODEL_AS_OF, no_features).reason == "PSI of the segment shares 0.3 >= 0.25"

    only_fit = MonitorSettings(retrain_when=RetrainWhen(feature_at_act=False, segment_shares_at_act=False))
    assert decide(ROWS, AS_OF, "m1", MODEL_AS_OF, only_fit).reason == (
        "silhouette 0.300 against 0.450 at training (silhouette drop 0.15 >= 0.1)"
    )
    aged = MonitorSettings(
        retrain_when=RetrainWhen(feature_at_act=False, segment_shares_at_act=False, model_older_than_days=30)
    )
    assert decide(ROWS, AS_OF, "m1", MODEL_AS_OF, aged).reason == (
        "the model is 30 days older than the snapshot (>= 30)"
    )


def test_a_quiet_snapshot_keeps_the_model_and_says_how_far_it_is_from_each_condition():
    quiet = [
        drift("numeric", "frequency", psi=0.04),
        drift("numeric", "recency_days", psi=0.06),
        drift("segments", "segment_id", psi=0.01, js_distance=0.02),
        drift("fit", "silhouette", mean=0.44, reference_mean=0.45),
    ]
    decision = decide(quiet, AS_OF, "m1", MODEL_AS_OF, MonitorSettings())
    assert not decision.retrain
    assert decision.line() == (
        "model kept for 2011-12-01: nothing at act, largest PSI recency_days 0.06, segment-share PSI 0.01, "
        "silhouette 0.440 against 0.450, model 30 days old"
    )


def test_the_snapshot_a_model_was_fitted_on_keeps_it_without_figures():
    decision = decide(ROWS, MODEL_AS_OF, "m1", MODEL_AS_OF, MonitorSettings())
    assert decision.line() == "model kept for 2011-11-01: the model was fitted on this snapshot"

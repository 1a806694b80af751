"""Drift and lift maths against published and explicitly computed values (no Spark)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from segspark.maths.drift import (
    PSI_EPSILON,
    alert_level,
    bin_edges,
    js_distance,
    mean_shift,
    population_stability,
)
from segspark.maths.lift import (
    SAMPLE_RATIO_ALERT,
    Group,
    rate_difference,
    sample_ratio_p,
    spend_difference,
    verdict,
    wilson_interval,
)

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II: the eight example comparisons and the 95%
# interval of method 10 (the hybrid score interval without continuity correction), as published.
NEWCOMBE_TABLE_II = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((6, 7), (2, 7), (0.0582, 0.8062)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((0, 10), (0, 10), (-0.2775, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0000)),
    ((10, 10), (0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("first", "second", "published"), NEWCOMBE_TABLE_II)
def test_rate_difference_reproduces_newcombes_published_intervals(first, second, published):
    (x1, n1), (x2, n2) = first, second
    got = rate_difference(Group(n1, x1), Group(n2, x2))
    assert got.estimate == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(got.low, 4), round(got.high, 4)) == published


def test_rate_difference_p_value_is_the_pooled_z_test():
    got = rate_difference(Group(70, 56), Group(80, 48))
    pooled = 104 / 150
    z = (56 / 70 - 48 / 80) / math.sqrt(pooled * (1 - pooled) * (1 / 70 + 1 / 80))
    assert got.p_value == pytest.approx(2 * stats.norm.sf(z))
    assert rate_difference(Group(10, 0), Group(20, 0)).p_value == 1.0  # nobody bought anywhere


def test_wilson_interval_by_hand_and_bad_counts():
    # 0 of 10 at 95%: [0, z^2 / (n + z^2)].
    z = stats.norm.ppf(0.975)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(z * z / (10 + z * z))
    for successes, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(successes, n)


def spend_group(spend: list[float]) -> Group:
    values = np.asarray(spend)
    return Group(len(values), int((values > 0).sum()), float(values.sum()), float((values**2).sum()))


def test_spend_difference_is_welchs_t_interval_as_scipy_computes_it():
    contacted = [0.0, 0.0, 12.5, 40.0, 7.25, 0.0, 88.0, 15.0, 0.0, 31.0, 5.5, 0.0]
    control = [0.0, 20.0, 0.0, 0.0, 9.0, 3.0, 0.0]
    got = spend_difference(spend_group(contacted), spend_group(control))
    reference = stats.ttest_ind(contacted, control, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert got.estimate == pytest.approx(np.mean(contacted) - np.mean(control))
    assert (got.low, got.high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert got.p_value == pytest.approx(reference.pvalue)


def test_spend_difference_is_none_without_two_customers_a_side_or_any_variation():
    assert spend_difference(spend_group([1.0, 2.0]), spend_group([3.0])) is None
    assert spend_difference(spend_group([0.0, 0.0]), spend_group([0.0, 0.0, 0.0])) is None
    assert spend_difference(spend_group([5.0, 5.0]), spend_group([5.0, 5.0])) is None


def test_a_segment_without_control_customers_has_no_interval_and_says_why():
    contacted, control = Group(120, 30, 900.0, 40_000.0), Group(0, 0)
    assert rate_difference(contacted, control) is None
    assert spend_difference(contacted, control) is None
    assert verdict(None, contacted, control, min_customers=100) == (
        "too few customers: 0 in control, at least 100 needed"
    )


def test_verdict_in_words():
    contacted, control = Group(1_000, 300), Group(1_000, 259)
    difference = rate_difference(contacted, control)
    assert difference.excludes_zero()
    words = f"uplift +4.1 points [{100 * difference.low:.1f}, {100 * difference.high:.1f}]"
    assert verdict(difference, contacted, control, min_customers=100) == words
    same = rate_difference(Group(1_000, 300), Group(1_000, 290))
    assert verdict(same, Group(1_000, 300), Group(1_000, 290), 100) == "no detectable effect"
    assert verdict(same, Group(1_000, 300), Group(70, 20), 150) == (
        "too few customers: 70 in control, at least 150 needed"
    )


def test_sample_ratio_p_value_by_hand_and_against_scipy():
    assert sample_ratio_p(10, 100, 0.1) == pytest.approx(1.0)
    # 20 of 100 where 10 were due: chi2 = 10^2/10 + 10^2/90.
    flagged = sample_ratio_p(20, 100, 0.1)
    assert flagged == pytest.approx(stats.chi2.sf(100 / 10 + 100 / 90, 1)) == pytest.approx(0.000858, abs=1e-6)
    assert flagged < SAMPLE_RATIO_ALERT
    assert sample_ratio_p(517, 5_000, 0.1) == pytest.approx(stats.chisquare([517, 4_483], [500, 4_500]).pvalue)
    assert sample_ratio_p(0, 0, 0.1) is None
    for control, customers, share in ((1, 10, 0.0), (1, 10, 1.0), (11, 10, 0.1)):
        with pytest.raises(ValueError):
            sample_ratio_p(control, customers, share)


def test_population_stability_by_hand():
    # shares .5 .3 .2 -> .3 .3 .4: (-.2) ln(.3/.5) + 0 + .2 ln(.4/.2)
    assert population_stability([50, 30, 20], [30, 30, 40]) == pytest.approx(
        -0.2 * math.log(0.6) + 0.2 * math.log(2.0)
    )
    assert population_stability([50, 30, 20], [5, 3, 2]) == pytest.approx(0.0)


def test_population_stability_floors_an_empty_bin_at_epsilon():
    # shares 1, 0 -> .5, .5 with the empty reference bin at 1e-4: .5 ln 2 + (.5 - 1e-4) ln(.5 / 1e-4)
    assert PSI_EPSILON == 1e-4
    assert population_stability([100, 0], [50, 50]) == pytest.approx(4.604318, abs=1e-6)


def test_a_constant_feature_has_one_bin_and_no_drift():
    assert bin_edges([3.0] * 9) == [3.0]
    assert population_stability([1_000], [37]) == 0.0


def test_population_stability_without_values_or_with_other_bins():
    assert population_stability([0, 0], [1, 2]) is None
    assert population_stability([1, 2], [0, 0]) is None
    with pytest.raises(ValueError):
        population_stability([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        population_stability([1, -2], [1, 2])


def test_bin_edges_drop_ties_and_missing_quantiles():
    assert bin_edges([2.0, 1.0, 1.0, None, float("nan"), 3.0]) == [1.0, 2.0, 3.0]
    assert bin_edges([]) == []


@pytest.mark.parametrize(
    ("reference", "current"),
    [([10, 20, 70], [30, 30, 40]), ([1, 0, 0], [0, 0, 1]), ([5, 5], [5, 5]), ([0, 3, 9, 1], [4, 0, 2, 2])],
)
def test_js_distance_matches_scipy(reference, current):
    assert js_distance(reference, current) == pytest.approx(jensenshannon(reference, current, base=2), abs=1e-12)


def test_js_distance_bounds():
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([3, 1], [6, 2]) == pytest.approx(0.0, abs=1e-12)
    assert js_distance([0, 0], [1, 1]) is None


def test_mean_shift_in_reference_standard_deviations():
    assert mean_shift(10.0, 4.0, 12.0) == 0.5
    assert mean_shift(10.0, 4.0, 4.0) == -1.5
    assert mean_shift(10.0, 0.0, 12.0) is None
    assert mean_shift(10.0, 4.0, None) is None


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, "ok"), (0.0, "ok"), (0.0999, "ok"), (0.1, "watch"), (0.2499, "watch"), (0.25, "act"), (-0.3, "act")],
)
def test_alert_level_at_the_common_psi_thresholds(value, level):
    assert alert_level(value, watch=0.1, act=0.25) == level


def test_alert_level_refuses_thresholds_out_of_order():
    with pytest.raises(ValueError):
        alert_level(0.2, watch=0.3, act=0.2)

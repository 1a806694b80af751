"""Names, plays, reasons and priorities from hand-built profiles (no Spark): ties, weak structure, gaps."""

from __future__ import annotations

import pytest

from segspark.config.settings import DEFAULT_ACTION_RULES, DEFAULT_NAME_RULES, load_config
from segspark.errors import ConfigError
from segspark.maths.naming import (
    FeatureStat,
    SegmentStats,
    describe_top_features,
    level,
    segment_actions,
    segment_names,
)

THRESHOLD = 0.5
CORE = ("recency_days", "frequency", "monetary", "tenure_days")

#: All customers: 100 customers, revenue 10,000, 5,000 of it in the last 365 days.
POPULATION = SegmentStats(
    segment_id=None,
    customers=100,
    revenue=10_000.0,
    value_at_stake=5_000.0,
    features={
        "recency_days": FeatureStat(60.0, 43.0),
        "frequency": FeatureStat(4.0, 3.0),
        "monetary": FeatureStat(100.0, 500.0),
        "tenure_days": FeatureStat(250.0, 200.0),
        "weekend_share": FeatureStat(0.2, 0.1),
        "recent_spend_share": FeatureStat(0.3, 0.25),
    },
)


def profile(segment_id, customers, revenue, at_stake, medians, effects) -> SegmentStats:
    """A segment whose features have the given medians and effect sizes (0 for those not given)."""
    features = {
        f: FeatureStat(mean=medians.get(f, 0.0), median=medians.get(f, 0.0), effect=effects.get(f, 0.0))
        for f in POPULATION.features
    }
    return SegmentStats(segment_id, customers, revenue, at_stake, features)


CHAMPIONS = profile(
    1,
    20,
    6_000.0,
    2_500.0,
    {"recency_days": 5, "monetary": 3_000},
    {
        "recency_days": -1.2,
        "frequency": 1.5,
        "monetary": 1.4,
        "tenure_days": 0.3,
    },
)
LAPSED_LOW = profile(
    2,
    70,
    1_000.0,
    500.0,
    {"recency_days": 300, "monetary": 80},
    {
        "recency_days": 1.5,
        "frequency": -0.6,
        "monetary": -0.9,
        "tenure_days": 0.1,
    },
)
BIG_AT_RISK = profile(
    3,
    10,
    3_000.0,
    2_000.0,
    {"recency_days": 270, "monetary": 1_200},
    {
        "recency_days": 1.0,
        "frequency": 0.2,
        "monetary": 0.8,
    },
)


@pytest.mark.parametrize(
    ("effect", "expected"), [(0.5, "high"), (0.49, "mid"), (-0.5, "low"), (-0.49, "mid"), (0.0, "mid"), (None, None)]
)
def test_levels_at_the_threshold(effect, expected):
    assert level(effect, THRESHOLD) == expected


def test_default_rules_name_the_three_kinds_of_segment():
    names = segment_names([CHAMPIONS, LAPSED_LOW, BIG_AT_RISK], DEFAULT_NAME_RULES, THRESHOLD)
    assert names == {1: "Champions", 2: "Lapsed low-value", 3: "Big spenders at risk"}


def test_plays_reasons_and_priorities_by_value_at_stake():
    actions = segment_actions([CHAMPIONS, LAPSED_LOW, BIG_AT_RISK], POPULATION, DEFAULT_ACTION_RULES, THRESHOLD, 365)
    assert {s: (a.play, a.priority) for s, a in actions.items()} == {
        1: ("upsell", 1),  # 2,500 at stake
        3: ("retain", 2),  # 2,000 at stake
        2: ("deprioritise", 3),  # deprioritised segments come last whatever their value
    }
    # The reason names the figures of the rule's features against all customers', then the shares.
    assert actions[3].reason == (
        "median recency 270 days against 43 days for all customers; "
        "median monetary 1,200 against 500 for all customers; "
        "10% of customers and 30% of revenue; 2,000 of revenue in the last 365 days at stake"
    )
    assert actions[1].reason == (
        "median monetary 3,000 against 500 for all customers; 20% of customers and 60% of revenue; "
        "2,500 of revenue in the last 365 days at stake"
    )


def test_equal_value_at_stake_ranks_by_segment_id():
    a = profile(5, 10, 100.0, 300.0, {}, {"monetary": 1.0})
    b = profile(4, 10, 100.0, 300.0, {}, {"monetary": 1.0})
    actions = segment_actions([a, b], POPULATION, DEFAULT_ACTION_RULES, THRESHOLD, 365)
    assert (actions[4].priority, actions[5].priority) == (1, 2)


def test_each_seeded_play_is_reachable():
    """Promotions for high value (upsell), retention of the at-risk, cross-sell, and the other plays."""
    cases = {
        "upsell": {"monetary": 1.0},
        "retain": {"recency_days": 1.0, "frequency": 1.0},
        "cross_sell": {},
        "win_back": {"recency_days": 1.0},
        "nurture": {"frequency": -1.0},
        "deprioritise": {"recency_days": 1.0, "monetary": -1.0},
    }
    for play, effects in cases.items():
        segment = profile(1, 10, 100.0, 10.0, {}, effects)
        assert segment_actions([segment], POPULATION, DEFAULT_ACTION_RULES, THRESHOLD, 365)[1].play == play


def test_a_tie_is_qualified_by_the_strongest_feature_the_rule_does_not_name():
    weekend = profile(1, 30, 3_000.0, 1.0, {}, {"frequency": 1.0, "weekend_share": 0.9})
    recent = profile(2, 30, 2_000.0, 1.0, {}, {"frequency": 1.2, "recent_spend_share": -0.7})
    names = segment_names([weekend, recent], DEFAULT_NAME_RULES, THRESHOLD)
    assert names == {1: "Loyal regulars, high weekend share", 2: "Loyal regulars, low recent spend share"}


def test_a_tie_the_features_cannot_split_is_ranked_by_value():
    low = profile(1, 10, 1_000.0, 1.0, {}, {"frequency": 1.0})  # 100 per customer
    high = profile(2, 10, 3_000.0, 1.0, {}, {"frequency": 1.0})  # 300 per customer
    names = segment_names([low, high], DEFAULT_NAME_RULES, THRESHOLD)
    assert names == {2: "Loyal regulars (1 of 2 by value)", 1: "Loyal regulars (2 of 2 by value)"}
    assert len(set(names.values())) == 2


def test_weak_structure_gives_value_tiers_not_personas():
    names = segment_names(
        [CHAMPIONS, LAPSED_LOW, BIG_AT_RISK],
        DEFAULT_NAME_RULES,
        THRESHOLD,
        weak=True,
        weak_name="Value tier {tier} of {tiers}",
    )
    # Revenue per customer: segment 3 300, segment 1 300 (tie: lower id first), segment 2 about 14.
    assert names == {1: "Value tier 1 of 3", 3: "Value tier 2 of 3", 2: "Value tier 3 of 3"}


def test_a_rule_on_a_feature_the_profile_lacks_never_matches():
    rules = load_config(
        env=None,
        flags={
            "profile": {
                "names": [{"name": "Night owls", "when": {"evening_share": "high"}}, {"name": "Everyone", "when": {}}]
            }
        },
    ).profile.names
    assert segment_names([CHAMPIONS], rules, THRESHOLD) == {1: "Everyone"}


def test_names_are_the_same_whatever_the_order_of_the_profiles():
    forward = segment_names([CHAMPIONS, LAPSED_LOW, BIG_AT_RISK], DEFAULT_NAME_RULES, THRESHOLD)
    backward = segment_names([BIG_AT_RISK, LAPSED_LOW, CHAMPIONS], DEFAULT_NAME_RULES, THRESHOLD)
    assert forward == backward


def test_top_features_in_words():
    assert describe_top_features(BIG_AT_RISK, POPULATION, 2) == [
        "recency high (+1.0 sd): median 270 days against 43 days",
        "monetary high (+0.8 sd): median 1,200 against 500",
    ]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"names": [{"name": "A", "when": {"monetary": "high"}}]}, "the last profile.names rule must have an empty"),
        ({"actions": [{"play": "upsell", "when": {"monetary": "high"}}]}, "the last profile.actions rule"),
        ({"actions": [{"play": "spam", "when": {}}]}, "profile.actions"),
        ({"names": [{"name": "A", "when": {"monetary": "huge"}}, {"name": "B", "when": {}}]}, "profile.names"),
        ({"weak_name": "Tier"}, "must contain {tier}"),
        ({"weak_name": "Tier {tier} {x}"}, "may use only {tier} and {tiers}"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_config(env=None, flags={"profile": section})

"""Names, plays and priorities of segments, from their profiles by the ordered rules in config.

Pure Python on K small records (one per segment, see :mod:`segspark.stages.profile.segment_stats`): no Spark here, so
the rules can be tested on hand-built profiles.

Definitions
-----------
effect size
    A feature's segment mean minus its population mean, in population standard deviations, on the model's scale
    (log for the columns in ``model.log_features``). None when the population does not vary.
level
    ``high`` when the effect size is at least ``profile.level_threshold``, ``low`` when at most minus it, ``mid``
    otherwise. A rule may also ask for ``not_high`` or ``not_low``; a rule naming a feature the profile lacks
    (or one that does not vary) never matches.
name
    The first ``profile.names`` rule whose ``when`` matches. Segments given the same name are told apart by the
    strongest feature their rule does not already name ("Loyal regulars, high weekend share"); if that does not
    separate them, by their rank on revenue per customer ("Loyal regulars (2 of 3 by value)"). A model whose
    structure is weak gets ``profile.weak_name`` tiers by revenue per customer instead: bands of one population
    are not personas.
value at stake
    The segment's customers' purchase revenue in the ``profile.lookback_days`` before the snapshot: what is
    exposed if they lapse.
priority
    1 = the largest value at stake; segments whose play is ``deprioritise`` come after all the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segspark.config.settings import ActionRule, NameRule
from segspark.errors import InternalError
from segspark.maths.numbers import number, percent

__all__ = [
    "Action",
    "FeatureStat",
    "SegmentStats",
    "describe_top_features",
    "feature_label",
    "format_figure",
    "level",
    "matches",
    "ranked_features",
    "reason",
    "segment_actions",
    "segment_names",
]

#: Features whose figures are days.
_DAY_FEATURES = frozenset({"recency_days", "tenure_days", "avg_days_between_purchases", "std_days_between_purchases"})
#: Shares, written as percentages.
_SHARE_SUFFIX = ("_share", "_rate")


@dataclass(frozen=True)
class FeatureStat:
    """One feature's figures in one segment (or in all customers): mean, median and effect size."""

    mean: float | None
    median: float | None
    #: Standardised difference from the population (None for the population itself, or when it does not vary).
    effect: float | None = None


@dataclass(frozen=True)
class SegmentStats:
    """The figures the rules read for one segment (or, with ``segment_id`` None, for all customers)."""

    segment_id: int | None
    customers: int
    #: Sum of the customers' monetary (lifetime purchase revenue).
    revenue: float
    #: Purchase revenue of the lookback window.
    value_at_stake: float
    features: Mapping[str, FeatureStat]

    @property
    def id(self) -> int:
        """The segment's id; InternalError for the population's stats (id None), which are no segment."""
        if self.segment_id is None:
            raise InternalError("the population's stats (segment_id None) were passed where a segment's are read")
        return self.segment_id


@dataclass(frozen=True)
class Action:
    """A segment's play (a ``profile.actions`` rule's ``play``), the figures behind it in words, and its priority
    (1 = act first)."""

    play: str
    reason: str
    priority: int


def level(effect: float | None, threshold: float) -> str | None:
    """``high``, ``low`` or ``mid``; None when the feature has no effect size."""
    if effect is None or math.isnan(effect):
        return None
    if effect >= threshold:
        return "high"
    if effect <= -threshold:
        return "low"
    return "mid"


def _meets(wanted: str, found: str | None) -> bool:
    if found is None:
        return False
    if wanted == "not_high":
        return found != "high"
    if wanted == "not_low":
        return found != "low"
    return wanted == found


def matches(when: Mapping[str, str], profile: SegmentStats, threshold: float) -> bool:
    """Whether every feature ``when`` names has the wanted level in ``profile``."""
    return all(
        _meets(wanted, level(profile.features[f].effect, threshold) if f in profile.features else None)
        for f, wanted in when.items()
    )


def ranked_features(profile: SegmentStats) -> list[str]:
    """Features by |effect size|, largest first (ties by name); features without one last."""
    return sorted(
        profile.features,
        key=lambda f: (profile.features[f].effect is None, -abs(profile.features[f].effect or 0.0), f),
    )


def feature_label(feature: str) -> str:
    """``recency_days`` -> ``recency``, ``weekend_share`` -> ``weekend share``."""
    base = feature.removesuffix("_days") if feature in ("recency_days", "tenure_days") else feature
    return base.replace("_", " ")


def format_figure(feature: str, value: float | None) -> str:
    """A figure in the feature's own unit: ``270 days``, ``35%``, ``12,345``, ``3.4``."""
    if value is None or math.isnan(value):
        return "n/a"
    if feature.endswith(_SHARE_SUFFIX):
        return percent(value, 0)
    text = number(value)
    return f"{text} days" if feature in _DAY_FEATURES else text


def _value_order(profiles: Sequence[SegmentStats]) -> list[SegmentStats]:
    """Segments by revenue per customer, highest first (ties by segment id)."""
    return sorted(profiles, key=lambda p: (-(p.revenue / p.customers if p.customers else 0.0), p.id))


def segment_names(
    profiles: Sequence[SegmentStats],
    rules: Sequence[NameRule],
    threshold: float,
    *,
    weak: bool = False,
    weak_name: str = "Value tier {tier} of {tiers}",
) -> dict[int, str]:
    """Segment id -> a name unique within the model (see the module docstring)."""
    if weak:
        ordered = _value_order(profiles)
        return {p.id: weak_name.format(tier=i, tiers=len(ordered)) for i, p in enumerate(ordered, start=1)}
    chosen: dict[int, NameRule] = {}
    for p in profiles:
        chosen[p.id] = next(r for r in rules if matches(r.when, p, threshold))  # the last rule matches all
    names: dict[int, str] = {}
    by_name: dict[str, list[SegmentStats]] = {}
    for p in sorted(profiles, key=lambda p: p.id):
        by_name.setdefault(chosen[p.id].name, []).append(p)
    for name, group in by_name.items():
        if len(group) == 1:
            names[group[0].id] = name
            continue
        qualified = {p.id: _qualifier(p, chosen[p.id], threshold) for p in group}
        texts = list(qualified.values())
        if all(texts) and len(set(texts)) == len(texts):
            names.update({s: f"{name}, {q}" for s, q in qualified.items()})
        else:
            ordered = _value_order(group)
            names.update({p.id: f"{name} ({i} of {len(ordered)} by value)" for i, p in enumerate(ordered, 1)})
    taken = list(names.values())
    if len(set(taken)) != len(taken):  # a qualified name equal to another rule's plain name
        return {s: f"{n} (segment {s})" if taken.count(n) > 1 else n for s, n in names.items()}
    return names


def _qualifier(profile: SegmentStats, rule: NameRule, threshold: float) -> str | None:
    """``high weekend share``: the strongest high or low feature the rule does not name."""
    for feature in ranked_features(profile):
        found = level(profile.features[feature].effect, threshold)
        if feature not in rule.when and found in ("high", "low"):
            return f"{found} {feature_label(feature)}"
    return None


def reason(
    profile: SegmentStats,
    population: SegmentStats,
    features: Sequence[str],
    lookback_days: int,
) -> str:
    """The figures behind a play, in words: medians against all customers', shares, value at stake."""
    parts = [
        f"median {feature_label(f)} {format_figure(f, profile.features[f].median)} against "
        f"{format_figure(f, population.features[f].median)} for all customers"
        for f in features
        if f in profile.features and f in population.features
    ]
    customer_share = profile.customers / population.customers if population.customers else 0.0
    revenue_share = profile.revenue / population.revenue if population.revenue else 0.0
    parts.append(f"{customer_share:.0%} of customers and {revenue_share:.0%} of revenue")
    parts.append(f"{number(profile.value_at_stake)} of revenue in the last {lookback_days} days at stake")
    return "; ".join(parts)


def segment_actions(
    profiles: Sequence[SegmentStats],
    population: SegmentStats,
    rules: Sequence[ActionRule],
    threshold: float,
    lookback_days: int,
) -> dict[int, Action]:
    """Segment id -> its play, the reason in figures, and its priority (see the module docstring)."""
    plays: dict[int, tuple[str, list[str]]] = {}
    for p in profiles:
        rule = next(r for r in rules if matches(r.when, p, threshold))  # the last rule matches all
        shown = list(rule.when) or ranked_features(p)[:2]
        plays[p.id] = (rule.play, shown)
    ordered = sorted(
        profiles, key=lambda p: (plays[p.id][0] == "deprioritise", -p.value_at_stake, p.id)
    )
    return {
        p.id: Action(
            play=plays[p.id][0],
            reason=reason(p, population, plays[p.id][1], lookback_days),
            priority=rank,
        )
        for rank, p in enumerate(ordered, start=1)
    }


def describe_top_features(profile: SegmentStats, population: SegmentStats, count: int) -> list[str]:
    """``recency high (+1.8 sd): median 270 days against 43 days`` for the ``count`` strongest features."""
    lines = []
    for f in ranked_features(profile)[:count]:
        stat = profile.features[f]
        if stat.effect is None:
            continue
        direction = "high" if stat.effect > 0 else "low"
        lines.append(
            f"{feature_label(f)} {direction} ({stat.effect:+.1f} sd): median {format_figure(f, stat.median)} "
            f"against {format_figure(f, population.features[f].median)}"
        )
    return lines

"""Campaign lift with its uncertainty: contacted against control, from each group's totals.

Pure maths (no Spark): the profile stage aggregates each group of a segment to a :class:`Group` (customers,
purchasers, the sum and the sum of squares of each customer's spend) and calls these functions on the driver,
one call per segment and one for all segments together.

- The difference in purchase rates gets Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation
  for the difference between independent proportions", method 10: each rate's Wilson score interval, combined
  by the square-and-add rule). It stays inside [-1, 1] and keeps its coverage at rates near 0 or 1 and with
  few customers, where the textbook Wald interval does not. Its p-value is the two-sided pooled z test.
- The difference in spend per customer gets Welch's t interval (unequal variances, Welch-Satterthwaite degrees
  of freedom) and its two-sided p-value.
- The sample-ratio check is the chi-square goodness-of-fit test (1 degree of freedom) of the observed control
  count against the configured holdout share: a tiny p-value means the split did not happen as configured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

__all__ = [
    "SAMPLE_RATIO_ALERT",
    "Group",
    "Interval",
    "rate_difference",
    "sample_ratio_p",
    "spend_difference",
    "verdict",
    "wilson_interval",
]

#: Below this sample-ratio p-value the split is flagged: with thousands of campaigns a real split still falls
#: below it only once in a thousand.
SAMPLE_RATIO_ALERT = 0.001


@dataclass(frozen=True)
class Group:
    """One group of a campaign (contacted or control) as totals over its customers.

    ``spend`` and ``spend_squares`` are the sum and the sum of squares of each customer's spend in the
    measured window (zero for a customer who did not buy).
    """

    customers: int
    purchasers: int
    spend: float = 0.0
    spend_squares: float = 0.0

    @property
    def rate(self) -> float:
        """Purchasers / customers."""
        return self.purchasers / self.customers

    @property
    def mean_spend(self) -> float:
        """Spend per customer."""
        return self.spend / self.customers

    @property
    def spend_variance(self) -> float:
        """Sample variance (n - 1) of the customers' spend; never negative (rounding of the two sums)."""
        n = self.customers
        return max(0.0, (self.spend_squares - n * self.mean_spend**2) / (n - 1))


@dataclass(frozen=True)
class Interval:
    """A difference (contacted minus control), its confidence interval and the two-sided p-value of no
    difference."""

    estimate: float
    low: float
    high: float
    p_value: float

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero (a detectable difference)."""
        return self.low > 0 or self.high < 0


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    return float(stats.norm.ppf(0.5 + level / 2))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (without continuity correction).

    Raises
    ------
    ValueError
        ``n`` is not positive or ``successes`` is outside [0, n].
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"a proportion needs 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = _z(level)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def rate_difference(contacted: Group, control: Group, level: float = 0.95) -> Interval | None:
    """Contacted minus control purchase rate with Newcombe's hybrid score interval; None when a group is
    empty."""
    if contacted.customers == 0 or control.customers == 0:
        return None
    p1, p2 = contacted.rate, control.rate
    l1, u1 = wilson_interval(contacted.purchasers, contacted.customers, level)
    l2, u2 = wilson_interval(control.purchasers, control.customers, level)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    n1, n2 = contacted.customers, control.customers
    pooled = (contacted.purchasers + control.purchasers) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    # Everyone or no one bought in both groups: no difference can be seen, and none is.
    p_value = 1.0 if se == 0 else float(2 * stats.norm.sf(abs(d) / se))
    return Interval(d, low, high, p_value)


def spend_difference(contacted: Group, control: Group, level: float = 0.95) -> Interval | None:
    """Contacted minus control spend per customer with Welch's t interval; None when a group has fewer than
    two customers, or when neither group's spend varies (no standard error)."""
    if contacted.customers < 2 or control.customers < 2:
        return None
    _z(level)  # checks the level
    v1, v2 = contacted.spend_variance / contacted.customers, control.spend_variance / control.customers
    se = math.sqrt(v1 + v2)
    if se == 0:
        return None
    d = contacted.mean_spend - control.mean_spend
    df = (v1 + v2) ** 2 / (v1**2 / (contacted.customers - 1) + v2**2 / (control.customers - 1))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    return Interval(d, d - t * se, d + t * se, float(2 * stats.t.sf(abs(d) / se, df)))


def sample_ratio_p(control: int, customers: int, holdout_share: float) -> float | None:
    """Chi-square p-value of ``control`` of ``customers`` against the configured ``holdout_share``; None when
    there are no customers.

    Raises
    ------
    ValueError
        ``holdout_share`` is not strictly between 0 and 1, or ``control`` is outside [0, customers].
    """
    if not 0 < holdout_share < 1:
        raise ValueError(f"holdout share must be between 0 and 1, got {holdout_share}")
    if not 0 <= control <= customers:
        raise ValueError(f"control must be between 0 and the customers, got {control} of {customers}")
    if customers == 0:
        return None
    expected = (customers * holdout_share, customers * (1 - holdout_share))
    observed = (control, customers - control)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return float(stats.chi2.sf(chi2, 1))


def verdict(difference: Interval | None, contacted: Group, control: Group, min_customers: int) -> str:
    """The lift in words: the uplift in points with its interval when the interval excludes zero, ``no
    detectable effect`` when it does not, or why no judgement is made (too few customers in a group)."""
    for name, group in (("control", control), ("contacted", contacted)):
        if group.customers < min_customers:
            return f"too few customers: {group.customers:,} in {name}, at least {min_customers:,} needed"
    if difference is None:
        return "no estimate"
    if not difference.excludes_zero():
        return "no detectable effect"
    return (
        f"uplift {100 * difference.estimate:+.1f} points "
        f"[{100 * difference.low:.1f}, {100 * difference.high:.1f}]"
    )

"""Drift of a snapshot against the model's training snapshot, from binned counts.

Pure maths (no Spark): the monitor stage counts each feature's values into bins fixed at training time and
calls these functions on the driver with K x bins numbers.

- **Bins**: the inner edges are the training snapshot's deciles of the feature as the model sees it, saved with
  the model so every later snapshot is binned the same way. Ties collapse (a feature with few distinct values
  has fewer bins; a constant one has one). A value ``v`` falls in bin ``i`` = the number of edges strictly below
  it, so bin 0 is ``(-inf, e0]`` and the last ``(e_last, inf)``; missing values are counted apart.
- **Population stability index** (PSI): ``sum((a - e) * ln(a / e))`` over the bins' shares, the reference's
  ``e`` and the snapshot's ``a``. An empty bin would make it infinite, so every share is floored at
  :data:`PSI_EPSILON` first (the bins are then no longer exactly normalised; the floor is far below any
  threshold's reach). Read with the common rule of thumb: under 0.1 stable, 0.1-0.25 a shift to watch, over 0.25
  a shift to act on.
- **Jensen-Shannon distance** for categorical features (and the segment shares): the square root of the JS
  divergence in bits, so it lies in [0, 1] and needs no smoothing.
- **Mean shift** in training standard deviations, and the change in the share of missing values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ALERT_LEVELS",
    "PSI_EPSILON",
    "alert_level",
    "bin_edges",
    "js_distance",
    "mean_shift",
    "population_stability",
    "shares",
]

#: The floor of a bin's share in the PSI (an empty bin would otherwise give an infinite index).
PSI_EPSILON = 1e-4

#: The alert levels, mildest first.
ALERT_LEVELS = ("ok", "watch", "act")


def bin_edges(deciles: Sequence[float | None]) -> list[float]:
    """The inner bin edges from a feature's reference quantiles: sorted, without ties or missing values."""
    return sorted({float(q) for q in deciles if q is not None and not math.isnan(q)})


def shares(counts: Sequence[int]) -> np.ndarray | None:
    """Each bin's share of the counts; None when there is nothing counted."""
    array = np.asarray(counts, dtype=float)
    if array.ndim != 1 or (array < 0).any():
        raise ValueError(f"counts must be one row of non-negative numbers, got {list(counts)}")
    total = array.sum()
    return None if total == 0 else array / total


def _paired_shares(reference: Sequence[int], current: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    if len(reference) != len(current):
        raise ValueError(f"reference and current need the same bins, got {len(reference)} and {len(current)}")
    e, a = shares(reference), shares(current)
    return None if e is None or a is None else (e, a)


def population_stability(
    reference: Sequence[int], current: Sequence[int], epsilon: float = PSI_EPSILON
) -> float | None:
    """PSI of the current counts against the reference counts over the same bins; None when either side has
    no value."""
    pair = _paired_shares(reference, current)
    if pair is None:
        return None
    e, a = (np.maximum(s, epsilon) for s in pair)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(reference: Sequence[int], current: Sequence[int]) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors over the same categories; None
    when either side has no value."""
    pair = _paired_shares(reference, current)
    if pair is None:
        return None
    p, q = pair
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        inside = x > 0  # 0 * log(0 / m) is 0
        return float(np.sum(x[inside] * np.log2(x[inside] / m[inside])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def mean_shift(reference_mean: float, reference_std: float | None, mean: float | None) -> float | None:
    """(mean - reference mean) / reference standard deviation; None when the reference does not vary or there is
    no current mean."""
    if mean is None or reference_std is None or not reference_std > 0:
        return None
    return (mean - reference_mean) / reference_std


def alert_level(value: float | None, watch: float, act: float) -> str:
    """``ok``, ``watch`` (value >= watch) or ``act`` (value >= act); a missing value is ``ok`` (nothing to
    compare). Compares the magnitude, so a mean shift of -3 standard deviations alerts like +3.

    Raises
    ------
    ValueError
        The thresholds are not 0 <= watch <= act.
    """
    if not 0 <= watch <= act:
        raise ValueError(f"alert thresholds need 0 <= watch <= act, got watch {watch}, act {act}")
    if value is None:
        return "ok"
    size = abs(value)
    return "act" if size >= act else "watch" if size >= watch else "ok"

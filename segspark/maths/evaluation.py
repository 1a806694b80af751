"""Clustering evidence and the rule that chooses K.

Everything here works on small, already collected numbers: a bounded silhouette sample, K x K contingency
tables, K cluster statistics, one row per (algorithm, K). The distributed passes that produce them live in
:mod:`segspark.stages.train.sweep` (per candidate) and :mod:`segspark.stages.train.stage`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from segspark.config.settings import ModelSettings

__all__ = [
    "MIN_SAMPLED_FOR_SILHOUETTE",
    "Candidate",
    "ClusterStats",
    "SegmentEvidence",
    "adjusted_rand_index",
    "calinski_harabasz",
    "choose",
    "davies_bouldin",
    "elbow_knee",
    "euclidean_silhouette",
    "silhouette_samples",
    "small_segments",
    "structure_of",
]

#: Slack for comparing a difference of two scores with a threshold (0.60 - 0.50 < 0.10 in floating point).
_EPSILON = 1e-9
#: Rows of the silhouette sample compared at once: bounds driver memory to chunk x n distances.
_SILHOUETTE_CHUNK = 512


def silhouette_samples(points: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Each point's silhouette with Euclidean distance, as scikit-learn's ``silhouette_samples`` defines it.

    A point alone in its cluster scores 0. Returns None when fewer than two clusters are present.
    """
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels)
    uniq, codes = np.unique(labels, return_inverse=True)
    n_clusters = len(uniq)
    if n_clusters < 2 or len(points) < 2:
        return None
    sizes = np.bincount(codes, minlength=n_clusters).astype(float)
    one_hot = np.zeros((len(points), n_clusters))
    one_hot[np.arange(len(points)), codes] = 1.0
    scores = np.empty(len(points))
    sq_norms = np.einsum("ij,ij->i", points, points)
    for start in range(0, len(points), _SILHOUETTE_CHUNK):
        block = points[start : start + _SILHOUETTE_CHUNK]
        sq = sq_norms[start : start + len(block), None] + sq_norms[None, :] - 2.0 * block @ points.T
        dist = np.sqrt(np.maximum(sq, 0.0))
        dist[np.arange(len(block)), np.arange(start, start + len(block))] = 0.0
        sums = dist @ one_hot  # block x clusters: summed distance to each cluster's members
        own = codes[start : start + len(block)]
        own_size = sizes[own]
        a = np.where(own_size > 1, sums[np.arange(len(block)), own] / np.maximum(own_size - 1, 1), 0.0)
        mean_other = sums / sizes[None, :]
        mean_other[np.arange(len(block)), own] = np.inf
        b = mean_other.min(axis=1)
        denom = np.maximum(a, b)
        s = np.where(denom > 0, (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
        scores[start : start + len(block)] = np.where(own_size > 1, s, 0.0)
    return scores


def euclidean_silhouette(points: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean silhouette with Euclidean distance, as scikit-learn's ``silhouette_score`` defines it.

    A point alone in its cluster scores 0. Returns None when fewer than two clusters are present.
    """
    scores = silhouette_samples(points, labels)
    return None if scores is None else float(scores.mean())


def adjusted_rand_index(contingency: np.ndarray) -> float:
    """Adjusted Rand index from a contingency table of two labelings (rows: one, columns: the other).

    Identical partitions score 1 (also when both put everyone in one cluster); independent ones about 0.
    """
    table = np.asarray(contingency, dtype=float)
    n = table.sum()

    def pairs(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return x * (x - 1) / 2.0

    sum_cells = pairs(table).sum()
    sum_rows = pairs(table.sum(axis=1)).sum()
    sum_cols = pairs(table.sum(axis=0)).sum()
    total = n * (n - 1) / 2.0  # pairs of all n points
    expected = sum_rows * sum_cols / total if total else 0.0
    maximum = (sum_rows + sum_cols) / 2.0
    if maximum == expected:  # both labelings trivial (one cluster, or all singletons)
        return 1.0
    return float((sum_cells - expected) / (maximum - expected))


@dataclass(frozen=True)
class ClusterStats:
    """Per-cluster statistics from one distributed pass: sizes, empirical means, and distances to them."""

    counts: np.ndarray  # (k,)
    means: np.ndarray  # (k, d) empirical mean of each cluster's members
    mean_distance: np.ndarray  # (k,) mean Euclidean distance of members to their cluster's mean
    within_ss: float  # sum of squared distances of members to their cluster's mean


def davies_bouldin(stats: ClusterStats) -> float | None:
    """Davies-Bouldin index (scikit-learn's definition); None with fewer than two clusters."""
    k = len(stats.counts)
    if k < 2:
        return None
    diff = stats.means[:, None, :] - stats.means[None, :, :]
    separation = np.sqrt((diff**2).sum(axis=2))
    spread = stats.mean_distance[:, None] + stats.mean_distance[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(separation > 0, spread / np.where(separation > 0, separation, 1.0), np.inf)
    np.fill_diagonal(ratio, -np.inf)
    worst = ratio.max(axis=1)
    if np.isinf(worst).any():
        return None  # two clusters share a centre: the index is undefined
    return float(worst.mean())


def calinski_harabasz(stats: ClusterStats) -> float | None:
    """Calinski-Harabasz index (scikit-learn's definition); None when undefined."""
    k = len(stats.counts)
    n = float(stats.counts.sum())
    if k < 2 or n <= k:
        return None
    overall = (stats.counts[:, None] * stats.means).sum(axis=0) / n
    between = float((stats.counts * ((stats.means - overall) ** 2).sum(axis=1)).sum())
    if stats.within_ss == 0:
        return math.inf if between > 0 else None
    return between * (n - k) / (stats.within_ss * (k - 1))


def elbow_knee(ks: list[int], costs: list[float]) -> int | None:
    """The knee of a decreasing cost curve: the K farthest below the chord from the first to the last point.

    Both axes are scaled to [0, 1] first (the Kneedle idea), so the answer does not depend on units.
    Returns None with fewer than three points or a flat curve.
    """
    if len(ks) < 3:
        return None
    x = np.asarray(ks, dtype=float)
    y = np.asarray(costs, dtype=float)
    if y[0] == y[-1]:
        return None
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y[-1]) / (y[0] - y[-1])
    gap = (1.0 - xn) - yn  # chord from (0, 1) to (1, 0), minus the curve
    best = int(np.argmax(gap))
    # Rounding leaves gaps of ~1e-16 on a straight line: only a real bend counts.
    return int(ks[best]) if gap[best] > 1e-9 else None


@dataclass(frozen=True)
class SegmentEvidence:
    """One segment of a candidate fit, as the sweep saw it."""

    rank: int  # 1 = the largest segment of the fit
    share: float  # of the customers the candidate was fitted on
    silhouette: float | None  # mean silhouette of its members in the silhouette sample; None when none was sampled
    sampled: int  # its members in the silhouette sample
    cluster: int = -1  # the fit's own cluster index (its row in the candidate's centres)
    #: What sets it apart, e.g. "monetary +3.1 sd, frequency +2.4 sd" (filled in by the train stage).
    profile: str = ""


#: A small segment needs at least this many members in the silhouette sample for its silhouette to count.
MIN_SAMPLED_FOR_SILHOUETTE = 10


def small_segments(
    c: Candidate, settings: ModelSettings
) -> tuple[list[SegmentEvidence], list[SegmentEvidence]]:
    """The candidate's segments under ``min_segment_share``, split into (distinct groups, fragments).

    A small segment is a distinct group when it holds at least ``min_distinct_segment_share`` of customers and
    its own mean silhouette (on at least :data:`MIN_SAMPLED_FOR_SILHOUETTE` sampled members) is at least the
    candidate's overall silhouette and at least ``min_silhouette``: its members sit closer to each other than to
    any other segment, as well as the typical customer does. Any other small segment is a fragment.
    """
    distinct: list[SegmentEvidence] = []
    fragments: list[SegmentEvidence] = []
    for seg in c.segments:
        if seg.share >= settings.min_segment_share:
            continue
        separated = (
            seg.silhouette is not None
            and c.silhouette is not None
            and seg.sampled >= MIN_SAMPLED_FOR_SILHOUETTE
            and seg.silhouette >= c.silhouette - _EPSILON
            and seg.silhouette >= settings.min_silhouette - _EPSILON
        )
        (distinct if separated and seg.share >= settings.min_distinct_segment_share else fragments).append(seg)
    return distinct, fragments


def _describe_segment(seg: SegmentEvidence) -> str:
    silhouette = f"silhouette {seg.silhouette:.2f}" if seg.silhouette is not None else "no sampled member"
    profile = f"; {seg.profile}" if seg.profile else ""
    return f"segment {seg.rank} by size: {seg.share:.1%} of customers, {silhouette}{profile}"


@dataclass(frozen=True)
class Candidate:
    """The evidence about one (algorithm, K) and, after :func:`choose`, its verdict."""

    algorithm: str
    k: int
    silhouette: float | None
    reference_silhouette: float | None
    stability: float | None
    smallest_share: float
    segments_found: int
    #: Every segment of the kept fit, largest first; empty when only the smallest share is known.
    segments: tuple[SegmentEvidence, ...] = ()
    is_elbow: bool = False
    structure: str = ""
    is_chosen: bool = False
    reason: str = ""


def structure_of(c: Candidate, settings: ModelSettings) -> tuple[str, list[str]]:
    """``strong``, ``moderate`` or ``weak``, with the plain-language findings that make it weak."""
    problems = []
    if c.silhouette is None:
        problems.append("the silhouette is undefined (fewer than two segments in the sample)")
    else:
        if c.silhouette < settings.min_silhouette:
            problems.append(f"silhouette {c.silhouette:.3f} is below {settings.min_silhouette:.3f}")
        if c.reference_silhouette is not None:
            gain = c.silhouette - c.reference_silhouette
            if gain < settings.min_silhouette_gain - _EPSILON:
                problems.append(
                    f"silhouette {c.silhouette:.3f} is only {gain:+.3f} against a structureless reference "
                    f"({c.reference_silhouette:.3f}; at least {settings.min_silhouette_gain:+.3f} needed)"
                )
    if c.stability is not None and c.stability < settings.min_stability:
        problems.append(
            f"assignments change with the seed (mean adjusted Rand index {c.stability:.3f} < "
            f"{settings.min_stability:.3f})"
        )
    if problems:
        return "weak", problems
    assert c.silhouette is not None
    return ("strong" if c.silhouette >= settings.strong_silhouette else "moderate"), []


def _label(c: Candidate) -> str:
    return f"K={c.k} ({c.algorithm})"


def _sil(c: Candidate) -> float:
    return c.silhouette if c.silhouette is not None else -math.inf


def _gain(c: Candidate) -> float:
    """Silhouette minus the structureless reference's; -inf when either is missing."""
    if c.silhouette is None or c.reference_silhouette is None:
        return -math.inf
    return c.silhouette - c.reference_silhouette


def choose(candidates: list[Candidate], settings: ModelSettings) -> list[Candidate]:
    """Mark one candidate chosen and give every candidate its structure and reason.

    The rule (documented in docs/train.md, "Choosing K"):

    1. Eligible: every requested segment is non-empty, each holds at least ``min_segment_share`` of customers
       or is a distinct small group (:func:`small_segments`), and (when measured) the mean adjusted Rand index
       across seeds is at least ``min_stability``. If nothing is eligible, the stability requirement is
       dropped, then the size one.
    2. Among eligible candidates, those within ``silhouette_tolerance`` of the best Euclidean silhouette are
       equally good. Of those, the one whose silhouette beats its structureless reference by the most wins
       (it is the least likely to be a cut of one blob), then an elbow of the WSSSE curve, then the higher
       silhouette, the smaller K and the algorithm listed first.
    3. ``force_k`` overrides the choice (the best candidate at that K); the automatic pick is still named.
    4. Every candidate gets a structure verdict; a weak chosen one says so in its reason.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    order: dict[str, int] = {a: i for i, a in enumerate(settings.algorithms)}

    def tiebreak(c: Candidate) -> tuple[float, int, int]:
        return (-_sil(c), c.k, order.get(c.algorithm, len(order)))

    def size_ok(c: Candidate) -> bool:
        if c.segments_found != c.k:
            return False
        if not c.segments:
            return c.smallest_share >= settings.min_segment_share
        return not small_segments(c, settings)[1]

    def stable_ok(c: Candidate) -> bool:
        return c.stability is None or c.stability >= settings.min_stability

    relaxed = ""
    eligible = [c for c in candidates if size_ok(c) and stable_ok(c)]
    if not eligible:
        eligible = [c for c in candidates if size_ok(c)]
        relaxed = "no candidate met every rule, so stability was not required"
    if not eligible:
        eligible = list(candidates)
        relaxed = "no candidate met the segment-size rule, so every candidate was considered"
    best_sil = max(_sil(c) for c in eligible)
    near = [c for c in eligible if _sil(c) >= best_sil - settings.silhouette_tolerance - _EPSILON]
    if best_sil > -math.inf:
        auto = min(near, key=lambda c: (-round(_gain(c), 9), not c.is_elbow, *tiebreak(c)))
    else:
        auto = min(eligible, key=lambda c: c.k)

    chosen = auto
    if settings.force_k is not None:
        at_k = [c for c in candidates if c.k == settings.force_k]
        chosen = min(at_k, key=tiebreak)

    out = []
    for c in candidates:
        structure, problems = structure_of(c, settings)
        if c is chosen:
            reason = _chosen_reason(c, auto, structure, problems, best_sil, candidates, relaxed, settings)
        else:
            reason = _rejected_reason(c, chosen, auto, eligible, near, settings)
        out.append(replace(c, structure=structure, is_chosen=c is chosen, reason=reason))
    return out


def _chosen_reason(
    c: Candidate,
    auto: Candidate,
    structure: str,
    problems: list[str],
    best_sil: float,
    candidates: list[Candidate],
    relaxed: str,
    settings: ModelSettings,
) -> str:
    parts = []
    if settings.force_k is not None:
        parts.append(f"Chosen: {_label(c)} because model.force_k is {settings.force_k}")
        if auto is not c:
            parts.append(f"the evidence alone would choose {_label(auto)}")
    else:
        if c.silhouette is None:
            why = f"Chosen: {_label(c)}"
        elif c.silhouette >= best_sil:
            why = f"Chosen: {_label(c)}: best sampled Euclidean silhouette ({c.silhouette:.3f})"
        else:
            why = (
                f"Chosen: {_label(c)}: sampled Euclidean silhouette {c.silhouette:.3f}, within "
                f"{settings.silhouette_tolerance:.2f} of the best ({best_sil:.3f}), with the largest gain over a "
                f"structureless reference ({_gain(c):+.3f})"
            )
        why += (
            f", among candidates whose segments each hold at least {settings.min_segment_share:.0%} of customers "
            f"or are distinct small groups, and whose assignments are stable across seeds"
        )
        parts.append(why)
        distinct, _ = small_segments(c, settings)
        for seg in distinct:
            parts.append(
                f"{_describe_segment(seg)}: a distinct group, kept although under {settings.min_segment_share:.0%} "
                f"(its silhouette is at least the overall {c.silhouette:.2f})"
            )
        knees = [o.k for o in candidates if o.is_elbow and o.algorithm == c.algorithm]
        if c.is_elbow:
            parts.append("it is also the elbow of the WSSSE curve")
        elif knees:
            parts.append(f"the elbow of the WSSSE curve is at K={knees[0]}")
        if relaxed:
            parts.append(relaxed)
    if structure == "weak":
        parts.append(
            "WEAK STRUCTURE: " + "; ".join(problems) + ". These segments cut a continuum rather than "
            "separate distinct groups: use them as bands (e.g. value tiers), not as customer types"
        )
    else:
        gain = (
            f", {c.silhouette - c.reference_silhouette:+.3f} against a structureless reference"
            if c.reference_silhouette is not None and c.silhouette is not None
            else ""
        )
        stab = f", stability {c.stability:.2f}" if c.stability is not None else ""
        parts.append(f"Structure: {structure} (silhouette {c.silhouette:.3f}{gain}{stab})")
    return "; ".join(parts) + "."


def _rejected_reason(
    c: Candidate,
    chosen: Candidate,
    auto: Candidate,
    eligible: list[Candidate],
    near: list[Candidate],
    settings: ModelSettings,
) -> str:
    if settings.force_k is not None and c is auto:
        return f"Not chosen: the evidence favours it, but model.force_k is {settings.force_k}."
    if c.segments_found < c.k:
        return f"Not chosen: only {c.segments_found} of {c.k} segments are non-empty."
    if c.segments:
        _, fragments = small_segments(c, settings)
        if fragments:
            overall = f"{c.silhouette:.2f}" if c.silhouette is not None else "undefined"
            return (
                "Not chosen: " + "; ".join(_describe_segment(seg) for seg in fragments) + ": a fragment, not a "
                f"distinct group (a segment under {settings.min_segment_share:.0%} of customers counts when it holds "
                f"at least {settings.min_distinct_segment_share:.1%} and its silhouette is at least the overall "
                f"{overall} and {settings.min_silhouette:.2f})."
            )
    elif c.smallest_share < settings.min_segment_share:
        return (
            f"Not chosen: the smallest segment holds {c.smallest_share:.1%} of customers "
            f"(at least {settings.min_segment_share:.0%} required)."
        )
    if c.stability is not None and c.stability < settings.min_stability and c not in eligible:
        return (
            f"Not chosen: assignments change with the seed (mean adjusted Rand index {c.stability:.2f} < "
            f"{settings.min_stability:.2f})."
        )
    if c in near:
        return (
            f"Not chosen: silhouette {_sil(c):.3f} is within {settings.silhouette_tolerance:.2f} of the best, "
            f"but {_label(chosen)} is preferred (larger gain over the reference, then elbow, then smaller K)."
        )
    if c.silhouette is None:
        return "Not chosen: silhouette undefined."
    return f"Not chosen: silhouette {c.silhouette:.3f} is below {_label(chosen)}'s {_sil(chosen):.3f}."

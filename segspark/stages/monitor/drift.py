"""The rows of ``feature_drift`` for one scored snapshot, built on the driver from binned counts (no Spark).

Each row carries the figures of one model feature (or of the segment shares, a new fit's centroid, or the
fit's silhouette) and an alert: the worst level among its figures against ``monitor.thresholds``. The same
:func:`findings` read a row back for the retrain decision, so the table and the decision cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segspark.config.settings import AlertThresholds, DriftThresholds
from segspark.maths.drift import ALERT_LEVELS, alert_level, js_distance, mean_shift, population_stability
from segspark.segmentation.binning import NUMERIC, FeatureBins
from segspark.segmentation.drift_reference import FeatureSummary

__all__ = [
    "CENTROID",
    "FIT",
    "SEGMENTS",
    "Finding",
    "centroid_rows",
    "feature_rows",
    "findings",
    "fit_row",
    "segment_row",
    "worst",
]

#: ``kind`` of the segment-share row, of a new fit's centroid rows, and of the silhouette row.
SEGMENTS = "segments"
CENTROID = "centroid"
FIT = "fit"
#: ``feature`` of the segment-share row and of the silhouette row.
SEGMENT_SHARES = "segment_id"
SILHOUETTE = "silhouette"


@dataclass(frozen=True)
class Finding:
    """One figure of a row at ``watch`` or ``act``, with the threshold it reached."""

    level: str
    label: str
    value: float
    threshold: float
    #: Whether the figure is signed (compared by magnitude): written as ``+1.20, beyond ±1``.
    signed: bool

    def text(self, subject: str | None = None) -> str:
        """``PSI 0.31 >= 0.25``, or with a subject ``PSI of recency_days 0.31 >= 0.25``."""
        label = f"{self.label} of {subject}" if subject else self.label
        if self.signed:
            return f"{label} {self.value:+.3g}, beyond ±{self.threshold:g}"
        return f"{label} {self.value:.3g} >= {self.threshold:g}"


def _check(label: str, value: float | None, limits: AlertThresholds, signed: bool = False) -> Finding | None:
    level = alert_level(value, limits.watch, limits.act)
    if value is None or level == "ok":
        return None
    return Finding(level, label, value, limits.act if level == "act" else limits.watch, signed)


def findings(row: Mapping[str, Any], thresholds: DriftThresholds, silhouette_drop: float | None) -> list[Finding]:
    """The figures of a ``feature_drift`` row at ``watch`` or ``act``, worst first."""
    if row["kind"] == FIT:
        drop = None
        if row["mean"] is not None and row["reference_mean"] is not None:
            drop = row["reference_mean"] - row["mean"]
        if silhouette_drop is None or drop is None:
            return []
        limits = AlertThresholds(watch=silhouette_drop / 2, act=silhouette_drop)
        found = [_check("silhouette drop", max(drop, 0.0), limits)]
    else:
        t = thresholds
        found = [
            _check("PSI", row["psi"], t.psi),
            _check("JS distance", row["js_distance"], t.js_distance),
            _check("mean shift (sd)", row["mean_shift"], t.mean_shift, signed=True),
            _check("missing share change", row["missing_share_change"], t.missing_share_change, signed=True),
            _check("centroid shift", row["centroid_shift"], t.centroid_shift),
        ]
    return sorted((f for f in found if f is not None), key=lambda f: -ALERT_LEVELS.index(f.level))


def worst(found: Sequence[Finding]) -> str:
    """The row's alert level: the worst of its findings, ``ok`` when there are none."""
    return max((f.level for f in found), key=ALERT_LEVELS.index, default="ok")


def _row(kind: str, feature: str, customers: int, **figures: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": kind,
        "feature": feature,
        "customers": customers,
        "psi": None,
        "js_distance": None,
        "mean": None,
        "reference_mean": None,
        "mean_shift": None,
        "missing_share": None,
        "reference_missing_share": None,
        "missing_share_change": None,
        "centroid_shift": None,
    }
    row.update(figures)
    return row


def _assessed(row: dict[str, Any], thresholds: DriftThresholds, silhouette_drop: float | None) -> dict[str, Any]:
    found = findings(row, thresholds, silhouette_drop)
    row["alert"] = worst(found)
    row["reason"] = "; ".join(f.text() for f in found) or None
    return row


def feature_rows(
    bins: Sequence[FeatureBins],
    reference: Mapping[str, FeatureSummary],
    current: Mapping[str, FeatureSummary],
    thresholds: DriftThresholds,
) -> list[dict[str, Any]]:
    """One row per model feature: PSI (numeric) or JS distance (categorical) over the bins with the missing
    values as one more bin, the mean shift, and the change in the missing share."""
    rows = []
    for f in bins:
        ref, cur = reference[f.feature], current[f.feature]
        numeric = f.kind == NUMERIC
        missing = cur.missing_share
        ref_missing = ref.missing_share
        row = _row(
            f.kind,
            f.feature,
            cur.customers,
            psi=population_stability(ref.with_missing, cur.with_missing) if numeric else None,
            js_distance=None if numeric else js_distance(ref.with_missing, cur.with_missing),
            mean=cur.mean,
            reference_mean=ref.mean,
            mean_shift=mean_shift(ref.mean, ref.std, cur.mean) if numeric and ref.mean is not None else None,
            missing_share=missing,
            reference_missing_share=ref_missing,
            missing_share_change=None if missing is None or ref_missing is None else missing - ref_missing,
        )
        rows.append(_assessed(row, thresholds, None))
    return rows


def segment_row(
    reference_sizes: Mapping[int, int], current_sizes: Mapping[int, int], thresholds: DriftThresholds
) -> dict[str, Any]:
    """The segment shares (the assignment distribution) against the model's training shares: PSI (alerted on)
    and JS distance over the segment ids of either side."""
    ids = sorted(set(reference_sizes) | set(current_sizes))
    reference = [reference_sizes.get(i, 0) for i in ids]
    current = [current_sizes.get(i, 0) for i in ids]
    row = _row(
        SEGMENTS,
        SEGMENT_SHARES,
        sum(current),
        psi=population_stability(reference, current),
        js_distance=js_distance(reference, current),
    )
    return _assessed(row, thresholds, None)


def centroid_rows(
    distances: Mapping[int, float | None], customers: int, thresholds: DriftThresholds
) -> list[dict[str, Any]]:
    """A new fit's centroids against the matched segments of the previous model (segment id -> distance in
    standardised units; None where nothing matched)."""
    return [
        _assessed(_row(CENTROID, str(segment), customers, centroid_shift=distance), thresholds, None)
        for segment, distance in sorted(distances.items())
    ]


def fit_row(
    silhouette: float | None, reference: float | None, customers: int, silhouette_drop: float | None
) -> dict[str, Any]:
    """The snapshot's silhouette (``mean``) against the model's at training (``reference_mean``)."""
    row = _row(FIT, SILHOUETTE, customers, mean=silhouette, reference_mean=reference)
    return _assessed(row, DriftThresholds(), silhouette_drop)

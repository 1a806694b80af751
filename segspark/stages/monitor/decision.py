"""The retrain decision for the latest scored snapshot, from its ``feature_drift`` rows (no Spark).

The conditions of ``monitor.retrain_when`` are checked in order (a model feature at ``act``, the segment
shares at ``act``, the model's age, the silhouette's drop); the first that holds is the reason, quoted in
figures. When none holds, the reason says how far the snapshot is from each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segspark.config.settings import MonitorSettings
from segspark.stages.monitor.drift import FIT, SEGMENTS, findings

__all__ = ["RetrainDecision", "decide"]

_FEATURE_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class RetrainDecision:
    """Whether the model that scored ``as_of`` should be replaced, and why (in figures)."""

    as_of: dt.date
    model_version: str
    model_as_of: dt.date | None
    retrain: bool
    reason: str

    def line(self, retrained: bool = False) -> str:
        """One line for the console and ``pipeline_runs.decision``."""
        since = f"the model's snapshot {self.model_as_of}" if self.model_as_of else f"model {self.model_version}"
        if not self.retrain:
            return f"model kept for {self.as_of}: {self.reason}"
        verb = "retrained" if retrained else "retrain recommended"
        return f"{verb}: {self.reason} since {since}"


def _largest(rows: Sequence[Mapping[str, Any]], figure: str) -> str | None:
    valued = [r for r in rows if r[figure] is not None]
    if not valued:
        return None
    top = max(valued, key=lambda r: (r[figure], r["feature"]))
    return f"{top['feature']} {top[figure]:.3g}"


def decide(
    rows: Sequence[Mapping[str, Any]],
    as_of: dt.date,
    model_version: str,
    model_as_of: dt.date | None,
    settings: MonitorSettings,
) -> RetrainDecision:
    """The decision for the snapshot whose ``feature_drift`` rows (of one model) are ``rows``."""
    when = settings.retrain_when

    def decision(retrain: bool, reason: str) -> RetrainDecision:
        return RetrainDecision(as_of, model_version, model_as_of, retrain, reason)

    def found(row: Mapping[str, Any]) -> list[Any]:
        return findings(row, settings.thresholds, when.silhouette_drop)

    if model_as_of == as_of:
        return decision(False, "the model was fitted on this snapshot")
    features = [r for r in rows if r["kind"] in _FEATURE_KINDS]
    if when.feature_at_act:
        acting = [(f, r) for r in sorted(features, key=lambda r: r["feature"]) for f in found(r) if f.level == "act"]
        if acting:
            worst = max(acting, key=lambda fr: fr[0].value / fr[0].threshold if fr[0].threshold else fr[0].value)
            return decision(True, worst[0].text(worst[1]["feature"]))
    shares = [r for r in rows if r["kind"] == SEGMENTS]
    if when.segment_shares_at_act:
        for r in shares:
            acting_shares = [f for f in found(r) if f.level == "act"]
            if acting_shares:
                return decision(True, acting_shares[0].text("the segment shares"))
    age = (as_of - model_as_of).days if model_as_of is not None else None
    if when.model_older_than_days is not None and age is not None and age >= when.model_older_than_days:
        return decision(True, f"the model is {age} days older than the snapshot (>= {when.model_older_than_days})")
    for r in (r for r in rows if r["kind"] == FIT):
        dropped = [f for f in found(r) if f.level == "act"]
        if dropped:
            return decision(
                True, f"silhouette {r['mean']:.3f} against {r['reference_mean']:.3f} at training ({dropped[0].text()})"
            )
    return decision(False, _kept_reason(features, shares, rows, age))


def _kept_reason(
    features: Sequence[Mapping[str, Any]],
    shares: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    age: int | None,
) -> str:
    parts = ["nothing at act"]
    largest_psi = _largest(features, "psi")
    if largest_psi:
        parts.append(f"largest PSI {largest_psi}")
    largest_js = _largest(features, "js_distance")
    if largest_js:
        parts.append(f"largest JS distance {largest_js}")
    if shares and shares[0]["psi"] is not None:
        parts.append(f"segment-share PSI {shares[0]['psi']:.3g}")
    fit = next((r for r in rows if r["kind"] == FIT and r["mean"] is not None), None)
    if fit is not None and fit["reference_mean"] is not None:
        parts.append(f"silhouette {fit['mean']:.3f} against {fit['reference_mean']:.3f}")
    if age is not None:
        parts.append(f"model {age} days old")
    return ", ".join(parts)

"""The report's figures of the customer sample, computed on the driver (numpy, scikit-learn).

The sample is bounded (``report.sample_size``): per-customer silhouettes, the two principal components of
model space, the correlation of the model features, and what other algorithms find on the same customers.
Ward and DBSCAN need all pairwise distances and run here only, for comparison: the model itself is fitted by
:mod:`segspark.stages.train.stage` on all customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from segspark.config.settings import ModelSettings, ReportSettings
from segspark.maths.evaluation import adjusted_rand_index, silhouette_samples
from segspark.maths.local_fits import FitParams, fit_best_local

if TYPE_CHECKING:  # data imports Spark; this module computes on the driver's arrays only
    from segspark.stages.report.data import Sample

__all__ = [
    "DBSCAN_EPS_PERCENTILE",
    "SWEEP_ALGORITHMS",
    "AlgorithmResult",
    "Projection",
    "SampleAnalysis",
    "agreement",
    "analyse",
    "compare_algorithms",
    "correlation",
    "matched_labels",
    "project",
]

#: Algorithms the sweep can choose from: refitted on the sample at the chosen K.
SWEEP_ALGORITHMS = ("kmeans", "bisecting_kmeans", "gaussian_mixture")
#: The DBSCAN radius, when not configured: this percentile of the distance to the min_samples-th neighbour.
DBSCAN_EPS_PERCENTILE = 90


@dataclass(frozen=True)
class Projection:
    """The sample and the centres on the first two principal components of model space."""

    coords: np.ndarray  # n x 2
    centres: np.ndarray  # K x 2
    explained: tuple[float, float]  # share of the variance of each component (nan when absent)


@dataclass(frozen=True)
class AlgorithmResult:
    """One algorithm's clusters of the sample, against the model's segments."""

    algorithm: str
    labels: np.ndarray
    clusters: int
    silhouette: float | None
    #: Adjusted Rand index with the model's segments (noise points count as one more cluster).
    agreement: float
    sizes: list[int]
    noise_share: float
    parameters: str


@dataclass(frozen=True)
class SampleAnalysis:
    """What the report computes from the sample on the driver.

    Each customer's silhouette and their mean (None for fewer than two customers), the principal-component
    projection, the feature correlations and the other algorithms' fits at the chosen K.
    """

    silhouettes: np.ndarray | None
    mean_silhouette: float | None
    projection: Projection
    correlation: pd.DataFrame
    algorithms: list[AlgorithmResult]


def project(points: np.ndarray, centres: np.ndarray) -> Projection:
    """Principal components of ``points`` (centred on their mean): the first two, with explained variance."""
    n, d = points.shape if points.ndim == 2 else (0, 0)
    if n < 2 or d == 0:
        return Projection(np.zeros((n, 2)), np.zeros((len(centres), 2)), (float("nan"), float("nan")))
    mean = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - mean, full_matrices=False)
    variance = singular**2
    total = variance.sum()
    components = np.zeros((2, d))
    explained = [float("nan"), float("nan")]
    for i in range(min(2, len(variance))):
        # The sign of a component is arbitrary: make its largest loading positive, so reruns draw the same picture.
        sign = 1.0 if vt[i, np.argmax(np.abs(vt[i]))] >= 0 else -1.0
        components[i] = sign * vt[i]
        explained[i] = float(variance[i] / total) if total > 0 else float("nan")
    coords = (points - mean) @ components.T
    centre_coords = (centres - mean) @ components.T if len(centres) else np.zeros((0, 2))
    return Projection(coords, centre_coords, (explained[0], explained[1]))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same points (any integer labels)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1))
    np.add.at(table, (ia, ib), 1.0)
    return adjusted_rand_index(table)


def matched_labels(labels: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """``labels`` renamed to the segment ids they overlap most (one-to-one, largest total overlap), so the same
    group gets the same colour in every panel; clusters left over get ids above the largest segment id. Noise
    (-1) stays -1."""
    from scipy.optimize import linear_sum_assignment

    clusters = np.unique(labels[labels >= 0])
    ids = np.unique(segments)
    if not len(clusters) or not len(ids):
        return labels
    overlap = np.array([[np.sum((labels == c) & (segments == s)) for s in ids] for c in clusters])
    rows, cols = linear_sum_assignment(-overlap)
    mapping = {int(clusters[r]): int(ids[c]) for r, c in zip(rows, cols, strict=True)}
    next_id = int(ids.max()) + 1
    for c in clusters:
        if int(c) not in mapping:
            mapping[int(c)] = next_id
            next_id += 1
    return np.array([mapping.get(int(x), -1) for x in labels], dtype=int)


def _result(
    algorithm: str, points: np.ndarray, labels: np.ndarray, segments: np.ndarray, parameters: str
) -> AlgorithmResult:
    labels = matched_labels(labels, segments)
    kept = labels >= 0
    clusters = int(len(np.unique(labels[kept])))
    silhouette = None
    if clusters >= 2 and kept.sum() > clusters:
        scores = silhouette_samples(points[kept], labels[kept])
        silhouette = None if scores is None else float(scores.mean())
    sizes = sorted((int(n) for n in np.bincount(labels[kept]) if n), reverse=True) if kept.any() else []
    return AlgorithmResult(
        algorithm=algorithm,
        labels=labels,
        clusters=clusters,
        silhouette=silhouette,
        agreement=agreement(labels, segments),
        sizes=sizes,
        noise_share=float((~kept).mean()) if len(labels) else 0.0,
        parameters=parameters,
    )


def compare_algorithms(
    points: np.ndarray, segments: np.ndarray, k: int, model: ModelSettings, report: ReportSettings, seed: int
) -> list[AlgorithmResult]:
    """KMeans, BisectingKMeans and GaussianMixture at the chosen K on the sample (the sweep's scikit-learn fits,
    same restarts and seed), then with ``report.explore`` Ward and DBSCAN."""
    if len(points) <= k or k < 2:
        return []
    params = FitParams.of(model)
    results = []
    for algorithm in SWEEP_ALGORITHMS:
        fit = fit_best_local(algorithm, k, points, seed, params)
        results.append(_result(algorithm, points, np.asarray(fit.labels, dtype=int), segments, f"K={k}, seed {seed}"))
    if report.explore:
        from sklearn.cluster import DBSCAN, AgglomerativeClustering
        from sklearn.neighbors import NearestNeighbors

        ward = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(points)
        results.append(_result("ward", points, np.asarray(ward, dtype=int), segments, f"K={k}, Ward linkage"))
        min_samples = min(report.dbscan_min_samples, len(points) - 1)
        eps = report.dbscan_eps
        how = "configured"
        if eps is None:
            distances, _ = NearestNeighbors(n_neighbors=min_samples).fit(points).kneighbors(points)
            eps = float(np.percentile(distances[:, -1], DBSCAN_EPS_PERCENTILE))
            how = f"{DBSCAN_EPS_PERCENTILE}th percentile of the distance to the {min_samples}th neighbour"
        eps = max(eps, 1e-9)
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(points)
        results.append(
            _result(
                "dbscan",
                points,
                np.asarray(labels, dtype=int),
                segments,
                f"eps {eps:.3g} ({how}), min_samples {min_samples}",
            )
        )
    return results


def correlation(transformed: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of the features as the model sees them; NaN for a constant feature."""
    if transformed.empty:
        return pd.DataFrame()
    with np.errstate(invalid="ignore", divide="ignore"):
        return transformed.astype(float).corr()


def analyse(sample: Sample, k: int, model: ModelSettings, report: ReportSettings, seed: int) -> SampleAnalysis:
    """Everything the report computes from ``sample`` (a :class:`segspark.stages.report.data.Sample`)."""
    scores = silhouette_samples(sample.points, sample.segment_ids) if len(sample.points) >= 2 else None
    return SampleAnalysis(
        silhouettes=scores,
        mean_silhouette=None if scores is None else float(scores.mean()),
        projection=project(sample.points, sample.centres),
        correlation=correlation(sample.transformed),
        algorithms=compare_algorithms(sample.points, sample.segment_ids, k, model, report, seed),
    )

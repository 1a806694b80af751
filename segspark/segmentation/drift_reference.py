"""The drift reference a model is saved with: each feature's fixed bins and its training counts in them.

Train fixes the bins once (:func:`reference_bins`) and counts its customers into them (``drift_reference``,
one row per model, feature and bin); monitor counts every later snapshot into the same bins and compares
(:mod:`segspark.maths.drift`). Both see a feature as the model does (:func:`segspark.segmentation.model.model_inputs`):
numeric values after the cast and the log transform, before imputation, so a feature going missing shows as
missing rather than as the training median.

- Numeric edges: the exact deciles of the feature over a seeded hash sample of the training customers
  (``monitor.reference_sample`` customers, :data:`REFERENCE_SAMPLE`), so they are the same on any file layout
  and the percentile's buffer stays bounded however many customers there are.
- Categorical bins: the training categories of the model's own ``StringIndexer``, then ``(unseen)``.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from segspark.maths.drift import bin_edges
from segspark.platform.lakehouse import one_row
from segspark.segmentation.binning import CATEGORICAL, MISSING_BIN, NUMERIC, FeatureBins
from segspark.segmentation.model import (
    MISSING_CATEGORY,
    UNSEEN_CATEGORY,
    model_categorical_features,
    model_numeric_features,
    quote,
)
from segspark.segmentation.sampling import hash_sample

__all__ = [
    "DECILES",
    "REFERENCE_SAMPLE",
    "FeatureSummary",
    "bins_from_reference",
    "reference_bins",
    "reference_rows",
    "summarise",
]

#: The salt of the sample whose deciles fix the numeric bins.
REFERENCE_SAMPLE = "drift_reference"
#: A row read back from Spark, or one built by hand.
Record = Row | Mapping[str, Any]
DECILES = [i / 10 for i in range(1, 10)]


@dataclass(frozen=True)
class FeatureSummary:
    """One feature of one snapshot in its fixed bins: customers per bin (bin 0 first), missing customers, and
    the mean and standard deviation of the non-missing numeric values (None for a categorical feature)."""

    feature: str
    kind: str
    counts: tuple[int, ...]
    missing: int
    mean: float | None
    std: float | None

    @property
    def customers(self) -> int:
        """Every customer counted, missing ones included."""
        return sum(self.counts) + self.missing

    @property
    def with_missing(self) -> tuple[int, ...]:
        """The counts with the missing customers as one more bin: what the PSI and JS distance compare."""
        return (*self.counts, self.missing)

    @property
    def missing_share(self) -> float | None:
        """Share of the customers with no value; None when there are none."""
        return self.missing / self.customers if self.customers else None


def reference_bins(model: PipelineModel, inputs_df: DataFrame, sample_size: int, seed: int) -> list[FeatureBins]:
    """Each model feature's fixed bins; ``inputs_df`` is the training customers as
    :func:`segspark.segmentation.model.model_inputs` gives them.

    One aggregation over the sample (exact percentiles, one row back) for the numeric edges.
    """
    numeric = model_numeric_features(model)
    bins: list[FeatureBins] = []
    if numeric:
        sample_df = hash_sample(inputs_df, sample_size, seed, REFERENCE_SAMPLE)
        row = one_row(
            sample_df.agg(*[F.percentile(F.col(quote(f)), DECILES).alias(str(i)) for i, f in enumerate(numeric)]),
            "the drift reference's deciles (a global aggregation)",
        )
        bins += [FeatureBins(f, NUMERIC, tuple(bin_edges(row[str(i)] or []))) for i, f in enumerate(numeric)]
    for feature, labels in model_categorical_features(model):
        categories = tuple(label for label in labels if label != MISSING_CATEGORY)
        bins.append(FeatureBins(feature, CATEGORICAL, categories=categories, missing_category=MISSING_CATEGORY))
    return bins


def summarise(bins: Sequence[FeatureBins], rows: Iterable[Record]) -> dict[str, FeatureSummary]:
    """Each feature's summary from its :func:`segspark.segmentation.binning.bin_counts` rows (every bin in
    order, empty ones 0); the mean and standard deviation from the exact sums."""
    by_feature: dict[str, dict[int, Record]] = {f.feature: {} for f in bins}
    for r in rows:
        by_feature[r["feature"]][r["bin"]] = r
    summaries = {}
    for f in bins:
        found = by_feature[f.feature]
        counts = tuple(int(found[b]["customers"]) if b in found else 0 for b in range(f.bins))
        missing = int(found[MISSING_BIN]["customers"]) if MISSING_BIN in found else 0
        mean = std = None
        if f.kind == NUMERIC:
            total = [found[b] for b in range(f.bins) if b in found]
            mean, std = _moments(sum(counts), [r["value_sum"] for r in total], [r["value_squares"] for r in total])
        summaries[f.feature] = FeatureSummary(f.feature, f.kind, counts, missing, mean, std)
    return summaries


def _moments(n: int, sums: list[Any], squares: list[Any]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation from n, the exact sums and sums of squares (decimals)."""
    if n == 0:
        return None, None
    with decimal.localcontext() as context:
        context.prec = 80
        s = sum((decimal.Decimal(v) for v in sums), decimal.Decimal(0))
        q = sum((decimal.Decimal(v) for v in squares), decimal.Decimal(0))
        mean = s / n
        variance = (q - s * s / n) / (n - 1) if n > 1 else decimal.Decimal(0)
        return float(mean), float(max(variance, decimal.Decimal(0)).sqrt())


def bins_from_reference(
    rows: Iterable[Record],
) -> tuple[list[FeatureBins], dict[str, FeatureSummary]]:
    """A model's bins and training summaries back from its ``drift_reference`` rows."""
    by_feature: dict[str, list[Record]] = {}
    for r in rows:
        by_feature.setdefault(r["feature"], []).append(r)
    bins, summaries = [], {}
    for feature in sorted(by_feature):
        feature_rows = sorted(by_feature[feature], key=lambda r: r["bin"])
        first = feature_rows[0]
        inner = [r for r in feature_rows if r["bin"] != MISSING_BIN]
        missing = sum(int(r["customers"]) for r in feature_rows if r["bin"] == MISSING_BIN)
        if first["kind"] == NUMERIC:
            f = FeatureBins(feature, NUMERIC, tuple(float(r["upper"]) for r in inner if r["upper"] is not None))
        else:
            categories = tuple(r["category"] for r in inner[:-1])  # the last bin is (unseen)
            f = FeatureBins(feature, CATEGORICAL, categories=categories, missing_category=MISSING_CATEGORY)
        bins.append(f)
        counts = tuple(int(r["customers"]) for r in inner)
        summaries[feature] = FeatureSummary(
            feature, f.kind, counts, missing, first["feature_mean"], first["feature_std"]
        )
    return bins, summaries


def reference_rows(bins: Sequence[FeatureBins], summaries: Mapping[str, FeatureSummary]) -> list[dict[str, Any]]:
    """The ``drift_reference`` rows of one model (without its version and run columns): every bin of every
    feature, empty ones included, then the missing bin; the inverse of :func:`bins_from_reference`."""
    rows = []
    for f in bins:
        summary = summaries[f.feature]
        total = summary.customers
        for b, customers in [*enumerate(summary.counts), (MISSING_BIN, summary.missing)]:
            lower = upper = category = None
            if b != MISSING_BIN and f.kind == NUMERIC:
                lower = f.edges[b - 1] if b > 0 else None
                upper = f.edges[b] if b < len(f.edges) else None
            elif b != MISSING_BIN:
                category = f.categories[b] if b < len(f.categories) else UNSEEN_CATEGORY
            rows.append(
                {
                    "feature": f.feature,
                    "kind": f.kind,
                    "bin": b,
                    "lower": lower,
                    "upper": upper,
                    "category": category,
                    "customers": customers,
                    "share": customers / total if total else 0.0,
                    "feature_mean": summary.mean,
                    "feature_std": summary.std,
                }
            )
    return rows

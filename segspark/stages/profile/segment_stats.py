"""Segment profiles: who each segment is, in figures, from one snapshot's members.

Transforms build one row per customer of the snapshot (:func:`segment_members`); one aggregation
(:func:`segment_stat_rows`, a ``rollup`` so the population's figures come from the same pass) turns them into K + 1
rows that :func:`to_segment_stats` reads into :class:`segspark.maths.naming.SegmentStats` records for the rules.

Figures per segment and for all customers: customers, revenue (sum of monetary), value at stake (purchase
revenue of the lookback window), and for every profiled column its mean, its median (``percentile_approx``:
a value of the data, the lower middle one for an even count, rank error at most 1/``profile.median_accuracy``)
and its effect size (see :mod:`segspark.maths.naming`). With a previous snapshot, the share of the segment's customers
who were in it and whose recency rose (no purchase since).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from segspark.contracts.schemas import (
    CUSTOMER_ID,
    INVOICE_DATE,
    IS_RETURN,
    LINE_AMOUNT,
    SEGMENT_ID,
    require_columns,
)
from segspark.maths.naming import FeatureStat, SegmentStats

__all__ = [
    "HAS_PREVIOUS",
    "RECENCY_ROSE",
    "VALUE_AT_STAKE",
    "SnapshotStats",
    "dominant_rfm_segments",
    "model_scale",
    "segment_members",
    "segment_stat_rows",
    "to_segment_stats",
    "window_revenue",
]

VALUE_AT_STAKE = "value_at_stake"
RECENCY_ROSE = "is_recency_rose"
HAS_PREVIOUS = "has_previous"


def window_revenue(lines_df: DataFrame, as_of: dt.date, lookback_days: int) -> DataFrame:
    """``customer_id, value_at_stake``: purchase revenue of the ``lookback_days`` before ``as_of``.

    Purchase lines only (returns are not revenue at stake); customers without such lines have no row.
    """
    require_columns(lines_df, [CUSTOMER_ID, INVOICE_DATE, IS_RETURN, LINE_AMOUNT], "value at stake")
    start = as_of - dt.timedelta(days=lookback_days)
    return (
        lines_df.filter(
            (F.col(INVOICE_DATE) >= F.lit(start)) & (F.col(INVOICE_DATE) < F.lit(as_of)) & ~F.col(IS_RETURN)
        )
        .groupBy(CUSTOMER_ID)
        .agg(F.sum(LINE_AMOUNT).alias(VALUE_AT_STAKE))
        .select(CUSTOMER_ID, VALUE_AT_STAKE)
    )


def segment_members(
    segments_df: DataFrame,
    features_df: DataFrame,
    columns: Sequence[str],
    value_df: DataFrame,
    previous_df: DataFrame | None = None,
) -> DataFrame:
    """One row per segmented customer: segment, profiled columns, RFM segment, value at stake, recency change.

    Parameters
    ----------
    segments_df : ``customer_id, segment_id`` of one snapshot.
    features_df : that snapshot's customer_features rows (``columns``, ``rfm_segment``, ``last_purchase_date``).
    value_df : :func:`window_revenue`; customers without a row have 0 at stake.
    previous_df : ``customer_id, recency_days`` of the previous snapshot, or None when there is none.

    Returns
    -------
    DataFrame
        ``customer_id, segment_id, *columns, rfm_segment, last_purchase_date, value_at_stake, has_previous,
        is_recency_rose`` (the last two null without a previous snapshot).
    """
    require_columns(segments_df, [CUSTOMER_ID, SEGMENT_ID], "segment profiles")
    require_columns(features_df, [CUSTOMER_ID, *columns, "rfm_segment", "last_purchase_date"], "segment profiles")
    members_df = (
        segments_df.select(CUSTOMER_ID, SEGMENT_ID)
        .join(
            features_df.select(CUSTOMER_ID, *columns, "rfm_segment", "last_purchase_date"), on=CUSTOMER_ID, how="inner"
        )
        .join(value_df, on=CUSTOMER_ID, how="left")
        .withColumn(VALUE_AT_STAKE, F.coalesce(F.col(VALUE_AT_STAKE), F.lit(0).cast("decimal(28,4)")))
    )
    if previous_df is None:
        members_df = members_df.withColumn(HAS_PREVIOUS, F.lit(None).cast("boolean")).withColumn(
            RECENCY_ROSE, F.lit(None).cast("boolean")
        )
    else:
        before_df = previous_df.select(CUSTOMER_ID, F.col("recency_days").alias("previous_recency_days"))
        members_df = (
            members_df.join(before_df, on=CUSTOMER_ID, how="left")
            .withColumn(HAS_PREVIOUS, F.col("previous_recency_days").isNotNull())
            .withColumn(RECENCY_ROSE, F.col("recency_days") > F.col("previous_recency_days"))
        )
    return members_df.select(
        CUSTOMER_ID,
        SEGMENT_ID,
        *columns,
        "rfm_segment",
        "last_purchase_date",
        VALUE_AT_STAKE,
        HAS_PREVIOUS,
        RECENCY_ROSE,
    )


def model_scale(column: str, log_columns: Sequence[str]) -> Column:
    """The column as the model sees it before scaling: sign(x) * ln(1 + |x|) for log columns."""
    value = F.col(column).cast("double")
    if column in log_columns:
        return F.signum(value) * F.log1p(F.abs(value))
    return value


def segment_stat_rows(
    members_df: DataFrame, columns: Sequence[str], log_columns: Sequence[str], accuracy: int
) -> DataFrame:
    """K + 1 rows of figures: one per segment and one (``segment_id`` null) for all customers.

    Output columns: ``segment_id, customers, revenue, value_at_stake, customers_with_previous,
    recency_rose, mean__<c>, median__<c>, scale_mean__<c>, scale_sd__<c>`` for each profiled column ``c``.
    """
    aggregates = [
        F.count(F.lit(1)).alias("customers"),
        F.sum("monetary").alias("revenue"),
        F.sum(VALUE_AT_STAKE).alias(VALUE_AT_STAKE),
        F.sum(F.col(HAS_PREVIOUS).cast("long")).alias("customers_with_previous"),
        F.sum(F.col(RECENCY_ROSE).cast("long")).alias("recency_rose"),
    ]
    for c in columns:
        aggregates += [
            F.avg(F.col(c).cast("double")).alias(f"mean__{c}"),
            F.percentile_approx(F.col(c).cast("double"), 0.5, accuracy).alias(f"median__{c}"),
            F.avg(model_scale(c, log_columns)).alias(f"scale_mean__{c}"),
            F.stddev_pop(model_scale(c, log_columns)).alias(f"scale_sd__{c}"),
        ]
    # rollup: the per-segment groups and the grand total (segment_id null; segment ids are never null) in one pass.
    return members_df.rollup(SEGMENT_ID).agg(*aggregates)


def dominant_rfm_segments(members_df: DataFrame) -> DataFrame:
    """``segment_id, rfm_segment, customers``: per segment, its named RFM segments' sizes (K x 15 rows at most)."""
    return members_df.groupBy(SEGMENT_ID, "rfm_segment").agg(F.count(F.lit(1)).alias("customers"))


@dataclass(frozen=True)
class SnapshotStats:
    """The collected figures: a record per segment for the rules, the population's, and the extras."""

    segments: list[SegmentStats]
    population: SegmentStats
    #: segment id -> (customers with a previous snapshot, of whom recency rose); None without a previous one.
    recency: dict[int, tuple[int, int] | None]
    #: segment id -> (dominant RFM segment, its share of the segment's customers).
    dominant_rfm: dict[int, tuple[str, float]]
    #: segment id -> (revenue, value at stake) as exact decimals to the cent, for the tables.
    exact: dict[int, tuple[Decimal, Decimal]]


def to_segment_stats(
    rows: Sequence[Row], rfm_rows: Sequence[Row], columns: Sequence[str], has_previous: bool
) -> SnapshotStats:
    """Read the collected :func:`segment_stat_rows` (K + 1) and :func:`dominant_rfm_segments` rows."""
    total = next(r for r in rows if r[SEGMENT_ID] is None)

    def stats(row: Row, with_effect: bool) -> dict[str, FeatureStat]:
        out = {}
        for c in columns:
            sd = total[f"scale_sd__{c}"]
            effect = None
            if with_effect and sd is not None and sd > 1e-12 and row[f"scale_mean__{c}"] is not None:
                effect = (row[f"scale_mean__{c}"] - total[f"scale_mean__{c}"]) / sd
            out[c] = FeatureStat(row[f"mean__{c}"], row[f"median__{c}"], effect)
        return out

    def record(row: Row, segment_id: int | None) -> SegmentStats:
        return SegmentStats(
            segment_id=segment_id,
            customers=int(row["customers"]),
            revenue=float(row["revenue"] or 0),
            value_at_stake=float(row[VALUE_AT_STAKE] or 0),
            features=stats(row, segment_id is not None),
        )

    segment_rows = sorted((r for r in rows if r[SEGMENT_ID] is not None), key=lambda r: r[SEGMENT_ID])
    best: dict[int, tuple[str, int]] = {}
    sizes: dict[int, int] = {}
    for r in sorted(rfm_rows, key=lambda r: (r[SEGMENT_ID], -r["customers"], r["rfm_segment"])):
        sizes[r[SEGMENT_ID]] = sizes.get(r[SEGMENT_ID], 0) + r["customers"]
        best.setdefault(r[SEGMENT_ID], (r["rfm_segment"], r["customers"]))
    return SnapshotStats(
        segments=[record(r, int(r[SEGMENT_ID])) for r in segment_rows],
        population=record(total, None),
        recency={
            int(r[SEGMENT_ID]): (int(r["customers_with_previous"] or 0), int(r["recency_rose"] or 0))
            if has_previous
            else None
            for r in segment_rows
        },
        dominant_rfm={s: (name, n / sizes[s]) for s, (name, n) in best.items()},
        exact={int(r[SEGMENT_ID]): (_cents(r["revenue"]), _cents(r[VALUE_AT_STAKE])) for r in segment_rows},
    )


def _cents(value: Decimal | float | None) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

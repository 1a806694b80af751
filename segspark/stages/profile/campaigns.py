"""Campaign audiences with a control group, and the campaign's measured effect at the next snapshot.

The holdout is exact per segment: within each segment customers are ordered by a seeded 64-bit hash of
(campaign key, customer id), ties by id, and the first ``round(holdout_share x segment size)`` (half up) are
control. The same key, seed and customers give the same control group on every run and any file layout; a
customer's place depends only on their own id, so adding customers moves few others in or out.

Measured at the next snapshot: for each segment of the audience and each of contacted / control, the share of
customers with a purchase in [audience snapshot, next snapshot) and their purchase spend in that window; then,
per segment and for all segments together, the lift of contacted over control with its confidence interval,
the sample-ratio check of the split and a verdict in words (:mod:`segspark.maths.lift`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segspark.contracts.schemas import (
    AS_OF_DATE,
    CUSTOMER_ID,
    INVOICE_DATE,
    IS_RETURN,
    LINE_AMOUNT,
    SEGMENT_ID,
    require_columns,
)
from segspark.maths import lift
from segspark.maths.lift import Group

__all__ = [
    "ALL_SEGMENTS",
    "IS_CONTROL",
    "LiftSettings",
    "campaign_key",
    "group_totals",
    "holdout_rank",
    "outcome_rows",
    "previous_snapshot",
    "with_control_group",
]

IS_CONTROL = "is_control"


def campaign_key(name: str | None, as_of: dt.date, seed: int) -> str:
    """What fixes the holdout: the seed and the campaign's name (default: the snapshot date)."""
    return f"{seed}:{name if name is not None else as_of.isoformat()}"


def holdout_rank(key: str) -> Column:
    """A customer's place in their segment's holdout order: a 64-bit hash of the campaign key and the id."""
    return F.xxhash64(F.lit(key), F.col(CUSTOMER_ID))


def with_control_group(members_df: DataFrame, share: float, key: str) -> DataFrame:
    """Add ``is_control``: exactly round-half-up(share x size) customers of each segment, chosen by the key.

    Input columns: ``customer_id, segment_id``; output: the input's columns and ``is_control`` (never null).
    """
    require_columns(members_df, [CUSTOMER_ID, SEGMENT_ID], "campaign holdout")
    ordered = Window.partitionBy(SEGMENT_ID).orderBy(holdout_rank(key), F.col(CUSTOMER_ID))
    whole = Window.partitionBy(SEGMENT_ID).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    control_size = F.floor(F.count(F.lit(1)).over(whole) * F.lit(share) + F.lit(0.5))
    return members_df.withColumn(IS_CONTROL, F.row_number().over(ordered) <= control_size)


def group_totals(audience_df: DataFrame, lines_df: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Per segment and group of one audience: customers, purchasers and their spend in [start, end).

    Parameters
    ----------
    audience_df : ``customer_id, segment_id, segment_name, play, is_control`` of the audience snapshot.
    lines_df : clean transaction lines (``customer_id, invoice_date, is_return, line_amount``).
    start, end : the audience's snapshot and the next one.

    Returns
    -------
    DataFrame
        ``segment_id, segment_name, play, is_control, customers, purchasers, spend, spend_squares``: at most two
        rows per segment (a group without customers has none). ``spend_squares`` is the sum of each customer's
        squared spend (0 for a customer who bought nothing), for the variance of spend per customer.
    """
    require_columns(audience_df, [CUSTOMER_ID, SEGMENT_ID, "segment_name", "play", IS_CONTROL], "campaign results")
    require_columns(lines_df, [CUSTOMER_ID, INVOICE_DATE, IS_RETURN, LINE_AMOUNT], "campaign results")
    bought_df = (
        lines_df.filter((F.col(INVOICE_DATE) >= F.lit(start)) & (F.col(INVOICE_DATE) < F.lit(end)) & ~F.col(IS_RETURN))
        .groupBy(CUSTOMER_ID)
        .agg(F.sum(LINE_AMOUNT).alias("spend"))
    )
    return (
        audience_df.select(CUSTOMER_ID, SEGMENT_ID, "segment_name", "play", IS_CONTROL)
        .join(bought_df, on=CUSTOMER_ID, how="left")
        .groupBy(SEGMENT_ID, "segment_name", "play", IS_CONTROL)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.count("spend").alias("purchasers"),
            F.coalesce(F.sum("spend"), F.lit(0)).cast("decimal(28,2)").alias("spend"),
            F.coalesce(F.sum(F.col("spend").cast("double") ** 2), F.lit(0.0)).alias("spend_squares"),
        )
    )


#: The segment_name of the rows for all segments together (their segment_id and play are null).
ALL_SEGMENTS = "All segments"


@dataclass(frozen=True)
class LiftSettings:
    """How lift is judged: the configured holdout share (for the sample-ratio check), the interval's level and
    the fewest customers a group needs for a verdict."""

    holdout_share: float
    min_group_customers: int
    level: float = 0.95


def outcome_rows(groups: Sequence[Mapping[str, Any]], settings: LiftSettings) -> list[dict[str, Any]]:
    """campaign_results' rows (without the stamp) from :func:`group_totals`' rows, plus the two rows of all
    segments together: each group's rates and spend, and on both rows of a segment its lift figures.

    Runs on the driver over two rows per segment (the K segments of one model).
    """
    by_segment: dict[int | None, list[Mapping[str, Any]]] = {}
    for g in sorted(groups, key=lambda r: (r[SEGMENT_ID], r[IS_CONTROL])):
        by_segment.setdefault(g[SEGMENT_ID], []).append(g)
    everyone: list[Mapping[str, Any]] = [
        {
            SEGMENT_ID: None,
            "segment_name": ALL_SEGMENTS,
            "play": None,
            IS_CONTROL: control,
            **{key: sum((g[key] for g in groups if g[IS_CONTROL] == control), start) for key, start in _TOTALS},
        }
        for control in (False, True)
        if any(g[IS_CONTROL] == control for g in groups)
    ]
    if everyone:
        by_segment[None] = everyone
    rows = []
    for members in by_segment.values():
        lifted = _lift(members, settings)
        rows += [{**_group_figures(g), **lifted} for g in members]
    return rows


_TOTALS = (("customers", 0), ("purchasers", 0), ("spend", Decimal(0)), ("spend_squares", 0.0))


def _as_group(row: Mapping[str, Any] | None) -> Group:
    if row is None:
        return Group(0, 0)
    return Group(row["customers"], row["purchasers"], float(row["spend"]), float(row["spend_squares"]))


def _group_figures(g: Mapping[str, Any]) -> dict[str, Any]:
    figures = {k: g[k] for k in (SEGMENT_ID, "segment_name", "play", IS_CONTROL, "customers", "purchasers", "spend")}
    figures["purchase_rate"] = g["purchasers"] / g["customers"]
    figures["spend_per_customer"] = float(g["spend"]) / g["customers"]
    return figures


def _lift(members: Sequence[Mapping[str, Any]], settings: LiftSettings) -> dict[str, Any]:
    """The lift columns of one segment (or of all together) from its one or two groups."""
    contacted = _as_group(next((g for g in members if not g[IS_CONTROL]), None))
    control = _as_group(next((g for g in members if g[IS_CONTROL]), None))
    rate = lift.rate_difference(contacted, control, settings.level)
    spend = lift.spend_difference(contacted, control, settings.level)
    customers = contacted.customers + control.customers
    ratio_p = (
        lift.sample_ratio_p(control.customers, customers, settings.holdout_share)
        if 0 < settings.holdout_share < 1
        else None
    )
    return {
        "purchase_rate_uplift": None if rate is None else rate.estimate,
        "purchase_rate_uplift_low": None if rate is None else rate.low,
        "purchase_rate_uplift_high": None if rate is None else rate.high,
        "purchase_rate_p_value": None if rate is None else rate.p_value,
        # The point uplift of spend exists with one customer a side; its interval needs two.
        "spend_per_customer_uplift": None if rate is None else contacted.mean_spend - control.mean_spend,
        "spend_per_customer_uplift_low": None if spend is None else spend.low,
        "spend_per_customer_uplift_high": None if spend is None else spend.high,
        "spend_per_customer_p_value": None if spend is None else spend.p_value,
        "control_share": control.customers / customers,
        "sample_ratio_p_value": ratio_p,
        "sample_ratio_alert": ratio_p is not None and ratio_p < lift.SAMPLE_RATIO_ALERT,
        "verdict": lift.verdict(rate, contacted, control, settings.min_group_customers),
    }


def previous_snapshot(audiences_df: DataFrame, as_of: dt.date) -> dt.date | None:
    """The latest audience snapshot before ``as_of`` (one aggregate row), or None."""
    row = audiences_df.filter(F.col(AS_OF_DATE) < F.lit(as_of)).agg(F.max(AS_OF_DATE)).first()
    earlier: dt.date | None = None if row is None else row[0]  # a global aggregate: one row, null over none
    return earlier

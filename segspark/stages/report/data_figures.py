"""The report's figures of the data: feature distributions and correlations, the R x F grid, rejects by reason,
sizes over time and migration between snapshots. One function per figure, each returning a matplotlib Figure;
inputs are small pandas/numpy objects already on the driver, and awkward input gives a note, not an exception.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from segspark.stages.report.style import (
    SMALL_PT,
    colour_of,
    dress,
    finite_max,
    heatmap,
    label_of,
    new_figure,
    note,
    numbers,
    rotate_xticks,
    suptitle,
)

__all__ = [
    "correlation_matrix",
    "feature_distributions",
    "migration_matrix",
    "rejects_by_reason",
    "rfm_grid",
    "sizes_over_time",
]


def feature_distributions(raw: pd.DataFrame, transformed: pd.DataFrame, log_features: Collection[str]) -> Figure:
    """One row per model feature: histogram of the raw values and of the values the model sees.

    Parameters
    ----------
    raw : pandas.DataFrame
        Model features in original units (NaN dropped per feature).
    transformed : pandas.DataFrame
        The same columns after the model's transform.
    log_features : collection of str
        Features that are log-transformed before standardisation.

    Returns
    -------
    matplotlib.figure.Figure
        About 2 inches tall per feature.
    """
    features = list(raw.columns)
    fig = new_figure(10, 2.0 * max(len(features), 1) + 0.8)
    suptitle(fig, f"Model features before and after their transform (sample of {len(raw):,} customers)")
    axes = fig.subplots(max(len(features), 1), 2, squeeze=False)
    if not features:
        for ax in axes[0]:
            note(dress(ax, "no feature"), "no model feature")
        return fig
    logs = set(log_features)
    for row, feature in zip(axes, features, strict=True):
        after = "after log and standardisation" if feature in logs else "after standardisation"
        values = numbers(raw, feature)
        values = values[np.isfinite(values)]
        # A long right tail (monetary, frequency) would squeeze the raw histogram into one bar: it shows the
        # customers up to the 99th percentile and says so; the transformed panel shows everyone.
        top = float(np.percentile(values, 99)) if values.size else float("nan")
        clipped = values.size and top < values.max() and (values > top).mean() <= 0.01
        raw_title = f"{feature}: raw" + (f" (99% of customers, up to {top:,.4g})" if clipped else "")
        panels = ((raw, raw_title, "value (original units)", "#56B4E9", top if clipped else None),
                  (transformed, f"{feature}: {after}", "value the model sees, centred (standard deviations)",
                   "#E69F00", None))
        for ax, (frame, title, xlabel, colour, upper) in zip(row, panels, strict=True):
            dress(ax, title, xlabel, "customers")
            data = numbers(frame, feature)
            data = data[np.isfinite(data)]
            if upper is not None:
                data = data[data <= upper]
            if not data.size:
                note(ax, "no value")
                continue
            ax.hist(data, bins=30, color=colour, edgecolor="white", linewidth=0.4)
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    return fig


def correlation_matrix(corr: pd.DataFrame) -> Figure:
    """Correlation of the model features, each cell annotated.

    Parameters
    ----------
    corr : pandas.DataFrame
        Square, features x features, values in [-1, 1] or NaN.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(corr.columns)
    fig = new_figure(3.0 + 0.7 * n, min(max(4.5, 2.2 + 0.6 * n), 10.5))
    ax = dress(fig.add_subplot(), "Correlation of the model features (as the model sees them)", "model feature",
                "model feature", reserve=0.7)
    if not n or not len(corr):
        note(ax, "no feature")
        return fig
    values = corr.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    show = min(fig.get_figwidth() - 3.0, fig.get_figheight() - 2.2) / n >= 0.4
    texts = np.array([[("n/a" if not np.isfinite(v) else f"{v:.2f}") if show else "" for v in row] for row in values],
                     dtype=object)
    heatmap(fig, ax, values, list(corr.index), list(corr.columns), "RdBu_r", Normalize(-1, 1), texts,
             "correlation (Pearson)", aspect="equal")
    rotate_xticks(ax)
    return fig


def rfm_grid(grid: pd.DataFrame) -> Figure:
    """Customers and revenue share per R x F score cell, R = 5 (most recent) at the top.

    Parameters
    ----------
    grid : pandas.DataFrame
        Columns ``r_score``, ``f_score`` (1..5), ``customers``, ``revenue``; missing cells count 0.

    Returns
    -------
    matplotlib.figure.Figure
    """
    customers, revenue = np.zeros((5, 5)), np.zeros((5, 5))
    r, f = numbers(grid, "r_score"), numbers(grid, "f_score")
    counts, money = np.nan_to_num(numbers(grid, "customers")), np.nan_to_num(numbers(grid, "revenue"))
    for ri, fi, c, m in zip(r, f, counts, money, strict=True):
        if np.isfinite(ri) and np.isfinite(fi) and 1 <= ri <= 5 and 1 <= fi <= 5:
            customers[5 - int(ri), int(fi) - 1] += c
            revenue[5 - int(ri), int(fi) - 1] += m
    total = revenue.sum()
    revenue = revenue / total * 100 if total > 0 else revenue
    fig = new_figure(11, 5.0)
    suptitle(fig, "RFM grid: recency score (R) against frequency score (F)")
    rows, cols = ["5", "4", "3", "2", "1"], ["1", "2", "3", "4", "5"]
    panels = ((customers, "Customers per R x F cell", "viridis", "customers", "{:,.0f}"),
              (revenue, "Revenue per R x F cell (share of total, %)", "cividis", "share of total revenue (%)",
               "{:.1f}%"))
    for ax, (values, title, cmap, bar_label, fmt) in zip(fig.subplots(1, 2), panels, strict=True):
        dress(ax, title, "F score (5 = most invoices)", "R score (5 = most recent)", reserve=0.6)
        texts = np.vectorize(fmt.format, otypes=[object])(values)
        heatmap(fig, ax, values, rows, cols, cmap, Normalize(0, finite_max(values)), texts, bar_label)
    return fig


def rejects_by_reason(counts: pd.DataFrame) -> Figure:
    """Rejected source lines per reason, largest first.

    Parameters
    ----------
    counts : pandas.DataFrame
        Columns ``reason`` and ``lines``.

    Returns
    -------
    matplotlib.figure.Figure
        A note "no line was rejected" when every count is 0.
    """
    reasons = [str(r) for r in counts["reason"]] if "reason" in counts.columns else []
    lines = np.nan_to_num(numbers(counts, "lines"))
    order = sorted(range(len(reasons)), key=lambda i: (-lines[i], reasons[i]))
    fig = new_figure(9, 1.6 + 0.45 * max(len(order), 1))
    ax = dress(fig.add_subplot(), "Rejected source lines by reason", "rejected source lines", "reason")
    if not order or lines.max() <= 0:
        note(ax, "no line was rejected")
        return fig
    values = [lines[i] for i in order]
    bars = ax.barh(range(len(order)), values, color="#D55E00", edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, [f"{v:,.0f}" for v in values], padding=3, fontsize=SMALL_PT)
    ax.set_yticks(range(len(order)), [reasons[i] for i in order])
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.18)
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    return fig


def sizes_over_time(sizes: pd.DataFrame, colours: Mapping[int, str], labels: Mapping[int, str]) -> Figure:
    """Customers per segment at each snapshot date, as stacked bars.

    Parameters
    ----------
    sizes : pandas.DataFrame
        Columns ``as_of_date`` (date), ``segment_id``, ``customers``; a segment absent on a date counts 0.
    colours, labels : dict
        Segment id -> colour and display name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure(10, 5)
    ax = dress(fig.add_subplot(), "Customers per segment at each snapshot", "snapshot date", "customers")
    needed = {"as_of_date", "segment_id", "customers"}
    if not needed <= set(sizes.columns) or sizes.empty:
        note(ax, "no snapshot to show")
        return fig
    df = sizes.assign(date=pd.to_datetime(sizes["as_of_date"]), segment_id=sizes["segment_id"].astype(int),
                      customers=pd.to_numeric(sizes["customers"], errors="coerce").fillna(0))
    table = df.pivot_table(index="date", columns="segment_id", values="customers", aggfunc="sum", fill_value=0)
    x, bottom, handles = np.arange(len(table)), np.zeros(len(table)), []
    for sid in sorted(table.columns):
        heights = table[sid].to_numpy(dtype=float)
        colour = colour_of(colours, int(sid))
        ax.bar(x, heights, bottom=bottom, width=0.7, color=colour, edgecolor="white", linewidth=0.5)
        bottom += heights
        handles.append(Patch(facecolor=colour, label=label_of(labels, int(sid))))
    totals = ax.bar(x, np.zeros_like(bottom), bottom=bottom, width=0.7, color="none")
    ax.bar_label(totals, [f"{t:,.0f}" for t in bottom], padding=2, fontsize=SMALL_PT)
    ax.set_xticks(x, [d.strftime("%Y-%m-%d") for d in table.index])
    if len(x) > 6:
        rotate_xticks(ax)
    ax.set_ylim(0, finite_max(bottom) * 1.12)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.legend(handles=handles[::-1], loc="outside right upper", fontsize=SMALL_PT)
    return fig


def migration_matrix(matrix: pd.DataFrame, from_date: str, to_date: str) -> Figure:
    """Where one snapshot's customers are at the next: counts and row shares per (from, to) segment.

    Parameters
    ----------
    matrix : pandas.DataFrame
        Index = segment labels at ``from_date`` (may include "new customers"), columns = segment labels at
        ``to_date`` (may include "left"), values = customers.
    from_date, to_date : str
        The two snapshot dates.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows, cols = list(matrix.index), list(matrix.columns)
    fig = new_figure(2.8 + 1.0 * len(cols), max(4.0, 2.4 + 0.6 * len(rows)))
    ax = dress(fig.add_subplot(), f"Where the customers of {from_date} are at {to_date}", f"segment at {to_date}",
                f"segment at {from_date}", reserve=0.7)
    if not rows or not cols:
        note(ax, "no customer to follow")
        return fig
    values = matrix.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=float)
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.full_like(values, np.nan), where=totals > 0)
    texts = np.array([[f"{v:,.0f}" + (f"\n{s:.0%}" if np.isfinite(s) else "") for v, s in zip(vr, sr, strict=True)]
                      for vr, sr in zip(values, shares, strict=True)], dtype=object)
    heatmap(fig, ax, values, rows, cols, "cividis", Normalize(0, finite_max(values)), texts,
             "customers (text: count and share of the row)")
    rotate_xticks(ax, 30)
    return fig

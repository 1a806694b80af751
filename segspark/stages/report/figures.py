"""The report's figures (``segspark report``): one function per figure, each returning a matplotlib Figure.

This module draws the model and segment figures and re-exports the data figures
(:mod:`segspark.stages.report.data_figures`) and the shared style (:mod:`segspark.stages.report.style`).

Figures are built on :class:`matplotlib.figure.Figure` directly, never on pyplot's global state, so they are
independent of each other, headless and thread-safe; :func:`png_bytes` renders one with the Agg canvas. Inputs are
small pandas/numpy objects already on the driver: nothing here touches Spark or files.

Conventions
-----------
- One colour per segment in every figure (:func:`segment_colours`: colour-blind-safe, by sorted segment id) and one
  colour, line style and marker per algorithm (:func:`algorithm_style`), so lines differ without colour too.
- Segment display names (``labels``: segment id -> name such as "Champions (1)") in legends and tick labels.
- Diverging ``RdBu_r`` centred at 0 for effect sizes and correlations; sequential ``viridis``/``cividis`` for counts.
- Awkward input (no rows, NaN, one segment, constant values) gives a figure with a note, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

# The data figures and the shared style are part of this module's public API: the report imports figures only.
from segspark.stages.report.data_figures import (
    correlation_matrix,
    feature_distributions,
    migration_matrix,
    rejects_by_reason,
    rfm_grid,
    sizes_over_time,
)
from segspark.stages.report.style import (
    ALGORITHMS,
    INK,
    LABEL_PT,
    NOISE_GREY,
    PALETTE,
    SMALL_PT,
    TICK_PT,
    algorithm_style,
    as_xy,
    colour_of,
    dress,
    finite_max,
    flags,
    heatmap,
    label_of,
    new_figure,
    note,
    numbers,
    ordered_algorithms,
    png_bytes,
    point_style,
    rotate_xticks,
    segment_colours,
    suptitle,
)

__all__ = [
    "ALGORITHMS",
    "PALETTE",
    "algorithm_comparison",
    "algorithm_style",
    "correlation_matrix",
    "feature_distributions",
    "migration_matrix",
    "pca_scatter",
    "png_bytes",
    "profile_heatmap",
    "rejects_by_reason",
    "rfm_grid",
    "segment_colours",
    "segment_sizes",
    "silhouette_by_k",
    "silhouette_plot",
    "sizes_over_time",
    "stability_by_k",
    "top_features",
    "wssse_by_k",
]


def _by_k(selection: pd.DataFrame, column: str, title: str, ylabel: str, *, reference: str | None = None,
          knee: bool = False, empty_note: str = "no candidate was scored") -> Figure:
    """Metric against K: one line per algorithm, the chosen (algorithm, K) ringed, optionally knees and references."""
    fig = new_figure(10, 5)
    ax = dress(fig.add_subplot(), title, "K (number of segments)", ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    drew = False
    df = selection
    for index, algorithm in enumerate(ordered_algorithms(df)):
        rows = df[df["algorithm"].astype(str) == algorithm].sort_values("k")
        k, y = numbers(rows, "k"), numbers(rows, column)
        style = algorithm_style(algorithm)
        ok = np.isfinite(k) & np.isfinite(y)
        if ok.any():
            line = {**style, "linestyle": "-"} if reference else style
            ax.plot(k[ok], y[ok], linewidth=2, markersize=6, **line)
            drew = True
        if reference:
            ref = numbers(rows, reference)
            ok_ref = np.isfinite(k) & np.isfinite(ref)
            if ok_ref.any():
                ax.plot(k[ok_ref], ref[ok_ref], color=style["color"], linestyle="--", marker=style["marker"],
                        markerfacecolor="white", linewidth=1.5, label=f"{style['label']} on a structureless reference")
        for flag, text, offset in (("is_elbow", "knee", (14, -22 - 13 * index)), ("is_chosen", "chosen", (14, 16))):
            if flag == "is_elbow" and not knee:
                continue
            for kx, ky in zip(k[flags(rows, flag) & ok], y[flags(rows, flag) & ok], strict=True):
                if flag == "is_chosen":
                    ax.scatter([kx], [ky], s=320, facecolors="none", edgecolors="black", linewidths=2, zorder=5,
                               label="chosen (algorithm, K)")
                ax.annotate(text, (kx, ky), xytext=offset, textcoords="offset points", fontsize=SMALL_PT, color=INK,
                            arrowprops={"arrowstyle": "->", "color": INK, "linewidth": 1})
    if not drew:
        note(ax, empty_note)
        return fig
    handles, names = ax.get_legend_handles_labels()
    kept = {n: h for h, n in zip(handles, names, strict=True) if n != "chosen (algorithm, K)"}
    if "chosen (algorithm, K)" in names:
        kept["chosen (algorithm, K)"] = Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
                                               markeredgecolor="black", markeredgewidth=2)
    fig.legend(kept.values(), kept.keys(), loc="outside lower center", ncols=min(3, len(kept)), fontsize=SMALL_PT)
    return fig


def segment_sizes(segments: pd.DataFrame, colours: Mapping[int, str], labels: Mapping[int, str]) -> Figure:
    """Share of customers and of revenue per segment, as horizontal grouped bars.

    Parameters
    ----------
    segments : pandas.DataFrame
        Columns ``segment_id``, ``customer_share`` (0..1) and ``revenue_share`` (0..1, NaN when unknown).
    colours, labels : dict
        Segment id -> colour (:func:`segment_colours`) and display name.

    Returns
    -------
    matplotlib.figure.Figure
        Customers only, with "revenue not profiled" in the title, when every revenue share is NaN.
    """
    df = segments.sort_values("segment_id") if "segment_id" in segments.columns else segments.iloc[0:0]
    ids = [int(s) for s in df["segment_id"]] if len(df) else []
    customers, revenue = numbers(df, "customer_share") * 100, numbers(df, "revenue_share") * 100
    has_revenue = bool(np.isfinite(revenue).any())
    fig = new_figure(9, 1.8 + (0.7 if has_revenue else 0.45) * max(len(ids), 1))
    title = "Segment sizes: share of customers and of revenue" if has_revenue else (
        "Segment sizes: share of customers (revenue not profiled)")
    ax = dress(fig.add_subplot(), title, "share of customers / of revenue (%)", "segment")
    if not ids:
        note(ax, "no segment to show")
        return fig
    y, height = np.arange(len(ids)), (0.38 if has_revenue else 0.6)
    fills = [colour_of(colours, s) for s in ids]
    bars = ax.barh(y - height / 2 if has_revenue else y, np.nan_to_num(customers), height=height, color=fills,
                   edgecolor="black", linewidth=0.6)
    ax.bar_label(bars, [f"{v:.1f}%" if np.isfinite(v) else "n/a" for v in customers], padding=3, fontsize=SMALL_PT)
    customer_name = "share of customers" + ("" if has_revenue else " (revenue not profiled)")
    handles = [Patch(facecolor="white", edgecolor="black", label=customer_name)]
    if has_revenue:
        bars = ax.barh(y + height / 2, np.nan_to_num(revenue), height=height, color=fills, edgecolor="black",
                       linewidth=0.6, hatch="///")
        ax.bar_label(bars, [f"{v:.1f}%" if np.isfinite(v) else "n/a" for v in revenue], padding=3, fontsize=SMALL_PT)
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="share of revenue"))
    ax.set_yticks(y, [label_of(labels, s) for s in ids])
    ax.invert_yaxis()
    ax.set_xlim(0, finite_max(customers, revenue) * 1.2)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=SMALL_PT)
    return fig


def wssse_by_k(selection: pd.DataFrame) -> Figure:
    """WSSSE against K per algorithm, with the knee annotated and the chosen (algorithm, K) ringed.

    Parameters
    ----------
    selection : pandas.DataFrame
        Columns ``algorithm``, ``k``, ``wssse``, ``is_elbow``, ``is_chosen``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _by_k(selection, "wssse", "Within-segment sum of squares against K: the knee is where more segments "
                 "stop paying off", "within-segment sum of squares (model units)", knee=True)


def silhouette_by_k(selection: pd.DataFrame) -> Figure:
    """Mean silhouette against K per algorithm, beside the same algorithm on a structureless reference.

    Parameters
    ----------
    selection : pandas.DataFrame
        Columns ``algorithm``, ``k``, ``silhouette_euclidean``, ``reference_silhouette`` (either may be NaN),
        ``is_chosen``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _by_k(selection, "silhouette_euclidean", "Silhouette against K: higher means better-separated segments",
                 "mean silhouette (Euclidean, sample)", reference="reference_silhouette")


def stability_by_k(selection: pd.DataFrame) -> Figure:
    """Stability (adjusted Rand index across seeds) against K per algorithm.

    Parameters
    ----------
    selection : pandas.DataFrame
        Columns ``algorithm``, ``k``, ``stability_ari`` (may be all NaN), ``is_chosen``.

    Returns
    -------
    matplotlib.figure.Figure
        An empty axes with a note when stability was not measured.
    """
    fig = _by_k(selection, "stability_ari", "Stability against K: near 1 means the same segments whatever the seed",
                "stability (adjusted Rand index across seeds)",
                empty_note="stability was not measured (model.stability_runs = 0)")
    fig.axes[0].set_ylim(0, 1.05)
    return fig


def silhouette_plot(values: np.ndarray, segment_ids: np.ndarray, colours: Mapping[int, str],
                    labels: Mapping[int, str], mean: float | None) -> Figure:
    """The classic silhouette plot: each segment's members' silhouettes, sorted, as one filled block.

    Parameters
    ----------
    values : numpy.ndarray
        Silhouette value per sampled customer (NaN dropped).
    segment_ids : numpy.ndarray
        Segment id per customer, same length.
    colours, labels : dict
        Segment id -> colour and display name.
    mean : float or None
        The mean silhouette, drawn as a dashed vertical line (the values' mean when None or not finite).

    Returns
    -------
    matplotlib.figure.Figure
    """
    v, ids = np.asarray(values, dtype=float).ravel(), np.asarray(segment_ids).ravel()
    n = min(len(v), len(ids))
    keep = np.isfinite(v[:n])
    v, ids = v[:n][keep], ids[:n][keep].astype(int)
    segments = sorted({int(s) for s in ids})
    fig = new_figure(9, min(max(3.8, 2.0 + 0.55 * len(segments)), 10))
    ax = dress(fig.add_subplot(), "Silhouette of each customer by segment: bars further right of 0 fit their "
                "segment better", "silhouette value", "customers by segment (each sorted by silhouette)")
    if not v.size:
        note(ax, "no silhouette was computed")
        return fig
    gap, y0, ticks = max(2.0, 0.03 * v.size), 0.0, []
    for sid in segments:
        block = np.sort(v[ids == sid])[::-1]
        m = block.size
        ys = y0 + np.repeat(np.arange(m), 2) + np.tile([0.0, 1.0], m)
        colour = colour_of(colours, sid)
        ax.fill_betweenx(ys, 0, np.repeat(block, 2), facecolor=colour, edgecolor=colour, linewidth=0.3)
        ticks.append(y0 + m / 2)
        y0 += m + gap
    ax.set_yticks(ticks, [label_of(labels, s) for s in segments])
    ax.set_ylim(y0 - gap / 2, -gap / 2)
    ax.set_xlim(min(-0.1, float(v.min())), 1)
    ax.axvline(0, color="black", linewidth=0.8)
    centre = float(mean) if mean is not None and math.isfinite(mean) else float(v.mean())
    ax.axvline(centre, color=INK, linestyle="--", linewidth=1.5, label=f"mean {centre:.2f}")
    ax.legend(loc="lower right", fontsize=SMALL_PT)
    return fig


def _pc_label(i: int, explained: tuple[float, float] | None) -> str:
    share = explained[i - 1] if explained is not None and len(explained) >= i else None
    if share is not None and np.isfinite(share):
        return f"PC{i} ({share * 100:.0f}% of variance)"
    return f"PC{i}"


def pca_scatter(coords: np.ndarray, segment_ids: np.ndarray, centroids: np.ndarray, centroid_ids: np.ndarray,
                explained: tuple[float, float], colours: Mapping[int, str], labels: Mapping[int, str]) -> Figure:
    """Customers on the first two principal components of the model space, coloured by segment, with centroids.

    Parameters
    ----------
    coords : numpy.ndarray
        n x 2 customer coordinates (n may be 0).
    segment_ids : numpy.ndarray
        Segment id per customer.
    centroids, centroid_ids : numpy.ndarray
        K x 2 centroid coordinates in the same axes, and their segment ids.
    explained : tuple of float
        Share of variance of PC1 and PC2 (0..1, NaN when unknown).
    colours, labels : dict
        Segment id -> colour and display name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xy, ids = as_xy(coords), np.asarray(segment_ids).ravel()
    n = min(len(xy), len(ids))
    xy, ids = xy[:n], ids[:n].astype(int)
    cxy, cids = as_xy(centroids), np.asarray(centroid_ids).ravel().astype(int)
    fig = new_figure(10, 6.5)
    ax = dress(fig.add_subplot(), "Customers on the first two principal components, coloured by segment",
                _pc_label(1, explained), _pc_label(2, explained))
    if not n:
        note(ax, "no customer to plot")
        return fig
    segments = sorted({int(s) for s in ids} | {int(s) for s in cids[: len(cxy)]})
    handles = []
    for sid in segments:
        colour, members = colour_of(colours, sid), xy[ids == sid]
        ax.scatter(members[:, 0], members[:, 1], color=colour, **point_style(n))
        handles.append(
            Line2D([], [], marker="o", linestyle="", color=colour, markersize=7, label=label_of(labels, sid))
        )
    for (cx, cy), sid in zip(cxy, cids, strict=False):
        ax.scatter([cx], [cy], s=230, marker="X", color=colour_of(colours, int(sid)), edgecolors="black",
                   linewidths=1.5, zorder=4)
    if len(cxy):
        handles.append(Line2D([], [], marker="X", linestyle="", markerfacecolor="white", markeredgecolor="black",
                              markersize=11, label="segment centre"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=SMALL_PT)
    return fig


def profile_heatmap(effects: pd.DataFrame, annotations: pd.DataFrame) -> Figure:
    """Segments x features: colour = effect size (diverging, centred at 0), text = the segment's mean.

    Parameters
    ----------
    effects : pandas.DataFrame
        Index = segment display labels (in order), columns = features, values = standardised differences (NaN ok).
    annotations : pandas.DataFrame
        Same shape: the text of each cell (e.g. ``"mean 3.2"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows, cols = list(effects.index), list(effects.columns)
    width = 2.8 + 1.0 * len(cols)
    fig = new_figure(width, max(4.0, 2.8 + 0.55 * len(rows)))
    ax = dress(fig.add_subplot(), "How each segment differs from all customers (colour: difference in standard "
                "deviations; text: the segment's mean)", "model feature", "segment", reserve=0.7)
    if not rows or not cols:
        note(ax, "no profile to show")
        return fig
    values = effects.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if annotations.shape == effects.shape:
        raw = annotations.to_numpy(dtype=object)
    else:
        raw = annotations.reindex(index=effects.index, columns=effects.columns).to_numpy(dtype=object)
    narrow = (fig.get_figwidth() - 2.8) / len(cols) < 1.0
    texts = np.array([["" if t is None or (isinstance(t, float) and math.isnan(t)) else
                       (str(t).replace(" ", "\n", 1) if narrow else str(t)) for t in row] for row in raw], dtype=object)
    vmax = finite_max(values)
    heatmap(fig, ax, values, rows, cols, "RdBu_r", Normalize(-vmax, vmax), texts,
             "difference from all customers (standard deviations)")
    rotate_xticks(ax)
    return fig


def top_features(tops: dict[int, list[tuple[str, float]]], colours: Mapping[int, str],
                 labels: Mapping[int, str]) -> Figure:
    """Small multiples: each segment's most distinguishing features as bars of their effect size.

    Parameters
    ----------
    tops : dict
        Segment id -> ordered list of (feature, effect size); an empty list shows "no distinguishing feature".
    colours, labels : dict
        Segment id -> colour and display name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    segments = sorted(int(s) for s in tops)
    names = max((len(str(f)) for items in tops.values() for f, _ in items), default=0) * 0.6 * TICK_PT / 72
    ncols = min(max(1, int(10.6 // (names + 1.8))), 4, max(len(segments), 1))
    nrows = max(1, math.ceil(len(segments) / ncols))
    longest = max((len(v) for v in tops.values()), default=1)
    fig = new_figure(max(2.9 * ncols + 1.2, ncols * (names + 1.8) + 0.8), nrows * max(2.3, 0.9 + 0.32 * longest) + 0.8)
    suptitle(fig, "The features that set each segment apart most")
    fig.supxlabel("difference from all customers (standard deviations)", fontsize=LABEL_PT)
    fig.supylabel("feature", fontsize=LABEL_PT)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(segments):] if segments else []:
        ax.remove()
    if not segments:
        note(dress(axes[0], "no segment"), "no segment to show")
        return fig
    effects = [e for items in tops.values() for _, e in items]
    limit = finite_max(np.array(effects, dtype=float)) * 1.15
    for ax, sid in zip(axes, segments, strict=False):
        dress(ax, label_of(labels, sid), reserve=names + 0.1)
        items = [(str(f), float(e)) for f, e in tops[sid] if e is not None and np.isfinite(e)]
        ax.set_xlim(-limit, limit)
        if not items:
            note(ax, "no distinguishing feature")
            continue
        ax.axvline(0, color="black", linewidth=0.8)
        y = np.arange(len(items))
        ax.barh(y, [e for _, e in items], color=colour_of(colours, sid), edgecolor="black", linewidth=0.5)
        ax.set_yticks(y, [f for f, _ in items])
        ax.set_ylim(len(items) - 0.5, -0.5)
    return fig


def algorithm_comparison(coords: np.ndarray, assignments: dict[str, np.ndarray],
                         scores: dict[str, float | None]) -> Figure:
    """The same customers (PCA axes) segmented by each algorithm, one panel per algorithm.

    Parameters
    ----------
    coords : numpy.ndarray
        n x 2 coordinates (the PCA of :func:`pca_scatter`).
    assignments : dict
        Algorithm name -> integer cluster label per point; -1 is noise (DBSCAN), drawn grey.
    scores : dict
        Algorithm name -> silhouette, None or NaN when not computed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = list(assignments)
    ncols = min(3, max(len(names), 1))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = new_figure(3.6 * ncols + 0.8, 3.3 * nrows + 1.0)
    suptitle(fig, "The same customers segmented by each algorithm (first two principal components)")
    fig.supxlabel("PC1 (first principal component)", fontsize=LABEL_PT)
    fig.supylabel("PC2 (second principal component)", fontsize=LABEL_PT)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(names):] if names else []:
        ax.remove()
    if not names:
        note(dress(axes[0], "no algorithm"), "no algorithm to compare")
        return fig
    xy = as_xy(coords)
    for ax, name in zip(axes, names, strict=False):
        score = (scores or {}).get(name)
        shown = f"{score:.2f}" if score is not None and np.isfinite(score) else "n/a"
        dress(ax, f"{algorithm_style(name)['label']}: silhouette {shown}")
        labels = np.asarray(assignments[name]).ravel().astype(int)
        n = min(len(xy), len(labels))
        if not n:
            note(ax, "no customer to plot", clear_ticks=False)
            continue
        points, labels = xy[:n], labels[:n]
        palette = segment_colours(int(c) for c in labels if c >= 0)
        noise = labels < 0
        if noise.any():
            ax.scatter(points[noise, 0], points[noise, 1], color=NOISE_GREY, label=f"noise ({noise.mean():.0%})",
                       **point_style(n))
        for cluster, colour in palette.items():
            members = points[labels == cluster]
            ax.scatter(members[:, 0], members[:, 1], color=colour, **point_style(n))
        if noise.any():
            ax.legend(loc="best", fontsize=SMALL_PT, markerscale=1.5)
        ax.tick_params(labelsize=TICK_PT)
    return fig

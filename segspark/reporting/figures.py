"""The report's figures (``segspark report``): one function per figure, each returning a matplotlib Figure.

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

import io
import math
import textwrap
import zlib
from collections.abc import Collection, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

__all__ = [
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

#: Okabe-Ito without black, then Paul Tol's muted extras; segments beyond its length cycle.
PALETTE: tuple[str, ...] = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#332288", "#882255", "#44AA99", "#999933", "#AA4499", "#DDCC77", "#117733", "#88CCEE",
)  # fmt: skip
DPI = 110
_TITLE, _LABEL, _TICK, _SMALL = 11.5, 10.0, 9.5, 9.0
_NOISE_GREY, _NAN_GREY, _INK = "#BBBBBB", "#D9D9D9", "#333333"
#: name -> (human name, colour, line style, marker).
_ALGORITHMS: dict[str, tuple[str, str, object, str]] = {
    "kmeans": ("k-means", "#0072B2", "-", "o"),
    "bisecting_kmeans": ("bisecting k-means", "#D55E00", "--", "s"),
    "gaussian_mixture": ("Gaussian mixture", "#009E73", "-.", "^"),
    "ward": ("Ward (agglomerative)", "#CC79A7", ":", "D"),
    "dbscan": ("DBSCAN", "#E69F00", (0, (5, 1, 1, 1, 1, 1)), "v"),
}
_FALLBACK_STYLES = ((0, (3, 1, 1, 1)), (0, (1, 1)), (0, (5, 2)), (0, (3, 1, 1, 1, 1, 1)))
_FALLBACK_MARKERS = ("P", "h", "X", "*", "<", ">")


def segment_colours(segment_ids: Iterable[int]) -> dict[int, str]:
    """Map each segment to its colour, the same whatever order the ids arrive in.

    Parameters
    ----------
    segment_ids : iterable of int
        Segment ids (duplicates allowed).

    Returns
    -------
    dict of int to str
        Segment id -> hex colour: the smallest id gets ``PALETTE[0]``, the next ``PALETTE[1]``, and so on, cycling.
    """
    ids = sorted({int(s) for s in segment_ids})
    return {sid: PALETTE[i % len(PALETTE)] for i, sid in enumerate(ids)}


def algorithm_style(algorithm: str) -> dict:
    """Colour, line style, marker and human name of an algorithm, fixed across figures.

    Parameters
    ----------
    algorithm : str
        ``kmeans``, ``bisecting_kmeans``, ``gaussian_mixture``, ``ward`` or ``dbscan``; any other name gets a
        stable fallback derived from the name.

    Returns
    -------
    dict
        Keys ``color``, ``linestyle``, ``marker`` and ``label``, ready for ``Axes.plot(**style)``.
    """
    name = str(algorithm)
    if name in _ALGORITHMS:
        label, colour, linestyle, marker = _ALGORITHMS[name]
    else:
        h = zlib.crc32(name.encode())
        colour = PALETTE[7 + h % (len(PALETTE) - 7)]
        linestyle, marker = _FALLBACK_STYLES[h % len(_FALLBACK_STYLES)], _FALLBACK_MARKERS[h % len(_FALLBACK_MARKERS)]
        label = name.replace("_", " ")
    return {"color": colour, "linestyle": linestyle, "marker": marker, "label": label}


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG at 110 dpi with the Agg canvas.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure from this module.

    Returns
    -------
    bytes
        The PNG file's bytes (starting with ``b"\\x89PNG"``).
    """
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# -- shared helpers -------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(min(max(width, 7.0), 11.0), max(height, 2.5)), dpi=DPI, layout="constrained")


def _wrap(text: str, inches: float, fontsize: float) -> str:
    """Break ``text`` into lines that fit ``inches`` at ``fontsize`` (DejaVu Sans averages ~0.6 em a character)."""
    return textwrap.fill(text, width=max(18, int(inches * 72 / (0.6 * fontsize))))


def _column_inches(ax: Axes) -> float:
    """Width of the axes' column of the figure, less a margin: what a title or note centred on it may take."""
    spec = ax.get_subplotspec()
    columns = spec.get_gridspec().ncols if spec is not None else 1
    return ax.get_figure().get_figwidth() / columns - 0.4


def _dress(ax: Axes, title: str = "", xlabel: str = "", ylabel: str = "", reserve: float = 0.0) -> Axes:
    """Title (wrapped to the axes' column of the figure less ``reserve`` inches), axis labels and tick size."""
    if title:
        ax.set_title(_wrap(title, _column_inches(ax) - reserve, _TITLE), fontsize=_TITLE)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=_LABEL)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=_LABEL)
    ax.tick_params(labelsize=_TICK)
    return ax


def _suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(_wrap(text, fig.get_figwidth() - 0.4, _TITLE + 1), fontsize=_TITLE + 1)


def _note(ax: Axes, text: str, clear_ticks: bool = True) -> None:
    ax.text(0.5, 0.5, _wrap(text, _column_inches(ax) - 0.2, _LABEL), transform=ax.transAxes, ha="center",
            va="center", fontsize=_LABEL, color=_INK)
    if clear_ticks:
        ax.set_xticks([])
        ax.set_yticks([])


def _label(labels: Mapping[int, str] | None, sid: int) -> str:
    return str((labels or {}).get(sid, f"segment {sid}"))


def _colour(colours: Mapping[int, str] | None, sid: int) -> str:
    return (colours or {}).get(sid) or PALETTE[sid % len(PALETTE)]


def _numbers(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)


def _flags(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return np.array([bool(v) if pd.notna(v) else False for v in df[column]], dtype=bool)


def _xy(coords: np.ndarray) -> np.ndarray:
    a = np.asarray(coords, dtype=float)
    return np.empty((0, 2)) if a.size == 0 else a.reshape(-1, a.shape[-1])[:, :2]


def _finite_max(*arrays: np.ndarray, default: float = 1.0) -> float:
    values = np.concatenate([np.abs(np.asarray(a, dtype=float)).ravel() for a in arrays]) if arrays else np.array([])
    values = values[np.isfinite(values)]
    top = float(values.max()) if values.size else 0.0
    return top if top > 0 else default


def _points(n: int) -> dict:
    """Marker size and opacity for a scatter of ``n`` points: small, and more transparent the more there are."""
    return {"s": float(np.clip(4000 / max(n, 1), 3, 12)), "alpha": 0.8 if n <= 500 else 0.5 if n <= 5000 else 0.3,
            "linewidths": 0, "rasterized": True}


def _rotate_xticks(ax: Axes, degrees: float = 35) -> None:
    for tick in ax.get_xticklabels():
        tick.set_rotation(degrees)
        tick.set_ha("right")
        tick.set_rotation_mode("anchor")


def _heatmap(fig: Figure, ax: Axes, values: np.ndarray, rows: list, cols: list, cmap: str, norm: Normalize,
             texts: np.ndarray | None, colourbar_label: str, aspect: str = "auto") -> None:
    """Draw a cell grid (NaN cells grey), tick labels, a colourbar and per-cell text in contrasting ink."""
    colourmap: Colormap = colormaps[cmap].with_extremes(bad=_NAN_GREY)
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    image = ax.imshow(data, cmap=colourmap, norm=norm, aspect=aspect, interpolation="nearest")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.tick_params(length=0, labelsize=_TICK)
    colourbar = fig.colorbar(image, ax=ax, shrink=0.9)
    colourbar.set_label(_wrap(colourbar_label, 0.8 * ax.get_position().height * fig.get_figheight(), _LABEL),
                        fontsize=_LABEL)
    colourbar.ax.tick_params(labelsize=_TICK)
    if texts is None:
        return
    for (i, j), text in np.ndenumerate(texts):
        if not text:
            continue
        value = data[i, j]
        r, g, b, _ = (0.85, 0.85, 0.85, 1.0) if np.ma.is_masked(value) else colourmap(norm(value))
        ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=_SMALL, color=ink)


def _ordered_algorithms(df: pd.DataFrame) -> list[str]:
    names = {str(a) for a in df["algorithm"].dropna()} if "algorithm" in df.columns else set()
    known = [a for a in _ALGORITHMS if a in names]
    return known + sorted(names - set(known))


def _by_k(selection: pd.DataFrame, column: str, title: str, ylabel: str, *, reference: str | None = None,
          knee: bool = False, empty_note: str = "no candidate was scored") -> Figure:
    """Metric against K: one line per algorithm, the chosen (algorithm, K) ringed, optionally knees and references."""
    fig = _figure(10, 5)
    ax = _dress(fig.add_subplot(), title, "K (number of segments)", ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    drew = False
    df = selection
    for index, algorithm in enumerate(_ordered_algorithms(df)):
        rows = df[df["algorithm"].astype(str) == algorithm].sort_values("k")
        k, y = _numbers(rows, "k"), _numbers(rows, column)
        style = algorithm_style(algorithm)
        ok = np.isfinite(k) & np.isfinite(y)
        if ok.any():
            line = {**style, "linestyle": "-"} if reference else style
            ax.plot(k[ok], y[ok], linewidth=2, markersize=6, **line)
            drew = True
        if reference:
            ref = _numbers(rows, reference)
            ok_ref = np.isfinite(k) & np.isfinite(ref)
            if ok_ref.any():
                ax.plot(k[ok_ref], ref[ok_ref], color=style["color"], linestyle="--", marker=style["marker"],
                        markerfacecolor="white", linewidth=1.5, label=f"{style['label']} on a structureless reference")
        for flag, text, offset in (("is_elbow", "knee", (14, -22 - 13 * index)), ("is_chosen", "chosen", (14, 16))):
            if flag == "is_elbow" and not knee:
                continue
            for kx, ky in zip(k[_flags(rows, flag) & ok], y[_flags(rows, flag) & ok], strict=True):
                if flag == "is_chosen":
                    ax.scatter([kx], [ky], s=320, facecolors="none", edgecolors="black", linewidths=2, zorder=5,
                               label="chosen (algorithm, K)")
                ax.annotate(text, (kx, ky), xytext=offset, textcoords="offset points", fontsize=_SMALL, color=_INK,
                            arrowprops={"arrowstyle": "->", "color": _INK, "linewidth": 1})
    if not drew:
        _note(ax, empty_note)
        return fig
    handles, names = ax.get_legend_handles_labels()
    kept = {n: h for h, n in zip(handles, names, strict=True) if n != "chosen (algorithm, K)"}
    if "chosen (algorithm, K)" in names:
        kept["chosen (algorithm, K)"] = Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
                                               markeredgecolor="black", markeredgewidth=2)
    fig.legend(kept.values(), kept.keys(), loc="outside lower center", ncols=min(3, len(kept)), fontsize=_SMALL)
    return fig


# -- the figures ----------------------------------------------------------------------------------------------------


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
    customers, revenue = _numbers(df, "customer_share") * 100, _numbers(df, "revenue_share") * 100
    has_revenue = bool(np.isfinite(revenue).any())
    fig = _figure(9, 1.8 + (0.7 if has_revenue else 0.45) * max(len(ids), 1))
    title = "Segment sizes: share of customers and of revenue" if has_revenue else (
        "Segment sizes: share of customers (revenue not profiled)")
    ax = _dress(fig.add_subplot(), title, "share of customers / of revenue (%)", "segment")
    if not ids:
        _note(ax, "no segment to show")
        return fig
    y, height = np.arange(len(ids)), (0.38 if has_revenue else 0.6)
    fills = [_colour(colours, s) for s in ids]
    bars = ax.barh(y - height / 2 if has_revenue else y, np.nan_to_num(customers), height=height, color=fills,
                   edgecolor="black", linewidth=0.6)
    ax.bar_label(bars, [f"{v:.1f}%" if np.isfinite(v) else "n/a" for v in customers], padding=3, fontsize=_SMALL)
    customer_name = "share of customers" + ("" if has_revenue else " (revenue not profiled)")
    handles = [Patch(facecolor="white", edgecolor="black", label=customer_name)]
    if has_revenue:
        bars = ax.barh(y + height / 2, np.nan_to_num(revenue), height=height, color=fills, edgecolor="black",
                       linewidth=0.6, hatch="///")
        ax.bar_label(bars, [f"{v:.1f}%" if np.isfinite(v) else "n/a" for v in revenue], padding=3, fontsize=_SMALL)
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="share of revenue"))
    ax.set_yticks(y, [_label(labels, s) for s in ids])
    ax.invert_yaxis()
    ax.set_xlim(0, _finite_max(customers, revenue) * 1.2)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=_SMALL)
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
                    labels: Mapping[int, str], mean: float) -> Figure:
    """The classic silhouette plot: each segment's members' silhouettes, sorted, as one filled block.

    Parameters
    ----------
    values : numpy.ndarray
        Silhouette value per sampled customer (NaN dropped).
    segment_ids : numpy.ndarray
        Segment id per customer, same length.
    colours, labels : dict
        Segment id -> colour and display name.
    mean : float
        The mean silhouette, drawn as a dashed vertical line (the values' mean when not finite).

    Returns
    -------
    matplotlib.figure.Figure
    """
    v, ids = np.asarray(values, dtype=float).ravel(), np.asarray(segment_ids).ravel()
    n = min(len(v), len(ids))
    keep = np.isfinite(v[:n])
    v, ids = v[:n][keep], ids[:n][keep].astype(int)
    segments = sorted({int(s) for s in ids})
    fig = _figure(9, min(max(3.8, 2.0 + 0.55 * len(segments)), 10))
    ax = _dress(fig.add_subplot(), "Silhouette of each customer by segment: bars further right of 0 fit their "
                "segment better", "silhouette value", "customers by segment (each sorted by silhouette)")
    if not v.size:
        _note(ax, "no silhouette was computed")
        return fig
    gap, y0, ticks = max(2.0, 0.03 * v.size), 0.0, []
    for sid in segments:
        block = np.sort(v[ids == sid])[::-1]
        m = block.size
        ys = y0 + np.repeat(np.arange(m), 2) + np.tile([0.0, 1.0], m)
        colour = _colour(colours, sid)
        ax.fill_betweenx(ys, 0, np.repeat(block, 2), facecolor=colour, edgecolor=colour, linewidth=0.3)
        ticks.append(y0 + m / 2)
        y0 += m + gap
    ax.set_yticks(ticks, [_label(labels, s) for s in segments])
    ax.set_ylim(y0 - gap / 2, -gap / 2)
    ax.set_xlim(min(-0.1, float(v.min())), 1)
    ax.axvline(0, color="black", linewidth=0.8)
    centre = float(mean) if mean is not None and math.isfinite(mean) else float(v.mean())
    ax.axvline(centre, color=_INK, linestyle="--", linewidth=1.5, label=f"mean {centre:.2f}")
    ax.legend(loc="lower right", fontsize=_SMALL)
    return fig


def _pc_label(i: int, explained: tuple[float, float] | None) -> str:
    share = explained[i - 1] if explained is not None and len(explained) >= i else None
    ok = share is not None and np.isfinite(share)
    return f"PC{i} ({share * 100:.0f}% of variance)" if ok else f"PC{i}"


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
    xy, ids = _xy(coords), np.asarray(segment_ids).ravel()
    n = min(len(xy), len(ids))
    xy, ids = xy[:n], ids[:n].astype(int)
    cxy, cids = _xy(centroids), np.asarray(centroid_ids).ravel().astype(int)
    fig = _figure(10, 6.5)
    ax = _dress(fig.add_subplot(), "Customers on the first two principal components, coloured by segment",
                _pc_label(1, explained), _pc_label(2, explained))
    if not n:
        _note(ax, "no customer to plot")
        return fig
    segments = sorted({int(s) for s in ids} | {int(s) for s in cids[: len(cxy)]})
    handles = []
    for sid in segments:
        colour, members = _colour(colours, sid), xy[ids == sid]
        ax.scatter(members[:, 0], members[:, 1], color=colour, **_points(n))
        handles.append(Line2D([], [], marker="o", linestyle="", color=colour, markersize=7, label=_label(labels, sid)))
    for (cx, cy), sid in zip(cxy, cids, strict=False):
        ax.scatter([cx], [cy], s=230, marker="X", color=_colour(colours, int(sid)), edgecolors="black",
                   linewidths=1.5, zorder=4)
    if len(cxy):
        handles.append(Line2D([], [], marker="X", linestyle="", markerfacecolor="white", markeredgecolor="black",
                              markersize=11, label="segment centre"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=_SMALL)
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
    fig = _figure(width, max(4.0, 2.8 + 0.55 * len(rows)))
    ax = _dress(fig.add_subplot(), "How each segment differs from all customers (colour: difference in standard "
                "deviations; text: the segment's mean)", "model feature", "segment", reserve=0.7)
    if not rows or not cols:
        _note(ax, "no profile to show")
        return fig
    values = effects.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if annotations.shape == effects.shape:
        raw = annotations.to_numpy(dtype=object)
    else:
        raw = annotations.reindex(index=effects.index, columns=effects.columns).to_numpy(dtype=object)
    narrow = (fig.get_figwidth() - 2.8) / len(cols) < 1.0
    texts = np.array([["" if t is None or (isinstance(t, float) and math.isnan(t)) else
                       (str(t).replace(" ", "\n", 1) if narrow else str(t)) for t in row] for row in raw], dtype=object)
    vmax = _finite_max(values)
    _heatmap(fig, ax, values, rows, cols, "RdBu_r", Normalize(-vmax, vmax), texts,
             "difference from all customers (standard deviations)")
    _rotate_xticks(ax)
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
    names = max((len(str(f)) for items in tops.values() for f, _ in items), default=0) * 0.6 * _TICK / 72
    ncols = min(max(1, int(10.6 // (names + 1.8))), 4, max(len(segments), 1))
    nrows = max(1, math.ceil(len(segments) / ncols))
    longest = max((len(v) for v in tops.values()), default=1)
    fig = _figure(max(2.9 * ncols + 1.2, ncols * (names + 1.8) + 0.8), nrows * max(2.3, 0.9 + 0.32 * longest) + 0.8)
    _suptitle(fig, "The features that set each segment apart most")
    fig.supxlabel("difference from all customers (standard deviations)", fontsize=_LABEL)
    fig.supylabel("feature", fontsize=_LABEL)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(segments):] if segments else []:
        ax.remove()
    if not segments:
        _note(_dress(axes[0], "no segment"), "no segment to show")
        return fig
    effects = [e for items in tops.values() for _, e in items]
    limit = _finite_max(np.array(effects, dtype=float)) * 1.15
    for ax, sid in zip(axes, segments, strict=False):
        _dress(ax, _label(labels, sid), reserve=names + 0.1)
        items = [(str(f), float(e)) for f, e in tops[sid] if e is not None and np.isfinite(e)]
        ax.set_xlim(-limit, limit)
        if not items:
            _note(ax, "no distinguishing feature")
            continue
        ax.axvline(0, color="black", linewidth=0.8)
        y = np.arange(len(items))
        ax.barh(y, [e for _, e in items], color=_colour(colours, sid), edgecolor="black", linewidth=0.5)
        ax.set_yticks(y, [f for f, _ in items])
        ax.set_ylim(len(items) - 0.5, -0.5)
    return fig


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
    fig = _figure(10, 2.0 * max(len(features), 1) + 0.8)
    _suptitle(fig, f"Model features before and after their transform (sample of {len(raw):,} customers)")
    axes = fig.subplots(max(len(features), 1), 2, squeeze=False)
    if not features:
        for ax in axes[0]:
            _note(_dress(ax, "no feature"), "no model feature")
        return fig
    logs = set(log_features)
    for row, feature in zip(axes, features, strict=True):
        after = "after log and standardisation" if feature in logs else "after standardisation"
        panels = ((raw, f"{feature}: raw", "value (original units)", "#56B4E9"),
                  (transformed, f"{feature}: {after}", "value the model sees (standard deviations)", "#E69F00"))
        for ax, (frame, title, xlabel, colour) in zip(row, panels, strict=True):
            _dress(ax, title, xlabel, "customers")
            data = _numbers(frame, feature)
            data = data[np.isfinite(data)]
            if not data.size:
                _note(ax, "no value")
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
    fig = _figure(3.0 + 0.7 * n, min(max(4.5, 2.2 + 0.6 * n), 10.5))
    ax = _dress(fig.add_subplot(), "Correlation of the model features (as the model sees them)", "model feature",
                "model feature", reserve=0.7)
    if not n or not len(corr):
        _note(ax, "no feature")
        return fig
    values = corr.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    show = min(fig.get_figwidth() - 3.0, fig.get_figheight() - 2.2) / n >= 0.4
    texts = np.array([[("n/a" if not np.isfinite(v) else f"{v:.2f}") if show else "" for v in row] for row in values],
                     dtype=object)
    _heatmap(fig, ax, values, list(corr.index), list(corr.columns), "RdBu_r", Normalize(-1, 1), texts,
             "correlation (Pearson)", aspect="equal")
    _rotate_xticks(ax)
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
    r, f = _numbers(grid, "r_score"), _numbers(grid, "f_score")
    counts, money = np.nan_to_num(_numbers(grid, "customers")), np.nan_to_num(_numbers(grid, "revenue"))
    for ri, fi, c, m in zip(r, f, counts, money, strict=True):
        if np.isfinite(ri) and np.isfinite(fi) and 1 <= ri <= 5 and 1 <= fi <= 5:
            customers[5 - int(ri), int(fi) - 1] += c
            revenue[5 - int(ri), int(fi) - 1] += m
    total = revenue.sum()
    revenue = revenue / total * 100 if total > 0 else revenue
    fig = _figure(11, 5.0)
    _suptitle(fig, "RFM grid: recency score (R) against frequency score (F)")
    rows, cols = ["5", "4", "3", "2", "1"], ["1", "2", "3", "4", "5"]
    panels = ((customers, "Customers per R x F cell", "viridis", "customers", "{:,.0f}"),
              (revenue, "Revenue per R x F cell (share of total, %)", "cividis", "share of total revenue (%)",
               "{:.1f}%"))
    for ax, (values, title, cmap, bar_label, fmt) in zip(fig.subplots(1, 2), panels, strict=True):
        _dress(ax, title, "F score (5 = most invoices)", "R score (5 = most recent)", reserve=0.6)
        texts = np.vectorize(fmt.format, otypes=[object])(values)
        _heatmap(fig, ax, values, rows, cols, cmap, Normalize(0, _finite_max(values)), texts, bar_label)
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
    fig = _figure(3.6 * ncols + 0.8, 3.3 * nrows + 1.0)
    _suptitle(fig, "The same customers segmented by each algorithm (first two principal components)")
    fig.supxlabel("PC1 (first principal component)", fontsize=_LABEL)
    fig.supylabel("PC2 (second principal component)", fontsize=_LABEL)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(names):] if names else []:
        ax.remove()
    if not names:
        _note(_dress(axes[0], "no algorithm"), "no algorithm to compare")
        return fig
    xy = _xy(coords)
    for ax, name in zip(axes, names, strict=False):
        score = (scores or {}).get(name)
        shown = f"{score:.2f}" if score is not None and np.isfinite(score) else "n/a"
        _dress(ax, f"{algorithm_style(name)['label']}: silhouette {shown}")
        labels = np.asarray(assignments[name]).ravel().astype(int)
        n = min(len(xy), len(labels))
        if not n:
            _note(ax, "no customer to plot", clear_ticks=False)
            continue
        points, labels = xy[:n], labels[:n]
        palette = segment_colours(int(c) for c in labels if c >= 0)
        noise = labels < 0
        if noise.any():
            ax.scatter(points[noise, 0], points[noise, 1], color=_NOISE_GREY, label=f"noise ({noise.mean():.0%})",
                       **_points(n))
        for cluster, colour in palette.items():
            members = points[labels == cluster]
            ax.scatter(members[:, 0], members[:, 1], color=colour, **_points(n))
        if noise.any():
            ax.legend(loc="best", fontsize=_SMALL, markerscale=1.5)
        ax.tick_params(labelsize=_TICK)
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
    lines = np.nan_to_num(_numbers(counts, "lines"))
    order = sorted(range(len(reasons)), key=lambda i: (-lines[i], reasons[i]))
    fig = _figure(9, 1.6 + 0.45 * max(len(order), 1))
    ax = _dress(fig.add_subplot(), "Rejected source lines by reason", "rejected source lines", "reason")
    if not order or lines.max() <= 0:
        _note(ax, "no line was rejected")
        return fig
    values = [lines[i] for i in order]
    bars = ax.barh(range(len(order)), values, color="#D55E00", edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, [f"{v:,.0f}" for v in values], padding=3, fontsize=_SMALL)
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
    fig = _figure(10, 5)
    ax = _dress(fig.add_subplot(), "Customers per segment at each snapshot", "snapshot date", "customers")
    needed = {"as_of_date", "segment_id", "customers"}
    if not needed <= set(sizes.columns) or sizes.empty:
        _note(ax, "no snapshot to show")
        return fig
    df = sizes.assign(date=pd.to_datetime(sizes["as_of_date"]), segment_id=sizes["segment_id"].astype(int),
                      customers=pd.to_numeric(sizes["customers"], errors="coerce").fillna(0))
    table = df.pivot_table(index="date", columns="segment_id", values="customers", aggfunc="sum", fill_value=0)
    x, bottom, handles = np.arange(len(table)), np.zeros(len(table)), []
    for sid in sorted(table.columns):
        heights = table[sid].to_numpy(dtype=float)
        colour = _colour(colours, int(sid))
        ax.bar(x, heights, bottom=bottom, width=0.7, color=colour, edgecolor="white", linewidth=0.5)
        bottom += heights
        handles.append(Patch(facecolor=colour, label=_label(labels, int(sid))))
    totals = ax.bar(x, np.zeros_like(bottom), bottom=bottom, width=0.7, color="none")
    ax.bar_label(totals, [f"{t:,.0f}" for t in bottom], padding=2, fontsize=_SMALL)
    ax.set_xticks(x, [d.strftime("%Y-%m-%d") for d in table.index])
    if len(x) > 6:
        _rotate_xticks(ax)
    ax.set_ylim(0, _finite_max(bottom) * 1.12)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.legend(handles=handles[::-1], loc="outside right upper", fontsize=_SMALL)
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
    fig = _figure(2.8 + 1.0 * len(cols), max(4.0, 2.4 + 0.6 * len(rows)))
    ax = _dress(fig.add_subplot(), f"Where the customers of {from_date} are at {to_date}", f"segment at {to_date}",
                f"segment at {from_date}", reserve=0.7)
    if not rows or not cols:
        _note(ax, "no customer to follow")
        return fig
    values = matrix.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=float)
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.full_like(values, np.nan), where=totals > 0)
    texts = np.array([[f"{v:,.0f}" + (f"\n{s:.0%}" if np.isfinite(s) else "") for v, s in zip(vr, sr, strict=True)]
                      for vr, sr in zip(values, shares, strict=True)], dtype=object)
    _heatmap(fig, ax, values, rows, cols, "cividis", Normalize(0, _finite_max(values)), texts,
             "customers (text: count and share of the row)")
    _rotate_xticks(ax, 30)
    return fig

"""Shared look of the report's figures: palette, algorithm styles, font sizes, rendering, and drawing helpers.

Figures are built on :class:`matplotlib.figure.Figure` directly, never on pyplot's global state, so they are
independent of each other, headless and thread-safe; :func:`png_bytes` renders one with the Agg canvas.
One colour per segment in every figure (:func:`segment_colours`: colour-blind safe, by sorted segment id) and one
colour, line style and marker per algorithm (:func:`algorithm_style`), so lines differ without colour too.
"""

from __future__ import annotations

import io
import textwrap
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from segspark.errors import SegsparkError

__all__ = [
    "ALGORITHMS",
    "DPI",
    "INK",
    "LABEL_PT",
    "NOISE_GREY",
    "PALETTE",
    "SMALL_PT",
    "TICK_PT",
    "algorithm_style",
    "as_xy",
    "colour_of",
    "column_inches",
    "dress",
    "finite_max",
    "flags",
    "heatmap",
    "label_of",
    "new_figure",
    "note",
    "numbers",
    "ordered_algorithms",
    "png_bytes",
    "point_style",
    "rotate_xticks",
    "segment_colours",
    "suptitle",
    "wrap",
]

#: Okabe-Ito without black (its yellow last: the faintest on white), then Paul Tol's muted extras; segments beyond
#: its length cycle.
PALETTE: tuple[str, ...] = (
    "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442",
    "#332288", "#882255", "#44AA99", "#999933", "#AA4499", "#DDCC77", "#117733", "#88CCEE",
)  # fmt: skip
DPI = 110
TITLE_PT, LABEL_PT, TICK_PT, SMALL_PT = 11.5, 10.0, 9.5, 9.0
NOISE_GREY, NAN_GREY, INK = "#BBBBBB", "#D9D9D9", "#333333"
#: name -> (human name, colour, line style, marker).
ALGORITHMS: dict[str, tuple[str, str, object, str]] = {
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


def algorithm_style(algorithm: str) -> dict[str, Any]:
    """Colour, line style, marker and human name of an algorithm, fixed across figures.

    Parameters
    ----------
    algorithm : str
        ``kmeans``, ``bisecting_kmeans``, ``gaussian_mixture``, ``ward`` or ``dbscan``; any other name gets a
        stable fallback derived from the name.

    Returns
    -------
    dict
        Keys ``color``, ``linestyle`` (a name or a dash pattern), ``marker`` and ``label``, ready for
        ``Axes.plot(**style)``.
    """
    name = str(algorithm)
    if name in ALGORITHMS:
        label, colour, linestyle, marker = ALGORITHMS[name]
    else:
        h = zlib.crc32(name.encode())
        colour = PALETTE[7 + h % (len(PALETTE) - 7)]
        linestyle, marker = _FALLBACK_STYLES[h % len(_FALLBACK_STYLES)], _FALLBACK_MARKERS[h % len(_FALLBACK_MARKERS)]
        label = name.replace("_", " ")
    return {"color": colour, "linestyle": linestyle, "marker": marker, "label": label}


def png_bytes(fig: Figure) -> bytes:
    r"""Render a figure to PNG at 110 dpi with the Agg canvas.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure from this module.

    Returns
    -------
    bytes
        The PNG file's bytes (starting with ``b"\x89PNG"``).
    """
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of about ``width`` x ``height`` inches (width 7 to 11, height at least 2.5)."""
    return Figure(figsize=(min(max(width, 7.0), 11.0), max(height, 2.5)), dpi=DPI, layout="constrained")


def wrap(text: str, inches: float, fontsize: float) -> str:
    """Break ``text`` into lines that fit ``inches`` at ``fontsize`` (DejaVu Sans averages ~0.6 em a character)."""
    return textwrap.fill(text, width=max(18, int(inches * 72 / (0.6 * fontsize))))


def column_inches(ax: Axes) -> float:
    """Width of the axes' column of the figure, less a margin: what a title or note centred on it may take."""
    spec = ax.get_subplotspec()
    columns = spec.get_gridspec().ncols if spec is not None else 1
    figure = ax.get_figure()
    if not isinstance(figure, Figure):  # new_figure's axes sit on the figure itself, never on a subfigure
        raise SegsparkError("a report figure's axes are not on a matplotlib Figure")
    return figure.get_figwidth() / columns - 0.4


def dress(ax: Axes, title: str = "", xlabel: str = "", ylabel: str = "", reserve: float = 0.0) -> Axes:
    """Title (wrapped to the axes' column of the figure less ``reserve`` inches), axis labels and tick size."""
    if title:
        ax.set_title(wrap(title, column_inches(ax) - reserve, TITLE_PT), fontsize=TITLE_PT)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    return ax


def suptitle(fig: Figure, text: str) -> None:
    """Set the figure's overall title, wrapped to its width."""
    fig.suptitle(wrap(text, fig.get_figwidth() - 0.4, TITLE_PT + 1), fontsize=TITLE_PT + 1)


def note(ax: Axes, text: str, clear_ticks: bool = True) -> None:
    """Write ``text`` (wrapped) in the middle of empty axes, e.g. why there is nothing to draw; ticks cleared."""
    ax.text(0.5, 0.5, wrap(text, column_inches(ax) - 0.2, LABEL_PT), transform=ax.transAxes, ha="center",
            va="center", fontsize=LABEL_PT, color=INK)
    if clear_ticks:
        ax.set_xticks([])
        ax.set_yticks([])


def label_of(labels: Mapping[int, str] | None, sid: int) -> str:
    """The display name of segment ``sid``: from ``labels``, else ``segment <sid>``."""
    return str((labels or {}).get(sid, f"segment {sid}"))


def colour_of(colours: Mapping[int, str] | None, sid: int) -> str:
    """The colour of segment ``sid``: from ``colours``, else the palette's, cycling by id."""
    return (colours or {}).get(sid) or PALETTE[sid % len(PALETTE)]


def numbers(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as floats, NaN where a value is missing or not a number (all NaN without the column)."""
    if column not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)


def flags(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as booleans, False where a value is missing (all False without the column)."""
    if column not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return np.array([bool(v) if pd.notna(v) else False for v in df[column]], dtype=bool)


def as_xy(coords: np.ndarray) -> np.ndarray:
    """The first two coordinates of each point, as an (n, 2) float array ((0, 2) when there are none)."""
    a = np.asarray(coords, dtype=float)
    return np.empty((0, 2)) if a.size == 0 else a.reshape(-1, a.shape[-1])[:, :2]


def finite_max(*arrays: np.ndarray, default: float = 1.0) -> float:
    """The largest finite absolute value in ``arrays``, or ``default`` when there is none above 0."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=float)).ravel() for a in arrays]) if arrays else np.array([])
    values = values[np.isfinite(values)]
    top = float(values.max()) if values.size else 0.0
    return top if top > 0 else default


def point_style(n: int) -> dict[str, Any]:
    """Marker size and opacity for a scatter of ``n`` points: small, and more transparent the more there are."""
    return {"s": float(np.clip(4000 / max(n, 1), 3, 12)), "alpha": 0.8 if n <= 500 else 0.5 if n <= 5000 else 0.3,
            "linewidths": 0, "rasterized": True}


def rotate_xticks(ax: Axes, degrees: float = 35) -> None:
    """Rotate the x tick labels by ``degrees``, anchored at their right end under the tick."""
    for tick in ax.get_xticklabels():
        tick.set_rotation(degrees)
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")


def heatmap(fig: Figure, ax: Axes, values: np.ndarray, rows: Sequence[object], cols: Sequence[object], cmap: str,
             norm: Normalize, texts: np.ndarray | None, colourbar_label: str,
             aspect: Literal["equal", "auto"] | float = "auto") -> None:
    """Draw a cell grid (NaN cells grey), tick labels, a colourbar and per-cell text in contrasting ink."""
    colourmap: Colormap = colormaps[cmap].with_extremes(bad=NAN_GREY)
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    image = ax.imshow(data, cmap=colourmap, norm=norm, aspect=aspect, interpolation="nearest")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.tick_params(length=0, labelsize=TICK_PT)
    colourbar = fig.colorbar(image, ax=ax, shrink=0.9)
    colourbar.set_label(wrap(colourbar_label, 0.8 * ax.get_position().height * fig.get_figheight(), LABEL_PT),
                        fontsize=LABEL_PT)
    colourbar.ax.tick_params(labelsize=TICK_PT)
    if texts is None:
        return
    for (i, j), text in np.ndenumerate(texts):
        if not text:
            continue
        value = data[i, j]
        r, g, b, _ = (0.85, 0.85, 0.85, 1.0) if np.ma.is_masked(value) else colourmap(norm(value))
        ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=SMALL_PT, color=ink)


def ordered_algorithms(df: pd.DataFrame) -> list[str]:
    """The algorithms named in ``df["algorithm"]``: the known ones in their fixed order, then the others sorted."""
    names = {str(a) for a in df["algorithm"].dropna()} if "algorithm" in df.columns else set()
    known = [a for a in ALGORITHMS if a in names]
    return known + sorted(names - set(known))

"""The report's figures (segspark.stages.report.figures): colours, layout facts, awkward inputs, and every figure
function of the report package rendered in parallel exactly as serially. No Spark."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import io
import pkgutil
import random
import typing
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.text import Text

from segspark.config.settings import DriftThresholds
from segspark.stages import report
from segspark.stages.report import figures as F
from segspark.stages.report.monitoring import DRIFT_COLUMNS, LIFT_COLUMNS

PNG = b"\x89PNG\r\n\x1a\n"
IDS = [1, 2, 3]
COLOURS = F.segment_colours(IDS)
LABELS = {1: "Champions (1)", 2: "Loyal regulars (2)", 3: "At risk (3)"}
RNG = np.random.default_rng(7)


# -- inputs ---------------------------------------------------------------------------------------------------------


def _segments(revenue=True, ids=IDS):
    share = np.full(len(ids), 1 / max(len(ids), 1))
    return pd.DataFrame({"segment_id": ids, "customer_share": share,
                         "revenue_share": share if revenue else np.full(len(ids), np.nan)})


def _selection(stability=True):
    rows = []
    for algorithm in ("kmeans", "bisecting_kmeans", "gaussian_mixture"):
        for k in range(2, 8):
            rows.append({"algorithm": algorithm, "k": k, "wssse": 1000.0 / k, "is_elbow": k == 4,
                         "is_chosen": algorithm == "kmeans" and k == 4, "silhouette_euclidean": 0.5 - 0.03 * k,
                         "reference_silhouette": 0.2 if algorithm != "gaussian_mixture" else np.nan,
                         "stability_ari": 0.9 if stability else np.nan})
    return pd.DataFrame(rows)


def _silhouette(ids=IDS, n=60):
    segs = np.array([ids[i % len(ids)] for i in range(n)])
    return RNG.uniform(-0.2, 0.9, n), segs


def _pca(n=90, ids=IDS):
    coords = RNG.normal(size=(n, 2))
    segs = np.array([ids[i % len(ids)] for i in range(n)])
    centroids = np.array([coords[segs == s].mean(axis=0) if n else [0.0, 0.0] for s in ids])
    return coords, segs, centroids, np.array(ids)


def _effects(nan=False, rows=None, cols=("recency_days", "frequency")):
    rows = tuple(LABELS.values()) if rows is None else rows
    values = RNG.normal(size=(len(rows), len(cols)))
    if nan:
        values[0, 0] = np.nan
    effects = pd.DataFrame(values, index=list(rows), columns=list(cols))
    return effects, effects.map(lambda v: "n/a" if np.isnan(v) else f"mean {v + 3:.1f}")


def _distributions(constant=False):
    raw = pd.DataFrame({"monetary": RNG.lognormal(5, 1, 200), "frequency": RNG.integers(1, 20, 200).astype(float)})
    if constant:
        raw["frequency"] = 3.0
    raw.loc[0, "monetary"] = np.nan
    transformed = (np.log1p(raw) - np.log1p(raw).mean()) / np.log1p(raw).std().replace(0, 1)
    return raw, transformed.fillna(0), ["monetary"]


def _rfm():
    return pd.DataFrame({"r_score": [5, 5, 1, 3], "f_score": [1, 5, 1, 3], "customers": [100, 40, 7, 12],
                         "revenue": [5000.0, 9000.0, 10.0, 300.0]})


def _sizes():
    d1, d2 = dt.date(2024, 1, 31), dt.date(2024, 2, 29)
    return pd.DataFrame({"as_of_date": [d1, d1, d1, d2, d2], "segment_id": [1, 2, 3, 1, 2],
                         "customers": [100, 50, 20, 110, 60]})


def _migration():
    idx = ["Champions (1)", "At risk (3)", "new customers"]
    cols = ["Champions (1)", "At risk (3)", "left"]
    return pd.DataFrame([[80, 10, 10], [5, 60, 35], [12, 8, 0]], index=idx, columns=cols)


def _comparison(noise=True, n=120):
    coords = RNG.normal(size=(n, 2))
    dbscan = RNG.integers(-1 if noise else 0, 3, n)
    return coords, {"kmeans": RNG.integers(0, 4, n), "gaussian_mixture": RNG.integers(0, 4, n), "dbscan": dbscan}, \
        {"kmeans": 0.41, "gaussian_mixture": float("nan"), "dbscan": None}


CASES = {
    "segment_sizes": lambda: F.segment_sizes(_segments(), COLOURS, LABELS),
    "segment_sizes_no_revenue": lambda: F.segment_sizes(_segments(revenue=False), COLOURS, LABELS),
    "segment_sizes_empty": lambda: F.segment_sizes(_segments(ids=[]), {}, {}),
    "wssse_by_k": lambda: F.wssse_by_k(_selection()),
    "silhouette_by_k": lambda: F.silhouette_by_k(_selection()),
    "stability_by_k": lambda: F.stability_by_k(_selection()),
    "stability_all_nan": lambda: F.stability_by_k(_selection(stability=False)),
    "by_k_empty": lambda: F.wssse_by_k(_selection().iloc[0:0]),
    "silhouette_plot": lambda: F.silhouette_plot(*_silhouette(), COLOURS, LABELS, 0.42),
    "silhouette_one_segment": lambda: F.silhouette_plot(*_silhouette(ids=[1]), COLOURS, LABELS, 0.3),
    "silhouette_one_member": lambda: F.silhouette_plot(np.array([0.5, 0.2, 0.1]), np.array([1, 2, 2]), COLOURS,
                                                       LABELS, 0.27),
    "silhouette_all_equal": lambda: F.silhouette_plot(np.full(10, 0.25), np.array([1, 2] * 5), COLOURS, LABELS, 0.25),
    "silhouette_empty": lambda: F.silhouette_plot(np.array([]), np.array([]), COLOURS, LABELS, float("nan")),
    "pca_scatter": lambda: F.pca_scatter(*_pca(), (0.434, 0.21), COLOURS, LABELS),
    "pca_empty": lambda: F.pca_scatter(np.empty((0, 2)), np.array([]), np.empty((0, 2)), np.array([]),
                                       (np.nan, np.nan), COLOURS, LABELS),
    "profile_heatmap": lambda: F.profile_heatmap(*_effects(nan=True)),
    "profile_1x1": lambda: F.profile_heatmap(*_effects(rows=("Champions (1)",), cols=("monetary",))),
    "profile_all_nan": lambda: F.profile_heatmap(pd.DataFrame([[np.nan]], index=["a"], columns=["x"]),
                                                 pd.DataFrame([[None]], index=["a"], columns=["x"])),
    "top_features": lambda: F.top_features({1: [("monetary", 1.4), ("recency_days", -0.8)], 2: [],
                                            3: [("frequency", 0.6)]}, COLOURS, LABELS),
    "top_features_one": lambda: F.top_features({1: [("monetary", 1.4)]}, COLOURS, LABELS),
    "top_features_many": lambda: F.top_features({s: [("f", float(s))] for s in range(1, 7)},
                                                F.segment_colours(range(1, 7)), {}),
    "top_features_long_names": lambda: F.top_features(
        {s: [(f"avg_days_between_purchases_{i}", float(i - 2)) for i in range(5)] for s in range(1, 9)},
        F.segment_colours(range(1, 9)), {s: f"Occasional weekend bargain hunters ({s})" for s in range(1, 9)}),
    "feature_distributions": lambda: F.feature_distributions(*_distributions()),
    "feature_constant": lambda: F.feature_distributions(*_distributions(constant=True)),
    "correlation_matrix": lambda: F.correlation_matrix(pd.DataFrame([[1.0, -0.4], [-0.4, 1.0]], index=["a", "b"],
                                                                    columns=["a", "b"])),
    "correlation_nan": lambda: F.correlation_matrix(pd.DataFrame([[1.0, np.nan], [np.nan, np.nan]],
                                                                 index=["a", "const"], columns=["a", "const"])),
    "rfm_grid": lambda: F.rfm_grid(_rfm()),
    "rfm_empty": lambda: F.rfm_grid(_rfm().iloc[0:0]),
    "algorithm_comparison": lambda: F.algorithm_comparison(*_comparison()),
    "algorithm_comparison_one": lambda: F.algorithm_comparison(RNG.normal(size=(30, 2)),
                                                               {"kmeans": np.zeros(30, dtype=int)}, {"kmeans": None}),
    "algorithm_comparison_five": lambda: F.algorithm_comparison(
        RNG.normal(size=(40, 2)), {a: RNG.integers(-1, 3, 40) for a in F.ALGORITHMS}, {}),
    "algorithm_comparison_empty_coords": lambda: F.algorithm_comparison(np.empty((0, 2)),
                                                                        {"kmeans": np.array([], dtype=int)}, {}),
    "rejects_by_reason": lambda: F.rejects_by_reason(pd.DataFrame({"reason": ["bad_price", "no_customer"],
                                                                   "lines": [12345, 98]})),
    "rejects_zero": lambda: F.rejects_by_reason(pd.DataFrame({"reason": ["bad_price"], "lines": [0]})),
    "rejects_empty": lambda: F.rejects_by_reason(pd.DataFrame({"reason": [], "lines": []})),
    "sizes_over_time": lambda: F.sizes_over_time(_sizes(), COLOURS, LABELS),
    "sizes_over_time_empty": lambda: F.sizes_over_time(_sizes().iloc[0:0], COLOURS, LABELS),
    "migration_matrix": lambda: F.migration_matrix(_migration(), "2024-01-31", "2024-02-29"),
    "migration_zero_row": lambda: F.migration_matrix(_migration() * 0, "2024-01-31", "2024-02-29"),
}


# -- checks shared by every figure ----------------------------------------------------------------------------------


def _has_data(ax) -> bool:
    return bool(ax.lines or ax.collections or ax.patches or ax.images)


def _check_readable(fig: Figure) -> None:
    """Titles, axis labels, widths and font sizes: the issue's readability bar, for any figure."""
    assert 7 <= fig.get_figwidth() <= 11
    assert fig.get_layout_engine() is not None  # constrained layout
    suptitle = fig.get_suptitle()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel() or ax.get_xlabel(), "colourbar without a label"
            continue
        assert ax.get_title() or suptitle, f"axes without a title in a figure without a suptitle: {ax}"
        if _has_data(ax):
            assert ax.get_xlabel() or fig.get_supxlabel(), f"no x label: {ax.get_title()!r}"
            assert ax.get_ylabel() or fig.get_supylabel(), f"no y label: {ax.get_title()!r}"
    renderer = fig.canvas.get_renderer()  # the figure has been drawn by png_bytes
    width, height = fig.bbox.width, fig.bbox.height
    for text in _drawn_texts(fig):
        if text.get_text().strip():
            assert text.get_fontsize() >= 9, f"{text.get_text()!r} at {text.get_fontsize()} pt"
            box = text.get_window_extent(renderer)
            inside = box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1
            assert inside, f"{text.get_text()!r} is cut off at the figure's edge: {box} in {width} x {height}"
    titles = [t for t in [*fig.texts, *(ax.title for ax in fig.axes)] if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in titles]
    for i, first in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            assert not first.overlaps(boxes[j]), f"titles overlap: {titles[i].get_text()!r}, {titles[j].get_text()!r}"


def _drawn_texts(fig: Figure) -> list[Text]:
    """Visible texts, leaving out the labels of ticks outside their axis' view (matplotlib does not draw those)."""
    tick_labels, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update({id(tick.label1), id(tick.label2)})
                if low - span <= tick.get_loc() <= high + span:
                    drawn += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    return drawn + [t for t in fig.findobj(Text) if t.get_visible() and id(t) not in tick_labels]


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible()]


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_renders_and_is_readable(case):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = CASES[case]()
        data = F.png_bytes(fig)
    assert isinstance(fig, Figure)
    assert data.startswith(PNG) and len(data) > 1000
    _check_readable(fig)


# -- colours and styles ---------------------------------------------------------------------------------------------


def test_palette_is_okabe_ito_without_black_then_tol_muted():
    assert F.PALETTE[:7] == ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
    assert len(F.PALETTE) == 15 and len(set(F.PALETTE)) == 15
    assert "#000000" not in F.PALETTE


def test_segment_colours_by_sorted_id_whatever_the_order():
    expected = {1: F.PALETTE[0], 2: F.PALETTE[1], 3: F.PALETTE[2]}
    assert F.segment_colours([3, 1, 2]) == expected
    assert F.segment_colours(np.array([2, 3, 1, 1])) == expected
    many = F.segment_colours(range(20, 0, -1))
    assert many[1] == F.PALETTE[0] and many[16] == F.PALETTE[0] and many[20] == F.PALETTE[4]


def test_algorithm_styles_differ_without_colour_and_fallback_is_stable():
    known = ["kmeans", "bisecting_kmeans", "gaussian_mixture", "ward", "dbscan"]
    styles = [F.algorithm_style(a) for a in known]
    assert [s["label"] for s in styles] == ["k-means", "bisecting k-means", "Gaussian mixture",
                                            "Ward (agglomerative)", "DBSCAN"]
    for key in ("color", "marker"):
        assert len({s[key] for s in styles}) == 5
    assert len({str(s["linestyle"]) for s in styles}) == 5
    assert all(s["color"] in F.PALETTE for s in styles)
    other = F.algorithm_style("spectral_clustering")
    assert other == F.algorithm_style("spectral_clustering") and other["label"] == "spectral clustering"
    assert set(other) == {"color", "linestyle", "marker", "label"} and other["color"] in F.PALETTE


def test_same_segment_same_colour_across_figures():
    colours = F.segment_colours([7, 3])
    labels = {3: "Champions (3)", 7: "Hibernating (7)"}
    sizes = F.segment_sizes(_segments(ids=[7, 3]), colours, labels)
    bars = [p for p in sizes.axes[0].patches if p.get_width() > 0]
    ticks = [t.get_text() for t in sizes.axes[0].get_yticklabels()]
    assert ticks == ["Champions (3)", "Hibernating (7)"]
    assert to_hex(bars[0].get_facecolor()) == colours[3].lower()
    assert to_hex(bars[1].get_facecolor()) == colours[7].lower()
    tops = F.top_features({7: [("monetary", -1.0)], 3: [("monetary", 2.0)]}, colours, labels)
    panel = {ax.get_title(): ax for ax in tops.axes}
    assert to_hex(panel["Hibernating (7)"].patches[0].get_facecolor()) == colours[7].lower()
    over_time = F.sizes_over_time(pd.DataFrame({"as_of_date": [dt.date(2024, 1, 1)] * 2, "segment_id": [3, 7],
                                                "customers": [5, 9]}), colours, labels)
    faces = {to_hex(p.get_facecolor()) for p in over_time.axes[0].patches if p.get_height() > 0}
    assert faces == {colours[3].lower(), colours[7].lower()}


# -- facts of single figures ----------------------------------------------------------------------------------------


def test_segment_sizes_says_revenue_not_profiled():
    fig = F.segment_sizes(_segments(revenue=False), COLOURS, LABELS)
    assert "revenue not profiled" in fig.axes[0].get_title()
    assert "33.3%" in _texts(fig)
    assert all(not p.get_hatch() for p in fig.axes[0].patches)
    with_revenue = F.segment_sizes(_segments(), COLOURS, LABELS)
    assert sum(1 for p in with_revenue.axes[0].patches if p.get_hatch()) == 3


def test_wssse_marks_knee_and_chosen_with_integer_ticks():
    fig = F.wssse_by_k(_selection())
    ax = fig.axes[0]
    texts = _texts(fig)
    assert texts.count("knee") == 3 and texts.count("chosen") == 1
    assert ax.get_ylabel() == "within-segment sum of squares (model units)"
    assert ax.get_xlabel() == "K (number of segments)"
    F.png_bytes(fig)
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)
    ring = [c for c in ax.collections if c.get_label() == "chosen (algorithm, K)"]
    assert len(ring) == 1 and tuple(ring[0].get_offsets()[0]) == (4.0, 250.0)


def test_silhouette_by_k_draws_references_dashed_in_the_algorithm_colour():
    ax = F.silhouette_by_k(_selection()).axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    reference = lines["k-means on a structureless reference"]
    assert reference.get_linestyle() == "--" and lines["k-means"].get_linestyle() == "-"
    assert reference.get_color() == lines["k-means"].get_color()
    assert "Gaussian mixture on a structureless reference" not in lines  # all NaN: no line


def test_stability_all_nan_shows_note_and_fixed_range():
    fig = F.stability_by_k(_selection(stability=False))
    ax = fig.axes[0]
    assert "stability was not measured (model.stability_runs = 0)" in _texts(fig)
    assert not ax.lines and ax.get_ylim() == (0, 1.05)
    assert ax.get_ylabel() == "stability (adjusted Rand index across seeds)"


def test_silhouette_plot_mean_line_and_blocks():
    values, segs = _silhouette()
    fig = F.silhouette_plot(values, segs, COLOURS, LABELS, 0.42)
    ax = fig.axes[0]
    mean_lines = [line for line in ax.lines if isinstance(line, Line2D) and line.get_label() == "mean 0.42"]
    assert len(mean_lines) == 1 and list(mean_lines[0].get_xdata()) == [0.42, 0.42]
    assert ax.get_xlim() == (min(-0.1, values.min()), 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == [LABELS[1], LABELS[2], LABELS[3]]
    assert len(ax.collections) == 3
    equal = F.silhouette_plot(np.full(4, 0.3), np.array([1, 1, 1, 1]), COLOURS, LABELS, float("nan"))
    assert any(line.get_label() == "mean 0.30" for line in equal.axes[0].lines)


def test_pca_axis_labels_and_centroids():
    fig = F.pca_scatter(*_pca(), (0.434, 0.2), COLOURS, LABELS)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PC1 (43% of variance)" and ax.get_ylabel() == "PC2 (20% of variance)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*LABELS.values(), "segment centre"]
    assert all(c.get_sizes()[0] <= 12 for c in ax.collections[:3])
    nan = F.pca_scatter(*_pca(), (np.nan, 0.2), COLOURS, LABELS).axes[0]
    assert nan.get_xlabel() == "PC1"
    empty = F.pca_scatter(np.empty((0, 2)), np.array([]), np.empty((0, 2)), np.array([]), (0.4, 0.2), {}, {})
    assert "no customer to plot" in _texts(empty)


def test_profile_heatmap_is_symmetric_and_annotated():
    effects, notes = _effects(nan=True)
    fig = F.profile_heatmap(effects, notes)
    image = fig.axes[0].images[0]
    assert image.norm.vmin == -image.norm.vmax
    assert image.norm.vmax == pytest.approx(np.nanmax(np.abs(effects.to_numpy())))
    assert image.cmap.name.startswith("RdBu_r")
    assert bool(np.ma.getmaskarray(image.get_array())[0, 0])
    assert "n/a" in _texts(fig)
    colourbar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert " ".join(colourbar.get_ylabel().split()) == "difference from all customers (standard deviations)"
    assert all(abs(t.get_rotation() - 35) < 1e-9 for t in fig.axes[0].get_xticklabels())
    single = F.profile_heatmap(pd.DataFrame([[0.0]], index=["x"], columns=["f"]),
                               pd.DataFrame([["mean 1"]], index=["x"], columns=["f"])).axes[0].images[0]
    assert single.norm.vmin == -single.norm.vmax


def test_top_features_share_a_symmetric_range_and_note_empty_segments():
    fig = F.top_features({1: [("monetary", 1.4), ("recency_days", -0.8)], 2: []}, COLOURS, LABELS)
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert set(panels) == {LABELS[1], LABELS[2]}
    low, high = panels[LABELS[1]].get_xlim()
    assert low == -high and high > 1.4 and panels[LABELS[2]].get_xlim() == (low, high)
    assert "no distinguishing feature" in _texts(fig)
    widths = [p.get_width() for p in panels[LABELS[1]].patches]
    assert widths == [1.4, -0.8]
    assert len(F.top_features({s: [] for s in range(6)}, {}, {}).axes) == 6  # 2 rows of 4, 2 unused removed


def test_feature_distributions_titles_and_height():
    raw, transformed, logs = _distributions(constant=True)
    fig = F.feature_distributions(raw, transformed, logs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["monetary: raw", "monetary: after log and standardisation", "frequency: raw",
                      "frequency: after standardisation"]
    assert fig.get_suptitle() == "Model features before and after their transform (sample of 200 customers)"
    assert 3.5 <= fig.get_figheight() <= 5.5
    assert len(fig.axes[0].patches) == 30
    tall = F.feature_distributions(pd.concat([raw] * 1, axis=1).set_axis(["a", "b"], axis=1),
                                   transformed.set_axis(["a", "b"], axis=1), [])
    assert tall.get_figheight() == fig.get_figheight()


def test_correlation_matrix_range_and_annotations():
    corr = pd.DataFrame([[1.0, -0.4], [-0.4, 1.0]], index=["a", "b"], columns=["a", "b"])
    fig = F.correlation_matrix(corr)
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (-1, 1)
    assert _texts(fig).count("-0.40") == 2 and _texts(fig).count("1.00") == 2
    assert fig.axes[0].get_title() == "Correlation of the model features (as the model sees them)"


def test_rfm_grid_has_r5_on_top():
    fig = F.rfm_grid(_rfm())
    customers, revenue = (ax for ax in fig.axes if ax.get_label() != "<colorbar>")
    assert customers.get_ylabel() == "R score (5 = most recent)"
    assert customers.get_xlabel() == "F score (5 = most invoices)"
    assert customers.yaxis_inverted()  # row 0 drawn at the top
    assert [t.get_text() for t in customers.get_yticklabels()] == ["5", "4", "3", "2", "1"]
    grid = customers.images[0].get_array()
    assert grid[0, 0] == 100 and grid[0, 4] == 40 and grid[4, 0] == 7 and grid[2, 2] == 12 and grid.sum() == 159
    shares = revenue.images[0].get_array()
    assert shares[0, 4] == pytest.approx(9000 / 14310 * 100)
    assert "62.9%" in _texts(fig) and "100" in _texts(fig)


def test_algorithm_comparison_titles_noise_and_shared_axes():
    fig = F.algorithm_comparison(*_comparison())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["k-means: silhouette 0.41", "Gaussian mixture: silhouette n/a", "DBSCAN: silhouette n/a"]
    dbscan = fig.axes[2]
    noise = [c for c in dbscan.collections if c.get_label().startswith("noise")]
    assert len(noise) == 1 and to_hex(noise[0].get_facecolor()[0]) == "#bbbbbb"
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[2])
    first_cluster = [c for c in fig.axes[0].collections][0]
    assert to_hex(first_cluster.get_facecolor()[0]) == F.PALETTE[0].lower()


def test_rejects_sorted_with_thousands_separators_and_zero_note():
    fig = F.rejects_by_reason(pd.DataFrame({"reason": ["no_customer", "bad_price"], "lines": [98, 12345]}))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bad_price", "no_customer"]
    assert "12,345" in _texts(fig) and ax.get_xlabel() == "rejected source lines"
    assert "no line was rejected" in _texts(F.rejects_by_reason(pd.DataFrame({"reason": ["x"], "lines": [0]})))


def test_sizes_over_time_dates_and_absent_segments():
    fig = F.sizes_over_time(_sizes(), COLOURS, LABELS)
    ax = fig.axes[0]
    F.png_bytes(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2024-01-31", "2024-02-29"]
    segment_3 = [p for p in ax.patches if to_hex(p.get_facecolor()) == COLOURS[3].lower()]
    assert [p.get_height() for p in segment_3] == [20, 0]  # absent on 2024-02-29: 0
    assert "170" in _texts(fig) and [t.get_text() for t in fig.legends[0].get_texts()] == list(LABELS.values())[::-1]


def test_migration_matrix_title_counts_and_row_shares():
    fig = F.migration_matrix(_migration(), "2024-01-31", "2024-02-29")
    ax = fig.axes[0]
    assert ax.get_title() == "Where the customers of 2024-01-31 are at 2024-02-29"
    assert "80\n80%" in _texts(fig) and "12\n60%" in _texts(fig)
    assert ax.images[0].cmap.name.startswith("cividis")


# -- every figure function: no pyplot, and parallel renders equal serial ones pixel for pixel -------------------------


def _returns_figure(function: Callable) -> bool:
    try:
        return typing.get_type_hints(function).get("return") is Figure
    except NameError:  # an annotation only a type checker resolves: read it as written
        return str(inspect.signature(function).return_annotation).rsplit(".", 1)[-1] == "Figure"


def _figure_functions() -> dict[str, Callable[..., Figure]]:
    """'module.function' -> function, for every public function of a module of segspark.stages.report (defined
    there, not re-exported) annotated as returning a matplotlib Figure."""
    found = {}
    for info in pkgutil.iter_modules(report.__path__):
        module = importlib.import_module(f"{report.__name__}.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_") and _returns_figure(function):
                found[f"{info.name}.{name}"] = function
    return found


# Small explicit inputs, built afresh at each call (no shared random state, so every render of one sample is the
# same picture): 12 customers in 3 segments on two principal components.
POINTS = np.array([[1.2, 0.4], [0.9, 0.8], [1.5, 0.1], [1.1, 0.6], [-1.0, 0.3], [-1.3, 0.1], [-0.8, 0.5],
                   [-1.1, -0.2], [0.2, -1.2], [-0.1, -0.9], [0.4, -1.4], [0.0, -1.0]])
POINT_SEGMENTS = np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])


def _sample_effects() -> tuple[pd.DataFrame, pd.DataFrame]:
    effects = pd.DataFrame([[-1.2, 1.5], [0.3, np.nan], [0.9, -0.7]], index=list(LABELS.values()),
                           columns=["recency_days", "frequency"])
    return effects, effects.map(lambda v: "n/a" if np.isnan(v) else f"{v:+.1f} sd")


def _sample_distributions() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    raw = pd.DataFrame({"monetary": [12.5, 40.0, 95.0, 310.0, 18.0, np.nan, 1250.0, 64.0, 7.5, 220.0],
                        "frequency": [1.0, 2.0, 2.0, 5.0, 1.0, 3.0, 14.0, 4.0, 1.0, 6.0]})
    transformed = pd.DataFrame({"monetary": [-1.1, -0.3, 0.2, 0.9, -0.8, 0.0, 1.9, -0.1, -1.5, 0.7],
                                "frequency": [-0.8, -0.5, -0.5, 0.3, -0.8, -0.2, 2.6, 0.0, -0.8, 0.6]})
    return raw, transformed, ["monetary"]


def _drift() -> pd.DataFrame:
    """Two snapshots of drift: the model's own (all zero) and a later one with recency past act."""
    first, later = dt.date(2024, 1, 31), dt.date(2024, 2, 29)
    rows = [
        (first, "m1", "numeric", "recency_days", 0.0, None, 0.0, 0.0, "ok", None),
        (first, "m1", "categorical", "country", None, 0.0, None, 0.0, "ok", None),
        (later, "m1", "numeric", "recency_days", 0.31, None, 1.2, 0.0, "act", "PSI 0.31 >= 0.25"),
        (later, "m1", "categorical", "country", None, 0.12, None, 0.0, "watch", "JS distance 0.12 >= 0.1"),
        (later, "m1", "segments", "segment_id", 0.05, 0.04, None, None, "ok", None),
    ]
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def _lift() -> pd.DataFrame:
    """Three segments' uplift, one without an interval, and all segments together."""
    at = dt.date(2024, 1, 31)
    rows = [
        (at, "Champions", 300, 0.041, 0.012, 0.07, 0.006, 12.5, -3.0, 28.0, "uplift +4.1 points [1.2, 7.0]"),
        (at, "Lapsed", 900, -0.013, -0.09, 0.063, 0.7, None, None, None, "no detectable effect"),
        (at, "New", 40, 0.2, None, None, None, None, None, None, "too few customers"),
        (at, "All segments", 1240, 0.01, -0.02, 0.04, 0.5, 1.0, -2.0, 4.0, "no detectable effect"),
    ]
    return pd.DataFrame(rows, columns=LIFT_COLUMNS)


SAMPLES: dict[str, Callable[[], tuple]] = {
    "figures.segment_sizes": lambda: (_segments(), COLOURS, LABELS),
    "figures.wssse_by_k": lambda: (_selection(),),
    "figures.silhouette_by_k": lambda: (_selection(),),
    "figures.stability_by_k": lambda: (_selection(),),
    "figures.silhouette_plot": lambda: (np.array([0.62, 0.48, 0.1, 0.71, 0.33, -0.05, 0.55, 0.2, 0.41]),
                                        np.array([1, 1, 1, 2, 2, 2, 3, 3, 3]), COLOURS, LABELS, 0.37),
    "figures.pca_scatter": lambda: (POINTS.copy(), POINT_SEGMENTS.copy(),
                                    np.array([[1.18, 0.48], [-1.05, 0.18], [0.13, -1.13]]), np.array(IDS),
                                    (0.52, 0.31), COLOURS, LABELS),
    "figures.profile_heatmap": _sample_effects,
    "figures.top_features": lambda: ({1: [("monetary", 1.4), ("recency_days", -0.8)], 2: [],
                                      3: [("frequency", 0.6)]}, COLOURS, LABELS),
    "figures.algorithm_comparison": lambda: (
        POINTS.copy(), {"kmeans": POINT_SEGMENTS - 1, "dbscan": np.array([0, 0, 0, 0, 1, 1, 1, -1, 2, 2, -1, 2])},
        {"kmeans": 0.41, "dbscan": None}),
    "data_figures.feature_distributions": _sample_distributions,
    "data_figures.correlation_matrix": lambda: (
        pd.DataFrame([[1.0, -0.4], [-0.4, 1.0]], index=["monetary", "frequency"], columns=["monetary", "frequency"]),),
    "data_figures.rfm_grid": lambda: (_rfm(),),
    "data_figures.rejects_by_reason": lambda: (
        pd.DataFrame({"reason": ["invalid_price", "missing_customer_id"], "lines": [12345, 98]}),),
    "data_figures.sizes_over_time": lambda: (_sizes(), COLOURS, LABELS),
    "data_figures.migration_matrix": lambda: (_migration(), "2024-01-31", "2024-02-29"),
    "style.new_figure": lambda: (7.0, 3.0),
    "monitoring.drift_over_time": lambda: (_drift(), DriftThresholds()),
    "monitoring.lift_intervals": lambda: (_lift(),),
}


def _render(key: str, functions: dict[str, Callable[..., Figure]]) -> bytes:
    return F.png_bytes(functions[key](*SAMPLES[key]()))


def _pixels(png: bytes) -> np.ndarray:
    return imread(io.BytesIO(png), format="png")


def test_every_public_figure_function_has_a_sample():
    """A new figure function in any module of the report package fails here until it is given a sample input."""
    functions = _figure_functions()
    assert {"figures", "data_figures"} <= {key.split(".")[0] for key in functions}
    missing = sorted(set(functions) - set(SAMPLES))
    unknown = sorted(set(SAMPLES) - set(functions))
    assert not missing, f"figure functions without a sample input in SAMPLES: {missing}"
    assert not unknown, f"samples for no public figure function: {unknown}"


def test_no_pyplot_and_thread_safe():
    """Every figure function, built and rendered on 8 threads at once (in a shuffled order), gives the PNG its
    serial render gives, byte for byte: no figure shares state with another (pyplot, rcParams, caches)."""
    functions = _figure_functions()
    for module in {inspect.getmodule(function) for function in functions.values()} | {F}:
        imports = [line for line in inspect.getsource(module).splitlines() if line.startswith(("import ", "from "))]
        assert imports and not [line for line in imports if "pyplot" in line], module.__name__
    keys = sorted(SAMPLES)
    serial = {key: _render(key, functions) for key in keys}
    jobs = list(keys)
    random.Random(23).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(lambda key: _render(key, functions), jobs))
    assert all(o.startswith(PNG) for o in outputs)
    for key, parallel in zip(jobs, outputs, strict=True):
        if parallel != serial[key]:
            a, b = _pixels(serial[key]), _pixels(parallel)
            differing = int(np.any(a != b, axis=-1).sum()) if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
            raise AssertionError(f"{key}: the parallel render differs from the serial one ({differing} pixels)")

"""The report as one self-contained HTML page: inline CSS, figures embedded as PNG data URIs, no JavaScript.

Pure: :func:`render` turns the gathered data, the sample analysis and the rendered figures into text.
Every value from the data is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from html import escape
from typing import TYPE_CHECKING

import pandas as pd

from segspark.maths.numbers import number, percent

if TYPE_CHECKING:  # for the annotations only: the page is text made from the gathered values
    from segspark.stages.report.analysis import SampleAnalysis
    from segspark.stages.report.data import ReportData

#: Figure key -> (file name, PNG bytes), as :func:`segspark.stages.report.stage.draw_figures` returns them.
Figures = Mapping[str, tuple[str, bytes]]

__all__ = ["ALGORITHM_NAMES", "SECTIONS", "VERDICTS", "render", "segment_label"]

#: Section ids and titles, in page order; tests and the table of contents use them.
SECTIONS = (
    ("summary", "Summary"),
    ("choosing-k", "Choosing K"),
    ("silhouette", "Silhouette of the chosen model"),
    ("customers-2d", "Customers in two dimensions"),
    ("profiles", "Segment profiles"),
    ("exploration", "Exploration"),
    ("algorithms", "Algorithms side by side"),
    ("data-quality", "Data quality"),
    ("over-time", "Segments over time"),
    ("monitoring", "Monitoring: drift, the retrain decision and campaign lift"),
)

VERDICTS = {
    "strong": (
        "Strong structure: customers fall into well-separated groups. Treat the segments as distinct groups, "
        "each with its own play."
    ),
    "moderate": (
        "Moderate structure: the segments are real but overlap at their edges. Use them for targeting; customers "
        "near a boundary could belong to either side."
    ),
    "weak": (
        "Weak structure: customers do not fall into well-separated groups, so the segments are bands of one "
        "continuum (value tiers). Use them to prioritise, not as personas."
    ),
}

ALGORITHM_NAMES = {
    "kmeans": "k-means",
    "bisecting_kmeans": "bisecting k-means",
    "gaussian_mixture": "Gaussian mixture",
    "ward": "Ward (agglomerative)",
    "dbscan": "DBSCAN",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.3em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.05em;margin-bottom:.3em}
.meta{color:#57606a}.verdict{padding:10px 14px;border-left:5px solid;margin:12px 0;background:#f6f8fa}
.verdict.strong{border-color:#009E73}.verdict.moderate{border-color:#E69F00}.verdict.weak{border-color:#D55E00}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.kpi{border:1px solid #d0d7de;border-radius:6px;
padding:8px 14px;min-width:120px}.kpi b{display:block;font-size:1.35em}.kpi span{color:#57606a;font-size:.9em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.92em}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:12px 0 20px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:.9em;margin-top:4px}.swatch{display:inline-block;width:.9em;height:.9em;
border-radius:2px;margin-right:6px;vertical-align:-.1em}nav ol{columns:2;margin:0}
.note{color:#57606a;font-style:italic}code{background:#f6f8fa;padding:0 3px}
"""


def _figure(figures: Figures, key: str, caption: str) -> str:
    if key not in figures:
        return ""
    filename, png = figures[key]
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{escape(key)}"><img src="data:image/png;base64,{data}" alt="{escape(caption)}" '
        f'data-file="{escape(filename)}"><figcaption>{escape(caption)} (<code>{escape(filename)}</code>)'
        "</figcaption></figure>"
    )


def _table(headers: list[str], rows: list[list[str]], numeric: AbstractSet[int] = frozenset(), cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def segment_label(segment_id: int, name: str) -> str:
    """A segment as the report names it everywhere: its name, then its id in brackets."""
    return f"{name} ({segment_id})"


def render(
    data: ReportData,
    analysis: SampleAnalysis | None,
    figures: Figures,
    colours: Mapping[int, str],
    generated_at: dt.datetime,
) -> str:
    """The whole page for ``data`` (:class:`ReportData`) and ``analysis`` (:class:`SampleAnalysis` or None)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>segspark report: {escape(data.target.as_of_date.isoformat())}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Customer segments as of {escape(data.target.as_of_date.isoformat())}</h1>",
        f'<p class="meta">Run <code>{escape(data.target.run_id)}</code> · model <code>'
        f"{escape(data.target.model_version)}</code> · lakehouse <code>{escape(data.lakehouse)}</code> · generated "
        f"{escape(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</p>",
        "<nav><ol>" + "".join(f'<li><a href="#{k}">{escape(t)}</a></li>' for k, t in SECTIONS) + "</ol></nav>",
        _summary(data, figures, colours),
        _choosing_k(data, figures),
        _silhouette(data, analysis, figures),
        _customers_2d(data, analysis, figures),
        _profiles(data, figures, colours),
        _exploration(data, figures),
        _algorithms(data, analysis, figures),
        _data_quality(data, figures),
        _over_time(data, figures),
        _monitoring(data, figures),
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def _summary(data: ReportData, figures: Figures, colours: Mapping[int, str]) -> str:
    quality = data.quality
    window = "n/a"
    # The first and last invoice dates are the min and max of one column: both null or neither.
    if quality is not None and quality.first_invoice is not None and quality.last_invoice is not None:
        window = f"{quality.first_invoice.isoformat()} to {quality.last_invoice.isoformat()}"
    chosen = data.selection[data.selection["is_chosen"]].iloc[0]
    kpis = [
        (number(data.customers, 0), "customers segmented"),
        (str(data.k), f"segments ({ALGORITHM_NAMES.get(data.algorithm, data.algorithm)})"),
        (number(chosen["silhouette_euclidean"], 3), "silhouette (training sample)"),
        (escape(data.structure), "structure"),
        (escape(window), "transactions dated"),
    ]
    kpi_html = (
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b class="kpi-value">{v}</b><span>{escape(t)}</span></div>' for v, t in kpis)
        + "</div>"
    )
    verdict = VERDICTS.get(data.structure, data.structure)
    rows = []
    segments = data.segments.sort_values(["priority", "segment_id"], na_position="last")
    for _, s in segments.iterrows():
        swatch = f'<span class="swatch" style="background:{colours.get(int(s["segment_id"]), "#999")}"></span>'
        rows.append(
            [
                swatch + escape(str(s["name"])),
                str(int(s["segment_id"])),
                number(int(s["customers"]), 0),
                percent(s["customer_share"]),
                percent(s["revenue_share"]),
                escape(str(s["play"] or "not profiled")),
                "" if pd.isna(s["priority"]) else str(int(s["priority"])),
            ]
        )
    table = _table(
        ["segment", "id", "customers", "share of customers", "share of revenue", "play", "priority"],
        rows,
        numeric={1, 2, 3, 4, 6},
        cls="segments",
    )
    body = (
        kpi_html + f'<p class="verdict {escape(data.structure)}"><b>{escape(data.structure.capitalize())}.</b> '
        f"{escape(verdict)}</p>"
        + _trained_on(data)
        + f"<p>{escape(data.decision)}</p>"
        + table
        + _figure(figures, "segment_sizes", "Share of customers and of revenue per segment")
    )
    return _section("summary", body)


def _trained_on(data: ReportData) -> str:
    if data.trained_on is None or data.trained_on == data.target.as_of_date:
        return ""
    return (
        f'<p class="scored">The model was trained on the snapshot of {escape(data.trained_on.isoformat())} and this '
        "snapshot was scored with it: the choice of K below is that training run's evidence; the silhouette and the "
        "customers shown further down are this snapshot's.</p>"
    )


def _choosing_k(data: ReportData, figures: Figures) -> str:
    selection = data.selection
    rows = [
        [
            escape(ALGORITHM_NAMES.get(r["algorithm"], r["algorithm"])),
            str(int(r["k"])),
            number(r["wssse"], 1),
            number(r["silhouette_euclidean"], 3),
            number(r["reference_silhouette"], 3),
            number(r["stability_ari"], 3),
            percent(r["smallest_segment_share"]),
            ("<b>chosen</b>" if r["is_chosen"] else "") + (" knee" if r["is_elbow"] else ""),
        ]
        for _, r in selection.iterrows()
    ]
    body = (
        "<p>Each candidate (algorithm, K) was fitted and measured on the same customers. A good K has a high "
        "silhouette, clearly above what the same procedure finds on structureless data of the same shape (the "
        "reference), stable assignments across seeds, and no segment too small to act on.</p>"
        + _figure(figures, "k_silhouette", "Silhouette against K, with the structureless reference")
        + _figure(figures, "k_wssse", "Within-segment sum of squares against K, knee marked")
        + _figure(figures, "k_stability", "Stability of the assignments against K")
        + _table(
            ["algorithm", "K", "WSSSE", "silhouette", "reference", "stability", "smallest segment", ""],
            rows,
            numeric={1, 2, 3, 4, 5, 6},
            cls="selection",
        )
    )
    return _section("choosing-k", body)


def _silhouette(data: ReportData, analysis: SampleAnalysis | None, figures: Figures) -> str:
    if analysis is None or analysis.silhouettes is None:
        return _section("silhouette", f'<p class="note">{escape(data.sample_note or "No sample to show.")}</p>')
    chosen = data.selection[data.selection["is_chosen"]].iloc[0]
    body = (
        f"<p>Each bar is one customer of a sample of {number(len(analysis.silhouettes), 0)}: how much closer it is to "
        "its own segment than to the next one (1 = deep inside its segment, 0 = on the boundary, below 0 = closer "
        f'to another segment). Mean silhouette of the sample: <b class="sample-silhouette">'
        f"{number(analysis.mean_silhouette, 3)}</b> (the sweep measured {number(chosen['silhouette_euclidean'], 3)} "
        "on its silhouette sample).</p>"
        + _figure(figures, "silhouette", "Silhouette of each sampled customer, by segment")
    )
    return _section("silhouette", body)


def _customers_2d(data: ReportData, analysis: SampleAnalysis | None, figures: Figures) -> str:
    if analysis is None:
        return _section("customers-2d", f'<p class="note">{escape(data.sample_note or "No sample to show.")}</p>')
    a, b = analysis.projection.explained
    body = (
        "<p>The sampled customers on the two directions of model space along which they differ most (principal "
        f"components; together {percent((a if not math.isnan(a) else 0) + (b if not math.isnan(b) else 0))} of the "
        "variance), coloured by segment, with each segment's centre marked. Segments that overlap here may still be "
        "apart in the other directions.</p>"
        + _figure(figures, "pca", "Sampled customers on the first two principal components")
    )
    return _section("customers-2d", body)


def _profiles(data: ReportData, figures: Figures, colours: Mapping[int, str]) -> str:
    segments = data.segments
    if segments["play"].isna().all():
        return _section(
            "profiles", '<p class="note">This snapshot is not profiled yet: run <code>segspark profile</code>.</p>'
        )
    cards = []
    for _, s in segments.sort_values(["priority", "segment_id"], na_position="last").iterrows():
        colour = colours.get(int(s["segment_id"]), "#999")
        cards.append(
            f'<h3><span class="swatch" style="background:{colour}"></span>{escape(str(s["name"]))} '
            f"(segment {int(s['segment_id'])}): {escape(str(s['play']))}, priority {int(s['priority'])}</h3>"
            f"<p>{escape(str(s['play_reason']))}. {escape(str(s['top_features_text'] or ''))}</p>"
            f'<p class="meta">Median recency {number(s["recency_days_median"], 0)} days, frequency '
            f"{number(s['frequency_median'], 0)} invoices, monetary {number(s['monetary_median'], 0)}; value at stake "
            f"{number(s['value_at_stake'], 0)}; most common RFM segment {escape(str(s['dominant_rfm_segment']))}.</p>"
        )
    body = (
        "<p>How each segment differs from all customers, in standard deviations on the model's scale (red: higher, "
        "blue: lower), with the segment's mean in original units in each cell.</p>"
        + _figure(figures, "profile_heatmap", "Segments against features: standardised differences")
        + _figure(figures, "top_features", "The features that set each segment apart")
        + "".join(cards)
    )
    return _section("profiles", body)


def _exploration(data: ReportData, figures: Figures) -> str:
    body = ""
    if data.sample is not None:
        body += (
            "<p>The model's features on the sample, before and after their transform (a log for skewed features, "
            "then division by the standard deviation), and how they move together.</p>"
            + _figure(figures, "distributions", "Model features before and after their transform")
            + _figure(figures, "correlation", "Correlation of the model features")
        )
    if data.rfm_grid is not None and not data.rfm_grid.empty:
        body += (
            "<p>All customers of the snapshot by recency and frequency score (quintiles, 5 = best). Customers with "
            "the same value share a score (mid-rank ties), so when many share one (a single invoice, say) a "
            "neighbouring score can stay empty.</p>"
            + _figure(figures, "rfm_grid", "Customers and revenue per R x F cell")
        )
    return _section("exploration", body or '<p class="note">No customer features to explore.</p>')


def _algorithms(data: ReportData, analysis: SampleAnalysis | None, figures: Figures) -> str:
    if analysis is None or not analysis.algorithms:
        return _section("algorithms", '<p class="note">Too few sampled customers to compare algorithms.</p>')
    sampled = 0 if data.sample is None else len(data.sample.points)  # an analysis is made only of a sample
    rows = [
        [
            escape(ALGORITHM_NAMES.get(r.algorithm, r.algorithm)),
            str(r.clusters),
            number(r.silhouette, 3),
            number(r.agreement, 3),
            escape(", ".join(f"{n:,}" for n in r.sizes)),
            percent(r.noise_share),
            escape(r.parameters),
        ]
        for r in analysis.algorithms
    ]
    body = (
        f"<p>What other algorithms find on the same {number(sampled, 0)} sampled customers at "
        f"K={data.k}: "
        "their silhouette, their cluster sizes and their agreement with the model's segments (adjusted Rand "
        "index: 1 = the same partition, 0 = no better than chance). Ward and DBSCAN run on this sample on the driver "
        "and are for comparison only; the segments come from the model fitted on all customers.</p>"
        + _table(
            ["algorithm", "clusters", "silhouette", "agreement with segments", "sizes", "noise", "parameters"],
            rows,
            numeric={1, 2, 3, 5},
            cls="algorithms",
        )
        + _figure(figures, "algorithms", "The same customers clustered by each algorithm")
    )
    return _section("algorithms", body)


def _data_quality(data: ReportData, figures: Figures) -> str:
    q = data.quality
    if q is None:
        return _section("data-quality", '<p class="note">No ingested transactions in this lakehouse.</p>')
    rejected = sum(q.rejected_by_reason.values())
    rows = [
        [escape(reason), number(n, 0), escape(q.examples.get(reason) or "")]
        for reason, n in q.rejected_by_reason.items()
    ]
    returns_share = q.return_lines / q.clean_lines if q.clean_lines else float("nan")
    left_out = (
        "not recorded"
        if q.returns_only_customers is None
        else f"{q.returns_only_customers:,} customer(s) with returns only (no purchase before the snapshot)"
    )
    body = (
        f"<p>Source lines read: <b>{number(q.rows_in, 0)}</b>; clean: <b>{number(q.rows_clean, 0)}</b>; "
        "rejected with a "
        f"reason: <b>{number(rejected, 0)}</b> (kept in <code>transactions_rejected</code>). Returns are "
        f"{percent(returns_share)} of the clean lines ({number(q.returned_value, 0)} returned against "
        f"{number(q.purchase_value, 0)} purchased). Left out of this snapshot's features: {escape(left_out)}.</p>"
        + _table(["reason", "lines", "example"], rows, numeric={1}, cls="rejects")
        + _figure(figures, "rejects", "Rejected source lines by reason")
    )
    return _section("data-quality", body)


def _over_time(data: ReportData, figures: Figures) -> str:
    dates = data.sizes_over_time["as_of_date"].nunique() if not data.sizes_over_time.empty else 0
    if dates < 2:
        return _section(
            "over-time",
            '<p class="note">One snapshot so far: sizes over time and migration appear from the second.</p>',
        )
    body = _figure(figures, "sizes_over_time", "Customers per segment at each snapshot")
    if data.migration is not None and data.previous_as_of is not None:  # a migration has a previous snapshot
        body += _figure(
            figures,
            "migration",
            f"Where the customers of {data.previous_as_of.isoformat()} are at {data.target.as_of_date.isoformat()}",
        )
    return _section("over-time", body)


_FEATURE_KINDS = ("numeric", "categorical")


def _monitoring(data: ReportData, figures: Figures) -> str:
    """The latest retrain decision; this snapshot's drift against its model, with the drift of every snapshot
    drawn; and the lift of the campaign measured at this snapshot."""
    monitoring, as_of = data.monitoring, data.target.as_of_date
    parts = []
    if monitoring.decision:
        parts.append(f'<p class="verdict moderate">Latest retrain decision: {escape(monitoring.decision)}</p>')
    drift = monitoring.drift
    latest = drift[drift["as_of_date"] == as_of] if not drift.empty else drift
    if latest.empty:
        parts.append('<p class="note">No drift measured for this snapshot: segspark monitor writes it.</p>')
    else:
        parts.append(_figure(figures, "drift_over_time", "PSI of each feature at each snapshot, against its model"))
        rows = [
            [
                escape(str(r.feature)) if r.kind in _FEATURE_KINDS else escape(f"{r.kind}: {r.feature}"),
                _figure_number(r.psi),
                _figure_number(r.js_distance),
                _figure_number(r.mean_shift),
                _figure_number(r.missing_share_change),
                escape(str(r.alert)) if r.alert == "ok" else f"<b>{escape(str(r.alert))}</b>",
                escape(r.reason) if isinstance(r.reason, str) else "",
            ]
            for r in latest.itertuples()
        ]
        headers = ["feature", "PSI", "JS distance", "mean shift (sd)", "missing share change", "alert", "reason"]
        parts.append(_table(headers, rows, numeric={1, 2, 3, 4}, cls="drift"))
    lift = monitoring.lift
    if lift.empty:
        parts.append('<p class="note">No campaign audience was measured at this snapshot (campaign_results).</p>')
    else:
        parts.append(_figure(figures, "lift", "Purchase-rate uplift per segment with its 95% interval"))
        rows = [
            [
                escape(str(r.segment_name)),
                f"{r.customers:,}",
                _interval(r.purchase_rate_uplift, r.purchase_rate_uplift_low, r.purchase_rate_uplift_high, 100),
                _figure_number(r.purchase_rate_p_value),
                _interval(
                    r.spend_per_customer_uplift, r.spend_per_customer_uplift_low, r.spend_per_customer_uplift_high, 1
                ),
                escape(r.verdict) if isinstance(r.verdict, str) else "",
            ]
            for r in lift.itertuples()
        ]
        headers = ["segment", "contacted", "purchase-rate uplift, points [95%]", "p", "spend uplift [95%]", "verdict"]
        parts.append(_table(headers, rows, numeric={1, 3}, cls="lift"))
    return _section("monitoring", "".join(parts))


def _figure_number(value: object) -> str:
    """A drift or test figure to three significant digits; empty when missing."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    return f"{value:.3g}"


def _interval(point: object, low: object, high: object, scale: float) -> str:
    """``point [low, high]`` times ``scale``; the point alone without an interval; empty without a point."""
    if not isinstance(point, int | float) or not math.isfinite(point):
        return ""
    text = number(point * scale)
    if isinstance(low, int | float) and isinstance(high, int | float) and math.isfinite(low) and math.isfinite(high):
        text += f" [{number(low * scale)}, {number(high * scale)}]"
    return text

"""The report stage: ``segspark report [--run-id ID | --as-of DATE]``, and the last step of ``segspark run``.

Writes ``<lakehouse>/reports/<run_id>/index.html``, one self-contained page (figures embedded, no network, no
JavaScript), and each figure as a PNG beside it. ``run_id`` is the run that wrote the reported snapshot's
segments. The parts below it:

- :mod:`segspark.stages.report.data` reads the published tables (bounded results and one customer sample);
- :mod:`segspark.stages.report.analysis` computes the sample's silhouettes, principal components, correlations and
  the algorithm comparison on the driver;
- :mod:`segspark.stages.report.figures` draws the figures with matplotlib;
- :mod:`segspark.stages.report.html` writes the page.

The figures go first and ``index.html`` last, each file written whole and then renamed into place, so a
report folder either has its page or is visibly unfinished. Reports are files, not tables: the stage takes
part in no publication.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from matplotlib.figure import Figure
from pyspark.sql import SparkSession

from segspark.config.paths import local_path
from segspark.config.settings import Config
from segspark.contracts.schemas import CORE_COLUMNS
from segspark.errors import SegsparkError
from segspark.maths.numbers import number
from segspark.platform import filesystem, progress
from segspark.platform.stage_log import StageRun
from segspark.stages.report import figures as fig
from segspark.stages.report.analysis import SampleAnalysis, analyse
from segspark.stages.report.data import ReportData, gather, resolve_target
from segspark.stages.report.html import render, segment_label
from segspark.stages.report.monitoring import drift_over_time, lift_intervals

__all__ = [
    "ReportResult",
    "draw_figures",
    "migration_matrix",
    "profile_matrix",
    "report_folder",
    "run_report",
    "top_effects",
    "write_file",
]

log = logging.getLogger("segspark")
# matplotlib logs a warning while it builds its font cache on a new machine; without a handler Python would
# print it on stderr among segspark's own lines.
logging.getLogger("matplotlib").setLevel(logging.ERROR)


@dataclass(frozen=True)
class ReportResult:
    """What one report run wrote: the run and snapshot reported, the page's URI and its figures' file names."""

    run_id: str
    as_of_date: dt.date
    #: URI of the page.
    path: str
    figures: list[str]


def report_folder(config: Config, run_id: str) -> str:
    """The URI of the folder that holds the report of the run ``run_id``."""
    return f"{config.lakehouse}/reports/{run_id}"


def run_report(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> ReportResult:
    """Write the report of ``report.run_id``'s snapshot (else ``--as-of``'s, else the latest)."""
    target = resolve_target(spark, config, config.report.run_id)
    progress.step(f"gathering the report of {target.as_of_date} (run {target.run_id}, model {target.model_version})")
    data = gather(spark, config, target)
    analysis = None
    sampled = 0 if data.sample is None else len(data.sample.points)
    if data.sample is not None and sampled:
        progress.step(f"analysing a sample of {sampled:,} customers")
        analysis = analyse(data.sample, data.k, config.model, config.report, config.seed)
    progress.step("drawing the figures")
    colours = fig.segment_colours(data.segments["segment_id"].astype(int).tolist())
    figures = draw_figures(data, analysis, colours)
    page = render(data, analysis, figures, colours, dt.datetime.now(dt.UTC))
    folder = report_folder(config, target.run_id)
    progress.step(f"writing {folder}/index.html")
    for filename, png in figures.values():
        write_file(spark, f"{folder}/{filename}", png)
    write_file(spark, f"{folder}/index.html", page.encode("utf-8"))
    path = f"{folder}/index.html"
    log.info("report of %s written: %s (%d figures)", target.as_of_date, path, len(figures))
    if stage is not None:
        stage.rows_in = data.customers
        stage.rows_out = len(figures)
        stage.counts.update({"figures": len(figures), "sample_customers": 0 if analysis is None else sampled})
    return ReportResult(target.run_id, target.as_of_date, path, sorted(f for f, _ in figures.values()))


def _rows(frame: pd.DataFrame) -> Iterable[Any]:
    """``frame.itertuples()`` with untyped fields: pandas-stubs types every field as any scalar (text, dates,
    intervals...), where the report's frames hold known types per column (ids, names, numbers)."""
    return cast(Iterable[Any], frame.itertuples())


def draw_figures(
    data: ReportData, analysis: SampleAnalysis | None, colours: dict[int, str]
) -> dict[str, tuple[str, bytes]]:
    """Figure key -> (file name, PNG bytes), for every figure the data allows."""
    segments = data.segments
    labels = {int(r.segment_id): segment_label(int(r.segment_id), str(r.name)) for r in _rows(segments)}
    drawn: dict[str, Figure] = {
        "segment_sizes": fig.segment_sizes(segments, colours, labels),
        "k_silhouette": fig.silhouette_by_k(data.selection),
        "k_wssse": fig.wssse_by_k(data.selection),
        "k_stability": fig.stability_by_k(data.selection),
    }
    if analysis is not None:
        sample = data.sample
        if sample is None:  # run_report analyses only a sample it has
            raise SegsparkError("the report has an analysis of a sample but no sample")
        if analysis.silhouettes is not None:
            drawn["silhouette"] = fig.silhouette_plot(
                analysis.silhouettes, sample.segment_ids, colours, labels, analysis.mean_silhouette
            )
        p = analysis.projection
        drawn["pca"] = fig.pca_scatter(
            p.coords, sample.segment_ids, p.centres, sample.centre_ids, p.explained, colours, labels
        )
        if not sample.raw.empty:
            drawn["distributions"] = fig.feature_distributions(sample.raw, sample.transformed, data.log_features)
        if not analysis.correlation.empty:
            drawn["correlation"] = fig.correlation_matrix(analysis.correlation)
        if analysis.algorithms:
            drawn["algorithms"] = fig.algorithm_comparison(
                p.coords,
                {r.algorithm: r.labels for r in analysis.algorithms},
                {r.algorithm: r.silhouette for r in analysis.algorithms},
            )
    if not data.feature_profiles.empty:
        effects, annotations = profile_matrix(data)
        drawn["profile_heatmap"] = fig.profile_heatmap(effects, annotations)
        drawn["top_features"] = fig.top_features(top_effects(data), colours, labels)
    if data.rfm_grid is not None and not data.rfm_grid.empty:
        drawn["rfm_grid"] = fig.rfm_grid(data.rfm_grid)
    if data.quality is not None:
        counts = pd.DataFrame(
            [{"reason": r, "lines": n} for r, n in data.quality.rejected_by_reason.items()], columns=["reason", "lines"]
        )
        drawn["rejects"] = fig.rejects_by_reason(counts)
    if data.sizes_over_time["as_of_date"].nunique() >= 2:
        drawn["sizes_over_time"] = fig.sizes_over_time(data.sizes_over_time, colours, labels)
        if data.migration is not None and data.previous_as_of is not None:  # migration needs the previous snapshot
            drawn["migration"] = fig.migration_matrix(
                migration_matrix(data, labels), data.previous_as_of.isoformat(), data.target.as_of_date.isoformat()
            )
    if data.monitoring.drift["as_of_date"].nunique() >= 2:  # the model's own snapshot alone is all zeros
        drawn["drift_over_time"] = drift_over_time(data.monitoring.drift, data.monitoring.thresholds)
    if not data.monitoring.lift.empty:
        drawn["lift"] = lift_intervals(data.monitoring.lift)
    return {key: (f"{key}.png", fig.png_bytes(figure)) for key, figure in drawn.items()}


def profile_matrix(data: ReportData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segments (rows, by id, labelled) x profiled features: effect sizes, and the means as cell text."""
    profiles = data.feature_profiles
    names = {int(r.segment_id): segment_label(int(r.segment_id), str(r.name)) for r in _rows(data.segments)}
    # The same column order for every report: the core RFM columns, then the other features as first profiled.
    seen = list(dict.fromkeys(profiles["feature"]))
    features = [c for c in CORE_COLUMNS if c in seen] + [c for c in seen if c not in CORE_COLUMNS]
    ids = sorted(profiles["segment_id"].astype(int).unique())
    effects = pd.DataFrame(index=[names[i] for i in ids], columns=features, dtype=float)
    annotations = pd.DataFrame("", index=effects.index, columns=features)
    for r in _rows(profiles):
        row = names[int(r.segment_id)]
        effects.loc[row, r.feature] = float("nan") if r.effect_size is None else float(r.effect_size)
        annotations.loc[row, r.feature] = "" if r.mean is None else number(float(r.mean), compact=True)
    return effects, annotations


def top_effects(data: ReportData, top: int = 5) -> dict[int, list[tuple[str, float]]]:
    """Each segment's features with the largest |effect size|, largest first."""
    result: dict[int, list[tuple[str, float]]] = {int(s): [] for s in data.segments["segment_id"]}
    profiles = data.feature_profiles.dropna(subset=["effect_size"])
    for sid, rows in profiles.groupby("segment_id"):
        ordered = rows.sort_values("effect_rank")
        result[int(cast(int, sid))] = [(str(r.feature), float(r.effect_size)) for r in _rows(ordered.head(top))]
    return result


def migration_matrix(data: ReportData, labels: dict[int, str]) -> pd.DataFrame:
    """From-segment rows x to-segment columns of customers; customers new or gone get their own row/column."""

    def name(segment: int, missing: str) -> str:
        return missing if segment == -1 else labels.get(segment, f"Segment {segment}")

    moves = data.migration
    if moves is None:
        raise SegsparkError(f"the report of {data.target.as_of_date} has no migration to tabulate")
    rows = [s for s in sorted(moves["from_segment"].unique()) if s != -1] + [-1]
    columns = [s for s in sorted(moves["to_segment"].unique()) if s != -1] + [-1]
    matrix = pd.DataFrame(0, index=rows, columns=columns, dtype="int64")
    cells = cast(Any, matrix.loc)  # pandas-stubs rejects a (row label, column label) pair of ints in .loc
    for r in _rows(moves):
        cells[int(r.from_segment), int(r.to_segment)] += int(r.customers)
    # Rows and columns that are all zero for "new" and "gone" say nothing: dropped.
    if matrix.loc[-1].sum() == 0:
        matrix = matrix.drop(index=-1)
    if matrix[-1].sum() == 0:
        matrix = matrix.drop(columns=-1)
    matrix.index = [name(int(s), "new customers") for s in matrix.index]
    matrix.columns = [name(int(s), "not in this snapshot") for s in matrix.columns]
    return matrix


def write_file(spark: SparkSession, uri: str, payload: bytes) -> None:
    """Write one file whole: a local temp file renamed into place, or Hadoop's FileSystem for other URIs
    (object stores, through :mod:`segspark.platform.filesystem`), so the report lands wherever the lakehouse is."""
    path = local_path(uri) if uri.startswith("file:") or "://" not in uri else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, path)
        return
    filesystem.write_bytes(spark, uri, payload, overwrite=True)

"""The data and figures of the report's monitoring section: drift per feature over the snapshots, the retrain
decision, and the lift of the campaign measured at this snapshot with its intervals.

Gathered from the published ``feature_drift``, ``pipeline_runs`` and ``campaign_results`` (a few rows each:
snapshots x features, one decision, segments); :mod:`segspark.stages.report.html` renders the section.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config, DriftThresholds
from segspark.contracts.schemas import AS_OF_DATE, MODEL_VERSION
from segspark.platform import lakehouse, publication
from segspark.stages.report.style import SMALL_PT, dress, new_figure, note, rotate_xticks

__all__ = ["DRIFT_COLUMNS", "LIFT_COLUMNS", "Monitoring", "drift_over_time", "gather_monitoring", "lift_intervals"]

DRIFT_COLUMNS = [
    AS_OF_DATE,
    MODEL_VERSION,
    "kind",
    "feature",
    "psi",
    "js_distance",
    "mean_shift",
    "missing_share_change",
    "alert",
    "reason",
]
LIFT_COLUMNS = [
    AS_OF_DATE,
    "segment_name",
    "customers",
    "purchase_rate_uplift",
    "purchase_rate_uplift_low",
    "purchase_rate_uplift_high",
    "purchase_rate_p_value",
    "spend_per_customer_uplift",
    "spend_per_customer_uplift_low",
    "spend_per_customer_uplift_high",
    "verdict",
]
_FEATURE_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Monitoring:
    """What the monitoring section shows of one snapshot."""

    #: :data:`DRIFT_COLUMNS` of every snapshot up to this one, against the model that scored it.
    drift: pd.DataFrame
    #: monitor's latest retrain decision (pipeline_runs.decision); None before the first.
    decision: str | None
    #: :data:`LIFT_COLUMNS` of the contacted groups of the audience measured at this snapshot, one per segment
    #: and one for all segments together; empty when none was measured here.
    lift: pd.DataFrame
    thresholds: DriftThresholds


def gather_monitoring(spark: SparkSession, config: Config, as_of: dt.date) -> Monitoring:
    """The section's rows, from the published tables (nothing when monitor or profile never ran)."""
    drift = pd.DataFrame(columns=DRIFT_COLUMNS)
    if publication.is_published(spark, config, "feature_drift"):
        scored = (
            publication.read_published(spark, config, "customer_segments")
            .groupBy(AS_OF_DATE)
            .agg(F.max(MODEL_VERSION).alias(MODEL_VERSION))
        )
        rows = (
            publication.read_published(spark, config, "feature_drift")
            .filter(F.col(AS_OF_DATE) <= F.lit(as_of))
            .join(scored, [AS_OF_DATE, MODEL_VERSION])
            .select(*DRIFT_COLUMNS)
            .orderBy(AS_OF_DATE, "kind", "feature")
            .collect()  # snapshots x (features + K + 2) rows
        )
        drift = pd.DataFrame([r.asDict() for r in rows], columns=DRIFT_COLUMNS)
    lift = pd.DataFrame(columns=LIFT_COLUMNS)
    if publication.is_published(spark, config, "campaign_results"):
        rows = (
            publication.read_published(spark, config, "campaign_results")
            .filter((F.col("next_as_of_date") == F.lit(as_of)) & ~F.col("is_control"))
            .select(*LIFT_COLUMNS)
            .orderBy(F.col("segment_id").asc_nulls_last())
            .collect()  # one row per segment and one for all
        )
        lift = pd.DataFrame([r.asDict() for r in rows], columns=LIFT_COLUMNS)
    return Monitoring(drift, _latest_decision(spark, config), lift, config.monitor.thresholds)


def _latest_decision(spark: SparkSession, config: Config) -> str | None:
    path = config.table_path("pipeline_runs")
    if not lakehouse.table_exists(spark, path):
        return None
    runs = lakehouse.read_table(spark, path)
    if "decision" not in runs.columns:  # a log older than the column
        return None
    latest = (
        runs.filter((F.col("stage") == "monitor") & F.col("decision").isNotNull())
        .orderBy(F.col("ended_at").desc())
        .select("decision")
        .first()  # one row
    )
    return None if latest is None else str(latest["decision"])


def drift_over_time(drift: pd.DataFrame, thresholds: DriftThresholds) -> Figure:
    """Each model feature's PSI (a categorical feature's JS distance) at every snapshot against the model that
    scored it, with the watch and act levels of the PSI."""
    fig = new_figure(10, 4.8)
    ax = dress(
        fig.add_subplot(),
        "Drift of each feature against its model's training snapshot",
        "snapshot date",
        "PSI (JS distance for a categorical feature)",
    )
    features = drift[drift["kind"].isin(_FEATURE_KINDS)] if not drift.empty else drift
    if features.empty or features[AS_OF_DATE].nunique() < 1:
        note(ax, "no drift measured yet: segspark monitor writes it")
        return fig
    figure_df = features.assign(
        value=features["psi"].where(features["kind"] == "numeric", features["js_distance"]).astype(float),
        date=pd.to_datetime(features[AS_OF_DATE]),
    )
    dates = sorted(figure_df["date"].unique())
    x = {d: i for i, d in enumerate(dates)}
    markers = "osD^v<>ph*"
    for i, (feature, rows) in enumerate(figure_df.groupby("feature", sort=True)):
        rows = rows.sort_values("date")
        ax.plot([x[d] for d in rows["date"]], rows["value"], marker=markers[i % len(markers)], label=str(feature))
    # The watch label at the left end, the act label at the right: apart however close the two lines are.
    last = len(dates) - 1
    for level, value, style, at in (("watch", thresholds.psi.watch, ":", 0), ("act", thresholds.psi.act, "--", last)):
        ax.axhline(value, color="#57606a", linestyle=style, linewidth=1)
        ax.annotate(
            f"PSI {level} {value:g}",
            (at, value),
            xytext=(4 if at == 0 else -4, 2),
            textcoords="offset points",
            fontsize=SMALL_PT,
            color="#57606a",
            ha="left" if at == 0 else "right",
        )
    ax.set_xticks(range(len(dates)), [pd.Timestamp(d).strftime("%Y-%m-%d") for d in dates])
    if len(dates) > 6:
        rotate_xticks(ax)
    top = float(np.nanmax(figure_df["value"].to_numpy(dtype=float), initial=0.0))
    ax.set_ylim(0, max(top, thresholds.psi.act) * 1.15)
    ax.legend(fontsize=SMALL_PT, loc="upper left")
    return fig


def lift_intervals(lift: pd.DataFrame) -> Figure:
    """The purchase-rate uplift of each segment (and of all together), in points, with its 95% interval."""
    fig = new_figure(9, max(2.6, 1.2 + 0.5 * len(lift)))
    ax = dress(fig.add_subplot(), "Campaign lift: contacted minus control purchase rate", "uplift (points)", "")
    valued = lift.dropna(subset=["purchase_rate_uplift"]) if not lift.empty else lift
    if valued.empty:
        note(ax, "no campaign measured at this snapshot")
        return fig
    y = np.arange(len(valued))[::-1]
    point = valued["purchase_rate_uplift"].to_numpy(dtype=float) * 100
    low = valued["purchase_rate_uplift_low"].to_numpy(dtype=float) * 100
    high = valued["purchase_rate_uplift_high"].to_numpy(dtype=float) * 100
    has_interval = np.isfinite(low) & np.isfinite(high)
    ax.errorbar(
        point[has_interval],
        y[has_interval],
        xerr=[point[has_interval] - low[has_interval], high[has_interval] - point[has_interval]],
        fmt="o",
        color="#1f2328",
        ecolor="#57606a",
        capsize=4,
    )
    ax.plot(point[~has_interval], y[~has_interval], "o", color="#1f2328", fillstyle="none")
    ax.axvline(0, color="#D55E00", linewidth=1)
    ax.set_yticks(y, [str(s) for s in valued["segment_name"]])
    ax.legend(
        handles=[Line2D([], [], color="#57606a", marker="o", label="uplift with its 95% Newcombe interval")],
        fontsize=SMALL_PT,
        loc="lower right",
    )
    return fig

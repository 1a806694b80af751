"""What a person wants to see when a run ends: each segment's size and headline, and the decision record.

Reads only K-row tables (``segment_centroids`` and the chosen ``model_selection`` row of one run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import RUN_ID, SEGMENT_ID
from segspark.maths.numbers import number
from segspark.platform import publication

if TYPE_CHECKING:  # only maintain's summary needs its result type
    from segspark.stages.maintain.stage import TableMaintenance

__all__ = ["format_segments", "maintain_summary", "profile_summary", "run_summary"]


def format_segments(
    segments: Sequence[Mapping[str, Any]], features: Sequence[str], header: str, decision: str | None
) -> str:
    """A fixed-width table: one line per segment with its customers, share and centroid in original units.

    Parameters
    ----------
    segments : dicts with ``segment_id``, ``customers``, ``share`` and ``centroid_original`` (feature -> value).
    features : the centroid entries to show, in order (missing entries show as ``-``).
    header : the line above the table.
    decision : the chosen candidate's reason, printed under the table.
    """
    columns = ["segment", "customers", "share", *features]
    rows = [
        [
            str(s["segment_id"]),
            f"{s['customers']:,}",
            f"{100 * s['share']:.1f}%",
            *[number(s["centroid_original"][f]) if f in s["centroid_original"] else "-" for f in features],
        ]
        for s in sorted(segments, key=lambda s: s["segment_id"])
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [header, "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  " + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    if decision:
        lines += ["", f"Decision: {decision}"]
    return "\n".join(lines)


def run_summary(spark: SparkSession, config: Config, run_id: str) -> str | None:
    """The segment table and decision of the model ``run_id`` trained, or None when it trained none."""
    if not publication.is_published(spark, config, "segment_centroids"):
        return None
    rows = (
        publication.read_published(spark, config, "segment_centroids")
        .filter(F.col(RUN_ID) == run_id)
        .orderBy(SEGMENT_ID)
        .collect()  # K rows: one per segment of this run's model
    )
    if not rows:
        return None
    first = rows[0]
    decision = None
    if publication.is_published(spark, config, "model_selection"):
        chosen = (
            publication.read_published(spark, config, "model_selection")
            .filter((F.col(RUN_ID) == run_id) & F.col("is_chosen"))
            .select("reason")
            .first()  # one row per run
        )
        decision = chosen["reason"] if chosen else None
    # Original-unit centroids of the numeric model features; one-hot slots (feature=value) are left out.
    features = [k for k in config.model.numeric_features if k in first["centroid_original"]]
    total = sum(r["customers"] for r in rows)
    header = (
        f"Segments of model {first['model_version']} ({first['algorithm']}, K={first['k']}, "
        f"snapshot {first['as_of_date']}, {total:,} customers); centroids in original units:"
    )
    return format_segments([r.asDict() for r in rows], features, header, decision)


def profile_summary(spark: SparkSession, config: Config, run_id: str) -> str | None:
    """Each segment's name, size, revenue share, play and priority as profiled by ``run_id``; None if none."""
    if not publication.is_published(spark, config, "segment_profiles"):
        return None
    rows = (
        publication.read_published(spark, config, "segment_profiles")
        .filter(F.col(RUN_ID) == run_id)
        .orderBy("priority")
        .collect()  # K rows: one per segment of the profiled snapshot
    )
    if not rows:
        return None
    table = [
        [
            str(r["priority"]),
            str(r[SEGMENT_ID]),
            r["segment_name"],
            f"{r['customers']:,}",
            f"{100 * r['customer_share']:.1f}%",
            "-" if r["revenue_share"] is None else f"{100 * r['revenue_share']:.1f}%",
            r["play"],
        ]
        for r in rows
    ]
    columns = ["priority", "segment", "name", "customers", "share", "revenue", "play"]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    left = {"name", "play"}
    lines = [f"Segments of {rows[0]['as_of_date']} by priority (segment_profiles, campaign_audiences):"]
    header = "  ".join(c.ljust(w) if c in left else c.rjust(w) for c, w in zip(columns, widths, strict=True))
    lines.append(("  " + header).rstrip())
    for t in table:
        cells = zip(columns, t, widths, strict=True)
        lines.append(("  " + "  ".join(v.ljust(w) if c in left else v.rjust(w) for c, v, w in cells)).rstrip())
    lines += [""] + [f"  {r['segment_name']}, {r['play']}: {r['play_reason']}" for r in rows]
    return "\n".join(lines)


def maintain_summary(tables: Sequence[TableMaintenance]) -> str:
    """What ``segspark maintain`` did, one line per table (:class:`segspark.stages.maintain.stage.TableMaintenance`)."""
    header = f"{'table':<22} {'files before':>12} {'after':>6} {'MB after':>9} {'vacuumed':>9}  per snapshot (max)"
    lines = ["segspark maintain:", header]
    for m in tables:
        per_snapshot = f"{m.max_files_per_snapshot} in {m.snapshots} snapshots" if m.snapshots else "-"
        lines.append(
            f"{m.table:<22} {m.files_before:>12,} {m.files_after:>6,} {m.bytes_after / 1e6:>9.1f} "
            f"{m.files_vacuumed:>9,}  {per_snapshot}"
        )
    return "\n".join(lines)

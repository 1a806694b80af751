"""The scored snapshots of customer_segments, found in one aggregate: each one's run, model and segment sizes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segspark.contracts.schemas import AS_OF_DATE, MODEL_VERSION, RUN_ID, SEGMENT_ID

__all__ = ["SnapshotRun", "snapshot_runs"]


@dataclass(frozen=True)
class SnapshotRun:
    """Which run wrote a snapshot's customer_segments, with which model, and its customers per segment."""

    as_of: dt.date
    run_id: str
    model_version: str
    sizes: Mapping[int, int]

    @property
    def customers(self) -> int:
        """Customers of the snapshot."""
        return sum(self.sizes.values())


def snapshot_runs(segments_df: DataFrame) -> list[SnapshotRun]:
    """Every snapshot of ``segments_df`` (customer_segments), oldest first."""
    rows = (
        segments_df.groupBy(AS_OF_DATE, SEGMENT_ID)
        .agg(F.max(RUN_ID).alias(RUN_ID), F.max(MODEL_VERSION).alias(MODEL_VERSION), F.count(F.lit(1)).alias("n"))
        .collect()  # snapshots x K rows
    )
    found: dict[dt.date, tuple[str, str, dict[int, int]]] = {}
    for r in rows:
        run, model, sizes = found.setdefault(r[AS_OF_DATE], (r[RUN_ID], r[MODEL_VERSION], {}))
        sizes[r[SEGMENT_ID]] = r["n"]
        # A snapshot is written by one run with one model; max() over its segments agrees with any of them.
        found[r[AS_OF_DATE]] = (max(run, r[RUN_ID]), max(model, r[MODEL_VERSION]), sizes)
    return [SnapshotRun(as_of, run, model, sizes) for as_of, (run, model, sizes) in sorted(found.items())]

"""The K sweep: every (algorithm, K) candidate fitted and measured on the sweep sample, in one Spark job.

Why not one MLlib fit per restart: an MLlib fit is a chain of small Spark jobs (k-means|| initialisation, one
job per Lloyd iteration, a summary pass). In local mode on 2 cores that costs about 3 s per fit plus 0.2 s per
iteration whatever the data size, and the sweep's evidence needs about 20 fits per K (restarts, stability
repeats, the structureless reference). The sweep sample is bounded (``model.sample_size`` customers), so each
candidate is instead evaluated inside one Spark task with scikit-learn's implementations (compiled Lloyd/Elkan
k-means with k-means++ starts, bisecting k-means, Gaussian mixtures): one task per candidate, the sample
broadcast once, candidates spread over the cluster's cores. The chosen candidate becomes an MLlib model in
:mod:`segspark.stages.train.stage`.

Every candidate reports the same evidence as before: WSSSE, the squared-Euclidean silhouette of all sweep
customers (MLlib ``ClusteringEvaluator``'s definition), the Euclidean silhouette of the silhouette sample,
Davies-Bouldin, Calinski-Harabasz, segment sizes, stability across seeds, and the silhouette the same
procedure reaches on a structureless reference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Row, SparkSession
from pyspark.sql import types as T

from segspark.config.settings import ModelSettings
from segspark.maths.evaluation import Candidate, SegmentEvidence, elbow_knee
from segspark.maths.local_fits import Evaluated, FitParams, SweepData, evaluate_local
from segspark.maths.numbers import number
from segspark.platform import progress

__all__ = ["run_sweep", "sweep_locally"]

log = logging.getLogger("segspark")


# ---------------------------------------------------------------------------------------------------------
# The fan-out


_RESULT = T.StructType(
    [
        T.StructField("algorithm", T.StringType()),
        T.StructField("k", T.IntegerType()),
        T.StructField("wssse", T.DoubleType()),
        T.StructField("mllib_silhouette", T.DoubleType()),
        T.StructField("silhouette", T.DoubleType()),
        T.StructField("reference_silhouette", T.DoubleType()),
        T.StructField("stability", T.DoubleType()),
        T.StructField("smallest_share", T.DoubleType()),
        T.StructField("segments_found", T.IntegerType()),
        T.StructField("davies_bouldin", T.DoubleType()),
        T.StructField("calinski_harabasz", T.DoubleType()),
        T.StructField("iterations", T.IntegerType()),
        T.StructField("converged", T.BooleanType()),
        T.StructField("fit_seconds", T.DoubleType()),
        T.StructField("seconds", T.DoubleType()),
        T.StructField("centres", T.ArrayType(T.ArrayType(T.DoubleType()))),
        T.StructField("segment_shares", T.ArrayType(T.DoubleType())),
        T.StructField("segment_silhouettes", T.ArrayType(T.DoubleType())),
        T.StructField("segment_sampled", T.ArrayType(T.IntegerType())),
    ]
)


def _candidate_tasks(settings: ModelSettings) -> list[tuple[str, int]]:
    """(algorithm, K) pairs, costliest first: Spark starts tasks in partition order, so the long ones overlap."""
    pairs = [(a, k) for a in settings.algorithms for k in settings.k_values()]
    position: dict[str, int] = {a: i for i, a in enumerate(settings.algorithms)}  # the config keeps them unique
    return sorted(pairs, key=lambda p: (-p[1], position[p[0]]))


def run_sweep(spark: SparkSession, data: SweepData, settings: ModelSettings, seed: int) -> list[Evaluated]:
    """Evaluate every (algorithm, K) in one Spark job (one task each), elbows marked, in config order."""
    tasks = _candidate_tasks(settings)
    params = FitParams.of(settings)
    shared = spark.sparkContext.broadcast(data)

    def evaluate_tasks(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Each task fits on one core: BLAS/OpenMP threads would compete with the executor's other tasks, and a
        # fixed thread count keeps floating-point sums (and so the fits) the same on every machine.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            for batch in batches:
                out = []
                for algorithm, k in zip(batch["algorithm"], batch["k"], strict=True):
                    row, centres = evaluate_local(algorithm, int(k), shared.value, params, seed)
                    out.append({"algorithm": algorithm, "k": int(k), **row, "centres": centres.tolist()})
                yield pd.DataFrame(out, columns=_RESULT.fieldNames())

    progress.step(
        f"sweep: {len(tasks)} candidates ({', '.join(settings.algorithms)}; K {settings.k_min}..{settings.k_max}) "
        f"on {len(data.points):,} customers, one Spark task each",
        logged=False,
    )
    tasks_df = spark.createDataFrame(tasks, "algorithm string, k int").coalesce(1).repartition(len(tasks))
    try:
        rows = tasks_df.mapInPandas(evaluate_tasks, _RESULT).collect()  # one row per candidate
    finally:
        shared.destroy()
    return _results(rows, settings)


def sweep_locally(data: SweepData, settings: ModelSettings, seed: int) -> list[Evaluated]:
    """The same evaluation as :func:`run_sweep`, one candidate after another in this process (no Spark): for
    small samples, tests, and sessions that cannot broadcast."""
    from threadpoolctl import threadpool_limits

    params = FitParams.of(settings)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=1):  # as in a Spark task: the same sums, so the same fits
        for algorithm, k in _candidate_tasks(settings):
            row, centres = evaluate_local(algorithm, k, data, params, seed)
            rows.append({"algorithm": algorithm, "k": k, **row, "centres": centres.tolist()})
    return _results(rows, settings)


def _results(rows: Sequence[Row] | Sequence[Mapping[str, Any]], settings: ModelSettings) -> list[Evaluated]:
    """Candidates in config order (algorithm, then K), each algorithm's WSSSE elbow marked, one log line each."""
    by_key = {(r["algorithm"], r["k"]): r for r in rows}
    results: list[Evaluated] = []
    for algorithm in settings.algorithms:
        evaluated = [_evaluated(by_key[(algorithm, k)]) for k in settings.k_values()]
        for e in evaluated:
            c = e.candidate
            log.info(
                "  %s K=%d: silhouette %s (reference %s), stability %s, smallest segment %.1f%%, %.1f s",
                algorithm,
                c.k,
                number(c.silhouette, 3, missing="-"),
                number(c.reference_silhouette, 3, missing="-"),
                number(c.stability, 3, missing="-"),
                100 * c.smallest_share,
                e.seconds,
            )
        knee = elbow_knee([e.candidate.k for e in evaluated], [e.wssse for e in evaluated])
        results += [replace(e, candidate=replace(e.candidate, is_elbow=e.candidate.k == knee)) for e in evaluated]
    return results


def _optional(value: float | None) -> float | None:
    """None for a missing figure, whether it crossed from pandas as null or as NaN."""
    return None if value is None or math.isnan(float(value)) else float(value)


def _segments(r: Row | Mapping[str, Any]) -> tuple[SegmentEvidence, ...]:
    """The candidate's segments, largest first (ties by cluster index); ``cluster`` keeps the fit's index."""
    shares = r["segment_shares"] or []
    order = sorted(range(len(shares)), key=lambda i: (-shares[i], i))
    return tuple(
        SegmentEvidence(
            rank=rank,
            share=float(shares[i]),
            silhouette=_optional(r["segment_silhouettes"][i]),
            sampled=int(r["segment_sampled"][i]),
            cluster=i,
        )
        for rank, i in enumerate(order, start=1)
    )


def _evaluated(r: Row | Mapping[str, Any]) -> Evaluated:
    candidate = Candidate(
        algorithm=r["algorithm"],
        k=r["k"],
        silhouette=_optional(r["silhouette"]),
        reference_silhouette=_optional(r["reference_silhouette"]),
        stability=_optional(r["stability"]),
        smallest_share=r["smallest_share"],
        segments_found=r["segments_found"],
        segments=_segments(r),
    )
    return Evaluated(
        candidate=candidate,
        wssse=r["wssse"],
        mllib_silhouette=_optional(r["mllib_silhouette"]),
        davies_bouldin=_optional(r["davies_bouldin"]),
        calinski_harabasz=_optional(r["calinski_harabasz"]),
        iterations=r["iterations"],
        converged=r["converged"],
        fit_seconds=r["fit_seconds"],
        seconds=r["seconds"],
        centres=np.array(r["centres"], dtype=float),
    )

"""The score stage: a saved model assigns the customers of a customer_features snapshot to its segments.

``segspark score [--model VERSION] [--as-of DATE]`` reads the published ``customer_features`` snapshot (the
latest, or ``--as-of``), loads the saved ``PipelineModel`` (the latest published train run's, or ``--model``)
and writes that snapshot's ``customer_segments`` partition. It is the transform train itself uses to write its
own snapshot (:func:`segspark.segmentation.model.assign_segments`), so scoring the training snapshot gives train's
ids and distances; customers new since training get segments like everyone else. No sweep, nothing collected but the
model's K-row centroid table, one pass over the snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segspark.config.settings import Config
from segspark.contracts.schemas import AS_OF_DATE, MODEL_VERSION, RUN_ID
from segspark.contracts.stamp import RunStamp
from segspark.errors import InputError, ReconciliationError
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.segmentation.model import load_model
from segspark.segmentation.scoring import scoring_input, write_segments

__all__ = ["ScoreResult", "chosen_model", "model_snapshot", "run_score"]

log = logging.getLogger("segspark")


@dataclass(frozen=True)
class ScoreResult:
    """What one score run wrote: the model, the snapshot, the customers scored and the segment sizes."""

    model_version: str
    as_of_date: dt.date
    customers: int
    #: Customers per segment id, from the rows written.
    sizes: dict[int, int]


def chosen_model(spark: SparkSession, config: Config) -> tuple[str, list[str]]:
    """The model to score with (``score.model_version``, else the latest published one) and its input columns.

    The models are those of the published ``segment_centroids`` (K rows per model); the latest is the one
    created last, which is the latest published train run's (also in a lakehouse older than the publication
    log).
    """
    if not publication.is_published(spark, config, "segment_centroids"):
        raise InputError(f"no trained model in {config.lakehouse}: run 'segspark train' first")
    centroids = publication.read_published(spark, config, "segment_centroids")
    wanted = config.score.model_version
    if wanted is None:
        latest = centroids.orderBy(F.col("created_at").desc(), F.col(MODEL_VERSION).desc()).first()  # one row
        if latest is None:
            raise InputError(f"no trained model in {config.lakehouse}: run 'segspark train' first")
        wanted = latest[MODEL_VERSION]
    row = centroids.filter(F.col(MODEL_VERSION) == F.lit(wanted)).select("feature_columns").first()  # one row
    if row is None:
        latest_five = centroids.select(MODEL_VERSION).distinct().orderBy(F.col(MODEL_VERSION).desc()).limit(5)
        known = [r[MODEL_VERSION] for r in latest_five.collect()]  # at most 5 rows
        raise InputError(
            f"model {wanted!r} is not a published model of {config.lakehouse}"
            + (f"; the latest are {', '.join(known)}" if known else "")
        )
    return wanted, list(row["feature_columns"])


def model_snapshot(spark: SparkSession, config: Config) -> tuple[str, dt.date | None] | None:
    """The latest published model and the snapshot it was trained on; None when there is no model."""
    if not publication.is_published(spark, config, "segment_centroids"):
        return None
    latest = (
        publication.read_published(spark, config, "segment_centroids")
        .orderBy(F.col("created_at").desc(), F.col(MODEL_VERSION).desc())
        .select(MODEL_VERSION, AS_OF_DATE)
        .first()  # one row
    )
    return None if latest is None else (latest[MODEL_VERSION], latest[AS_OF_DATE])


def run_score(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> ScoreResult:
    """Score one customer_features snapshot with a saved model into its customer_segments partition."""
    model_version, columns = chosen_model(spark, config)
    customers_df, as_of = scoring_input(spark, config, columns)
    progress.step(f"loading model {model_version}")
    model = load_model(config.model_path(model_version))
    customers = customers_df.count()
    if customers == 0:
        raise InputError(f"customer_features has no customers for {as_of}: run 'segspark features --as-of {as_of}'")
    progress.step(f"scoring {customers:,} customers of {as_of} with model {model_version}")
    publication.ensure_log(spark, config, run_id)
    path = config.table_path("customer_segments")
    with publication.publishing(
        spark,
        config,
        run_id,
        failed="score failed: customer_segments restored to its published version",
    ):
        written = write_segments(model, customers_df, RunStamp(run_id, as_of, model_version), config)
        if written != customers:
            raise ReconciliationError(f"customer_segments wrote {written:,} rows for {customers:,} customers")
        version = lakehouse.existing_version(spark, path, "right after score wrote customer_segments")
        sizes = {
            int(r["segment_id"]): int(r["n"])
            for r in lakehouse.read_table(spark, path, version=version)
            .filter((F.col(AS_OF_DATE) == F.lit(as_of)) & (F.col(RUN_ID) == F.lit(run_id)))
            .groupBy("segment_id")
            .agg(F.count(F.lit(1)).alias("n"))
            .collect()  # one row per segment
        }
        publication.publish(
            spark,
            config,
            run_id,
            "score",
            {"customer_segments": version},
            model_version=model_version,
            counts={"customers": customers},
        )
    log.info(
        "score: %s customers of %s scored with model %s: %s",
        f"{customers:,}",
        as_of,
        model_version,
        ", ".join(f"segment {s} {n:,}" for s, n in sorted(sizes.items())),
    )
    if stage is not None:
        stage.rows_in = customers
        stage.rows_out = written
        stage.counts.update({"customers": customers, **{f"segment_{s}": n for s, n in sizes.items()}})
    return ScoreResult(model_version, as_of, customers, sizes)

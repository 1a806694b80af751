"""The profile stage: who each segment is, what to do with it, and who exactly to contact.

``segspark profile [--as-of DATE]`` reads one published ``customer_segments`` snapshot (the latest, or
``--as-of``) with that snapshot's ``customer_features`` and the clean lines of the lookback window, and writes
that snapshot's partition of:

- ``segment_profiles``: figures per segment (:mod:`segspark.stages.profile.segment_stats`), its name and play
  (:mod:`segspark.maths.naming`);
- ``customer_segments``: the same rows with ``segment_name`` filled in;
- ``segment_top_products`` and ``segment_cross_sell`` (:mod:`segspark.stages.profile.baskets`), unless the source has no
  product column;
- ``campaign_audiences``: every customer with segment, play, priority and a seeded holdout
  (:mod:`segspark.stages.profile.campaigns`);
- ``campaign_results``: when an earlier audience exists, its contacted and control groups' purchases up to this
  snapshot (the earlier snapshot's partition).

All of them are published together in one row of the publication log: a run stopped half-way leaves readers on
the previous set. Only K-row aggregates reach the driver.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import Config
from segspark.contracts.schemas import (
    AS_OF_DATE,
    CAMPAIGN_AUDIENCES,
    CAMPAIGN_RESULTS,
    CORE_COLUMNS,
    CREATED_AT,
    CUSTOMER_ID,
    CUSTOMER_SEGMENTS,
    MODEL_VERSION,
    RUN_ID,
    SEGMENT_CROSS_SELL,
    SEGMENT_ID,
    SEGMENT_NAME,
    SEGMENT_PROFILES,
    SEGMENT_TOP_PRODUCTS,
    TableSpec,
)
from segspark.contracts.stamp import RunStamp
from segspark.errors import InputError, ReconciliationError, SegsparkError
from segspark.maths import naming
from segspark.platform import lakehouse, progress, publication
from segspark.platform.stage_log import StageRun
from segspark.segmentation.scoring import latest_snapshot
from segspark.stages.profile import baskets, campaigns, segment_stats

__all__ = ["ProfileFrames", "ProfileResult", "SegmentPlan", "profile_records", "profiled_columns", "run_profile"]

log = logging.getLogger("segspark")

_NUMERIC = (T.IntegerType, T.LongType, T.DoubleType, T.DecimalType, T.FloatType, T.ShortType)


@dataclass(frozen=True)
class SegmentPlan:
    """What the profile decided for one snapshot: each segment's figures, name and action, and their context."""

    figures: segment_stats.SnapshotStats
    names: dict[int, str]
    actions: dict[int, naming.Action]
    #: The profiled feature columns (core RFM first, then the model's other numeric features).
    columns: list[str]
    #: The model's structure verdict (strong, moderate, weak), None when model_selection has none.
    structure: str | None
    #: The snapshot before this one in customer_features, None for the first.
    previous_as_of: dt.date | None


@dataclass(frozen=True)
class ProfileFrames:
    """The frames the profile's tables are written from."""

    #: This snapshot's customer_segments rows.
    segments_df: DataFrame
    #: Each member's features and window revenue (cached by the stage).
    members_df: DataFrame
    #: The published transactions_clean.
    lines_df: DataFrame


@dataclass(frozen=True)
class ProfileResult:
    """What one profile run wrote: the snapshot and model profiled, each segment's name and play, the customers."""

    as_of_date: dt.date
    model_version: str
    #: segment id -> name, play, priority.
    segments: dict[int, tuple[str, str, int]]
    customers: int
    campaign_results_for: dt.date | None


def profiled_columns(model_columns: list[str], features_df: DataFrame) -> list[str]:
    """The core RFM columns, then every numeric customer_features column the model reads."""
    numeric = {f.name for f in features_df.schema.fields if isinstance(f.dataType, _NUMERIC)}
    extra = [c for c in model_columns if c in numeric and c not in CORE_COLUMNS]
    return [*CORE_COLUMNS, *extra]


def _snapshot(spark: SparkSession, config: Config) -> tuple[DataFrame, dt.date, str]:
    """The published customer_segments rows of the profiled snapshot, its date and its model."""
    segments_df = publication.read_published(spark, config, "customer_segments")
    as_of = max(config.as_of_dates) if config.as_of_dates else latest_snapshot(segments_df)
    if as_of is None:
        raise InputError(f"customer_segments in {config.lakehouse} is empty: run 'segspark train' first")
    snapshot_df = segments_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
    models = [r[MODEL_VERSION] for r in snapshot_df.select(MODEL_VERSION).distinct().limit(2).collect()]  # <= 2
    if not models:
        raise InputError(f"customer_segments has no customers for {as_of}: run 'segspark score --as-of {as_of}' first")
    if len(models) > 1:
        raise InputError(f"customer_segments of {as_of} mixes models {models}: run 'segspark score --as-of {as_of}'")
    return snapshot_df, as_of, models[0]


def _model_facts(spark: SparkSession, config: Config, model_version: str) -> tuple[list[str], str | None]:
    """The model's input columns (segment_centroids) and structure verdict (its chosen model_selection row)."""
    row = (
        publication.read_published(spark, config, "segment_centroids")
        .filter(F.col(MODEL_VERSION) == F.lit(model_version))
        .select("feature_columns")
        .first()  # one row
    )
    if row is None:
        raise InputError(f"model {model_version} has no published segment_centroids: run 'segspark train' again")
    structure = None
    if publication.is_published(spark, config, "model_selection"):
        chosen = (
            publication.read_published(spark, config, "model_selection")
            .filter((F.col(MODEL_VERSION) == F.lit(model_version)) & F.col("is_chosen"))
            .select("structure")
            .first()  # one row
        )
        structure = chosen["structure"] if chosen else None
    return list(row["feature_columns"]), structure


def _write(spec: TableSpec, df: DataFrame, config: Config, table: str, as_of: dt.date) -> int:
    result = lakehouse.write_table(
        df, config.table_path(table), spec, replace_where=lakehouse.dates_predicate(AS_OF_DATE, [as_of])
    )
    return result.version


def profile_records(plan: SegmentPlan, config: Config) -> list[dict[str, object]]:
    """One dict per segment in the segment_profiles schema (without the stamp's columns)."""
    settings = config.profile
    figures, names, actions = plan.figures, plan.names, plan.actions
    structure, previous_as_of = plan.structure, plan.previous_as_of
    population = figures.population
    records: list[dict[str, object]] = []
    for p in figures.segments:
        segment_id = p.id
        ranked = naming.ranked_features(p)
        recency = figures.recency[segment_id]
        rfm_name, rfm_share = figures.dominant_rfm.get(segment_id) or (None, None)
        feature_rows = [
            {
                "feature": f,
                "mean": p.features[f].mean,
                "median": p.features[f].median,
                "population_mean": population.features[f].mean,
                "population_median": population.features[f].median,
                "effect_size": p.features[f].effect,
                "effect_rank": rank,
                "level": naming.level(p.features[f].effect, settings.level_threshold),
            }
            for rank, f in enumerate(ranked, start=1)
        ]
        action = actions[segment_id]
        records.append(
            {
                SEGMENT_ID: segment_id,
                SEGMENT_NAME: names[segment_id],
                "structure": structure,
                "customers": p.customers,
                "customer_share": p.customers / population.customers,
                "revenue": figures.exact[segment_id][0],
                "revenue_share": p.revenue / population.revenue if population.revenue else None,
                "value_at_stake": figures.exact[segment_id][1],
                "value_at_stake_share": p.value_at_stake / population.value_at_stake
                if population.value_at_stake
                else None,
                **{
                    f"{c}_{s}": getattr(p.features[c], s)
                    for c in ("recency_days", "frequency", "monetary")
                    for s in ("mean", "median")
                },
                "dominant_rfm_segment": rfm_name,
                "dominant_rfm_share": rfm_share,
                "previous_as_of_date": previous_as_of,
                "customers_with_previous": recency[0] if recency else None,
                "recency_rose_share": recency[1] / recency[0] if recency and recency[0] else None,
                "top_features": ranked[: settings.top_features],
                "top_features_text": "; ".join(naming.describe_top_features(p, population, settings.top_features)),
                "play": action.play,
                "play_reason": action.reason,
                "priority": action.priority,
                "feature_profile": feature_rows,
            }
        )
    return records


def run_profile(spark: SparkSession, config: Config, run_id: str, stage: StageRun | None = None) -> ProfileResult:
    """Profile, name and act on one segmented snapshot; write and publish its profile tables."""
    settings = config.profile
    if config.model.input == "attributes":
        raise InputError(
            "segspark profile reads customer_features and transactions; a model trained on an attribute table "
            "alone (model.input: attributes) has neither to profile"
        )
    segments_df, as_of, model_version = _snapshot(spark, config)
    model_columns, structure = _model_facts(spark, config, model_version)
    all_features_df = publication.read_published(spark, config, "customer_features")
    features_df = all_features_df.filter(F.col(AS_OF_DATE) == F.lit(as_of))
    columns = profiled_columns(model_columns, all_features_df)
    earlier = all_features_df.filter(F.col(AS_OF_DATE) < F.lit(as_of)).agg(F.max(AS_OF_DATE)).first()  # one row
    previous_as_of: dt.date | None = None if earlier is None else earlier[0]
    previous_df = (
        all_features_df.filter(F.col(AS_OF_DATE) == F.lit(previous_as_of)) if previous_as_of is not None else None
    )
    lines_df = publication.read_published(spark, config, "transactions_clean")
    progress.step(f"profiling the segments of {as_of} (model {model_version})")
    members_df = segment_stats.segment_members(
        segments_df,
        features_df,
        columns,
        segment_stats.window_revenue(lines_df, as_of, settings.lookback_days),
        previous_df,
    ).persist(StorageLevel.MEMORY_AND_DISK)  # read by the profile, the RFM counts and the audience
    try:
        with publication.publishing(
            spark,
            config,
            run_id,
            failed="profile failed: its tables restored to their published versions",
        ):
            rows = segment_stats.segment_stat_rows(
                members_df, columns, config.model.log_features, settings.median_accuracy
            ).collect()  # K + 1 rows
            rfm_rows = segment_stats.dominant_rfm_segments(members_df).collect()  # at most K x the RFM segment names
            if not [r for r in rows if r[SEGMENT_ID] is not None]:
                raise InputError(
                    f"no customer of customer_segments {as_of} is in customer_features {as_of}: "
                    f"run 'segspark features --as-of {as_of}' and 'segspark score --as-of {as_of}'"
                )
            figures = segment_stats.to_segment_stats(rows, rfm_rows, columns, previous_as_of is not None)
            names = naming.segment_names(
                figures.segments,
                settings.names,
                settings.level_threshold,
                weak=structure == "weak",
                weak_name=settings.weak_name,
            )
            actions = naming.segment_actions(
                figures.segments, figures.population, settings.actions, settings.level_threshold, settings.lookback_days
            )
            plan = SegmentPlan(figures, names, actions, columns, structure, previous_as_of)
            frames = ProfileFrames(segments_df, members_df, lines_df)
            result = _write_tables(spark, config, RunStamp(run_id, as_of, model_version), plan, frames)
    finally:
        members_df.unpersist()
    for p in sorted(figures.segments, key=lambda p: actions[p.id].priority):
        segment_id = p.id
        a = actions[segment_id]
        log.info("segment %s %r: %s (priority %d): %s", segment_id, names[segment_id], a.play, a.priority, a.reason)
    if stage is not None:
        stage.rows_in = figures.population.customers
        stage.rows_out = len(figures.segments)
        stage.counts.update({"customers": figures.population.customers, "segments": len(figures.segments)})
    return result


def _write_tables(
    spark: SparkSession, config: Config, stamp: RunStamp, plan: SegmentPlan, frames: ProfileFrames
) -> ProfileResult:
    """Write every profile table for ``stamp.as_of``, in this order, then publish them together.

    segment_profiles, customer_segments (named), campaign_audiences (reconciled with the population), the
    top products and cross-sell rules (when the source has products), and campaign_results of the previous
    snapshot's audience (when there is one).
    """
    publication.ensure_log(spark, config, stamp.run_id)
    segment_facts_df = spark.createDataFrame(
        [(s, plan.names[s], plan.actions[s].play, plan.actions[s].priority) for s in sorted(plan.names)],
        schema=f"{SEGMENT_ID} int, {SEGMENT_NAME} string, play string, priority int",
    )
    versions = {"segment_profiles": _write_profiles(spark, config, stamp, plan)}
    versions |= _write_segments_and_audience(spark, config, stamp, plan, frames, segment_facts_df)
    versions |= _write_baskets(config, stamp, frames, segment_facts_df)
    measured, results_version = _write_campaign_results(spark, config, stamp, frames.lines_df)
    if results_version is not None:
        versions["campaign_results"] = results_version
    population = plan.figures.population
    if stamp.model_version is None:  # profile's stamp carries the model of the snapshot it profiles
        raise SegsparkError(f"profile of {stamp.as_of} was stamped without a model version")
    publication.publish(
        spark,
        config,
        stamp.run_id,
        "profile",
        versions,
        model_version=stamp.model_version,
        counts={"customers": population.customers, "segments": len(plan.figures.segments)},
    )
    return ProfileResult(
        as_of_date=stamp.as_of,
        model_version=stamp.model_version,
        segments={s: (plan.names[s], plan.actions[s].play, plan.actions[s].priority) for s in sorted(plan.names)},
        customers=population.customers,
        campaign_results_for=measured,
    )


def _write_profiles(spark: SparkSession, config: Config, stamp: RunStamp, plan: SegmentPlan) -> int:
    """segment_profiles: one row per segment (:func:`profile_records`) with the stamp."""
    stamped = (MODEL_VERSION, RUN_ID, CREATED_AT)
    record_schema = T.StructType([f for f in SEGMENT_PROFILES.schema.fields if f.name not in stamped])
    records = [{**r, AS_OF_DATE: stamp.as_of} for r in profile_records(plan, config)]
    profiles_df = stamp.on(spark.createDataFrame(records, schema=record_schema), *stamped)
    progress.step("writing segment_profiles")
    return _write(SEGMENT_PROFILES, profiles_df, config, "segment_profiles", stamp.as_of)


def _write_segments_and_audience(
    spark: SparkSession,
    config: Config,
    stamp: RunStamp,
    plan: SegmentPlan,
    frames: ProfileFrames,
    segment_facts_df: DataFrame,
) -> dict[str, int]:
    """customer_segments with each segment's name, and campaign_audiences with its seeded control group."""
    versions = {}
    named_df = frames.segments_df.drop(SEGMENT_NAME).join(F.broadcast(segment_facts_df), on=SEGMENT_ID, how="inner")
    progress.step("naming customer_segments")
    versions["customer_segments"] = _write(CUSTOMER_SEGMENTS, named_df, config, "customer_segments", stamp.as_of)

    key = campaigns.campaign_key(config.campaign.name, stamp.as_of, config.seed)
    members_df = frames.members_df.join(F.broadcast(segment_facts_df), on=SEGMENT_ID, how="inner")
    audience_df = stamp.on(
        campaigns.with_control_group(members_df, config.campaign.holdout_share, key).withColumn(
            "campaign", F.lit(key)
        )
    )
    progress.step("writing campaign_audiences")
    version = _write(CAMPAIGN_AUDIENCES, audience_df, config, "campaign_audiences", stamp.as_of)
    versions["campaign_audiences"] = version
    audience_rows = (
        lakehouse.read_table(spark, config.table_path("campaign_audiences"), version=version)
        .filter(F.col(AS_OF_DATE) == F.lit(stamp.as_of))
        .count()
    )
    customers = plan.figures.population.customers
    if audience_rows != customers:
        raise ReconciliationError(f"campaign_audiences wrote {audience_rows:,} rows for {customers:,} customers")
    return versions


def _write_baskets(
    config: Config, stamp: RunStamp, frames: ProfileFrames, segment_facts_df: DataFrame
) -> dict[str, int]:
    """segment_top_products and segment_cross_sell from the lookback window's lines (none without products)."""
    settings = config.profile
    if config.source.columns.product_id is None:
        log.info("profile: the source has no product column: segment_top_products and segment_cross_sell skipped")
        return {}
    window_start = stamp.as_of - dt.timedelta(days=settings.lookback_days)
    window_df = frames.lines_df.filter(
        (F.col("invoice_date") >= F.lit(window_start)) & (F.col("invoice_date") < F.lit(stamp.as_of))
    )
    if settings.non_products:  # fees and services: spend shares and baskets are of products
        window_df = window_df.filter(~F.col("product_id").isin(settings.non_products))
    labelled = F.broadcast(segment_facts_df.select(SEGMENT_ID, SEGMENT_NAME))
    members = frames.members_df.select(CUSTOMER_ID, SEGMENT_ID)
    versions = {}
    progress.step("writing segment_top_products")
    top_df = baskets.top_products(window_df, members, settings.top_products).join(labelled, on=SEGMENT_ID, how="inner")
    versions["segment_top_products"] = _write(
        SEGMENT_TOP_PRODUCTS, stamp.on(top_df), config, "segment_top_products", stamp.as_of
    )
    progress.step("mining cross-sell rules (FP-Growth per segment)")
    cross = settings.cross_sell
    rules_df = baskets.cross_sell_rules(window_df, members, cross.min_support, cross.min_confidence, cross.top_n).join(
        labelled, on=SEGMENT_ID, how="inner"
    )
    versions["segment_cross_sell"] = _write(
        SEGMENT_CROSS_SELL, stamp.on(rules_df), config, "segment_cross_sell", stamp.as_of
    )
    return versions


#: The columns of campaign_results computed on the driver (all but the stamp, the next snapshot and the key).
_OUTCOME_SCHEMA = T.StructType(
    [
        f
        for f in CAMPAIGN_RESULTS.schema.fields
        if f.name not in (AS_OF_DATE, MODEL_VERSION, RUN_ID, CREATED_AT, "next_as_of_date", "campaign")
    ]
)


def _write_campaign_results(
    spark: SparkSession, config: Config, stamp: RunStamp, lines_df: DataFrame
) -> tuple[dt.date | None, int | None]:
    """campaign_results of the latest published audience before this snapshot, measured at this snapshot.

    The rows belong to the measured snapshot and to the model that chose its audience: the stamp's snapshot
    and model are that audience's. Returns the measured snapshot and the version written (None, None if none).
    """
    if not publication.is_published(spark, config, "campaign_audiences"):
        return None, None
    earlier_df = publication.read_published(spark, config, "campaign_audiences")
    measured = campaigns.previous_snapshot(earlier_df, stamp.as_of)
    if measured is None:
        return None, None
    progress.step(f"measuring the campaign of {measured} at {stamp.as_of}")
    earlier_audience_df = earlier_df.filter(F.col(AS_OF_DATE) == F.lit(measured))
    # previous_snapshot found this snapshot among the audience's dates.
    first = lakehouse.one_row(earlier_audience_df.select("campaign", MODEL_VERSION), f"the audience of {measured}")
    results_stamp = replace(stamp, as_of=measured, model_version=first[MODEL_VERSION])
    groups_df = campaigns.group_totals(earlier_audience_df, lines_df, measured, stamp.as_of)
    groups = [r.asDict() for r in groups_df.collect()]  # two rows per segment of one model
    lift_settings = campaigns.LiftSettings(config.campaign.holdout_share, config.campaign.min_group_customers)
    rows = campaigns.outcome_rows(groups, lift_settings)
    outcomes_df = spark.createDataFrame(rows, _OUTCOME_SCHEMA)
    outcome_df = results_stamp.on(
        outcomes_df.withColumns({"next_as_of_date": F.lit(stamp.as_of), "campaign": F.lit(first["campaign"])})
    )
    return measured, _write(CAMPAIGN_RESULTS, outcome_df, config, "campaign_results", measured)



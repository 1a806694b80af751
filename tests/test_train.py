"""The train stage end to end on a real local SparkSession: planted types, weak structure, determinism,
saved models, stable segment ids and errors."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import _parse_datatype_string
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from segspark.config.paths import local_path
from segspark.config.settings import ModelSettings, load_config
from segspark.errors import ConfigError, InputError, SchemaError
from segspark.maths.evaluation import euclidean_silhouette
from segspark.platform import lakehouse, publication
from segspark.segmentation.model import (
    FEATURES_COL,
    PREDICTION_COL,
    Preprocessing,
    assign_segments,
    cluster_centers,
    clustering_stage,
    load_model,
)
from segspark.segmentation.sampling import hash_sample
from segspark.stages.features.stage import run_features
from segspark.stages.ingest.stage import run_ingest
from segspark.stages.score.stage import run_score
from segspark.stages.train.stage import fit_preprocessing, run_train
from segspark.stages.train.tables import PreviousModel, number_segments
from segspark.stages.train.training_data import (
    check_features,
    read_attributes,
    sweep_arrays,
    training_input,
)
from segspark.synthetic import generate
from tests.helpers.config import FAST_MODEL, ROOT, retail_config
from tests.helpers.data import copy_features, read_truth, write_csv


def segments_of(spark, config, model_version: str):
    return (
        lakehouse.read_table(spark, config.table_path("customer_segments"))
        .filter(F.col("model_version") == model_version)
        .select("customer_id", "segment_id", "distance_to_centroid")
        .orderBy("customer_id")
    )


def test_planted_types_give_k4_matching_the_truth(spark, planted):
    result = planted["result"]
    assert result.chosen.k == 4
    assert result.chosen.structure in ("strong", "moderate")
    rows = segments_of(spark, planted["config"], result.model_version).collect()
    assert len(rows) == result.customers
    labels = [r["segment_id"] for r in rows]
    truth = [planted["truth"][r["customer_id"]] for r in rows]
    assert adjusted_rand_score(truth, labels) >= 0.8


@pytest.mark.slow
def test_seven_planted_types_with_a_small_distinct_group_give_k7(spark, tmp_path):
    """The generator's extended mix end to end: a 1.9% very-high-value group is a segment, not a fragment."""
    data, truth_csv = tmp_path / "tx", tmp_path / "truth.csv"
    generate(data, rows=180_000, seed=11, truth_path=truth_csv, mix="extended")
    config = retail_config(tmp_path / "lake", data, model={"k_min": 4, "k_max": 9})
    run_ingest(spark, config, "ext-ingest")
    run_features(spark, config, "ext-features")
    result = run_train(spark, config, "ext-train")
    assert result.chosen.k == 7, result.chosen.reason
    assert "a distinct group, kept although under 2%" in result.chosen.reason
    truth = read_truth(truth_csv)
    names = ["recency_days", "frequency", "monetary", "avg_basket_value", "tenure_days"]
    features = {
        r["customer_id"]: [float(r[n]) for n in names]
        for r in lakehouse.read_table(spark, config.table_path("customer_features")).collect()
    }
    rows = segments_of(spark, config, result.model_version).collect()
    ids = [r["customer_id"] for r in rows]
    x = np.log1p(np.array([features[i] for i in ids]))
    x = (x - x.mean(0)) / x.std(0)
    planted_types = [truth[i] for i in ids]
    ours = adjusted_rand_score(planted_types, [r["segment_id"] for r in rows])
    theirs = adjusted_rand_score(planted_types, KMeans(7, n_init=10, random_state=0).fit_predict(x))
    assert ours >= theirs - 0.02, (ours, theirs)


def test_sweep_segments_records_every_segment_of_every_candidate(spark, planted):
    result = planted["result"]
    rows = lakehouse.read_table(spark, planted["config"].table_path("sweep_segments")).collect()
    assert sorted((r["k"], r["segment_rank"]) for r in rows) == [(k, s) for k in range(2, 7) for s in range(1, k + 1)]
    assert {r["run_id"] for r in rows} == {"run-train"} and {r["algorithm"] for r in rows} == {"kmeans"}
    for k in range(2, 7):
        of_k = sorted((r for r in rows if r["k"] == k), key=lambda r: r["segment_rank"])
        assert sum(r["share"] for r in of_k) == pytest.approx(1.0)
        assert sum(r["customers"] for r in of_k) == result.customers
        assert [r["share"] for r in of_k] == sorted((r["share"] for r in of_k), reverse=True)
        # The candidate's silhouette is the customers' mean: the segments' means weighted by sampled members.
        sampled = sum(r["silhouette_customers"] for r in of_k)
        weighted = sum(r["silhouette"] * r["silhouette_customers"] for r in of_k) / sampled
        assert weighted == pytest.approx(of_k[0]["candidate_silhouette"], abs=1e-9)
    chosen = [r for r in rows if r["is_chosen"]]
    assert len(chosen) == result.chosen.k == 4
    assert all(r["is_distinct"] and not r["is_small"] for r in chosen)
    assert all(r["profile"] for r in chosen)  # four planted types: each differs from the average somewhere


def test_model_selection_records_the_sweep_and_one_decision(spark, planted):
    result = planted["result"]
    rows = (
        lakehouse.read_table(spark, planted["config"].table_path("model_selection"))
        .filter(F.col("run_id") == "run-train")
        .orderBy("k")
        .collect()
    )
    assert [r["k"] for r in rows] == [2, 3, 4, 5, 6]
    assert [r["is_chosen"] for r in rows] == [False, False, True, False, False]
    chosen = rows[2]
    assert chosen["reason"].startswith("Chosen: K=4 (kmeans)")
    assert "WEAK STRUCTURE" not in chosen["reason"]
    assert all(r["reason"].startswith("Not chosen") for r in rows if not r["is_chosen"])
    assert all(r["customers"] == result.customers == r["customers_evaluated"] for r in rows)
    costs = [r["wssse"] for r in rows]
    assert costs == sorted(costs, reverse=True)
    for r in rows:
        assert r["converged"] and 0 < r["iterations"] < 100
        assert 0 < r["smallest_segment_share"] <= 1 / r["k"]
        assert r["davies_bouldin"] > 0 and r["calinski_harabasz"] > 0
        assert r["stability_ari"] is not None and -1 <= r["stability_ari"] <= 1
        # MLlib's silhouette uses squared distances: a different figure from the Euclidean one.
        assert r["silhouette_squared_euclidean"] != pytest.approx(r["silhouette_euclidean"], abs=1e-6)
        assert r["silhouette_euclidean"] > r["reference_silhouette"]
    assert chosen["silhouette_euclidean"] == max(r["silhouette_euclidean"] for r in rows)


def test_euclidean_silhouette_matches_scikit_learn(spark, planted):
    """The silhouette the stage recorded equals scikit-learn's on the same points (here: every customer)."""
    config, result = planted["config"], planted["result"]
    recorded = (
        lakehouse.read_table(spark, config.table_path("model_selection"))
        .filter((F.col("run_id") == "run-train") & F.col("is_chosen"))
        .first()
    )
    model = load_model(result.model_path)
    features_df = lakehouse.read_table(spark, config.table_path("customer_features"))
    rows = model.transform(features_df).select(FEATURES_COL, PREDICTION_COL).collect()
    points = np.array([r[0].toArray() for r in rows])
    labels = np.array([r[1] for r in rows])
    assert recorded["silhouette_sample"] == len(rows)
    assert recorded["silhouette_euclidean"] == pytest.approx(silhouette_score(points, labels), abs=0.02)


def test_sampled_silhouette_matches_scikit_learn_on_the_same_sample(spark, planted):
    config, result = planted["config"], planted["result"]
    model = load_model(result.model_path)
    features_df = lakehouse.read_table(spark, config.table_path("customer_features"))
    vectors_df = model.transform(features_df).select("customer_id", FEATURES_COL, PREDICTION_COL)
    ids, data = sweep_arrays(vectors_df, 120, seed=42)
    assert ids == sorted(ids) and len(data.silhouette_rows) == 120
    # The silhouette sample is the customers hash_sample picks with the same seed and salt.
    picked = hash_sample(vectors_df, 120, seed=42, salt="silhouette").select("customer_id").collect()
    assert [ids[i] for i in data.silhouette_rows] == sorted(r[0] for r in picked)
    labels_by_id = dict(vectors_df.select("customer_id", PREDICTION_COL).collect())
    points = data.points[data.silhouette_rows]
    labels = np.array([labels_by_id[ids[i]] for i in data.silhouette_rows])
    ours = euclidean_silhouette(points, labels)
    assert ours == pytest.approx(silhouette_score(points, labels), abs=1e-9)
    # The same seed picks the same customers and vectors from a differently partitioned frame.
    again_ids, again = sweep_arrays(vectors_df.repartition(5), 120, seed=42)
    assert again_ids == ids
    np.testing.assert_array_equal(again.silhouette_rows, data.silhouette_rows)
    np.testing.assert_array_equal(again.points, data.points)
    np.testing.assert_array_equal(again.reference, data.reference)


def test_score_reproduces_train_on_its_snapshot(spark, planted, tmp_path):
    """segspark score: the saved model, loaded, gives train's ids and distances. (A later snapshot with new
    customers, scored by segspark run: tests/test_profile.py.)"""
    result = planted["result"]
    lake = tmp_path / "lake"
    shutil.copytree(local_path(planted["config"].lakehouse), lake)
    config = retail_config(lake, planted["root"] / "tx", model=FAST_MODEL)

    same = run_score(spark, config, "score-1")
    assert (same.model_version, same.as_of_date, same.customers) == (
        result.model_version, result.as_of_date, result.customers
    )
    assert sum(same.sizes.values()) == result.customers
    published = publication.read_published(spark, config, "customer_segments")
    got = published.filter(F.col("as_of_date") == result.as_of_date)
    assert {r["run_id"] for r in got.select("run_id").distinct().collect()} == {"score-1"}
    assert_df_equality(
        got.select("customer_id", "segment_id", "distance_to_centroid"),
        segments_of(spark, planted["config"], result.model_version),
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )


def test_score_names_a_model_it_cannot_find(spark, planted, tmp_path):
    config = planted["config"]
    unknown = config.model_copy(update={"score": config.score.model_copy(update={"model_version": "nope"})})
    with pytest.raises(InputError, match=rf"model 'nope' is not a published model of .*; the latest are "
                       rf"{planted['result'].model_version}"):
        run_score(spark, unknown, "score-x")
    with pytest.raises(InputError, match="no trained model in .*: run 'segspark train' first"):
        run_score(spark, load_config(env=None, flags={"lakehouse": str(tmp_path / "empty")}), "score-y")


def test_distance_to_centroid_is_euclidean_distance_to_the_model_centre(spark, planted):
    config, result = planted["config"], planted["result"]
    model = load_model(result.model_path)
    centres = cluster_centers(clustering_stage(model))
    features_df = lakehouse.read_table(spark, config.table_path("customer_features")).orderBy("customer_id").limit(5)
    for row in assign_segments(model, features_df).join(
        model.transform(features_df).select("customer_id", FEATURES_COL, PREDICTION_COL), "customer_id", "inner"
    ).collect():
        expected = float(np.linalg.norm(row[FEATURES_COL].toArray() - centres[row[PREDICTION_COL]]))
        assert row["distance_to_centroid"] == pytest.approx(expected, rel=1e-12)


def test_segments_are_numbered_by_size_with_centroids_in_both_units(spark, planted):
    config, result = planted["config"], planted["result"]
    rows = (
        lakehouse.read_table(spark, config.table_path("segment_centroids"))
        .filter(F.col("model_version") == result.model_version)
        .orderBy("segment_id")
        .collect()
    )
    assert [r["segment_id"] for r in rows] == [1, 2, 3, 4]
    sizes = [r["customers"] for r in rows]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == result.customers
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    written = segments_of(spark, config, result.model_version).groupBy("segment_id").count().orderBy("segment_id")
    assert [r["count"] for r in written.collect()] == sizes
    features = ["recency_days", "frequency", "monetary", "avg_basket_value", "tenure_days"]
    for r in rows:
        assert sorted(r["centroid_standardised"]) == sorted(features) == sorted(r["centroid_original"])
        assert r["feature_columns"] == features
        assert r["previous_model_version"] is None
    # Original units: the champions' segment (most invoices) buys far more often than the one-time buyers'.
    frequencies = sorted(r["centroid_original"]["frequency"] for r in rows)
    assert frequencies[0] < 2.5 and frequencies[-1] > 15


@pytest.mark.slow
def test_layout_of_the_input_does_not_change_assignments(spark, planted, tmp_path):
    """Same features written as 7 shuffled files: identical segments and distances."""
    model_keys = {"k_min": 3, "k_max": 5, "restarts": 2, "stability_runs": 0}
    first = retail_config(copy_features(planted, tmp_path / "a"), model=model_keys)
    features_df = lakehouse.read_table(spark, planted["config"].table_path("customer_features"))
    second = retail_config(tmp_path / "b", model=model_keys)
    features_df.orderBy(F.rand(3)).repartition(7).write.format("delta").save(second.table_path("customer_features"))
    a = run_train(spark, first, "run-a")
    b = run_train(spark, second, "run-b")
    assert a.chosen.k == b.chosen.k
    assert_df_equality(
        segments_of(spark, first, a.model_version), segments_of(spark, second, b.model_version), ignore_nullable=True
    )


@pytest.mark.slow
def test_retraining_keeps_segment_ids(spark, planted, tmp_path):
    lake = copy_features(planted, tmp_path / "lake")
    # Enough restarts that both fits reach the planted optimum (a poor local one would be another grouping).
    fixed = {"k_min": 4, "k_max": 4, "restarts": 5, "stability_runs": 0}
    first_config = retail_config(lake, model=fixed)
    first = run_train(spark, first_config, "run-1")
    features_df = lakehouse.read_table(spark, first_config.table_path("customer_features"))
    before = {
        r["customer_id"]: r["segment_id"]
        for r in assign_segments(load_model(first.model_path), features_df).collect()
    }
    # Another seed may number MLlib's clusters differently; matching to the first model's centroids keeps ids.
    second_config = retail_config(lake, seed=1234, model=fixed)
    second = run_train(spark, second_config, "run-2")
    after_df = segments_of(spark, second_config, second.model_version)
    after = {r["customer_id"]: r["segment_id"] for r in after_df.collect()}
    same = sum(before[c] == after[c] for c in before)
    assert same / len(before) >= 0.99
    # The snapshot's partition now holds the second model's segments only.
    models = lakehouse.read_table(spark, second_config.table_path("customer_segments")).select("model_version")
    assert [r[0] for r in models.distinct().collect()] == [second.model_version]
    centroids = (
        lakehouse.read_table(spark, second_config.table_path("segment_centroids"))
        .filter(F.col("model_version") == second.model_version)
        .collect()
    )
    assert {r["previous_model_version"] for r in centroids} == {first.model_version}
    assert all(r["previous_centroid_distance"] < 0.2 for r in centroids)


@pytest.mark.slow
def test_force_k_overrides_the_evidence_and_says_so(spark, planted, tmp_path):
    forced = {"k_min": 4, "k_max": 4, "force_k": 5, "restarts": 2, "stability_runs": 0}
    config = retail_config(copy_features(planted, tmp_path / "lake"), model=forced)
    result = run_train(spark, config, "run-forced")
    assert result.chosen.k == 5
    assert "because model.force_k is 5" in result.chosen.reason
    assert "the evidence alone would choose K=4 (kmeans)" in result.chosen.reason
    assert [c.k for c in result.candidates] == [4, 5]
    written = lakehouse.read_table(spark, config.table_path("customer_segments"))
    assert sorted(r[0] for r in written.select("segment_id").distinct().collect()) == [1, 2, 3, 4, 5]


def _prep(slot_names, means, stds, logged=None):
    logged = logged or [False] * len(slot_names)
    return Preprocessing(
        stages=[],
        slot_names=slot_names,
        slot_sources=[(n, lg) for n, lg in zip(slot_names, logged, strict=True)],
        scaler_mean=np.array(means, dtype=float),
        scaler_std=np.array(stds, dtype=float),
        pca_components=None,
    )


def test_number_segments_by_size_without_a_previous_model():
    prep = _prep(["x", "y"], [0, 0], [1, 1])
    means = np.array([[0.0, 1.0], [5.0, 5.0], [-3.0, 0.0], [1.0, 1.0]])
    counts = np.array([10, 40, 25, 10])
    ids, distances = number_segments(means, counts, prep, None)
    # Largest first; the two clusters of 10 are ordered by centroid: (0, 1) before (1, 1).
    assert ids == [3, 1, 2, 4]
    assert distances == [None] * 4


def test_number_segments_follows_previous_centroids_not_sizes():
    # Previous model: ids 1, 2, 5 at x = 10, 0, -10 (original units: x logged, y not).
    prep = _prep(["x", "y"], [1.0, 0.0], [2.0, 1.0], logged=[True, False])
    old_original = np.array([[10.0, 0.0], [0.0, 0.0], [-10.0, 0.0]])
    previous = PreviousModel("m1", [1, 2, 5], old_original)
    old_std = np.array([[(np.log1p(10) - 1) / 2, 0.0], [-0.5, 0.0], [(-np.log1p(10) - 1) / 2, 0.0]])
    # New clusters: near old 5, near old 1, a new one far away, near old 2; sizes disagree with old ids.
    new = np.array([old_std[2] + 0.01, old_std[0] - 0.02, [0.0, 9.0], old_std[1]])
    counts = np.array([50, 5, 30, 20])
    ids, distances = number_segments(new, counts, prep, previous)
    assert ids == [5, 1, 6, 2]
    assert distances[0] == pytest.approx(0.01 * np.sqrt(2))
    assert distances[1] == pytest.approx(0.02 * np.sqrt(2))
    assert distances[2] is None and distances[3] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------------
# Attribute-only mode, weak structure and errors


ATTRIBUTES = "customer_id string, age double, income double, spending_score double"


def write_attributes(spark, path: Path, rows, schema: str, delta: bool = False) -> Path:
    """An attribute table: Parquet written by pyarrow (a test input: no Spark job or Delta commit is spent on it),
    or a Delta table written by Spark (the format users are told to use, kept in one test)."""
    if delta:
        spark.createDataFrame(rows, schema).write.format("delta").save(str(path))
        return path
    struct = _parse_datatype_string(schema)
    table = pa.Table.from_pylist([dict(zip(struct.names, row, strict=True)) for row in rows],
                                 schema=to_arrow_schema(struct))
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-0.parquet")
    return path


def attribute_config(lake: Path, table: Path, as_of: str | None = "2024-01-01", **model):
    fmt = "delta" if (table / "_delta_log").is_dir() else "parquet"
    attributes = {"path": str(table), "format": fmt, **model.pop("attributes", {})}
    settings = {
        "input": "attributes",
        "attributes": attributes,
        "numeric_features": ["age", "income", "spending_score"],
        "log_features": [],
        "k_min": 2,
        "k_max": 5,
        "restarts": 2,
        "stability_runs": 1,
        **model,
    }
    flags = {"lakehouse": str(lake), "as_of_dates": [as_of] if as_of else [], "model": settings}
    return load_config(env=None, flags=flags)


@pytest.mark.slow
def test_homogeneous_population_is_reported_as_weak_structure(spark, tmp_path, caplog):
    """Weak structure, in the decision record, the log and the report's summary (an attribute-table model: the
    report has no customer sample, and says why)."""
    from segspark.stages.report.html import VERDICTS
    from segspark.stages.report.stage import run_report

    rng = np.random.default_rng(11)
    values = rng.multivariate_normal([40, 60, 50], [[100, 30, 0], [30, 400, 20], [0, 20, 225]], size=600)
    rows = [(f"c{i:04d}", float(a), float(b), float(c)) for i, (a, b, c) in enumerate(values)]
    table = write_attributes(
        spark, tmp_path / "attrs", rows, "customer_id string, age double, income double, spending_score double",
        delta=True,
    )
    config = attribute_config(tmp_path / "lake", table)
    with caplog.at_level("WARNING", logger="segspark"):
        result = run_train(spark, config, "run-weak")
    assert result.chosen.structure == "weak"
    assert "WEAK STRUCTURE" in result.chosen.reason and "structureless reference" in result.chosen.reason
    assert any("weak structure" in message for message in caplog.messages)
    written = lakehouse.read_table(spark, config.table_path("customer_segments"))
    assert written.count() == 600
    assert written.select("as_of_date").distinct().collect()[0][0].isoformat() == "2024-01-01"
    report = run_report(spark, config, "report-weak")
    page = local_path(report.path).read_text(encoding="utf-8")
    assert '<p class="verdict weak">' in page and VERDICTS["weak"] in page
    assert "no customer sample" in page and "silhouette.png" not in report.figures


def mall_rows():
    """Three planted groups in income x spending score; gender categorical with a null; one missing income."""
    rng = np.random.default_rng(5)
    centres = [(30, 20, 80), (45, 90, 15), (55, 60, 50)]
    rows = []
    for g, (age, income, score) in enumerate(centres):
        for i in range(70):
            gender = [None, "Female", "Male"][(i + g) % 3] if i % 10 else None
            rows.append(
                (
                    f"m{g}{i:03d}",
                    float(age + rng.normal(0, 3)),
                    float(income + rng.normal(0, 4)),
                    float(score + rng.normal(0, 4)),
                    gender,
                )
            )
    rows[0] = (rows[0][0], rows[0][1], None, rows[0][3], rows[0][4])
    return rows


@pytest.mark.slow
def test_attribute_only_mode_with_categorical_and_missing_values(spark, tmp_path):
    schema = "cust string, age double, income double, spending_score double, gender string"
    table = write_attributes(spark, tmp_path / "mall", mall_rows(), schema)
    attributes = {"path": str(table), "customer_id": "cust"}
    config = attribute_config(tmp_path / "lake", table, attributes=attributes, categorical_features=["gender"])
    result = run_train(spark, config, "run-mall")
    assert result.chosen.k == 3
    truth = {r[0]: r[0][1] for r in mall_rows()}
    rows = lakehouse.read_table(spark, config.table_path("customer_segments")).collect()
    assert len(rows) == 210
    assert adjusted_rand_score([truth[r["customer_id"]] for r in rows], [r["segment_id"] for r in rows]) > 0.95
    centroid = lakehouse.read_table(spark, config.table_path("segment_centroids")).first()
    assert set(centroid["centroid_original"]) == {
        "age", "income", "spending_score", "gender=(missing)", "gender=Female", "gender=Male", "gender=(unseen)"
    }
    # A saved model scores values it never saw: an unseen category and a null income.
    model = load_model(result.model_path)
    new_df = spark.createDataFrame(
        [("n1", 31.0, None, 79.0, "Other")], "customer_id string, age double, income double, spending_score double, "
        "gender string"
    )
    scored = assign_segments(model, new_df).first()
    seg_of_m0 = [r["segment_id"] for r in rows if r["customer_id"].startswith("m0")]
    assert scored["segment_id"] == max(set(seg_of_m0), key=seg_of_m0.count)


def test_k_larger_than_the_customers_is_a_clear_error(spark, tmp_path):
    rows = [(f"c{i}", float(i), float(i % 3), float(i % 5)) for i in range(7)]
    table = write_attributes(spark, tmp_path / "few", rows, ATTRIBUTES)
    with pytest.raises(ConfigError, match=r"model.k_max asks for K=10 but the attribute table has only 7 customers"):
        run_train(spark, attribute_config(tmp_path / "lake", table, k_max=10), "run-x")
    with pytest.raises(ConfigError, match=r"model.force_k asks for K=8"):
        run_train(spark, attribute_config(tmp_path / "lake", table, k_max=3, force_k=8), "run-x")


def test_k_min_above_k_max_is_a_config_error():
    with pytest.raises(ConfigError, match=r"k_min \(6\) is greater than k_max \(4\)"):
        load_config(env=None, flags={"model": {"k_min": 6, "k_max": 4}})
    with pytest.raises(ValueError):
        ModelSettings(k_min=1)


@pytest.mark.parametrize(
    ("rows", "schema", "model", "error", "message"),
    [
        pytest.param(
            [("a", 1.0)], "customer_id string, age double", {}, SchemaError,
            r"model feature column\(s\) \['income', 'spending_score'\] not found", id="missing-column",
        ),
        pytest.param(
            [("a", "x", 1.0, 2.0), ("b", "3", 1.0, 2.0)], "customer_id string, age string, income double, "
            "spending_score double", {}, SchemaError, r"not a number \(count\): age \(1\)", id="text-not-number",
        ),
        pytest.param(
            [("a", None, 1.0, 2.0), ("b", None, 3.0, 2.0)], "customer_id string, age double, income double, "
            "spending_score double", {}, SchemaError, r"\['age'\] are null for every customer", id="all-null",
        ),
        pytest.param(
            [("a", 1.0, 1.0, 2.0), ("a", 2.0, 3.0, 2.0)], "customer_id string, age double, income double, "
            "spending_score double", {}, InputError, r"1 repeated customer id\(s\), e.g. 'a'", id="repeated-id",
        ),
        pytest.param(
            [], "customer_id string, age double, income double, spending_score double", {}, InputError,
            "has no customers to segment", id="empty",
        ),
        pytest.param(
            [("a", dt.datetime(2024, 1, 1), 1.0, 2.0)], "customer_id string, age timestamp, income double, "
            "spending_score double", {}, SchemaError, r"must be numbers; these are not: age \(timestamp\)",
            id="wrong-type",
        ),
        pytest.param(
            [("a", 1.0, 1.0, 2.0)], "customer_id string, age double, income double, spending_score double", {},
            InputError, "only 1 customer to segment: segments need at least 2", id="single-customer",
        ),
        pytest.param(
            [("a", 1.0, 1.0, 2.0), ("b", 2.0, 3.0, 2.0), ("c", 5.0, 3.0, 1.0)],
            "customer_id string, age double, income double, spending_score double", {"k_min": 4, "k_max": 5},
            ConfigError, "model.k_min is 4 but the attribute table has only 3 customers: lower model.k_min",
            id="fewer-customers-than-k-min",
        ),
        pytest.param(
            [("a", 1.0, 1.0, 2.0), ("b", 1.0, 1.0, 2.0), ("c", 1.0, 1.0, 2.0)],
            "customer_id string, age double, income double, spending_score double", {},
            InputError, r"every model feature is constant \(\['age', 'income', 'spending_score'\]\)",
            id="constant-features",
        ),
    ],
)
def test_bad_training_input_is_named(spark, tmp_path, rows, schema, model, error, message):
    table = write_attributes(spark, tmp_path / "attrs", rows, schema)
    with pytest.raises(error, match=message):
        run_train(spark, attribute_config(tmp_path / "lake", table, **model), "run-x")


def test_train_without_features_says_what_to_run(spark, tmp_path):
    config = load_config(env=None, flags={"lakehouse": str(tmp_path / "nothing")})
    with pytest.raises(InputError, match="run 'segspark features' first"):
        run_train(spark, config, "run-x")


@pytest.mark.slow
def test_cli_train_exits_2_with_a_readable_message(planted, tmp_path):
    lake = copy_features(planted, tmp_path / "lake")
    result = subprocess.run(
        [sys.executable, "-m", "segspark.cli", "train", "--lakehouse", str(lake), "--env", "local",
         "--set", "model.k_max=100000", "--set", "spark.master=local[1]"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "segspark: error: model.k_max asks for K=100000 but snapshot" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_other_algorithms_and_pca_run_through_the_same_machinery(spark, tmp_path):
    table = write_attributes(spark, tmp_path / "mall", [r[:4] for r in mall_rows()], ATTRIBUTES)
    config = attribute_config(
        tmp_path / "lake",
        table,
        algorithms=["kmeans", "bisecting_kmeans", "gaussian_mixture"],
        k_min=2,
        k_max=4,
        restarts=1,
        stability_runs=0,
        pca={"components": 2},
    )
    result = run_train(spark, config, "run-algorithms")
    assert [(c.algorithm, c.k) for c in result.candidates] == [
        (a, k) for a in ("kmeans", "bisecting_kmeans", "gaussian_mixture") for k in (2, 3, 4)
    ]
    assert result.chosen.k == 3
    selection = lakehouse.read_table(spark, config.table_path("model_selection")).collect()
    assert all(r["silhouette_euclidean"] is not None and r["wssse"] > 0 for r in selection)
    # Two PCA components in model space; centroids still come back in the three original features.
    model = load_model(result.model_path)
    assert len(cluster_centers(clustering_stage(model))[0]) == 2
    centroid = lakehouse.read_table(spark, config.table_path("segment_centroids")).first()
    assert set(centroid["centroid_original"]) == {"age", "income", "spending_score"}
    truth = {r[0]: r[0][1] for r in mall_rows()}
    rows = lakehouse.read_table(spark, config.table_path("customer_segments")).collect()
    assert adjusted_rand_score([truth[r["customer_id"]] for r in rows], [r["segment_id"] for r in rows]) > 0.95


@pytest.mark.slow
def test_a_failed_write_leaves_no_partial_segment_tables(spark, planted, tmp_path, monkeypatch):
    import segspark.stages.train.stage as train_module

    lake = copy_features(planted, tmp_path / "lake")
    config = retail_config(lake, model={"k_min": 4, "k_max": 4, "restarts": 1, "stability_runs": 0})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(train_module, "write_selection", broken)
    with pytest.raises(OSError, match="disk full"):
        run_train(spark, config, "run-broken")
    assert lakehouse.read_table(spark, config.table_path("customer_segments")).count() == 0
    assert lakehouse.read_table(spark, config.table_path("segment_centroids")).count() == 0

    monkeypatch.undo()
    first = run_train(spark, config, "run-ok")
    monkeypatch.setattr(train_module, "write_selection", broken)
    with pytest.raises(OSError):
        run_train(spark, config, "run-broken-again")
    kept = lakehouse.read_table(spark, config.table_path("customer_segments"))
    assert [r[0] for r in kept.select("model_version").distinct().collect()] == [first.model_version]
    assert kept.count() == first.customers
    # No orphan model folders: only the run that landed left one.
    assert sorted(p.name for p in (lake / "models").iterdir()) == [first.model_version]


# ------------------------------------------------------------------------------------------------------
# Attribute tables without an id column, and the snapshot date of attribute-only runs


WHOLESALE_HEADER = "Channel,Region,Fresh,Milk"


def scan_layout(spark, folder: Path) -> dict[str, list[int]]:
    """File name -> the partitions reading it, as Spark lays out the scan with the session's current settings."""
    rows = (
        spark.read.option("header", "true").csv(str(folder))
        .select(F.col("_metadata.file_name").alias("file"), F.spark_partition_id().alias("partition"))
        .distinct()
        .collect()
    )
    layout: dict[str, list[int]] = {}
    for r in rows:
        layout.setdefault(r["file"], []).append(r["partition"])
    return {f: sorted(p) for f, p in layout.items()}


def test_attribute_table_without_id_is_numbered_in_file_order(spark, tmp_path):
    """Two files, one split into several partitions and the other packed after its last split: ids follow the
    files by path, then the rows of each file, whatever the split size."""
    folder = tmp_path / "wholesale"
    # "a.csv" sorts first by path, but it is the smaller file, so Spark reads it after the splits of b.csv.
    a_rows = [(1, 1, 900_000 + i, i) for i in range(5)]
    b_rows = [(2, 3, 1_000 + i, 50 + i) for i in range(200)]
    write_csv(folder, b_rows, header=WHOLESALE_HEADER, name="b.csv")
    write_csv(folder, a_rows, header=WHOLESALE_HEADER, name="a.csv")
    settings = ModelSettings(
        input="attributes",
        attributes={"path": str(folder), "format": "csv", "customer_id": None},
        numeric_features=["Fresh", "Milk"],
        log_features=[],
    )
    expected_df = spark.createDataFrame(
        [(str(i + 1), *(str(v) for v in row)) for i, row in enumerate(a_rows + b_rows)],
        "customer_id string, Channel string, Region string, Fresh string, Milk string",
    )
    numbered = []
    try:
        for split_bytes in ("512", None):
            if split_bytes is None:
                spark.conf.unset("spark.sql.files.maxPartitionBytes")
                spark.conf.unset("spark.sql.files.openCostInBytes")
            else:
                spark.conf.set("spark.sql.files.maxPartitionBytes", split_bytes)
                spark.conf.set("spark.sql.files.openCostInBytes", "0")
            layout = scan_layout(spark, folder)
            if split_bytes == "512":
                # The awkward layout this test is about: b.csv in several partitions, a.csv in the last one.
                assert len(layout["b.csv"]) >= 5 and layout["a.csv"] == [max(layout["b.csv"])]
            numbered_df = read_attributes(spark, settings)
            assert_df_equality(numbered_df, expected_df, ignore_row_order=True, ignore_nullable=True)
            numbered.append(sorted(tuple(r) for r in numbered_df.collect()))
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
        spark.conf.unset("spark.sql.files.openCostInBytes")
    assert numbered[0] == numbered[1]


@pytest.mark.slow
def test_attribute_only_mode_without_id_column_segments_and_says_so(spark, tmp_path, caplog):
    """A Wholesale-customers-like CSV (no id column): rows 1-20 and 21-40 are two planted groups."""
    rng = np.random.default_rng(3)
    rows = [(1, 3, int(rng.normal(20_000, 500)), int(rng.normal(2_000, 100))) for _ in range(20)]
    rows += [(2, 3, int(rng.normal(3_000, 500)), int(rng.normal(15_000, 100))) for _ in range(20)]
    table = tmp_path / "wholesale.csv"
    write_csv(tmp_path, rows, header=WHOLESALE_HEADER, name=table.name)
    config = attribute_config(
        tmp_path / "lake", table, attributes={"path": str(table), "format": "csv", "customer_id": None},
        numeric_features=["Fresh", "Milk"], k_min=2, k_max=2, restarts=1, stability_runs=0,
    )
    stage = SimpleNamespace(rows_in=None, rows_out=None, counts={})
    with caplog.at_level("INFO", logger="segspark"):
        result = run_train(spark, config, "run-wholesale", stage)
    assert result.ids_from_file_order
    assert stage.counts["customers_numbered_in_file_order"] == 40
    assert any(
        "attribute table has no id column (model.attributes.customer_id is null): customers are numbered 1..40 "
        "in file order" in message
        for message in caplog.messages
    )
    written = {
        r["customer_id"]: r["segment_id"]
        for r in lakehouse.read_table(spark, config.table_path("customer_segments")).collect()
    }
    assert sorted(written, key=int) == [str(i) for i in range(1, 41)]
    assert {written[str(i)] for i in range(1, 21)} != {written[str(i)] for i in range(21, 41)}
    assert len({written[str(i)] for i in range(1, 21)}) == len({written[str(i)] for i in range(21, 41)}) == 1


def test_attribute_id_column_may_be_null_only_in_attribute_only_mode():
    attributes = {"path": "/data/customers.csv", "customer_id": None}
    assert ModelSettings(input="attributes", attributes=attributes).attributes.customer_id is None
    expected = r"config key 'model': attributes.customer_id is null .* but input is 'features'"
    with pytest.raises(ConfigError, match=expected):
        load_config(env=None, flags={"model": {"attributes": attributes}})


def test_attribute_table_with_customer_id_column_but_null_id_key_is_an_error(spark, tmp_path):
    table = write_attributes(spark, tmp_path / "attrs", [("a", 1.0, 2.0, 3.0)], ATTRIBUTES)
    config = attribute_config(tmp_path / "lake", table, attributes={"path": str(table), "customer_id": None})
    with pytest.raises(SchemaError, match=r"has a 'customer_id' column but model.attributes.customer_id is null"):
        training_input(spark, config)


DATED = "customer_id string, age double, income double, spending_score double, as_of_date date"
D1, D2 = dt.date(2024, 1, 31), dt.date(2024, 2, 29)


@pytest.mark.parametrize(
    ("schema", "rows", "attributes", "as_of", "snapshot", "customers"),
    [
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1), ("b", 2.0, 3.0, 4.0, D1)], {}, None, D1, ["a", "b"],
            id="one-date-in-the-table",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1), ("a", 2.0, 3.0, 4.0, D2), ("b", 2.0, 3.0, 4.0, D2)], {},
            "2024-02-29", D2, ["a", "b"], id="as-of-picks-one-of-several",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1), ("b", 2.0, 3.0, 4.0, D1)], {}, "2024-01-31", D1, ["a", "b"],
            id="as-of-equal-to-the-one-date",
        ),
        pytest.param(
            "customer_id string, age double, income double, spending_score double, snapshot string",
            [("a", 1.0, 2.0, 3.0, " 2024-01-31 "), ("b", 2.0, 3.0, 4.0, "2024-02-29")],
            {"as_of_column": "snapshot"}, "2024-01-31", D1, ["a"], id="text-dates-in-another-column",
        ),
        pytest.param(
            "customer_id string, age double, income double, spending_score double, as_of_date timestamp",
            [("a", 1.0, 2.0, 3.0, dt.datetime(2024, 1, 31, 23, 0)), ("b", 2.0, 3.0, 4.0, dt.datetime(2024, 1, 31))],
            {}, None, D1, ["a", "b"], id="timestamps",
        ),
        pytest.param(ATTRIBUTES, [("a", 1.0, 2.0, 3.0)], {}, "2024-05-01", dt.date(2024, 5, 1), ["a"], id="no-column"),
    ],
)
def test_attribute_only_snapshot_date_comes_from_the_input(
    spark, tmp_path, schema, rows, attributes, as_of, snapshot, customers
):
    table = write_attributes(spark, tmp_path / "attrs", rows, schema)
    config = attribute_config(tmp_path / "lake", table, as_of=as_of, attributes={"path": str(table), **attributes})
    customers_df, got = training_input(spark, config)
    assert got == snapshot
    assert sorted(r["customer_id"] for r in customers_df.collect()) == customers


@pytest.mark.parametrize(
    ("schema", "rows", "attributes", "as_of", "error", "message"),
    [
        pytest.param(
            ATTRIBUTES, [("a", 1.0, 2.0, 3.0)], {}, None, ConfigError,
            r"needs a snapshot date and the attribute table has no 'as_of_date' column "
            r"\(model.attributes.as_of_column\): pass --as-of YYYY-MM-DD \(the date is never taken from the clock",
            id="no-column-no-as-of",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1)], {"as_of_column": None}, None, ConfigError,
            r"model.attributes.as_of_column is null: pass --as-of", id="column-switched-off",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1), ("a", 2.0, 3.0, 4.0, D2), ("b", 1.0, 1.0, 1.0, D2)], {}, None,
            ConfigError, r"holds 2 distinct date\(s\), 2024-01-31 to 2024-02-29: choose the snapshot with --as-of",
            id="several-dates-no-as-of",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1)], {}, "2024-05-01", ConfigError,
            r"--as-of 2024-05-01 is not a date in .* it holds 1 distinct date\(s\), 2024-01-31 to 2024-01-31",
            id="as-of-not-in-the-table",
        ),
        pytest.param(
            DATED, [("a", 1.0, 2.0, 3.0, D1), ("b", 1.0, 2.0, 3.0, None)], {}, "2024-01-31", InputError,
            r"1 row\(s\) have no date", id="row-without-date",
        ),
        pytest.param(
            "customer_id string, age double, income double, spending_score double, as_of_date string",
            [("a", 1.0, 2.0, 3.0, "31/01/2024")], {}, None, InputError, r"1 row\(s\) have no date \(null, or text",
            id="text-that-is-not-a-date",
        ),
        pytest.param(
            "customer_id string, age double, income double, spending_score double, as_of_date int",
            [("a", 1.0, 2.0, 3.0, 20240131)], {}, None, SchemaError, r"must be a date, a timestamp or yyyy-MM-dd text",
            id="wrong-type",
        ),
    ],
)
def test_attribute_only_snapshot_date_is_never_the_clock(
    spark, tmp_path, schema, rows, attributes, as_of, error, message
):
    table = write_attributes(spark, tmp_path / "attrs", rows, schema)
    config = attribute_config(tmp_path / "lake", table, as_of=as_of, attributes={"path": str(table), **attributes})
    with pytest.raises(error, match=message) as raised:
        training_input(spark, config)
    if error is ConfigError:
        assert raised.value.exit_code == 2


def test_winsorizing_caps_each_feature_at_its_training_percentiles(spark):
    rows = [(f"c{i:03d}", float(i), 10.0 * i) for i in range(1, 101)]
    df = spark.createDataFrame(rows, "customer_id string, x double, y double")
    settings = ModelSettings(
        input="attributes", attributes={"path": "unused"}, numeric_features=["x", "y"], log_features=[],
        winsorize={"lower": 0.05, "upper": 0.95},
    )
    prep = fit_preprocessing(df, settings, check_features(df, settings))
    # 1..100: the 5th and 95th percentiles are 5 and 95 (percentile_approx is exact on 100 distinct values).
    assert prep.caps == {"x": (5.0, 95.0), "y": (50.0, 950.0)}
    # The scaler was fitted on the capped values (Spark's std is the sample standard deviation).
    assert prep.scaler_std[0] == pytest.approx(np.clip(np.arange(1, 101), 5, 95).std(ddof=1))
    # The fitted stages cap new customers too: a saved model scores far-out values at the caps.
    new = spark.createDataFrame([("n1", -1000.0, 1e6), ("n2", 50.0, 500.0)], "customer_id string, x double, y double")
    capped = PipelineModel(stages=prep.stages).transform(new).select("customer_id", "_win_x", "_win_y")
    assert sorted(tuple(r) for r in capped.collect()) == [("n1", 5.0, 950.0), ("n2", 50.0, 500.0)]


def test_winsorizing_needs_both_percentiles():
    with pytest.raises(ValueError, match="set both winsorize.lower and winsorize.upper"):
        ModelSettings(winsorize={"lower": 0.01})

"""The sweep's local evidence and the final model's construction, against independent implementations.

MLlib's ClusteringEvaluator and scikit-learn are the references; golden values are computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.clustering import KMeans as MLlibKMeans
from pyspark.ml.clustering import KMeansModel as MLlibKMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.linalg import Vectors
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segspark.config import ModelSettings
from segspark.evaluation import adjusted_rand_index
from segspark.model import (
    FEATURES_COL,
    PREDICTION_COL,
    cluster_centers,
    kmeans_fitted_to_centres,
    kmeans_with_centres,
    refine_centres,
)
from segspark.sweep import (
    FitParams,
    SweepData,
    cluster_stats,
    contingency,
    evaluate_local,
    fit_best_local,
    run_sweep,
    squared_euclidean_silhouette,
)


def blobs(n_per: int, centres: list[list[float]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, 0.5, size=(n_per, len(c))) for c in centres])
    return points, np.repeat(np.arange(len(centres)), n_per)


def vectors_df(spark, points: np.ndarray, labels: np.ndarray | None = None):
    rows = [
        (f"c{i:05d}", Vectors.dense(p.tolist()), int(labels[i]) if labels is not None else 0)
        for i, p in enumerate(points)
    ]
    return spark.createDataFrame(rows, ["customer_id", FEATURES_COL, PREDICTION_COL])


def test_squared_silhouette_equals_mllib_clustering_evaluator(spark):
    points, labels = blobs(40, [[0, 0], [3, 0], [0, 4]])
    labels[0] = 1  # a misplaced point, so some silhouettes are negative
    expected = ClusteringEvaluator(
        featuresCol=FEATURES_COL, predictionCol=PREDICTION_COL, distanceMeasure="squaredEuclidean"
    ).evaluate(vectors_df(spark, points, labels))
    assert squared_euclidean_silhouette(points, labels) == pytest.approx(expected, abs=1e-12)


def test_squared_silhouette_by_hand():
    # Clusters {0, 1} and {10}: for x=0, a = 1 (squared distance to 1), b = 100: s = 1 - 1/100 = 0.99;
    # for x=1, a = 1, b = 81: s = 1 - 1/81; the singleton scores 0.
    points = np.array([[0.0], [1.0], [10.0]])
    labels = np.array([0, 0, 1])
    expected = (0.99 + (1 - 1 / 81) + 0.0) / 3
    assert squared_euclidean_silhouette(points, labels) == pytest.approx(expected, abs=1e-12)
    assert squared_euclidean_silhouette(points, np.zeros(3, dtype=int)) is None


def test_cluster_stats_by_hand():
    points = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    stats = cluster_stats(points, np.array([3, 3, 7]))  # labels need not be 0..K-1
    np.testing.assert_array_equal(stats.counts, [2.0, 1.0])
    np.testing.assert_array_equal(stats.means, [[1.0, 0.0], [10.0, 10.0]])
    np.testing.assert_array_equal(stats.mean_distance, [1.0, 0.0])
    assert stats.within_ss == 2.0


def test_contingency_and_ari_match_scikit_learn():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    b = np.array([1, 1, 0, 2, 2, 2, 0])
    assert adjusted_rand_index(contingency(a, b, 3)) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_best_of_restarts_is_at_least_as_good_as_scikit_learns_best_of_ten():
    points, _ = blobs(150, [[0, 0], [4, 0], [0, 4], [4, 4], [2, 2], [8, 8]], seed=3)
    params = FitParams(restarts=10, stability_runs=0, max_iter=300, tol=1e-4)
    ours = fit_best_local("kmeans", 6, points, seed=42, params=params)
    reference = KMeans(n_clusters=6, n_init=10, random_state=0).fit(points)
    assert ours.objective <= reference.inertia_ * 1.005


def test_evaluate_local_reports_the_planted_structure():
    points, truth = blobs(100, [[0, 0], [5, 0], [0, 5]], seed=1)
    rng = np.random.default_rng(9)
    data = SweepData(points, np.sort(rng.choice(len(points), 90, replace=False)), rng.normal(size=(90, 2)))
    row, centres = evaluate_local("kmeans", 3, data, FitParams(3, 2, 100, 1e-4), seed=5)
    assert centres.shape == (3, 2)
    assert row["segments_found"] == 3 and row["smallest_share"] == pytest.approx(1 / 3)
    assert row["stability"] == pytest.approx(1.0)
    assert row["silhouette"] > 0.6 > row["reference_silhouette"]
    assert row["converged"] and row["iterations"] >= 1
    nearest = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert adjusted_rand_score(truth, nearest) == 1.0
    assert row["wssse"] == pytest.approx(((points - centres[nearest]) ** 2).sum())


def test_run_sweep_fans_out_every_candidate_and_orders_them(spark):
    points, _ = blobs(60, [[0, 0], [5, 0], [0, 5]], seed=2)
    data = SweepData(points, np.arange(0, len(points), 2), np.random.default_rng(0).normal(size=(90, 2)))
    settings = ModelSettings(
        numeric_features=["x", "y"],
        log_features=[],
        k_min=2,
        k_max=4,
        restarts=2,
        stability_runs=1,
        algorithms=["kmeans", "gaussian_mixture"],
    )
    results = run_sweep(spark, data, settings, seed=7)
    assert [(r.candidate.algorithm, r.candidate.k) for r in results] == [
        ("kmeans", 2),
        ("kmeans", 3),
        ("kmeans", 4),
        ("gaussian_mixture", 2),
        ("gaussian_mixture", 3),
        ("gaussian_mixture", 4),
    ]
    # The same candidate evaluated on the driver gives the same figures as inside its Spark task.
    local, centres = evaluate_local("kmeans", 3, data, FitParams.of(settings), seed=7)
    task = results[1]
    assert task.wssse == local["wssse"] and task.candidate.silhouette == local["silhouette"]
    np.testing.assert_array_equal(task.centres, centres)
    assert sum(r.candidate.is_elbow for r in results) <= 2


@pytest.mark.parametrize("build", [kmeans_with_centres, kmeans_fitted_to_centres], ids=["jvm", "public-api"])
def test_kmeans_with_centres_is_an_mllib_model_with_exactly_those_centres(spark, tmp_path, build):
    centres = np.array([[0.0, 0.0], [1.0, 2.0], [-3.5, 0.25], [1e-7, 0.0]])
    model = build(spark, centres, seed=1)
    got = cluster_centers(model)
    assert sorted(map(tuple, got)) == sorted(map(tuple, centres))
    # It saves and loads like any fitted model, and predicts the nearest centre.
    model.write().overwrite().save(str(tmp_path / "m"))
    loaded = MLlibKMeansModel.load(str(tmp_path / "m"))
    assert loaded.getK() == 4 and loaded.getFeaturesCol() == FEATURES_COL
    predicted = loaded.transform(vectors_df(spark, np.array([[1.1, 2.1], [-3.0, 0.0]])).drop(PREDICTION_COL))
    nearest = [tuple(got[r[PREDICTION_COL]]) for r in predicted.orderBy("customer_id").collect()]
    assert nearest == [(1.0, 2.0), (-3.5, 0.25)]


def test_refine_centres_is_lloyd_from_the_given_start(spark):
    points, _ = blobs(50, [[0, 0], [4, 0], [0, 4]], seed=4)
    start = np.array([[1.0, 1.0], [3.0, 0.0], [0.0, 3.0]])
    ours, steps = refine_centres(vectors_df(spark, points), start, max_iter=50, tol=1e-10)
    reference = KMeans(n_clusters=3, init=start, n_init=1, max_iter=50, tol=1e-10, algorithm="lloyd").fit(points)
    np.testing.assert_allclose(ours, reference.cluster_centers_, atol=1e-9)
    assert 1 <= steps < 50
    # One step from the start is one mean of each start's nearest points, by hand.
    one, _ = refine_centres(vectors_df(spark, points), start, max_iter=1, tol=0.0)
    nearest = ((points[:, None, :] - start[None]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_allclose(one, [points[nearest == i].mean(axis=0) for i in range(3)], atol=1e-12)


def test_mllib_and_the_sweep_agree_on_a_clear_optimum(spark):
    """The final model (sweep centres inside an MLlib model) assigns like an MLlib fit would on clear data."""
    points, truth = blobs(80, [[0, 0], [6, 0], [0, 6]], seed=5)
    _, centres = evaluate_local(
        "kmeans", 3, SweepData(points, np.arange(len(points)), points), FitParams(2, 0, 100, 1e-4), seed=1
    )
    ours = kmeans_with_centres(spark, centres, seed=1)
    mllib = MLlibKMeans(k=3, seed=1, featuresCol=FEATURES_COL, predictionCol=PREDICTION_COL).fit(
        vectors_df(spark, points).drop(PREDICTION_COL)
    )
    frame = vectors_df(spark, points).drop(PREDICTION_COL)
    a = [r[0] for r in ours.transform(frame).orderBy("customer_id").select(PREDICTION_COL).collect()]
    b = [r[0] for r in mllib.transform(frame).orderBy("customer_id").select(PREDICTION_COL).collect()]
    assert adjusted_rand_score(a, b) == 1.0 == adjusted_rand_score(truth, a)

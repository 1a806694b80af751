"""The clustering evidence and the rule that chooses K (pure numpy, no Spark needed).

The metrics are checked against scikit-learn's definitions on seeded random data and against small cases
worked out by hand; :func:`choose` is checked on hand-built candidate lists.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)
from sklearn.metrics import (
    silhouette_samples as sklearn_silhouette_samples,
)

from segspark.config.settings import ModelSettings
from segspark.maths.evaluation import (
    Candidate,
    ClusterStats,
    SegmentEvidence,
    adjusted_rand_index,
    calinski_harabasz,
    choose,
    davies_bouldin,
    elbow_knee,
    euclidean_silhouette,
    silhouette_samples,
    small_segments,
)

# ---------------------------------------------------------------------------------------------------------
# Seeded datasets
# ---------------------------------------------------------------------------------------------------------


def blobs(seed: int, n_per: int = 60, k: int = 3, dim: int = 2, spread: float = 10.0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, size=(k, dim))
    points = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres])
    labels = np.repeat(np.arange(k), n_per)
    return points, labels


def single_gaussian(seed: int, n: int = 200, dim: int = 3, k: int = 4):
    """One Gaussian cut into k arbitrary groups: a structureless case (silhouettes near or below 0)."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, dim))
    labels = rng.integers(0, k, size=n)
    return points, labels


def with_singleton(seed: int):
    """Blobs plus one far-away point alone in its own cluster (sklearn scores it 0)."""
    points, labels = blobs(seed, n_per=40)
    points = np.vstack([points, [[50.0, 50.0]]])
    labels = np.append(labels, 3)
    return points, labels


def sparse_label_values(seed: int):
    """Labels 3, 7, 9 rather than 0..k-1."""
    points, labels = blobs(seed, n_per=50)
    return points, np.array([3, 7, 9])[labels]


def many_points(seed: int):
    """1,300 points: more than two of the function's 512-row chunks, with a partial last chunk."""
    rng = np.random.default_rng(seed)
    points, labels = blobs(seed, n_per=325, k=4, dim=5, spread=3.0)
    order = rng.permutation(len(points))  # clusters spread over every chunk
    return points[order], labels[order]


SILHOUETTE_DATASETS = {
    "blobs": lambda: blobs(1),
    "blobs_4d_5k": lambda: blobs(2, n_per=30, k=5, dim=4, spread=4.0),
    "single_gaussian": lambda: single_gaussian(3),
    "single_gaussian_two_groups": lambda: single_gaussian(4, n=150, dim=2, k=2),
    "singleton_cluster": lambda: with_singleton(5),
    "labels_3_7_9": lambda: sparse_label_values(6),
    "1300_points": lambda: many_points(7),
}


# ---------------------------------------------------------------------------------------------------------
# euclidean_silhouette
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SILHOUETTE_DATASETS))
def test_silhouette_matches_sklearn(name):
    points, labels = SILHOUETTE_DATASETS[name]()
    got = euclidean_silhouette(points, labels)
    assert got is not None
    assert abs(got - silhouette_score(points, labels)) < 1e-9


@pytest.mark.parametrize("name", list(SILHOUETTE_DATASETS))
def test_silhouette_samples_match_sklearn_point_by_point(name):
    points, labels = SILHOUETTE_DATASETS[name]()
    got = silhouette_samples(points, labels)
    np.testing.assert_allclose(got, sklearn_silhouette_samples(points, labels), atol=1e-9)


def test_silhouette_is_not_a_constant():
    # Guards the comparison above: clear blobs and a cut Gaussian must give very different scores.
    clear = euclidean_silhouette(*blobs(1))
    cut = euclidean_silhouette(*single_gaussian(3))
    assert clear > 0.7
    assert cut < 0.1


def test_silhouette_golden_two_pairs_on_a_line():
    # Clusters {0, 1} and {10, 11}; every point has a = 1 (its only neighbour is 1 away).
    #   x=0:  b = (10 + 11) / 2 = 10.5  ->  s = (10.5 - 1) / 10.5 = 19/21
    #   x=1:  b = (9 + 10) / 2  = 9.5   ->  s = (9.5 - 1) / 9.5   = 17/19
    #   x=10: b = (10 + 9) / 2  = 9.5   ->  s = 17/19
    #   x=11: b = (11 + 10) / 2 = 10.5  ->  s = 19/21
    # Mean: (19/21 + 17/19) / 2 = 0.899749...
    points = np.array([[0.0], [1.0], [10.0], [11.0]])
    expected = (19 / 21 + 17 / 19) / 2
    assert euclidean_silhouette(points, np.array([0, 0, 1, 1])) == pytest.approx(expected, abs=1e-12)


def test_silhouette_golden_singleton_scores_zero():
    # Clusters {0, 2} and {5}:
    #   x=0: a = 2, b = 5 -> s = 3/5
    #   x=2: a = 2, b = 3 -> s = 1/3
    #   x=5: alone in its cluster -> s = 0
    # Mean: (3/5 + 1/3 + 0) / 3 = 14/45
    points = np.array([[0.0], [2.0], [5.0]])
    assert euclidean_silhouette(points, np.array([0, 0, 1])) == pytest.approx(14 / 45, abs=1e-12)


@pytest.mark.parametrize(
    ("points", "labels"),
    [
        (np.array([[0.0], [1.0], [10.0], [11.0]]), np.array([4, 4, 4, 4])),
        (np.random.default_rng(8).normal(size=(600, 3)), np.zeros(600, dtype=int)),
        (np.array([[1.0, 2.0]]), np.array([0])),
    ],
    ids=["four_points", "600_points", "one_point"],
)
def test_silhouette_is_none_with_one_cluster(points, labels):
    assert euclidean_silhouette(points, labels) is None


# ---------------------------------------------------------------------------------------------------------
# adjusted_rand_index
# ---------------------------------------------------------------------------------------------------------


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows: values of a, columns: values of b (non-negative integer labels; unused values give zero rows)."""
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=int)
    np.add.at(table, (a, b), 1)
    return table


@pytest.mark.parametrize(
    ("seed", "n", "k_a", "k_b", "noise"),
    [
        (10, 50, 2, 2, 1.0),  # independent
        (11, 300, 4, 6, 1.0),  # independent, non-square table
        (12, 300, 5, 5, 0.2),  # mostly agreeing
        (13, 1000, 3, 8, 0.5),
        (14, 20, 6, 3, 0.3),  # small, with likely empty rows or columns
    ],
)
def test_ari_matches_sklearn(seed, n, k_a, k_b, noise):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, k_a, size=n)
    b = np.where(rng.random(n) < noise, rng.integers(0, k_b, size=n), a % k_b)
    assert adjusted_rand_index(contingency(a, b)) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_ari_is_one_for_identical_partitions_with_permuted_labels():
    rng = np.random.default_rng(15)
    a = rng.integers(0, 5, size=200)
    b = np.array([3, 0, 4, 1, 2])[a]
    assert not np.array_equal(a, b)
    assert adjusted_rand_index(contingency(a, b)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "table",
    [np.array([[7]]), np.array([[1]]), np.eye(5, dtype=int)],
    ids=["both_one_cluster", "one_customer", "both_all_singletons"],
)
def test_ari_is_one_for_trivial_identical_partitions(table):
    assert adjusted_rand_index(table) == 1.0


def test_ari_golden_small_table():
    # a = [0,0,0,1,1], b = [0,0,1,1,1] -> table [[2, 1], [0, 2]], n = 5.
    #   sum over cells C(n_ij, 2) = 1 + 0 + 0 + 1 = 2
    #   rows 3, 2 -> 3 + 1 = 4;  columns 2, 3 -> 1 + 3 = 4;  C(5, 2) = 10
    #   expected = 4 * 4 / 10 = 1.6;  maximum = (4 + 4) / 2 = 4
    #   ARI = (2 - 1.6) / (4 - 1.6) = 1/6
    assert adjusted_rand_index(np.array([[2, 1], [0, 2]])) == pytest.approx(1 / 6, abs=1e-12)


def test_ari_is_zero_when_one_labeling_is_trivial():
    # Everyone in one cluster carries no information about the other labeling.
    assert adjusted_rand_index(np.array([[3, 4, 5]])) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# davies_bouldin and calinski_harabasz from ClusterStats
# ---------------------------------------------------------------------------------------------------------


def cluster_stats(points: np.ndarray, labels: np.ndarray) -> ClusterStats:
    """ClusterStats exactly as documented, computed directly from the members of each cluster."""
    means, counts, mean_distance, within_ss = [], [], [], 0.0
    for value in np.unique(labels):
        members = points[labels == value]
        mean = members.mean(axis=0)
        dist = np.linalg.norm(members - mean, axis=1)
        means.append(mean)
        counts.append(len(members))
        mean_distance.append(dist.mean())
        within_ss += float((dist**2).sum())
    return ClusterStats(
        counts=np.array(counts), means=np.array(means), mean_distance=np.array(mean_distance), within_ss=within_ss
    )


STATS_DATASETS = {
    "blobs": lambda: blobs(20),
    "blobs_4d_5k": lambda: blobs(21, n_per=30, k=5, dim=4, spread=4.0),
    "single_gaussian": lambda: single_gaussian(22),
    "two_groups": lambda: single_gaussian(23, n=150, dim=2, k=2),
    "labels_3_7_9": lambda: sparse_label_values(24),
    "unequal_sizes": lambda: with_singleton(25),
}


@pytest.mark.parametrize("name", list(STATS_DATASETS))
def test_davies_bouldin_matches_sklearn(name):
    points, labels = STATS_DATASETS[name]()
    assert davies_bouldin(cluster_stats(points, labels)) == pytest.approx(
        davies_bouldin_score(points, labels), rel=1e-9
    )


@pytest.mark.parametrize("name", list(STATS_DATASETS))
def test_calinski_harabasz_matches_sklearn(name):
    points, labels = STATS_DATASETS[name]()
    assert calinski_harabasz(cluster_stats(points, labels)) == pytest.approx(
        calinski_harabasz_score(points, labels), rel=1e-9
    )


def test_separated_blobs_score_better_than_a_cut_gaussian():
    # Guards the comparisons above: both indices must tell structure from none (DB lower, CH higher).
    clear, cut = cluster_stats(*blobs(20)), cluster_stats(*single_gaussian(22))
    assert davies_bouldin(clear) < davies_bouldin(cut)
    assert calinski_harabasz(clear) > calinski_harabasz(cut)


def test_davies_bouldin_and_calinski_harabasz_are_none_with_one_cluster():
    points = np.random.default_rng(26).normal(size=(40, 3))
    stats = cluster_stats(points, np.zeros(40, dtype=int))
    assert davies_bouldin(stats) is None
    assert calinski_harabasz(stats) is None


def test_davies_bouldin_is_none_when_two_clusters_share_a_centre():
    stats = ClusterStats(
        counts=np.array([10, 10, 10]),
        means=np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]),
        mean_distance=np.array([1.0, 2.0, 1.0]),
        within_ss=50.0,
    )
    assert davies_bouldin(stats) is None


# ---------------------------------------------------------------------------------------------------------
# elbow_knee
# ---------------------------------------------------------------------------------------------------------


def test_elbow_knee_golden_clear_elbow():
    # ks 2..8, costs [100, 40, 10, 8, 7, 6, 5]. Scaled: xn = (k - 2) / 6, yn = (cost - 5) / 95.
    # gap = (1 - xn) - yn:
    #   K=2: 1     - 1     = 0
    #   K=3: 5/6   - 35/95 = 0.4649
    #   K=4: 4/6   - 5/95  = 0.6140   <- largest
    #   K=5: 3/6   - 3/95  = 0.4684
    #   K=6: 2/6   - 2/95  = 0.3123
    #   K=7: 1/6   - 1/95  = 0.1561
    #   K=8: 0     - 0     = 0
    assert elbow_knee([2, 3, 4, 5, 6, 7, 8], [100, 40, 10, 8, 7, 6, 5]) == 4


def test_elbow_knee_does_not_depend_on_units():
    ks = [2, 3, 4, 5, 6, 7, 8]
    costs = [100, 90, 80, 30, 25, 22, 20]  # knee at K=5
    assert elbow_knee(ks, costs) == 5
    assert elbow_knee(ks, [c * 1e6 for c in costs]) == 5
    assert elbow_knee([k * 10 for k in ks], costs) == 50


@pytest.mark.parametrize(("ks", "costs"), [([], []), ([3], [10.0]), ([2, 3], [10.0, 5.0])])
def test_elbow_knee_is_none_with_fewer_than_three_points(ks, costs):
    assert elbow_knee(ks, costs) is None


def test_elbow_knee_is_none_for_a_flat_curve():
    assert elbow_knee([2, 3, 4, 5], [7.0, 7.0, 7.0, 7.0]) is None


def test_elbow_knee_is_none_for_a_curve_above_its_chord():
    # Concave: every point lies above the chord, so there is no knee.
    assert elbow_knee([2, 3, 4, 5, 6], [100, 99, 97, 90, 60]) is None


@pytest.mark.parametrize(
    ("ks", "costs"),
    [
        pytest.param([2, 3, 4], [3.0, 2.0, 1.0], id="3_points"),
        pytest.param([2, 3, 4, 5, 6], [5.0, 4.0, 3.0, 2.0, 1.0], id="5_points"),
        pytest.param([2, 3, 4, 5, 6, 7, 8], [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], id="7_points"),
        pytest.param(
            [2, 3, 4, 5, 6, 7, 8],
            [60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 0.0],
            id="7_points_to_zero",
        ),
    ],
)
def test_elbow_knee_is_none_for_a_straight_line(ks, costs):
    # No point lies strictly below the chord, which is the curve itself.
    assert elbow_knee(ks, costs) is None


# ---------------------------------------------------------------------------------------------------------
# choose
# ---------------------------------------------------------------------------------------------------------

# The defaults, spelled out so the cases below can be read against them.
DEFAULTS = {
    "k_min": 2,
    "k_max": 6,
    "min_segment_share": 0.02,
    "min_stability": 0.8,
    "min_silhouette": 0.25,
    "strong_silhouette": 0.5,
    "min_silhouette_gain": 0.10,
    "silhouette_tolerance": 0.02,
}


def settings(**overrides) -> ModelSettings:
    return ModelSettings(**{**DEFAULTS, **overrides})


def cand(
    k: int,
    silhouette: float | None,
    *,
    reference: float | None = 0.05,
    stability: float | None = 0.95,
    share: float = 0.10,
    found: int | None = None,
    elbow: bool = False,
    algorithm: str = "kmeans",
) -> Candidate:
    """A candidate that passes every rule unless told otherwise."""
    return Candidate(
        algorithm=algorithm,
        k=k,
        silhouette=silhouette,
        reference_silhouette=reference,
        stability=stability,
        smallest_share=share,
        segments_found=k if found is None else found,
        is_elbow=elbow,
    )


def run(candidates: list[Candidate], model: ModelSettings | None = None) -> tuple[list[Candidate], Candidate]:
    """choose(), checked for what must hold every time; returns the verdicts and the chosen one."""
    out = choose(candidates, model or settings())
    assert [(c.algorithm, c.k) for c in out] == [(c.algorithm, c.k) for c in candidates]
    assert [c.is_chosen for c in out].count(True) == 1
    assert all(c.reason for c in out)
    assert all(c.structure in {"strong", "moderate", "weak"} for c in out)
    chosen = next(c for c in out if c.is_chosen)
    assert chosen.reason.startswith("Chosen: ")
    assert all(c.reason.startswith("Not chosen: ") for c in out if not c.is_chosen)
    return out, chosen


def by_k(out: list[Candidate]) -> dict[int, Candidate]:
    return {c.k: c for c in out}


def test_choose_best_silhouette_wins():
    out, chosen = run([cand(2, 0.40), cand(3, 0.55), cand(4, 0.45), cand(5, 0.30)])
    assert chosen.k == 3
    assert "best sampled Euclidean silhouette (0.550)" in chosen.reason
    assert by_k(out)[2].reason == "Not chosen: silhouette 0.400 is below K=3 (kmeans)'s 0.550."
    assert [c.structure for c in out] == ["moderate", "strong", "moderate", "moderate"]


def test_choose_skips_a_too_small_segment():
    out, chosen = run([cand(2, 0.45), cand(3, 0.60, share=0.01), cand(4, 0.40)])
    assert chosen.k == 2
    small = by_k(out)[3]
    assert not small.is_chosen
    assert "smallest segment holds 1.0% of customers" in small.reason
    assert "at least 2% required" in small.reason


def test_choose_skips_empty_segments():
    out, chosen = run([cand(2, 0.45), cand(3, 0.60, found=2)])
    assert chosen.k == 2
    assert "only 2 of 3 segments are non-empty" in by_k(out)[3].reason


def test_choose_skips_an_unstable_candidate():
    out, chosen = run([cand(2, 0.45), cand(3, 0.60, stability=0.50), cand(4, 0.40)])
    assert chosen.k == 2
    unstable = by_k(out)[3]
    assert "assignments change with the seed" in unstable.reason
    assert "0.50 < 0.80" in unstable.reason
    assert unstable.structure == "weak"


def test_choose_stability_not_measured_is_not_a_problem():
    _, chosen = run([cand(2, 0.45, stability=None), cand(3, 0.60, stability=None)])
    assert chosen.k == 3
    assert chosen.structure == "strong"


def test_choose_prefers_the_larger_gain_over_the_reference_within_tolerance():
    # K=4 has the best silhouette, but K=3 beats its structureless reference by more (0.35 against 0.26).
    out, chosen = run([cand(2, 0.40), cand(3, 0.55, reference=0.20), cand(4, 0.56, reference=0.30)])
    assert chosen.k == 3
    assert "within 0.02 of the best (0.560), with the largest gain over a structureless reference (+0.350)" in (
        chosen.reason
    )
    assert "within 0.02 of the best" in by_k(out)[4].reason


def test_choose_elbow_breaks_a_tie_in_gain_within_tolerance():
    out, chosen = run([cand(2, 0.40), cand(3, 0.55, reference=0.05, elbow=True), cand(4, 0.56, reference=0.06)])
    assert chosen.k == 3
    assert "it is also the elbow of the WSSSE curve" in chosen.reason


def test_choose_ignores_an_elbow_outside_tolerance():
    _, chosen = run([cand(2, 0.40), cand(3, 0.50, elbow=True), cand(4, 0.56)])
    assert chosen.k == 4
    assert "best sampled Euclidean silhouette (0.560)" in chosen.reason
    assert "the elbow of the WSSSE curve is at K=3" in chosen.reason


def test_choose_without_an_elbow_takes_the_best_silhouette_within_tolerance():
    _, chosen = run([cand(3, 0.55), cand(4, 0.56)])
    assert chosen.k == 4


def test_choose_ties_go_to_the_smaller_k():
    _, chosen = run([cand(5, 0.50), cand(3, 0.50), cand(4, 0.50)])
    assert chosen.k == 3


def test_choose_ties_at_the_same_k_go_to_the_algorithm_listed_first():
    model = settings(algorithms=["bisecting_kmeans", "kmeans"])
    _, chosen = run([cand(3, 0.50, algorithm="kmeans"), cand(3, 0.50, algorithm="bisecting_kmeans")], model)
    assert chosen.algorithm == "bisecting_kmeans"


def test_choose_force_k_overrides_and_names_the_automatic_pick():
    candidates = [cand(2, 0.40), cand(3, 0.60), cand(4, 0.45), cand(5, 0.35)]
    out, chosen = run(candidates, settings(force_k=5))
    assert chosen.k == 5
    assert "force_k is 5" in chosen.reason
    assert "the evidence alone would choose K=3 (kmeans)" in chosen.reason
    assert "evidence favours it" in by_k(out)[3].reason


def test_choose_force_k_wins_even_over_the_rules():
    out, chosen = run([cand(3, 0.60), cand(5, 0.35, share=0.01, stability=0.3)], settings(force_k=5))
    assert chosen.k == 5
    assert chosen.structure == "weak"
    assert "WEAK STRUCTURE" in chosen.reason


def test_choose_force_k_equal_to_the_automatic_pick():
    _, chosen = run([cand(2, 0.40), cand(3, 0.60)], settings(force_k=3))
    assert chosen.k == 3
    assert "force_k is 3" in chosen.reason
    assert "evidence alone would choose" not in chosen.reason


@pytest.mark.parametrize(
    ("silhouette", "reference", "stability", "structure", "finding"),
    [
        pytest.param(0.20, 0.00, 0.95, "weak", "silhouette 0.200 is below 0.250", id="low_silhouette"),
        pytest.param(0.45, 0.40, 0.95, "weak", "against a structureless reference", id="small_gain"),
        pytest.param(0.60, 0.05, 0.70, "weak", "assignments change with the seed", id="unstable"),
        pytest.param(None, None, 0.95, "weak", "silhouette is undefined", id="no_silhouette"),
        pytest.param(0.60, 0.05, 0.95, "strong", "Structure: strong (silhouette 0.600, +0.550", id="strong"),
        pytest.param(0.50, 0.05, 0.95, "strong", "Structure: strong", id="strong_at_threshold"),
        pytest.param(0.70, None, None, "strong", "Structure: strong (silhouette 0.700)", id="strong_no_reference"),
        pytest.param(0.40, 0.05, 0.95, "moderate", "Structure: moderate", id="moderate"),
        pytest.param(0.30, 0.15, 0.85, "moderate", "stability 0.85", id="moderate_near_limits"),
    ],
)
def test_choose_structure_verdict(silhouette, reference, stability, structure, finding):
    _, chosen = run([cand(3, silhouette, reference=reference, stability=stability)])
    assert chosen.structure == structure
    assert finding in chosen.reason
    assert ("WEAK STRUCTURE" in chosen.reason) == (structure == "weak")


def test_choose_a_gain_of_exactly_min_silhouette_gain_is_enough():
    # ModelSettings: the silhouette must beat the reference "by at least" min_silhouette_gain (0.10 here).
    _, chosen = run([cand(3, 0.60, reference=0.50)])
    assert chosen.structure == "strong"


def test_choose_rejected_candidates_get_their_own_structure_verdict():
    out, _ = run([cand(2, 0.20), cand(3, 0.60), cand(4, 0.40)])
    assert {c.k: c.structure for c in out} == {2: "weak", 3: "strong", 4: "moderate"}


def test_choose_relaxes_stability_when_every_candidate_is_unstable():
    out, chosen = run([cand(2, 0.45, stability=0.5), cand(3, 0.60, stability=0.6), cand(4, 0.40, stability=0.7)])
    assert chosen.k == 3
    assert "stability was not required" in chosen.reason
    assert "WEAK STRUCTURE" in chosen.reason
    assert all(c.structure == "weak" for c in out)


def test_choose_relaxes_segment_size_when_every_segment_is_too_small():
    _, chosen = run([cand(2, 0.45, share=0.01), cand(3, 0.60, share=0.015)])
    assert chosen.k == 3
    assert "every candidate was considered" in chosen.reason


def test_choose_relaxes_stability_before_segment_size():
    # K=3 is stable but too small; K=2 is unstable but big enough: size is the last rule to go.
    _, chosen = run([cand(2, 0.45, stability=0.5), cand(3, 0.60, share=0.01)])
    assert chosen.k == 2
    assert "stability was not required" in chosen.reason


def test_choose_with_no_silhouette_at_all_takes_the_smallest_eligible_k():
    _, chosen = run([cand(4, None), cand(3, None), cand(2, None, share=0.01)])
    assert chosen.k == 3
    assert chosen.structure == "weak"


def test_choose_a_single_candidate_is_chosen():
    _, chosen = run([cand(4, 0.55)])
    assert chosen.k == 4


def test_choose_needs_candidates():
    with pytest.raises(ValueError, match="no candidates"):
        choose([], settings())


# ---------------------------------------------------------------------------------------------------------
# small segments: a distinct group or a fragment
# ---------------------------------------------------------------------------------------------------------


def seg(rank: int, share: float, silhouette: float | None, sampled: int = 40, profile: str = "") -> SegmentEvidence:
    return SegmentEvidence(rank=rank, share=share, silhouette=silhouette, sampled=sampled, profile=profile)


def with_segments(c: Candidate, *small: SegmentEvidence) -> Candidate:
    """``c`` with large segments (10%+, silhouette 0.6) plus the given small ones; K and shares follow."""
    big = 1.0 - sum(s.share for s in small)
    n_big = c.k - len(small)
    large = tuple(seg(i + 1, big / n_big, 0.6) for i in range(n_big))
    segments = large + tuple(small)
    return Candidate(
        algorithm=c.algorithm, k=c.k, silhouette=c.silhouette, reference_silhouette=c.reference_silhouette,
        stability=c.stability, smallest_share=min(s.share for s in segments), segments_found=c.k,
        segments=segments, is_elbow=c.is_elbow,
    )


def test_a_small_well_separated_segment_is_a_distinct_group_and_its_k_is_chosen():
    # The issue's case: K=7's best silhouette, with a 1.9% segment that is tighter than the average customer.
    vip = seg(7, 0.019, 0.71, profile="monetary +3.1 sd, frequency +2.4 sd")
    candidates = [with_segments(cand(5, 0.556), ), with_segments(cand(7, 0.649), vip)]
    out, chosen = run(candidates)
    assert chosen.k == 7
    assert (
        "segment 7 by size: 1.9% of customers, silhouette 0.71; monetary +3.1 sd, frequency +2.4 sd: a distinct "
        "group, kept although under 2% (its silhouette is at least the overall 0.65)"
    ) in chosen.reason
    assert "each hold at least 2% of customers or are distinct small groups" in chosen.reason


def test_a_small_poorly_separated_segment_is_a_fragment_and_disqualifies_its_k():
    fragment = seg(7, 0.012, 0.31)
    out, chosen = run([with_segments(cand(5, 0.556)), with_segments(cand(7, 0.649), fragment)])
    assert chosen.k == 5
    assert by_k(out)[7].reason == (
        "Not chosen: segment 7 by size: 1.2% of customers, silhouette 0.31: a fragment, not a distinct group "
        "(a segment under 2% of customers counts when it holds at least 0.5% and its silhouette is at least the "
        "overall 0.65 and 0.25)."
    )


@pytest.mark.parametrize(
    ("small", "distinct"),
    [
        pytest.param(seg(6, 0.019, 0.65), True, id="silhouette-equal-to-the-overall"),
        pytest.param(seg(6, 0.019, 0.64), False, id="silhouette-just-below-the-overall"),
        pytest.param(seg(6, 0.005, 0.90), True, id="at-the-distinct-share-floor"),
        pytest.param(seg(6, 0.0049, 0.90), False, id="under-the-distinct-share-floor"),
        pytest.param(seg(6, 0.019, 0.90, sampled=9), False, id="too-few-sampled-members"),
        pytest.param(seg(6, 0.019, None, sampled=0), False, id="none-sampled"),
        pytest.param(seg(6, 0.02, 0.10), None, id="not-small-at-the-share"),
    ],
)
def test_small_segment_rule_edges(small, distinct):
    c = with_segments(cand(6, 0.65), small)
    got_distinct, fragments = small_segments(c, settings())
    if distinct is None:
        assert got_distinct == [] and fragments == []
    else:
        assert (got_distinct == [small], fragments == [small]) == (distinct, not distinct)


def test_a_small_segment_of_a_weak_candidate_needs_min_silhouette_too():
    # Overall 0.20 (weak): a small segment at 0.22 beats the overall but not min_silhouette 0.25.
    c = with_segments(cand(4, 0.20), seg(4, 0.015, 0.22))
    assert small_segments(c, settings())[1] == [c.segments[-1]]

"""The report: its analysis on hand-built points, its page on hand-built data (weak structure), and the stage
end to end on the profiled planted lakehouse (sections, figure files, the numbers against the tables)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from segspark.config.paths import local_path
from segspark.config.settings import DriftThresholds, ReportSettings
from segspark.errors import ConfigError
from segspark.platform import publication
from segspark.stages.report.analysis import agreement, compare_algorithms, matched_labels, project
from segspark.stages.report.data import DataQuality, ReportData, Target
from segspark.stages.report.html import SECTIONS, VERDICTS, render
from segspark.stages.report.monitoring import DRIFT_COLUMNS, LIFT_COLUMNS, Monitoring
from segspark.stages.report.stage import migration_matrix, run_report, top_effects
from tests.helpers.config import FAST_MODEL, retail_config


class Page(HTMLParser):
    """Section ids, images, table cells by table class, and text by element class, of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.classed: dict[str, list[str]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._open: list[str] = []
        self.text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "img":
            self.images.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = a.get("class", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if a.get("class"):
            self._open.append(a["class"])
            self.classed.setdefault(a["class"], []).append("")
        else:
            self._open.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for cls in self._open:
            if cls:
                self.classed[cls][-1] += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


# ---------------------------------------------------------------------------------------------------------
# Analysis on hand-built points


def test_projection_of_points_on_a_line_explains_all_variance_on_pc1():
    points = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    p = project(points, np.array([[1.5, 3.0]]))
    assert p.explained[0] == pytest.approx(1.0) and p.explained[1] == pytest.approx(0.0, abs=1e-12)
    # Distances along the line: sqrt(5) apart, centred on the mean; the largest loading made positive.
    assert p.coords[:, 0] == pytest.approx(np.array([-1.5, -0.5, 0.5, 1.5]) * math.sqrt(5))
    assert p.centres[0] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_projection_of_too_few_points_is_empty_not_an_error():
    p = project(np.zeros((1, 3)), np.zeros((0, 3)))
    assert p.coords.shape == (1, 2) and all(math.isnan(e) for e in p.explained)


def test_matched_labels_rename_clusters_to_the_segments_they_overlap():
    segments = np.array([1, 1, 1, 2, 2, 3, 3, 3])
    labels = np.array([7, 7, 0, 5, 5, 0, 0, -1])  # 7 -> 1, 5 -> 2, 0 -> 3; noise stays -1
    assert matched_labels(labels, segments).tolist() == [1, 1, 3, 2, 2, 3, 3, -1]
    extra = np.array([0, 0, 0, 1, 1, 2, 2, 3])  # four clusters for three segments: the leftover gets id 4
    assert matched_labels(extra, segments).tolist() == [1, 1, 1, 2, 2, 3, 3, 4]


def test_agreement_is_one_for_the_same_partition_under_other_names_and_about_zero_for_chance():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert agreement(a, np.array([5, 5, 9, 9, 4, 4])) == pytest.approx(1.0)
    # By hand: contingency [[1,1],[1,1]] -> index 0, expected 2*2/6 = 2/3, max 2: ARI = (0 - 2/3)/(2 - 2/3) = -0.5
    assert agreement(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(-0.5)


def test_every_algorithm_finds_three_clear_blobs_and_agrees_with_the_segments():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    truth = np.repeat([1, 2, 3], 60)
    points = centres[truth - 1] + rng.normal(scale=0.5, size=(180, 2))
    results = compare_algorithms(points, truth, 3, _model_settings(), ReportSettings(dbscan_min_samples=5), seed=1)
    assert [r.algorithm for r in results] == ["kmeans", "bisecting_kmeans", "gaussian_mixture", "ward", "dbscan"]
    for r in results:
        # DBSCAN leaves the blobs' outskirts as noise (counted as one more group in the agreement).
        assert r.clusters == 3 and r.agreement > (0.9 if r.algorithm == "dbscan" else 0.99), r
        assert r.silhouette is not None and r.silhouette > 0.8
        assert sum(r.sizes) + round(r.noise_share * 180) == 180
    kmeans = results[0]
    assert kmeans.sizes == [60, 60, 60] and (kmeans.labels == truth).all()  # matched to the segment ids
    assert "percentile" in results[-1].parameters and 0 < results[-1].noise_share <= 0.1
    without = compare_algorithms(points, truth, 3, _model_settings(), ReportSettings(explore=False), seed=1)
    assert [r.algorithm for r in without] == ["kmeans", "bisecting_kmeans", "gaussian_mixture"]


def _model_settings():
    from segspark.config.settings import ModelSettings

    return ModelSettings(restarts=2, stability_runs=0)


# ---------------------------------------------------------------------------------------------------------
# The page on hand-built data


def weak_data() -> ReportData:
    """Three value tiers of a weak model, one snapshot, no sample (an attribute-table model, say)."""
    selection = pd.DataFrame(
        {
            "as_of_date": [dt.date(2011, 12, 10)] * 2,
            "algorithm": ["kmeans", "kmeans"],
            "k": [2, 3],
            "wssse": [100.0, 80.0],
            "silhouette_euclidean": [0.30, 0.3214],
            "silhouette_squared_euclidean": [0.4, 0.45],
            "reference_silhouette": [0.25, 0.226],
            "stability_ari": [1.0, 0.97],
            "davies_bouldin": [1.1, 1.0],
            "calinski_harabasz": [10.0, 12.0],
            "smallest_segment_share": [0.4, 0.228],
            "segments_found": [2, 3],
            "silhouette_sample": [300, 300],
            "customers_evaluated": [300, 300],
            "is_elbow": [False, True],
            "is_chosen": [False, True],
            "structure": ["weak", "weak"],
            "reason": ["not chosen", "Chosen: K=3"],
        }
    )
    segments = pd.DataFrame(
        {
            "segment_id": [1, 2, 3],
            "name": ["Value tier 1 of 3", "Value tier 2 of 3", "Value tier 3 of 3"],
            "customers": [1544, 989, 1805],
            "customer_share": [1544 / 4338, 989 / 4338, 1805 / 4338],
            "revenue": [7.0e6, 0.5e6, 0.8e6],
            "revenue_share": [0.845, 0.057, 0.097],
            "value_at_stake": [7256286.0, 1.0, 2.0],
            "play": ["upsell", "nurture", "deprioritise"],
            "priority": [1, 2, 3],
            "play_reason": ["median monetary 2,249 against 669", "median frequency 1 against 2", "recency"],
            "top_features_text": ["", "", ""],
            "recency_days_median": [20.0, 40.0, 171.0],
            "frequency_median": [5.0, 1.0, 1.0],
            "monetary_median": [2249.0, 300.0, 250.0],
            "dominant_rfm_segment": ["Champions", "New customers", "Hibernating"],
        }
    )
    quality = DataQuality(
        rows_in=10,
        rows_clean=7,
        rejected_by_reason={"missing_customer_id": 2, "duplicate": 1},
        examples={"missing_customer_id": "invoice_id=<b>1</b>", "duplicate": None},
        first_invoice=dt.date(2010, 12, 1),
        last_invoice=dt.date(2011, 12, 9),
        return_lines=1,
        clean_lines=7,
        returned_value=5.0,
        purchase_value=100.0,
        returns_only_customers=3,
    )
    return ReportData(
        target=Target("run-1", dt.date(2011, 12, 10), "model-1"),
        lakehouse="file:/tmp/lh",
        algorithm="kmeans",
        k=3,
        customers=4338,
        trained_on=dt.date(2011, 12, 10),
        structure="weak",
        decision="Chosen: K=3 (kmeans); Structure: weak",
        selection=selection,
        segments=segments,
        feature_profiles=pd.DataFrame(
            columns=["segment_id", "feature", "mean", "median", "population_mean", "effect_size", "effect_rank"]
        ),
        log_features=["monetary"],
        sample=None,
        sample_note="no customer sample: the model reads an attribute table",
        rfm_grid=None,
        quality=quality,
        sizes_over_time=pd.DataFrame({"as_of_date": [dt.date(2011, 12, 10)] * 3, "segment_id": [1, 2, 3],
                                      "customers": [1544, 989, 1805]}),
        previous_as_of=None,
        migration=None,
        monitoring=Monitoring(
            pd.DataFrame(columns=DRIFT_COLUMNS), None, pd.DataFrame(columns=LIFT_COLUMNS), DriftThresholds()
        ),
    )


def test_the_monitoring_section_prints_the_decision_this_snapshots_drift_and_the_lift_with_intervals():
    earlier, now = dt.date(2011, 11, 10), dt.date(2011, 12, 10)
    drift = pd.DataFrame(
        [
            (earlier, "m1", "numeric", "recency_days", 0.02, None, 0.1, 0.0, "ok", None),
            (now, "m1", "numeric", "recency_days", 0.31, None, 1.2, 0.0, "act", "PSI 0.31 >= 0.25"),
            (now, "m1", "categorical", "country", None, 0.05, None, 0.0, "ok", None),
            (now, "m1", "segments", "segment_id", 0.04, 0.03, None, None, "ok", None),
        ],
        columns=DRIFT_COLUMNS,
    )
    lift = pd.DataFrame(
        [
            (earlier, "Champions", 300, 0.041, 0.012, 0.07, 0.006, 12.5, -3.0, 28.0, "uplift +4.1 points [1.2, 7.0]"),
            (earlier, "All segments", 900, 0.01, None, None, None, None, None, None, "too few customers"),
        ],
        columns=LIFT_COLUMNS,
    )
    decision = "retrain recommended: PSI of recency_days 0.31 >= 0.25 since the model's snapshot 2011-11-10"
    data = weak_data()
    data = ReportData(**{**data.__dict__, "monitoring": Monitoring(drift, decision, lift, DriftThresholds())})
    figures = {"drift_over_time": ("drift_over_time.png", b"png"), "lift": ("lift.png", b"png")}
    page = parse(render(data, None, figures, {1: "#E69F00"}, dt.datetime(2026, 12, 7, tzinfo=dt.UTC)))
    assert decision in "".join(page.classed["verdict moderate"])
    assert page.tables["drift"] == [
        ["feature", "PSI", "JS distance", "mean shift (sd)", "missing share change", "alert", "reason"],
        ["recency_days", "0.31", "", "1.2", "0", "act", "PSI 0.31 >= 0.25"],
        ["country", "", "0.05", "", "0", "ok", ""],
        ["segments: segment_id", "0.04", "0.03", "", "", "ok", ""],
    ]
    assert page.tables["lift"][1:] == [
        ["Champions", "300", "4.10 [1.20, 7.00]", "0.006", "12.5 [-3, 28]", "uplift +4.1 points [1.2, 7.0]"],
        ["All segments", "900", "1", "", "", "too few customers"],
    ]
    assert {image["data-file"] for image in page.images} >= {"drift_over_time.png", "lift.png"}


def test_weak_structure_page_says_so_and_prints_the_table_values():
    data = weak_data()
    html = render(data, None, {"segment_sizes": ("segment_sizes.png", b"\x89PNG-bytes")}, {1: "#E69F00"},
                  dt.datetime(2026, 11, 25, 4, 0, tzinfo=dt.UTC))
    page = parse(html)
    assert page.sections == [key for key, _ in SECTIONS]
    assert page.scripts == 0
    verdict = "".join(page.classed["verdict weak"])
    assert VERDICTS["weak"] in verdict and "value tiers" in verdict
    segments = page.tables["segments"]
    assert segments[0] == ["segment", "id", "customers", "share of customers", "share of revenue", "play", "priority"]
    assert segments[1:] == [
        ["Value tier 1 of 3", "1", "1,544", "35.6%", "84.5%", "upsell", "1"],
        ["Value tier 2 of 3", "2", "989", "22.8%", "5.7%", "nurture", "2"],
        ["Value tier 3 of 3", "3", "1,805", "41.6%", "9.7%", "deprioritise", "3"],
    ]
    assert [c for c in page.classed["kpi-value"]][:4] == ["4,338", "3", "0.321", "weak"]
    # Embedded, not linked; the file name is given beside it; escaped text stays text.
    assert page.images == [
        {"src": "data:image/png;base64,iVBORy1ieXRlcw==", "alt": "Share of customers and of revenue per segment",
         "data-file": "segment_sizes.png"}
    ]
    assert "invoice_id=<b>1</b>" in "".join(page.text) and "<b>1</b>" not in html
    assert "the model reads an attribute table" in "".join(page.text)
    assert [r[:2] for r in page.tables["rejects"][1:]] == [["missing_customer_id", "2"], ["duplicate", "1"]]


def test_migration_matrix_orders_segments_and_adds_new_customers_last():
    data = weak_data()
    moves = pd.DataFrame(
        {"from_segment": [2, 1, -1, 1], "to_segment": [2, 1, 3, 2], "customers": [5, 7, 4, 1]}
    )
    labels = {1: "A (1)", 2: "B (2)", 3: "C (3)"}
    data = ReportData(**{**data.__dict__, "migration": moves, "previous_as_of": dt.date(2011, 11, 1)})
    matrix = migration_matrix(data, labels)
    expected = pd.DataFrame(
        [[7, 1, 0], [0, 5, 0], [0, 0, 4]],
        index=["A (1)", "B (2)", "new customers"],
        columns=["A (1)", "B (2)", "C (3)"],
    )
    pd.testing.assert_frame_equal(matrix, expected, check_dtype=False)


def test_top_effects_keep_each_segments_largest_effects_in_rank_order():
    data = weak_data()
    profiles = pd.DataFrame(
        {
            "segment_id": [1, 1, 1, 2],
            "feature": ["monetary", "frequency", "recency_days", "monetary"],
            "mean": [1.0, 2.0, 3.0, 4.0],
            "median": [1.0, 2.0, 3.0, 4.0],
            "population_mean": [1.0, 1.0, 1.0, 1.0],
            "effect_size": [1.2, -0.3, None, 0.1],
            "effect_rank": [1, 2, None, 1],
        }
    )
    data = ReportData(**{**data.__dict__, "feature_profiles": profiles})
    assert top_effects(data, top=5) == {1: [("monetary", 1.2), ("frequency", -0.3)], 2: [("monetary", 0.1)], 3: []}


# ---------------------------------------------------------------------------------------------------------
# The stage on the profiled planted lakehouse


@pytest.fixture(scope="module")
def reported(spark, profiled, tmp_path_factory):
    config, _ = profiled
    lake = tmp_path_factory.mktemp("reported") / "lake"
    shutil.copytree(local_path(config.lakehouse), lake)
    # By run id: the profile run's snapshot, filed under that run (the default, the latest snapshot, is what
    # segspark run reports: tests/test_profile.py).
    config = retail_config(lake, model=FAST_MODEL, report={"run_id": "profile-1"})
    return config, run_report(spark, config, "report-1")


def test_report_stage_writes_every_section_and_figure_with_the_tables_numbers(spark, planted, reported):
    config, result = reported
    trained = planted["result"]
    folder = local_path(config.lakehouse) / "reports" / result.run_id
    assert result.run_id == "profile-1"
    assert result.path == f"{config.lakehouse}/reports/profile-1/index.html"
    assert result.as_of_date == trained.as_of_date
    page = parse((folder / "index.html").read_text(encoding="utf-8"))
    assert page.sections == [key for key, _ in SECTIONS] and page.scripts == 0
    expected_figures = {
        "segment_sizes", "k_silhouette", "k_wssse", "k_stability", "silhouette", "pca", "profile_heatmap",
        "top_features", "distributions", "correlation", "rfm_grid", "algorithms", "rejects",
    }  # fmt: skip
    assert {f.removesuffix(".png") for f in result.figures} == expected_figures
    for name in result.figures:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(img["data-file"] for img in page.images) == sorted(result.figures)
    assert all(img["src"].startswith("data:image/png;base64,") and img["alt"] for img in page.images)
    assert not list(folder.glob(".*.tmp"))

    # The numbers printed are the tables' numbers.
    segments = publication.read_published(spark, config, "customer_segments").filter(
        F.col("as_of_date") == trained.as_of_date
    )
    sizes = {r["segment_id"]: r["n"] for r in segments.groupBy("segment_id").agg(F.count("*").alias("n")).collect()}
    names = {
        r["segment_id"]: r["segment_name"]
        for r in publication.read_published(spark, config, "segment_profiles").collect()
    }
    printed = {int(row[1]): (row[0], int(row[2].replace(",", ""))) for row in page.tables["segments"][1:]}
    assert printed == {sid: (names[sid], n) for sid, n in sizes.items()}
    chosen = (
        publication.read_published(spark, config, "model_selection").filter("is_chosen").first()
    )
    kpis = page.classed["kpi-value"]
    assert kpis[:4] == [f"{trained.customers:,}", str(chosen["k"]), f"{chosen['silhouette_euclidean']:.3f}",
                        chosen["structure"]]
    # 333 customers, all in the silhouette sample of train and of the report, and the k-means model is the
    # sweep's own fit: the report's silhouette of the chosen model is the sweep's.
    assert page.classed["sample-silhouette"] == [f"{chosen['silhouette_euclidean']:.3f}"]
    selection_rows = page.tables["selection"][1:]
    assert len(selection_rows) == publication.read_published(spark, config, "model_selection").count()
    assert [r for r in selection_rows if "chosen" in r[-1]][0][1] == str(chosen["k"])
    assert len(page.tables["algorithms"]) == 1 + 5


def test_report_of_an_unknown_run_exits_2_naming_it_and_the_runs_that_exist(spark, reported):
    config, _ = reported
    unknown = config.model_copy(update={"report": config.report.model_copy(update={"run_id": "no-such-run"})})
    with pytest.raises(ConfigError, match=r"run 'no-such-run' wrote no published segments snapshot in .*; the "
                       r"latest runs that did: .*profile-1") as caught:
        run_report(spark, unknown, "report-2")
    assert caught.value.exit_code == 2

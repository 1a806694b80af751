"""Benchmark segspark against what a user would otherwise write, side by side in one run; asserts nothing.

    .venv/bin/python scripts/benchmark.py                     # 5M lines
    .venv/bin/python scripts/benchmark.py --sizes 1M,5M,20M   # the three sizes of docs/performance.md
    .venv/bin/python scripts/benchmark.py --train-customers 10M --driver-memory 2g

Per size: generates seeded transactions as Parquet (reused on later runs), then times, on the same data
and the same idle machine:

1. **DuckDB + scikit-learn**: one DuckDB query for RFM, then scikit-learn KMeans (n_init=1) and a
   silhouette on 20,000 sampled customers per K.
2. **Plain PySpark**: one aggregation for RFM, then an MLlib KMeans (defaults) + ClusteringEvaluator loop
   over K on all customers.
3. **Plain PySpark ETL**: what segspark's ingest and features replace, written without segspark on a
   lakehouse of its own. "ETL ingest": read, flag rejects with one ``when`` chain (missing customer id,
   unparseable timestamp in the layout's formats, bad quantity, bad price), ``dropDuplicates`` on the valid
   lines, then the clean and the rejected lines written as Delta (two overwrites, each reading the source).
   "ETL features": one ``groupBy`` per customer on the clean Delta table (recency, distinct invoices, spend,
   tenure, average basket), written as Delta. No train.
4. **segspark**: ingest, features, train, score (the training snapshot, with the model just saved), profile and
   report with the default configuration (a fresh lakehouse).

1, 2 and 4 use K 2..10 and the same four features (3 has no model). It prints seconds, lines or customers
per second and peak memory (the Python process plus the Spark JVM) per stage, then the ratios: segspark /
baseline for features (ingest + features), train and whole (ingest..train) against 1 and 2; segspark ingest +
features / ETL ingest + features; segspark's ingest lines per second; segspark whole / DuckDB + scikit-learn
whole; segspark's profile and report each / its features; and an incremental run (1% new lines added as new
files: ingest, features for the new snapshot, score) / the full run's ingest + features + score. Rows are
appended to ``--csv``.

``--train-customers N`` instead writes a customer_features table of N generated customers directly (Spark,
no transactions) and times the train stage alone, in a driver of ``--driver-memory``.

Needs the ``bench`` extra (``pip install -e .[bench]``: duckdb, psutil).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

K_VALUES = list(range(2, 11))
SEED = 42


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


class PeakMemory:
    """Peak resident memory of this process and its children (the Spark JVM), sampled every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for p in [self._process, *self._process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._peak = max(self._peak, self._rss())

    def __enter__(self) -> PeakMemory:
        self._peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self._peak / 2**20


@dataclass
class Timing:
    tool: str
    stage: str
    seconds: float
    units: int
    unit: str
    peak_mib: float
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        rate = f"{self.units / self.seconds:>12,.0f} {self.unit}/s" if self.units else " " * 22
        return f"  {self.tool:<22} {self.stage:<24} {self.seconds:>8.1f} s {rate}  peak {self.peak_mib:>7,.0f} MiB"


def timed(tool: str, stage: str, units: int, unit: str, fn, *, show: bool = True):
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
    timing = Timing(tool, stage, seconds, units, unit, memory.mib)
    if show:
        print(timing.line(), flush=True)
    return timing, result


# ---------------------------------------------------------------------------------------------------------
# Baseline 1: DuckDB + scikit-learn


RFM_SQL = """
WITH lines AS (
    SELECT CustomerID AS customer_id, InvoiceNo AS invoice,
           CAST(Quantity AS INTEGER) * CAST(UnitPrice AS DOUBLE) AS amount,
           CAST(InvoiceDate AS TIMESTAMP) AS ts
    FROM read_parquet('{glob}')
    WHERE CustomerID IS NOT NULL AND CustomerID <> '' AND NOT starts_with(InvoiceNo, 'C')
      AND CAST(Quantity AS INTEGER) > 0 AND CAST(UnitPrice AS DOUBLE) > 0
)
SELECT customer_id,
       date_diff('day', max(ts)::DATE, (SELECT max(ts)::DATE + 1 FROM lines)) AS recency_days,
       count(DISTINCT invoice) AS frequency,
       sum(amount) AS monetary,
       date_diff('day', min(ts)::DATE, (SELECT max(ts)::DATE + 1 FROM lines)) AS tenure_days
FROM lines GROUP BY customer_id ORDER BY customer_id
"""


def duckdb_features(data: Path):
    import duckdb

    return duckdb.sql(RFM_SQL.format(glob=str(data / "*.parquet"))).df()


def sklearn_sweep(features) -> int:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = np.log1p(features[["recency_days", "frequency", "monetary", "tenure_days"]].to_numpy(dtype=float))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    best = (-2.0, 0)
    for k in K_VALUES:
        labels = KMeans(n_clusters=k, n_init=1, random_state=SEED).fit_predict(x)
        score = silhouette_score(x, labels, sample_size=min(20_000, len(x)), random_state=SEED)
        best = max(best, (score, k))
    KMeans(n_clusters=best[1], n_init=1, random_state=SEED).fit(x)  # the final fit
    return best[1]


# ---------------------------------------------------------------------------------------------------------
# Baseline 2: plain PySpark


def pyspark_features(spark, data: Path):
    from pyspark.sql import functions as F

    lines = (
        spark.read.parquet(str(data))
        .select(
            F.col("CustomerID").alias("customer_id"),
            F.col("InvoiceNo").alias("invoice"),
            (F.col("Quantity").cast("int") * F.col("UnitPrice").cast("double")).alias("amount"),
            F.to_timestamp("InvoiceDate").alias("ts"),
        )
        .filter("customer_id IS NOT NULL AND customer_id <> '' AND NOT startswith(invoice, 'C') AND amount > 0")
    )
    snapshot = lines.agg(F.date_add(F.to_date(F.max("ts")), 1)).first()[0]
    features = (
        lines.groupBy("customer_id")
        .agg(
            F.datediff(F.lit(snapshot), F.to_date(F.max("ts"))).alias("recency_days"),
            F.countDistinct("invoice").alias("frequency"),
            F.sum("amount").alias("monetary"),
            F.datediff(F.lit(snapshot), F.to_date(F.min("ts"))).alias("tenure_days"),
        )
        .cache()
    )
    return features, features.count()


def pyspark_sweep(features) -> int:
    from pyspark.ml import Pipeline
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.feature import StandardScaler, VectorAssembler
    from pyspark.sql import functions as F

    columns = ["recency_days", "frequency", "monetary", "tenure_days"]
    logged = features.select(*[F.log1p(F.col(c)).alias(c) for c in columns])
    prep = Pipeline(
        stages=[
            VectorAssembler(inputCols=columns, outputCol="raw"),
            StandardScaler(inputCol="raw", outputCol="features"),
        ]
    ).fit(logged)
    vectors = prep.transform(logged).select("features").cache()
    evaluator = ClusteringEvaluator()
    best = (-2.0, 0)
    for k in K_VALUES:
        model = KMeans(k=k, seed=SEED).fit(vectors)
        best = max(best, (evaluator.evaluate(model.transform(vectors)), k))
    vectors.unpersist()
    features.unpersist()
    return best[1]


# ---------------------------------------------------------------------------------------------------------
# Baseline 3: plain PySpark ETL (segspark's ingest and features without segspark: no reconciliation, no
# reject per duplicate, no stage log, four features)


def etl_ingest(spark, data: Path, lakehouse: Path, timestamp_formats: list[str]) -> None:
    """Source lines to a clean and a rejected Delta table; the source is read and parsed once per write."""
    from pyspark.sql import functions as F

    raw_df = spark.read.parquet(str(data))
    ts_text = F.trim("InvoiceDate")
    # The parsed values in one struct beside the source text (kept for the rejected lines): Spark resolves
    # names case-insensitively, so a top-level "quantity" would clash with "Quantity".
    parsed = F.struct(
        F.regexp_replace(F.trim("CustomerID"), r"\.0+$", "").alias("customer_id"),  # 17850.0 -> 17850
        F.trim("InvoiceNo").alias("invoice_id"),
        F.coalesce(*[F.try_to_timestamp(ts_text, F.lit(f)) for f in timestamp_formats]).alias("invoice_ts"),
        F.trim("StockCode").alias("product_id"),
        F.col("Description").alias("description"),
        F.trim("Quantity").try_cast("int").alias("quantity"),  # Spark 4 is ANSI: a plain cast fails the job
        F.trim("UnitPrice").try_cast("decimal(18,4)").alias("unit_price"),
        F.trim("Country").alias("country"),
    )
    parsed_df = raw_df.select(*raw_df.columns, parsed.alias("parsed"))
    customer_id, quantity, price = F.col("parsed.customer_id"), F.col("parsed.quantity"), F.col("parsed.unit_price")
    reason = (
        F.when(customer_id.isNull() | (customer_id == ""), "missing_customer_id")
        .when(F.col("parsed.invoice_ts").isNull(), "invalid_timestamp")
        .when(quantity.isNull() | (quantity == 0), "invalid_quantity")
        .when(price.isNull() | (price <= 0), "invalid_price")
    )
    flagged_df = parsed_df.withColumn("reject_reason", reason)
    clean_df = (
        flagged_df.where(F.col("reject_reason").isNull())
        .select("parsed.*")
        .withColumns(
            {
                "invoice_date": F.to_date("invoice_ts"),
                "line_amount": F.col("quantity") * F.col("unit_price"),
                "is_return": F.col("invoice_id").startswith("C") | (F.col("quantity") < 0),
            }
        )
        .dropDuplicates()
    )
    rejected_df = flagged_df.where(F.col("reject_reason").isNotNull()).select(*raw_df.columns, "reject_reason")
    clean_df.write.format("delta").mode("overwrite").save(str(lakehouse / "transactions_clean"))
    rejected_df.write.format("delta").mode("overwrite").save(str(lakehouse / "transactions_rejected"))


def etl_features(spark, lakehouse: Path) -> None:
    """One row per customer with a purchase (recency, frequency, monetary, tenure, average basket) as Delta."""
    from pyspark.sql import functions as F

    clean_df = spark.read.format("delta").load(str(lakehouse / "transactions_clean"))
    as_of = clean_df.agg(F.date_add(F.max("invoice_date"), 1)).first()[0]  # one row: the snapshot date
    features_df = (
        clean_df.where(~F.col("is_return"))
        .groupBy("customer_id")
        .agg(
            F.datediff(F.lit(as_of), F.max("invoice_date")).alias("recency_days"),
            F.countDistinct("invoice_id").alias("frequency"),
            F.sum("line_amount").alias("monetary"),
            F.datediff(F.lit(as_of), F.min("invoice_date")).alias("tenure_days"),
        )
        .select(
            "customer_id",
            F.lit(as_of).alias("as_of_date"),
            "recency_days",
            "frequency",
            "monetary",
            "tenure_days",
            (F.col("monetary") / F.col("frequency")).cast("double").alias("avg_basket_value"),
        )
    )
    features_df.write.format("delta").mode("overwrite").save(str(lakehouse / "customer_features"))


def run_etl(spark, lakehouse: Path, data: Path, lines: int, timestamp_formats: list[str]) -> list[Timing]:
    """Time the two ETL stages on a fresh lakehouse; the row counts are read after each stage, untimed."""

    def rows(table: str) -> int:
        return spark.read.format("delta").load(str(lakehouse / table)).count()

    shutil.rmtree(lakehouse, ignore_errors=True)
    tool = "plain PySpark ETL"
    ingest, _ = timed(
        tool, "ETL ingest", lines, "lines", lambda: etl_ingest(spark, data, lakehouse, timestamp_formats), show=False
    )
    ingest.extra = {"clean": rows("transactions_clean"), "rejected": rows("transactions_rejected")}
    print(ingest.line(), flush=True)
    features, _ = timed(tool, "ETL features", 0, "customers", lambda: etl_features(spark, lakehouse), show=False)
    features.units = rows("customer_features")
    print(features.line(), flush=True)
    return [ingest, features]


# ---------------------------------------------------------------------------------------------------------
# segspark


def segspark_config(work: Path, data: Path, overrides: list[str]):
    from segspark.config.settings import load_config

    return load_config(
        [ROOT / "conf" / "layouts" / "online_retail.yaml"],
        ["source.format=parquet", *overrides],
        env="local",
        flags={"lakehouse": str(work / "lakehouse"), "source": {"path": str(data)}},
    )


def run_segspark(spark, config, lines: int) -> list[Timing]:
    from pyspark.sql import functions as F

    from segspark.pipeline import STAGES
    from segspark.platform import lakehouse
    from segspark.platform.stage_log import new_run_id

    shutil.rmtree(config.lakehouse_local_path, ignore_errors=True)
    timings = []
    customers = 0
    for stage in ("ingest", "features", "train", "score", "profile", "report"):
        run_id = new_run_id()
        units, unit = (lines, "lines") if stage == "ingest" else (customers, "customers")
        timing, _ = timed(
            "segspark", stage, units, unit, lambda s=stage, r=run_id: STAGES[s](spark, config, r), show=False
        )
        if stage == "features":
            customers = lakehouse.read_table(spark, config.table_path("customer_features")).count()
            timing.units, timing.unit = customers, "customers"
        if stage == "train":
            chosen = (
                lakehouse.read_table(spark, config.table_path("model_selection"))
                .filter((F.col("run_id") == run_id) & F.col("is_chosen"))
                .first()  # one row
            )
            timing.units, timing.extra = customers, {"k": chosen["k"], "verdict": chosen["structure"]}
        print(timing.line(), flush=True)
        timings.append(timing)
    return timings


# ---------------------------------------------------------------------------------------------------------


def generate(work: Path, lines: int) -> Path:
    from segspark.synthetic import generate as write

    data = work / f"transactions_{lines}"
    if not (data / "_SUCCESS").exists():
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        write(data, lines, seed=SEED, fmt="parquet")
        (data / "_SUCCESS").touch()
        print(f"generated {lines:,} lines in {time.perf_counter() - started:.1f} s -> {data}", flush=True)
    return data


def generate_increment(work: Path, lines: int) -> Path:
    """1% more lines, in the 30 days after the generated period (another seed: other lines)."""
    from segspark.synthetic import generate as write

    data = work / f"increment_{lines}"
    if not (data / "_SUCCESS").exists():
        shutil.rmtree(data, ignore_errors=True)
        write(data, max(lines // 100, 1_000), seed=SEED + 1, fmt="parquet", start="2011-12-10", days=90)
        for i, part in enumerate(sorted(data.glob("*.parquet"))):
            part.rename(data / f"increment-{i:05d}.parquet")
        (data / "_SUCCESS").touch()
    return data


def linked_source(folder: Path, datasets: list[Path]) -> Path:
    """A fresh source folder holding hard links to the datasets' part files (no copy of the data)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for data in datasets:
        for part in sorted(data.glob("*.parquet")):
            os.link(part, folder / part.name)
    return folder


def run_incremental(spark, config, source: Path, increment: Path) -> list[Timing]:
    """A weekly run on the lakehouse just built: the increment's files are added to the source, then ingest
    (only the new files), features for the new default snapshot and score with the saved model, timed."""
    from segspark.pipeline import STAGES
    from segspark.platform.stage_log import new_run_id

    for part in sorted(increment.glob("*.parquet")):
        os.link(part, source / part.name)
    new_lines = spark.read.parquet(str(increment)).count()
    timings = []
    for stage in ("ingest", "features", "score"):
        run_id = new_run_id()
        timing, _ = timed(
            "segspark incremental",
            stage,
            new_lines,
            "new lines",
            lambda s=stage, r=run_id: STAGES[s](spark, config, r),
            show=False,
        )
        print(timing.line(), flush=True)
        timings.append(timing)
    return timings


def ratio_lines(timings: list[Timing]) -> list[str]:
    by = {(t.tool, t.stage): t.seconds for t in timings}
    seg = {
        "features": by[("segspark", "ingest")] + by[("segspark", "features")],
        "train": by[("segspark", "train")],
    }
    seg["whole"] = seg["features"] + seg["train"]
    out = []
    for tool, feat, sweep in (
        ("DuckDB + scikit-learn", "duckdb RFM", "sklearn K sweep"),
        ("plain PySpark", "pyspark RFM", "MLlib K sweep"),
    ):
        base = {"features": by[(tool, feat)], "train": by[(tool, sweep)]}
        base["whole"] = base["features"] + base["train"]
        out.append(
            f"  segspark / {tool:<22} features {seg['features'] / base['features']:6.2f}x (ingest + features), "
            f"train {seg['train'] / base['train']:6.2f}x, whole {seg['whole'] / base['whole']:6.2f}x"
        )
    out.append(
        f"  segspark features alone / plain PySpark RFM: "
        f"{by[('segspark', 'features')] / by[('plain PySpark', 'pyspark RFM')]:.2f}x"
    )
    etl = by[("plain PySpark ETL", "ETL ingest")] + by[("plain PySpark ETL", "ETL features")]
    out.append(
        f"  segspark ingest + features / plain PySpark ETL ingest + features: {seg['features'] / etl:.2f}x "
        f"({seg['features']:.1f} s against {etl:.1f} s)"
    )
    ingest = next(t for t in timings if (t.tool, t.stage) == ("segspark", "ingest"))
    out.append(f"  segspark ingest: {ingest.units / ingest.seconds:,.0f} lines/s")
    duckdb_whole = by[("DuckDB + scikit-learn", "duckdb RFM")] + by[("DuckDB + scikit-learn", "sklearn K sweep")]
    out.append(f"  segspark whole (ingest..train) / DuckDB + scikit-learn whole: {seg['whole'] / duckdb_whole:.2f}x")
    features = by[("segspark", "features")]
    out.append(
        f"  segspark profile / features: {by[('segspark', 'profile')] / features:.2f}x, "
        f"report / features: {by[('segspark', 'report')] / features:.2f}x"
    )
    incremental = sum(t.seconds for t in timings if t.tool == "segspark incremental")
    full = by[("segspark", "ingest")] + by[("segspark", "features")] + by[("segspark", "score")]
    out.append(
        f"  segspark incremental (1% new lines: ingest + features + score) / the full run's ingest + features + "
        f"score: {incremental / full:.2f}x ({incremental:.1f} s against {full:.1f} s)"
    )
    return out


def bench_size(spark, work: Path, lines: int, overrides: list[str]) -> list[Timing]:
    data = generate(work, lines)
    print(f"\n== {lines:,} lines ({data})", flush=True)
    timings = []
    t, features = timed("DuckDB + scikit-learn", "duckdb RFM", lines, "lines", lambda: duckdb_features(data))
    timings.append(t)
    t, k = timed(
        "DuckDB + scikit-learn", "sklearn K sweep", len(features), "customers", lambda: sklearn_sweep(features)
    )
    t.extra = {"k": k}
    timings.append(t)
    t, (pyspark_df, customers) = timed(
        "plain PySpark", "pyspark RFM", lines, "lines", lambda: pyspark_features(spark, data)
    )
    timings.append(t)
    t, k = timed("plain PySpark", "MLlib K sweep", customers, "customers", lambda: pyspark_sweep(pyspark_df))
    t.extra = {"k": k}
    timings.append(t)
    source = linked_source(work / f"seg_{lines}" / "source", [data])
    config = segspark_config(work / f"seg_{lines}", source, overrides)
    # The layout's timestamp formats, so that both read the same lines as valid.
    timings += run_etl(spark, work / f"etl_{lines}" / "lakehouse", data, lines, config.source.timestamp_formats)
    timings += run_segspark(spark, config, lines)
    timings += run_incremental(spark, config, source, generate_increment(work, lines))
    for line in ratio_lines(timings):
        print(line)
    return timings


def bench_train_only(spark, work: Path, customers: int, overrides: list[str]) -> list[Timing]:
    """The train stage alone on ``customers`` generated customers (attribute-only mode on a Parquet table
    written by Spark: nothing is built on the driver)."""
    from pyspark.sql import functions as F

    from segspark.stages.train.stage import run_train

    table = work / f"customers_{customers}"
    if not (table / "_SUCCESS").exists():
        group, u, z = F.col("id") % 4, F.rand(SEED + 1), F.randn(SEED)
        frequency = (F.lit(1) + group * 3 + F.floor(u * 3)).cast("long")
        monetary = F.exp(F.lit(4.0) + group * 0.8 + z * 0.3)
        recency = (F.lit(10) + group * 60 + F.floor(u * 30)).cast("int")
        spark.range(customers).select(
            F.format_string("C%09d", "id").alias("customer_id"),
            F.lit(dt.date(2011, 12, 10)).alias("as_of_date"),
            recency.alias("recency_days"),
            frequency.alias("frequency"),
            monetary.alias("monetary"),
            (monetary / frequency).alias("avg_basket_value"),
            (recency + group * 40 + 5).alias("tenure_days"),
        ).write.mode("overwrite").parquet(str(table))
    config = segspark_config(
        work / f"train_{customers}",
        work,
        ["model.input=attributes", "model.attributes.format=parquet", f"model.attributes.path={table}", *overrides],
    )
    shutil.rmtree(config.lakehouse_local_path, ignore_errors=True)
    print(f"\n== train on {customers:,} generated customers ({table})", flush=True)
    t, result = timed("segspark", "train", customers, "customers", lambda: run_train(spark, config, "bench-train"))
    t.extra = {"k": result.chosen.k, "verdict": result.chosen.structure}
    return [t]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5M", help="transaction lines per size, e.g. 1M,5M,20M")
    parser.add_argument("--train-customers", default=None, help="time train alone on N generated customers")
    parser.add_argument("--work", default="/tmp/segspark-bench", help="folder for data and lakehouses")
    parser.add_argument("--csv", default=str(ROOT / "docs" / "benchmark.csv"), help="append result rows here")
    parser.add_argument("--driver-memory", default=None, help="spark.driver.memory, e.g. 2g")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import pyspark

    from segspark.cli import configure_logging
    from segspark.platform.session import build_spark_session

    configure_logging()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = segspark_config(work, work, args.overrides)
    if args.driver_memory:
        config.spark.conf["spark.driver.memory"] = args.driver_memory
    spark = build_spark_session(config.spark)
    spark.range(1000).selectExpr("id % 7 AS g").groupBy("g").count().collect()  # JVM warm-up
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"Spark {pyspark.__version__} {spark.sparkContext.master}; {machine}", flush=True)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    timings: list[tuple[str, Timing]] = []
    try:
        if args.train_customers:
            n = parse_size(args.train_customers)
            timings += [(f"{n}c", t) for t in bench_train_only(spark, work, n, args.overrides)]
        else:
            for size in args.sizes.split(","):
                lines = parse_size(size)
                timings += [(str(lines), t) for t in bench_size(spark, work, lines, args.overrides)]
    finally:
        spark.stop()
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["started", "size", "tool", "stage", "seconds", "units", "unit", "peak_mib", "extra"])
        for size, t in timings:
            writer.writerow(
                [started, size, t.tool, t.stage, f"{t.seconds:.2f}", t.units, t.unit, f"{t.peak_mib:.0f}", t.extra]
            )
    print(f"\nrows appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark ingest, features and train on generated data; prints figures, asserts nothing.

    .venv/bin/python scripts/benchmark.py --rows 5000000 --work /tmp/segspark-bench

Generates the transactions once (seeded; reused on later runs), then times the stages in Spark local
mode and prints rows per second, the cost of each K of the sweep, and how many times the features plan
scans the transactions (from the executed plan).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    path = ROOT / "scripts" / "generate_transactions.py"
    spec = importlib.util.spec_from_file_location("generate_transactions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_scans(plan: str, table_folder: str) -> int:
    """FileScan nodes in an executed plan that read ``table_folder``."""
    return sum(1 for line in plan.splitlines() if "FileScan" in line and table_folder in line)


def print_sweep_costs(spark, config, run_id: str) -> None:
    """Seconds per candidate of one train run, from its model_selection rows (one per algorithm and K)."""
    from pyspark.sql import functions as F

    from segspark import lakehouse

    rows = (
        lakehouse.read_table(spark, config.table_path("model_selection"))
        .filter(F.col("run_id") == run_id)
        .orderBy("algorithm", "k")
        .collect()  # one row per candidate
    )
    m = config.model
    fits = m.restarts * (2 + m.stability_runs)
    for r in rows:
        print(
            f"  {r['algorithm']} K={r['k']}: {r['seconds']:.1f} s for the candidate ({fits} fits, "
            f"{r['customers_evaluated']:,} customers), kept fit's {m.restarts} restarts {r['fit_seconds']:.1f} s"
            f"{' <- chosen' if r['is_chosen'] else ''}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--work", default="/tmp/segspark-bench", help="folder for data and lakehouse")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--stages", default="ingest,features,train")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from segspark import features, lakehouse
    from segspark.cli import configure_logging
    from segspark.config import load_config
    from segspark.pipeline import STAGES
    from segspark.runs import new_run_id
    from segspark.session import build_spark_session

    configure_logging()
    work = Path(args.work)
    data = work / f"transactions_{args.rows}_{args.format}"
    if not (data / "_SUCCESS").exists():
        t0 = time.perf_counter()
        _generator().generate(data, args.rows, seed=42, fmt=args.format)
        (data / "_SUCCESS").touch()
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s -> {data}")
    config = load_config(
        [ROOT / "conf" / "layouts" / "online_retail.yaml"],
        [f"source.format={args.format}", *args.overrides],
        env="local",
        flags={"lakehouse": str(work / "lakehouse"), "source": {"path": str(data)}},
    )
    spark = build_spark_session(config.spark)
    print(f"Spark {spark.version}, master {spark.sparkContext.master}, "
          f"shuffle partitions {spark.conf.get('spark.sql.shuffle.partitions')}")
    try:
        for stage in args.stages.split(","):
            t0 = time.perf_counter()
            run_id = new_run_id()
            STAGES[stage](spark, config, run_id)
            seconds = time.perf_counter() - t0
            print(f"{stage}: {seconds:.1f} s, {args.rows / seconds:,.0f} source rows/s")
            if stage == "train":
                print_sweep_costs(spark, config, run_id)
        clean_path = config.table_path("transactions_clean")
        clean_df = lakehouse.read_table(spark, clean_path)
        clean_rows = clean_df.count()
        as_of = features.default_as_of_date(clean_df)
        plan_df = features.build_customer_features(clean_df, [as_of], config.features)
        plan = plan_df._jdf.queryExecution().executedPlan().toString()
        scans = count_scans(plan, Path(clean_path).name)
        exchanges = len(re.findall(r"Exchange (hashpartitioning|SinglePartition|rangepartitioning)", plan))
        print(f"features plan: {scans} scan(s) of transactions_clean ({clean_rows:,} clean rows), "
              f"{exchanges} shuffle exchange(s)")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

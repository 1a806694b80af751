"""Spark Connect against a real local Connect server: what a Connect client can do with segspark's tables today.

segspark itself refuses a Connect session (docs/deployment.md, "Spark Connect"); these checks pin the two facts that
statement rests on, so that a change in either shows up here:

- DataFrame reads and SQL on the Delta tables work over Connect, and see what a classic session sees;
- Delta's Python ``DeltaTable`` API does not: the server has no Delta Connect plugin to handle it.

The client runs in its own process: a Connect session switches PySpark's functions into Connect mode for the
whole process, which the test session's classic SparkSession must not see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from segspark.platform import lakehouse
from segspark.platform.session import cached_delta_jars
from tests.helpers.config import ROOT
from tests.helpers.servers import connect_server

pytestmark = pytest.mark.slow

TABLES = ("customer_segments", "segment_profiles", "campaign_audiences")

CLIENT = """
import json, sys
from pyspark.sql import SparkSession
from delta.tables import DeltaTable

url, lake, tables = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
spark = SparkSession.builder.remote(url).getOrCreate()
out = {"tables": {}}
for table in tables:
    path = f"{lake}/{table}"
    df = spark.read.format("delta").load(path)
    by_sql = spark.sql(f"select count(*) from delta.`{path}`").first()[0]
    out["tables"][table] = {"columns": df.columns, "rows": df.count(), "rows_sql": by_sql}
out["history"] = spark.sql(f"DESCRIBE HISTORY delta.`{lake}/customer_segments` LIMIT 1").first()["version"]
try:
    DeltaTable.forPath(spark, f"{lake}/customer_segments").history(1).collect()
    out["delta_table_api"] = "works"
except Exception as exc:
    out["delta_table_api"] = str(exc).splitlines()[0]
spark.stop()
print("RESULT " + json.dumps(out))
"""


def test_a_connect_client_reads_the_tables_but_not_through_the_delta_table_api(spark, profiled, tmp_path):
    config, _ = profiled
    jars = cached_delta_jars(os.path.expanduser("~/.cache/segspark/ivy"))
    assert jars, "the Delta jars are cached by the session fixture's first start"
    lake = config.lakehouse
    with connect_server(tmp_path / "connect", jars) as url:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SPARK_REMOTE"}}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, url, lake, ",".join(TABLES)], env=env, capture_output=True, text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        # segspark refuses the same server before starting anything.
        refused = subprocess.run(
            [sys.executable, "-m", "segspark.cli", "profile", "--lakehouse", str(tmp_path / "lake")],
            env=dict(env, SPARK_REMOTE=url), capture_output=True, text=True, timeout=120,
        )
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    for table in TABLES:
        classic = lakehouse.read_table(spark, config.table_path(table))
        seen = result["tables"][table]
        assert seen["columns"] == classic.columns, table
        assert seen["rows"] == seen["rows_sql"] == classic.count(), table
    assert result["history"] == lakehouse.current_version(spark, config.table_path("customer_segments"))
    assert "No handler found for extension" in result["delta_table_api"], result["delta_table_api"]
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"SPARK_REMOTE={url} asks for a Spark Connect session" in refused.stderr

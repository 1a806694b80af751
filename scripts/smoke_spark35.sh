#!/usr/bin/env bash
# End-to-end smoke run on the Spark 3.5 + Delta 3.3 line, in its own virtual environment: ingest, features,
# train, profile, report and maintain on a small generated input, then check the tables and the printed segments. CI runs it after the
# main suite (Spark 4.1 + Delta 4.3); the same segspark code serves both lines (docs/deployment.md, "Spark versions").
#   SEGSPARK_VENV35=/path/to/venv scripts/smoke_spark35.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SEGSPARK_VENV35:-$root/.venv-spark35}"
python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "smoke 3.5: creating $venv"
  "$python_bin" -m venv "$venv"
fi
stamp="$venv/.segspark-installed"
want="$(cat scripts/requirements-spark35.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "smoke 3.5: installing the Spark 3.5 + Delta 3.3 pair into $venv (log: $venv/install.log)"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -r scripts/requirements-spark35.txt &&
         "$venv/bin/python" -m pip install --no-deps -e .; } > "$venv/install.log" 2>&1; then
    tail -n 40 "$venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
py="$venv/bin/python"
"$py" -c 'import pyspark, delta; import importlib.metadata as m; print("smoke 3.5: pyspark", pyspark.__version__, "delta-spark", m.version("delta-spark"))'

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" scripts/generate_transactions.py --rows 3000 --out "$work/tx" --seed 5 > /dev/null
start=$(date +%s)
"$py" -m segspark.cli run --layout online_retail --input "$work/tx" --lakehouse "$work/lh" \
  --set model.k_max=3 --set model.restarts=1 --set model.stability_runs=0 | tee "$work/out.txt"
grep -q "Segments of model" "$work/out.txt"
for table in transactions_clean transactions_rejected customer_features customer_segments segment_centroids \
             model_selection pipeline_runs segment_profiles segment_top_products segment_cross_sell \
             campaign_audiences; do
  [ -d "$work/lh/$table/_delta_log" ] || { echo "smoke 3.5: table $table missing" >&2; exit 1; }
done
report="$(sed -n 's/^segspark: report file://p' "$work/out.txt")"
[ -s "$report" ] && grep -q 'id="data-quality"' "$report" || { echo "smoke 3.5: no report page ($report)" >&2; exit 1; }
# Delta 3.3's OPTIMIZE / Z-order / VACUUM, the change feed property and the file counts behind segspark maintain.
"$py" -m segspark.cli maintain --lakehouse "$work/lh" | tee "$work/maintain.txt"
grep -q "^customer_segments .* 1 in 1 snapshots$" "$work/maintain.txt" ||
  { echo "smoke 3.5: maintain did not leave one file per snapshot" >&2; exit 1; }
# The check's own Spark session prints log4j lines on stderr: kept in a file, shown only if the check fails.
if ! "$py" - "$work/lh" 2> "$work/check.err" <<'PY'
import sys
from segspark.config.settings import SparkSettings
from segspark.platform.session import build_spark_session
spark = build_spark_session(SparkSettings(master="local[1]", conf={"spark.ui.enabled": "false"}, log_level="ERROR"))
lh = sys.argv[1]
runs = spark.read.format("delta").load(f"{lh}/pipeline_runs")
statuses = sorted((r.stage, r.status) for r in runs.collect())
expected = [("features", "succeeded"), ("ingest", "succeeded"), ("maintain", "succeeded"), ("monitor", "succeeded"),
            ("profile", "succeeded"), ("report", "succeeded"), ("train", "succeeded")]
assert statuses == expected, statuses
clean = spark.read.format("delta").load(f"{lh}/transactions_clean").count()
rejected = spark.read.format("delta").load(f"{lh}/transactions_rejected").count()
assert clean + rejected == 3000, (clean, rejected)
cdf = spark.sql(f"SHOW TBLPROPERTIES delta.`{lh}/campaign_audiences` ('delta.enableChangeDataFeed')").first()
assert cdf is not None and cdf["value"] == "true", cdf
print(f"smoke 3.5: Spark {spark.version}: 3000 lines = {clean} clean + {rejected} rejected; stages {statuses}")
spark.stop()
PY
then
  cat "$work/check.err" >&2
  exit 1
fi
# An incremental ingest on the 3.5 line: one re-delivered file under a new name is the only file read, and adds
# no clean line (observed counts, the files' metadata column and the fingerprint lookup on Delta 3.3).
first="$(ls "$work/tx" | grep -v '^_' | sort | head -n 1)"
cp "$work/tx/$first" "$work/tx/resent-$first"
"$py" -m segspark.cli ingest --layout online_retail --input "$work/tx" --lakehouse "$work/lh" 2>&1 | tee "$work/ingest.txt"
grep -q "ingested 1 new file(s), .* lines (0 clean, .* rejected); 1 file(s) already ingested, skipped" "$work/ingest.txt" ||
  { echo "smoke 3.5: the incremental ingest did not read just the new file" >&2; exit 1; }
echo "smoke 3.5: passed in $(( $(date +%s) - start )) s"

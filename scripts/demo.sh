#!/usr/bin/env bash
# One command from a fresh clone: set up, generate demo transactions, run the whole pipeline in Spark local
# mode, and print the segments it found (size and centroid of each) and the decision record. Re-running
# reuses the environment and the generated data.
#   ROWS=1000000 scripts/demo.sh      # a bigger demo
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
py="${SEGSPARK_VENV:-$root/.venv}/bin/python"
rows="${ROWS:-200000}"
data="$root/demo_data/transactions_${rows}"
if [ ! -f "$data/_SUCCESS" ]; then
  rm -rf "$data"
  "$py" scripts/generate_transactions.py --rows "$rows" --out "$data" --seed 42
  touch "$data/_SUCCESS"
fi
lakehouse="${LAKEHOUSE:-$root/lakehouse}"
"$py" -m segspark.cli run --layout online_retail --input "$data" --lakehouse "$lakehouse"
tables=""
for table in "$lakehouse"/*/; do
  [ -d "$table/_delta_log" ] && tables="$tables $(basename "$table")"
done
echo "Delta tables in $lakehouse:$tables"
echo "Read them with Spark (spark.read.format('delta').load(PATH)) or the deltalake package."

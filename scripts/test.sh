#!/usr/bin/env bash
# One command from a fresh clone: set up and run the test suite (pytest + chispa, Spark local mode).
#
#   scripts/test.sh             the everyday suite: every test not marked slow (a few minutes)
#   scripts/test.sh --all       everything, including the slow end-to-end and real-data tests (CI runs these)
#   scripts/test.sh -k ingest   extra arguments go to pytest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
args=()
select=(-m "not slow")
for arg in "$@"; do
  case "$arg" in
    --all) select=() ;;
    -m | -m=* | --markers=*) select=(); args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done
exec "${SEGSPARK_VENV:-$root/.venv}/bin/python" -m pytest "${select[@]}" "${args[@]}"

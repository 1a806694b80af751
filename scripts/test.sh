#!/usr/bin/env bash
# One command from a fresh clone: set up and run the test suite (pytest + chispa, Spark local mode).
# Extra arguments go to pytest, e.g. scripts/test.sh -k ingest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
exec "${SEGSPARK_VENV:-$root/.venv}/bin/python" -m pytest "$@"

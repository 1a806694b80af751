#!/usr/bin/env bash
# Static checks, as CI runs them: ruff (style, imports, bugbear, numpydoc docstrings) and mypy (strict on the
# platform layer; see pyproject.toml). Sets up .venv first, like test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
py="${SEGSPARK_VENV:-$root/.venv}/bin/python"
"$py" -m ruff check .
"$py" -m mypy

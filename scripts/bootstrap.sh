#!/usr/bin/env bash
# Set up segspark on a fresh machine: check Java, create .venv with Python 3.11+, install segspark with its
# dev extras. Idempotent: reinstalls only when pyproject.toml changed. Used by demo.sh, test.sh and CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEGSPARK_VENV:-$root/.venv}"

java_bin=""
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java_bin="$JAVA_HOME/bin/java";
elif command -v java >/dev/null 2>&1; then java_bin="$(command -v java)"; fi
if [ -z "$java_bin" ]; then
  echo "segspark: Java 17 or newer is required and was not found: install a JDK (e.g. openjdk-17-jdk) and put java on PATH or set JAVA_HOME." >&2
  exit 1
fi
java_major="$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
if [ -n "$java_major" ] && [ "$java_major" -lt 17 ]; then
  echo "segspark: Java 17 or newer is required; $java_bin is Java $java_major." >&2
  exit 1
fi

python_bin=""
for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python_bin="$(command -v "$candidate")"; break
  fi
done
if [ -z "$python_bin" ]; then
  echo "segspark: Python 3.11 or newer is required and was not found (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "segspark: creating virtual environment $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
stamp="$venv/.segspark-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "segspark: installing segspark and its dependencies into $venv (log: $venv/install.log)"
  # pip's and the build backend's chatter goes to the log; it is shown only when the install fails.
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -e "$root[dev]"; } > "$venv/install.log" 2>&1; then
    tail -n 40 "$venv/install.log" >&2
    echo "segspark: installing into $venv failed; the whole log is $venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

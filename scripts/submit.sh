#!/usr/bin/env bash
# spark-submit with this checkout's virtual environment, from any shell (the venv need not be activated):
#   scripts/submit.sh --master 'local[2]' jobs/run.py --layout online_retail --input DATA --lakehouse LH
# The arguments are spark-submit's, passed on unchanged. Before handing over, the script
#   - sets SPARK_HOME to the venv's pyspark (pyspark's own launcher looks for it with `python3` from PATH,
#     which fails outside the activated venv: ".../spark-class: No such file or directory");
#   - uses the venv's python for the driver, and in local mode for the workers too, unless
#     PYSPARK_DRIVER_PYTHON / PYSPARK_PYTHON are set (on a cluster the workers' python is the cluster's);
#   - in local mode binds Spark to 127.0.0.1 unless SPARK_LOCAL_IP is set;
#   - puts this checkout first on PYTHONPATH, so the jobs import this checkout's segspark;
#   - adds Delta's jars: the ones an earlier segspark run cached under ~/.cache/segspark/ivy (--jars), else
#     --packages with the matching Delta artifact. Passing --packages or --jars (or spark.jars* with --conf)
#     yourself turns this off.
# SEGSPARK_VENV points at another venv (default: <checkout>/.venv, which scripts/bootstrap.sh creates).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEGSPARK_VENV:-$root/.venv}"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  echo "segspark: no Python at $py: run scripts/bootstrap.sh first, or set SEGSPARK_VENV to the venv" >&2
  exit 1
fi

# spark-submit's own options come before the application file; everything after it belongs to the job.
master="" own_jars=""
args=("$@")
i=0
while [ "$i" -lt "${#args[@]}" ]; do
  arg="${args[$i]}"
  next="${args[$((i + 1))]:-}"
  case "$arg" in
    --verbose | -v | --supervise | --help | -h | --version | --usage-error) ;;  # spark-submit's only switches
    --master=*) master="${arg#--master=}" ;;
    --packages=* | --jars=* | --conf=spark.jars=* | --conf=spark.jars.packages=*) own_jars=1 ;;
    --conf=spark.master=*) master="${arg#--conf=spark.master=}" ;;
    --master) master="$next"; i=$((i + 1)) ;;
    --packages | --jars) own_jars=1; i=$((i + 1)) ;;
    --conf | -c)
      case "$next" in
        spark.jars=* | spark.jars.packages=*) own_jars=1 ;;
        spark.master=*) master="${next#spark.master=}" ;;
      esac
      i=$((i + 1)) ;;
    -*=*) ;;
    -*) i=$((i + 1)) ;;  # every other spark-submit option takes a value
    *) break ;;          # the application file
  esac
  i=$((i + 1))
done
is_local=""
case "$master" in "" | local*) is_local=1 ;; esac  # spark-submit's default master is local[*]

SPARK_HOME="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$py}"
if [ -n "$is_local" ]; then
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$py}"
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "$own_jars" ]; then
  delta="$("$py" -c '
from segspark.platform.compat import delta_artifact
from segspark.platform.session import cached_delta_jars

jars = cached_delta_jars("~/.cache/segspark/ivy")
print("--jars\t" + ",".join(jars) if jars else "--packages\t" + delta_artifact())
')"
  set -- "${delta%%$'\t'*}" "${delta#*$'\t'}" "$@"
fi
exec "$SPARK_HOME/bin/spark-submit" "$@"

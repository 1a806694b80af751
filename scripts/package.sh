#!/usr/bin/env bash
# Build what a cluster needs to run segspark, and print the spark-submit commands that use it.
#
#   scripts/package.sh [--out DIR]          (default DIR: dist/)
#
# Writes, for version V (pyproject.toml):
#   DIR/segspark-V-py3-none-any.whl   pip-install it on the cluster image (brings every Python dependency), or
#   DIR/segspark-V.zip                the package alone, for --py-files (executors then need the dependencies)
#   DIR/segspark-conf-V.zip           base.yaml, the env overlays and layouts/, for --archives ...#segspark-conf
#   DIR/conf/                         the same files unpacked, for --conf-dir in client deploy mode
#   DIR/jobs/                         the spark-submit entry points (application files)
#   DIR/SUBMIT.txt                    the commands printed at the end
# The zips are reproducible: sorted entries, fixed timestamps, no __pycache__.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "segspark package: unknown argument $1 (usage: scripts/package.sh [--out DIR])" >&2; exit 2 ;;
  esac
done
bash "$root/scripts/bootstrap.sh"
py="${SEGSPARK_VENV:-$root/.venv}/bin/python"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

echo "segspark package: building the wheel into $out (log: $out/wheel.log)"
if ! "$py" -m pip wheel --no-deps --wheel-dir "$out" "$root" > "$out/wheel.log" 2>&1; then
  tail -n 30 "$out/wheel.log" >&2
  echo "segspark package: building the wheel failed; the whole log is $out/wheel.log" >&2
  exit 1
fi
"$py" - "$root" "$out" <<'PY'
import shutil
import sys
import zipfile
from pathlib import Path

from segspark import __version__
from segspark.platform.compat import delta_artifact

root, out = Path(sys.argv[1]), Path(sys.argv[2])
STAMP = (2020, 1, 1, 0, 0, 0)


def write_zip(target: Path, files: list[tuple[Path, str]]) -> None:
    """A zip whose bytes depend only on the files' names and contents."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in sorted(files, key=lambda pair: pair[1]):
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())


def tree(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)


package = root / "segspark"
write_zip(out / f"segspark-{__version__}.zip", [(p, p.relative_to(root).as_posix()) for p in tree(package, (".py", ".typed"))])
conf = root / "conf"
conf_files = tree(conf, (".yaml",))
write_zip(out / f"segspark-conf-{__version__}.zip", [(p, p.relative_to(conf).as_posix()) for p in conf_files])
for folder, source in (("conf", conf), ("jobs", root / "jobs")):
    shutil.rmtree(out / folder, ignore_errors=True)
    shutil.copytree(source, out / folder, ignore=shutil.ignore_patterns("__pycache__"))

v, delta = __version__, delta_artifact()
wheel = f"segspark-{v}-py3-none-any.whl"
text = f"""\
# segspark {v}: spark-submit commands for the files in {out}
# The cluster runs Spark 4.1 (Scala 2.13); Delta comes from --packages {delta}.
# Replace the master, the paths and the input; every path on a cluster is a URI (s3a://, abfss://, gs://, hdfs://).

# Client deploy mode: the driver runs here and reads {out}/conf; executors get the package from --py-files.
spark-submit \\
  --master spark://MASTER:7077 --deploy-mode client \\
  --packages {delta} \\
  --py-files {out}/segspark-{v}.zip \\
  {out}/jobs/run.py --conf-dir {out}/conf --env cluster --layout online_retail \\
  --input 's3a://BUCKET/raw/retail/*.csv' --lakehouse s3a://BUCKET/lakehouse/segspark

# Cluster deploy mode (YARN, Kubernetes): the driver runs on the cluster. The conf folder travels as an archive
# unpacked into the driver's and executors' working folder as segspark-conf/; your own overlay travels with
# --files and is named by its file name. (Spark's standalone master runs Python drivers in client mode only.)
spark-submit \\
  --master yarn --deploy-mode cluster \\
  --packages {delta} \\
  --py-files {out}/segspark-{v}.zip \\
  --archives {out}/segspark-conf-{v}.zip#segspark-conf \\
  --files my-overlay.yaml \\
  {out}/jobs/run.py --conf-dir segspark-conf --env cluster --layout online_retail --config my-overlay.yaml \\
  --input 's3a://BUCKET/raw/retail/*.csv' --lakehouse s3a://BUCKET/lakehouse/segspark

# Executors run Python for the K sweep (scikit-learn inside mapInPandas): their python needs numpy, pandas,
# pyarrow, scipy and scikit-learn; the driver needs everything `pip install {wheel}` brings.
# Installing the wheel on the cluster image covers both; then --py-files is not needed.
# Other stages: jobs/ingest.py, features.py, train.py, score.py, profile_segments.py, report.py, export.py, maintain.py.
"""
(out / "SUBMIT.txt").write_text(text)
print(text, end="")
PY
echo "segspark package: wrote $(cd "$out" && ls -d segspark-* conf jobs SUBMIT.txt | tr '\n' ' ')"

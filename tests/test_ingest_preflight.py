"""Preflight of the ingest input: pure Python, no Spark; usage errors exit 2 before the JVM starts."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import zipfile

import pytest

from segspark.config.settings import SourceSettings
from segspark.errors import ConfigError, InputPathError
from segspark.stages.ingest import preflight as inputs
from tests.helpers.config import ROOT

CSV = "InvoiceNo,CustomerID\n1,17850\n"


def source(path, fmt="csv", local_default_fs=True) -> SourceSettings:
    """Source settings as load_config builds them (paths resolved for the given default file system)."""
    return SourceSettings.model_validate(
        {"format": fmt, "path": str(path)}, context={"local_default_fs": local_default_fs}
    )


def write(path, data: bytes | str = CSV):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def make_zip(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Online Retail.csv", CSV)
    return path


def test_good_folder_file_glob_and_file_uri_pass(tmp_path):
    folder = tmp_path / "by-day"
    write(folder / "day-1.csv")
    write(folder / "day-2.csv.gz", gzip.compress(CSV.encode()))
    write(folder / "year=2011" / "day-3.csv")
    write(folder / "_SUCCESS", b"")  # hidden: neither checked nor counted
    write(folder / ".day-1.csv.crc", b"PK\x03\x04 not really")
    for path in (folder, folder / "day-1.csv", f"{folder}/*.csv", f"{folder}/day-{{1,2}}.csv*", f"file://{folder}"):
        inputs.check_local_input(source(path))


@pytest.mark.parametrize(
    ("make", "relative", "message"),
    [
        (lambda d: None, "nothing-here", r"^input '.*nothing-here' does not exist$"),
        (lambda d: write(d / "a.csv"), "*.parquet", r"^input '.*\*\.parquet' matches no files$"),
        (lambda d: write(d / "a.csv"), "{b,c}.csv", r"^input '.*\{b,c\}\.csv' matches no files$"),
        (lambda d: write(d / "in" / "_SUCCESS", b""), "in", r"is a folder without data files"),
        (lambda d: write(d / "empty.csv", b""), "empty.csv", r"^input '.*empty\.csv' is empty \(0 bytes\)$"),
        (
            lambda d: [write(d / "in" / "a.csv", b""), write(d / "in" / "b.csv", b"")],
            "in",
            r"^input '.*in' is empty \(0 bytes\)$",
        ),
        (
            lambda d: make_zip(d / "online_retail.zip"),
            "online_retail.zip",
            r"^input '.*online_retail\.zip' is a zip archive: unzip it and pass the folder "
            r"\(Spark reads csv, csv\.gz, parquet and delta\)$",
        ),
        (  # a zip archive whatever its name: found by its first bytes
            lambda d: make_zip(d / "retail.csv"),
            "retail.csv",
            r"^input '.*retail\.csv' is a zip archive: unzip it",
        ),
        (
            lambda d: [write(d / "in" / "a.csv"), make_zip(d / "in" / "sub" / "b.zip")],
            "in",
            r"^input '.*in' holds sub/b\.zip, which is a zip archive: unzip it",
        ),
        (
            lambda d: write(d / "Online Retail.xlsx", b"PK\x03\x04rest"),
            "Online Retail.xlsx",
            r"is an Excel workbook: save it as CSV",
        ),
    ],
    ids=["missing", "empty-glob", "empty-brace-glob", "only-hidden", "0-byte", "all-0-byte", "zip",
         "zip-by-magic", "folder-with-zip", "xlsx"],
)
def test_unusable_local_csv_input_is_a_usage_error(tmp_path, make, relative, message):
    make(tmp_path)
    with pytest.raises(InputPathError, match=message) as raised:
        inputs.check_local_input(source(tmp_path / relative))
    assert raised.value.exit_code == 2


def test_one_empty_file_among_others_is_left_to_ingest(tmp_path):
    write(tmp_path / "in" / "a.csv", b"")
    write(tmp_path / "in" / "b.csv")
    inputs.check_local_input(source(tmp_path / "in"))


def test_parquet_and_delta_paths(tmp_path):
    write(tmp_path / "pq" / "part-0.parquet", b"PAR1....PAR1")
    write(tmp_path / "delta" / "_delta_log" / "00000000000000000000.json", "{}")  # an empty table is fine
    inputs.check_local_input(source(tmp_path / "pq", "parquet"))
    inputs.check_local_input(source(tmp_path / "delta", "delta"))
    with pytest.raises(InputPathError, match="is not a Delta table"):
        inputs.check_local_input(source(tmp_path / "pq", "delta"))
    with pytest.raises(InputPathError, match="does not exist"):
        inputs.check_local_input(source(tmp_path / "nope", "delta"))
    with pytest.raises(InputPathError, match="is a zip archive"):
        inputs.check_local_input(source(make_zip(tmp_path / "t.zip"), "delta"))


@pytest.mark.parametrize(
    "path", ["s3a://bucket/none/*.csv", "abfss://c@a.dfs.core.windows.net/x", "gs://b/x", "hdfs:///raw/x"]
)
def test_remote_paths_and_tables_are_left_to_spark(path):
    inputs.check_local_input(source(path))
    inputs.check_local_input(source("no_such_db.no_such_table", "table"))


def test_scheme_less_path_on_a_non_local_default_fs_is_left_to_spark(tmp_path):
    missing = source(tmp_path / "nothing-here", local_default_fs=False)
    assert missing.path == str(tmp_path / "nothing-here")  # kept for the JVM to qualify on its file system
    inputs.check_local_input(missing, local_default_fs=False)
    with pytest.raises(InputPathError):  # a file: URI is local whatever the default file system
        inputs.check_local_input(source(f"file://{tmp_path}/nothing-here"), local_default_fs=False)
    hadoop_conf = write(
        tmp_path / "hadoop" / "core-site.xml",
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value></property>"
        "</configuration>",
    ).parent
    assert inputs.default_fs_is_local(environ={})
    assert not inputs.default_fs_is_local(environ={"HADOOP_CONF_DIR": str(hadoop_conf)})
    assert not inputs.default_fs_is_local(environ={"PYSPARK_GATEWAY_PORT": "1234"})
    assert not inputs.default_fs_is_local({"spark.hadoop.fs.defaultFS": "s3a://bucket"}, environ={})
    assert inputs.default_fs_is_local({"spark.hadoop.fs.defaultFS": "file:///"}, environ={})


def test_unset_path_is_a_config_error():
    with pytest.raises(ConfigError, match="pass --input PATH"):
        inputs.check_local_input(SourceSettings())


def test_cli_reports_a_missing_input_in_one_line_without_starting_spark(tmp_path):
    hidden = ("PYSPARK_GATEWAY_PORT", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "JAVA_HOME", "PATH")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    # No Java to be found: had the CLI tried to start Spark, it would stop with exit 1 (EnvironmentProblem).
    env.update(PYTHONPATH=str(ROOT), JAVA_HOME=str(tmp_path / "no-jdk"), PATH=str(tmp_path / "no-bin"))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "segspark.cli", "ingest", "--input", str(tmp_path / "nonexistent"),
         "--lakehouse", str(tmp_path / "lh")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"segspark: error: input '{tmp_path / 'nonexistent'}' does not exist"]
    assert done.stdout == ""
    assert elapsed < 15
    assert not (tmp_path / "lh").exists()  # no stage ran: a failed stage writes its pipeline_runs row

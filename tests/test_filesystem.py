"""segspark.platform.filesystem: the one module that reaches the driver's JVM, and its file operations."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from segspark.platform import filesystem, lakehouse
from segspark.platform.lock import _HadoopFile

PACKAGE = Path(__file__).resolve().parents[1] / "segspark"
OWNER = PACKAGE / "platform" / "filesystem.py"
PRIVATE_HANDLES = re.compile(r"_jsc|_jvm|_gateway")


def _handle_uses(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    where = path.relative_to(PACKAGE.parent)
    return [f"{where}:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if PRIVATE_HANDLES.search(line)]


def test_only_the_filesystem_module_touches_the_private_jvm_handles():
    offenders = [use for path in sorted(PACKAGE.rglob("*.py")) if path != OWNER for use in _handle_uses(path)]
    assert offenders == [], "private JVM handles outside segspark/platform/filesystem.py:\n" + "\n".join(offenders)


def test_the_handle_search_finds_the_owners_uses():
    # Guards the test above: a pattern that matched nothing would pass it vacuously.
    assert len(_handle_uses(OWNER)) >= 3


@pytest.fixture(params=["path", "uri"])
def folder(request, tmp_path) -> tuple[Path, str]:
    """(the local folder, how it is given: a plain path or a ``file:`` URI)."""
    local = tmp_path / "files"
    return local, str(local) if request.param == "path" else local.as_uri()


def test_make_dirs_exists_and_list_names(spark, folder):
    local, uri = folder
    assert not filesystem.exists(spark, uri)
    filesystem.make_dirs(spark, f"{uri}/sub/deeper")
    filesystem.make_dirs(spark, f"{uri}/sub")  # already there: left alone
    (local / "b.json").write_text("{}")
    (local / "a.txt").write_text("a")
    (local / "00000000000000000000.json").write_text("{}")
    assert filesystem.exists(spark, uri)
    assert filesystem.exists(spark, f"{uri}/a.txt")
    assert (local / "sub" / "deeper").is_dir()
    assert filesystem.list_names(spark, uri) == ["00000000000000000000.json", "a.txt", "b.json", "sub"]
    assert filesystem.list_names(spark, uri, files_only=True) == ["00000000000000000000.json", "a.txt", "b.json"]
    assert filesystem.list_names(spark, uri, pattern="*.json") == ["00000000000000000000.json", "b.json"]
    assert filesystem.list_names(spark, uri, pattern="[0-9]*.json") == ["00000000000000000000.json"]
    assert filesystem.list_names(spark, uri, pattern="*.parquet") == []
    assert filesystem.list_names(spark, f"{uri}/sub/deeper") == []


def test_text_and_bytes_round_trip_and_overwrite(spark, folder):
    local, uri = folder
    text = "café, naïve ✓\nsecond line\n"
    assert filesystem.write_text(spark, f"{uri}/new/page.txt", text, overwrite=True)  # parents created
    assert filesystem.read_text(spark, f"{uri}/new/page.txt") == text
    assert (local / "new" / "page.txt").read_bytes() == text.encode("utf-8")
    payload = bytes(range(256))
    assert filesystem.write_bytes(spark, f"{uri}/new/page.txt", payload, overwrite=True)
    assert (local / "new" / "page.txt").read_bytes() == payload
    assert filesystem.write_bytes(spark, f"{uri}/empty", b"", overwrite=True)
    assert filesystem.read_text(spark, f"{uri}/empty") == ""


def test_an_exclusive_create_is_refused_when_the_file_exists(spark, folder):
    local, uri = folder
    assert filesystem.write_text(spark, f"{uri}/lock", "first", overwrite=False)
    assert not filesystem.write_text(spark, f"{uri}/lock", "second", overwrite=False)
    assert not filesystem.write_bytes(spark, f"{uri}/lock", b"third", overwrite=False)
    assert (local / "lock").read_text() == "first"


def test_rename_moves_a_file(spark, folder):
    local, uri = folder
    filesystem.write_text(spark, f"{uri}/before", "content", overwrite=True)
    assert filesystem.rename(spark, f"{uri}/before", f"{uri}/after")
    assert not (local / "before").exists()
    assert (local / "after").read_text() == "content"


def test_delete_a_file_and_a_folder_recursively(spark, folder):
    local, uri = folder
    (local / "tree" / "branch").mkdir(parents=True)
    (local / "tree" / "branch" / "leaf.txt").write_text("leaf")
    (local / "single.txt").write_text("one")
    assert filesystem.delete(spark, f"{uri}/single.txt")
    assert not (local / "single.txt").exists()
    assert filesystem.delete(spark, f"{uri}/tree", recursive=True)
    assert not (local / "tree").exists()
    assert filesystem.list_names(spark, uri) == []


def test_modification_time_and_touch(spark, folder):
    local, uri = folder
    local.mkdir()
    (local / "file").write_text("x")
    os.utime(local / "file", (1_000_000_000, 1_000_000_000))
    assert filesystem.modification_time(spark, f"{uri}/file") == pytest.approx(1_000_000_000, abs=1)
    before = time.time()
    filesystem.touch(spark, f"{uri}/file")
    assert filesystem.modification_time(spark, f"{uri}/file") == pytest.approx(before, abs=5)
    assert (local / "file").stat().st_mtime == pytest.approx(before, abs=5)


def test_a_missing_path(spark, folder):
    local, uri = folder
    missing = f"{uri}/missing"
    assert not filesystem.exists(spark, missing)
    assert not filesystem.delete(spark, missing)
    assert not filesystem.delete(spark, missing, recursive=True)
    for operation in (
        lambda: filesystem.read_text(spark, missing),
        lambda: filesystem.modification_time(spark, missing),
        lambda: filesystem.touch(spark, missing),
        lambda: filesystem.list_names(spark, missing),
        lambda: filesystem.list_names(spark, missing, pattern="*.json"),
    ):
        with pytest.raises(FileNotFoundError, match="missing"):
            operation()
    assert not local.exists()


def test_qualified_names_the_file_system(spark, tmp_path):
    assert filesystem.qualified(spark, str(tmp_path / "out")) == f"file:{tmp_path}/out"
    assert filesystem.qualified(spark, (tmp_path / "out").as_uri()) == f"file:{tmp_path}/out"


def test_jvm_services(spark):
    filesystem.clear_delta_log_cache(spark)
    filesystem.require_java_class(spark, "io.delta.tables.DeltaTable")
    with pytest.raises(LookupError, match="no.such.Klass"):
        filesystem.require_java_class(spark, "no.such.Klass")
    centres = np.array([[0.0, 1.0], [2.5, -3.0], [10.0, 10.0]])
    model = filesystem.kmeans_model(spark, centres.tolist())
    assert model is not None
    np.testing.assert_array_equal(np.array(model.clusterCenters()), centres)


@pytest.mark.parametrize(
    ("names", "has_commits"),
    [
        ([], False),
        ([".00000000000000000000.json.crc", "_commits", "_last_checkpoint"], False),
        (["00000000000000000000.json"], True),
        (["00000000000000000010.checkpoint.parquet"], True),
        (["00000000000000000010.checkpoint.0000000001.0000000002.parquet"], True),
    ],
)
def test_a_table_folder_has_commits_when_its_log_holds_a_commit_or_checkpoint(spark, tmp_path, names, has_commits):
    assert not lakehouse._has_commits(spark, str(tmp_path / "table"))  # no folder at all
    log_dir = tmp_path / "table" / "_delta_log"
    log_dir.mkdir(parents=True)
    for name in names:
        (log_dir / name).write_text("{}")
    assert lakehouse._has_commits(spark, str(tmp_path / "table")) is has_commits


def test_the_lock_file_of_a_lakehouse_that_is_not_a_local_folder(spark, tmp_path):
    """The lock's Hadoop branch (HDFS, object stores), on a local folder through Hadoop's file system."""
    uri = (tmp_path / "lake" / "_segspark_lock").as_uri()
    lock_file = _HadoopFile(spark, uri)
    assert lock_file.read() is None
    assert lock_file.create_exclusive('{"run_id": "a"}')
    assert not lock_file.create_exclusive('{"run_id": "b"}')
    text, modified = lock_file.read()
    assert text == '{"run_id": "a"}'
    assert modified == pytest.approx(time.time(), abs=5)
    os.utime(tmp_path / "lake" / "_segspark_lock", (1_000_000_000, 1_000_000_000))
    lock_file.touch()
    assert lock_file.read()[1] == pytest.approx(time.time(), abs=5)
    assert lock_file.rename_to(".stale-b")
    assert [p.name for p in (tmp_path / "lake").iterdir() if not p.name.startswith(".")] == []  # moved, deleted
    assert lock_file.create_exclusive('{"run_id": "b"}')
    lock_file.delete()
    assert lock_file.read() is None

"""Preflight of the ingest input: usage errors in a local ``--input`` are reported before Spark starts.

Pure Python (no Spark): the CLI calls :func:`check_local_input` right after loading the config, so a mistyped
path, an empty file or a zip archive costs a second and exits 2 with one line, instead of a JVM start-up and a
Java stack trace. Only local paths are checked: no URI scheme, or ``file:``. Remote paths (``s3a://``,
``abfss://``, ``gs://``, ``hdfs://``) and scheme-less paths that Hadoop would resolve on a non-local default
file system (under spark-submit, or a ``fs.defaultFS`` set in the config or in ``$HADOOP_CONF_DIR``) are left
to Spark, whose errors :mod:`segspark.stages.ingest.stage` reports.

Files are chosen as Spark chooses them: a glob (``*``, ``?``, ``[...]``, ``{a,b}``) matches files and folders;
a folder contributes every file below it except hidden ones (names starting with ``.``, or with ``_`` and no
``=``, such as ``_SUCCESS`` and ``.part-0.crc``).
"""

from __future__ import annotations

import glob
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from segspark.config.paths import default_fs_is_local
from segspark.config.settings import Config, SourceSettings
from segspark.errors import ConfigError, InputPathError

__all__ = [
    "ZIP_MAGIC",
    "check_ingest_input",
    "check_local_input",
    "expand_braces",
    "is_hidden",
    "is_zip",
    "local_path",
    "matched_files",
    "require_path",
    "uri_scheme",
]

#: First bytes of a zip archive (and of .xlsx workbooks, which are zip archives).
ZIP_MAGIC = b"PK\x03\x04"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_GLOB_CHARS = re.compile(r"[*?\[{]")
_READABLE = "Spark reads csv, csv.gz, parquet and delta"


def require_path(source: SourceSettings) -> str:
    """``source.path``, or ConfigError saying how to set it."""
    if not source.path:
        raise ConfigError("config key 'source.path' is not set: pass --input PATH or set source.path")
    return source.path


def uri_scheme(path: str) -> str | None:
    r"""The lower-case URI scheme of ``path``, or None; a one-letter "scheme" is a Windows drive (``C:\data``)."""
    match = _SCHEME.match(path)
    return match.group(1).lower() if match and len(match.group(1)) > 1 else None


def local_path(path: str) -> str:
    """The local file system path a scheme-less or ``file:`` path names."""
    if uri_scheme(path) != "file":
        return path
    # file:/x, file:///x and file://localhost/x all name /x; Hadoop decodes %20 and friends.
    return urllib.parse.unquote(urllib.parse.urlparse(path).path)


def expand_braces(pattern: str) -> list[str]:
    """Hadoop glob alternation: ``a{b,c{d,e}}`` -> ``ab``, ``acd``, ``ace``. Python's glob lacks it."""
    # ``start`` is set at the opening brace before its closing brace can bring ``depth`` back to 0.
    depth, start = 0, 0
    for i, char in enumerate(pattern):
        if char == "\\":
            continue
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                options, level, begin = [], 0, start + 1
                for j in range(start + 1, i):
                    if pattern[j] == "{":
                        level += 1
                    elif pattern[j] == "}":
                        level -= 1
                    elif pattern[j] == "," and level == 0:
                        options.append(pattern[begin:j])
                        begin = j + 1
                options.append(pattern[begin:i])
                head, tail = pattern[:start], pattern[i + 1 :]
                return [expanded for option in options for expanded in expand_braces(head + option + tail)]
    return [pattern]


def is_hidden(name: str) -> bool:
    """Spark's rule for files and folders it skips when listing a folder."""
    return name.startswith(".") or (name.startswith("_") and "=" not in name) or name.endswith("._COPYING_")


def matched_files(path: str) -> Iterator[Path]:
    """Every file Spark would read for a local path, file, folder or glob."""
    for pattern in expand_braces(path):
        entries = sorted(glob.glob(pattern)) if _GLOB_CHARS.search(pattern) else [pattern]
        for entry in map(Path, entries):
            if entry.is_file():
                yield entry
            elif entry.is_dir():
                for folder, subfolders, files in os.walk(entry):
                    subfolders[:] = sorted(d for d in subfolders if not is_hidden(d))
                    yield from (Path(folder) / f for f in sorted(files) if not is_hidden(f))


def is_zip(file: Path) -> bool:
    """Whether ``file`` is a zip archive, by its ``.zip`` suffix or its first bytes; False if it cannot be read."""
    if file.suffix.lower() == ".zip":
        return True
    try:
        with file.open("rb") as handle:
            return handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:
        return False


def check_ingest_input(config: Config) -> None:
    """:func:`check_local_input` for the configured source, judging scheme-less paths as this run's Hadoop would."""
    check_local_input(config.source, local_default_fs=default_fs_is_local(config.spark.conf))


def check_local_input(source: SourceSettings, *, local_default_fs: bool = True) -> None:
    """Raise InputPathError (exit 2) when a local csv/parquet/delta input cannot be what the user meant.

    Parameters
    ----------
    source : the source settings; ``format: table`` and remote paths are not checked.
    local_default_fs : whether a scheme-less path is local (see :func:`default_fs_is_local`).

    Raises
    ------
    ConfigError : ``source.path`` is not set.
    InputPathError : the path or glob matches nothing; every CSV file it matches is 0 bytes; a file it matches is
        a zip archive or an Excel workbook; a delta path is not a Delta table.
    """
    path = require_path(source)
    scheme = uri_scheme(path)
    if source.format == "table" or scheme not in (None, "file") or (scheme is None and not local_default_fs):
        return
    local = local_path(path)
    path = local  # messages name the folder as the user knows it, not its file: URI
    if source.format == "delta":
        _check_delta_folder(path, Path(local))
        return
    files = list(matched_files(local))
    if not files:
        if _GLOB_CHARS.search(local):
            raise InputPathError(f"input '{path}' matches no files")
        if Path(local).is_dir():
            raise InputPathError(
                f"input '{path}' is a folder without data files (hidden and _-prefixed files are skipped)"
            )
        raise InputPathError(f"input '{path}' does not exist")
    for file in files:
        _check_file_kind(path, local, file)
    if source.format == "csv" and all(file.stat().st_size == 0 for file in files):
        raise InputPathError(f"input '{path}' is empty (0 bytes)")


def _check_file_kind(path: str, local: str, file: Path) -> None:
    """Zip archives and Excel workbooks: Spark would read their bytes as text lines and reject them all."""
    if file == Path(local):
        subject = f"input '{path}' is"
    else:
        subject = f"input '{path}' holds {file.relative_to(local) if file.is_relative_to(local) else file}, which is"
    if file.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        raise InputPathError(f"{subject} an Excel workbook: save it as CSV ({_READABLE})")
    if is_zip(file):
        raise InputPathError(f"{subject} a zip archive: unzip it and pass the folder ({_READABLE})")


def _check_delta_folder(path: str, folder: Path) -> None:
    if not folder.exists():
        raise InputPathError(f"input '{path}' does not exist")
    if folder.is_file():
        _check_file_kind(path, str(folder), folder)
    if not (folder / "_delta_log").is_dir():
        raise InputPathError(f"input '{path}' is not a Delta table (no _delta_log folder): check source.format")

"""Paths and URIs: the one form every configured path takes, and whether a path is on this machine.

Pure Python (no Spark): configuration loading and the input preflight use it before any JVM starts.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

__all__ = ["absolute_uri", "default_fs_is_local", "local_path"]

#: ``s3a://bucket``, ``abfss://c@a.dfs.core.windows.net``, ``gs://b``, ``hdfs://nn/x``, ``file:/x``: a URI scheme.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def absolute_uri(path: str, local_default_fs: bool = True) -> str:
    """The one form every path takes once config is loaded: an absolute URI.

    A path without a scheme is a path on the machine that runs the driver, made absolute against the
    current directory (``~`` expanded) and written as ``file:/...``: the driver's Python and its JVM then
    agree on where it is, whatever either's working directory. ``file:/`` is the form Hadoop itself gives a
    qualified local path; Delta compares locations as text, so ``file:///x`` is rewritten to it. Other URIs
    (``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``) are kept as given, without a trailing slash. Globs stay
    globs.

    When Hadoop's default file system is not local (``local_default_fs`` False: under spark-submit on a
    cluster, or an HDFS ``fs.defaultFS``), a path without a scheme means a path there, which only the JVM
    can qualify: it is kept as given.
    """
    text = path.strip()
    if text.startswith("file:"):
        text = "/" + text[len("file:") :].lstrip("/")
    elif _SCHEME.match(text):
        return text.rstrip("/") if not text.endswith(":/") and not text.endswith("://") else text
    elif not local_default_fs:
        return text.rstrip("/") or text
    return "file:" + os.path.abspath(os.path.expanduser(text))


def local_path(uri: str) -> Path | None:
    """The local filesystem path of a ``file:`` URI (or a path without a scheme); None for other schemes."""
    if uri.startswith("file:"):
        rest = uri[len("file:") :]
        # file:///a/b and file:/a/b are the same path; file://host/a is not supported (no host).
        return Path("/" + rest.lstrip("/"))
    if _SCHEME.match(uri):
        return None
    return Path(uri)


def default_fs_is_local(spark_conf: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether Hadoop resolves a scheme-less path on the local file system, as far as Python can tell.

    False under spark-submit or the pyspark shell (the JVM's Hadoop conf is the submitter's), when
    ``spark.hadoop.fs.defaultFS`` in the config names another file system, or when a ``core-site.xml`` in
    ``$HADOOP_CONF_DIR``/``$YARN_CONF_DIR`` does.
    """
    environ = os.environ if environ is None else environ
    if "PYSPARK_GATEWAY_PORT" in environ:  # as segspark.platform.session.running_under_spark_submit
        return False
    default_fs = (spark_conf or {}).get("spark.hadoop.fs.defaultFS")
    for var in ("HADOOP_CONF_DIR", "YARN_CONF_DIR"):
        if default_fs is None and environ.get(var):
            default_fs = _core_site_default_fs(Path(environ[var]) / "core-site.xml")
    return default_fs is None or default_fs.lower().startswith("file:")


def _core_site_default_fs(core_site: Path) -> str | None:
    try:
        root = ET.parse(core_site).getroot()
    except (OSError, ET.ParseError):
        return None
    for prop in root.iter("property"):
        if prop.findtext("name", "").strip() in ("fs.defaultFS", "fs.default.name"):
            return prop.findtext("value", "").strip() or None
    return None

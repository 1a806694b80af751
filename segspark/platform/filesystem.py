"""Files under any URI Spark can reach, and the few other services of the driver's JVM segspark uses.

This is the one module that reaches through a classic session's private handles to the driver's JVM (Py4J):
every other module calls the functions below with URIs, text and bytes, so no Hadoop ``Path`` or
``FileSystem`` object leaves it. It is the seam a Spark Connect session will replace.

A URI is what Spark's readers and writers accept: a local path, ``file:/...``, ``hdfs://...``, ``s3a://...``;
Hadoop resolves it against the session's configuration (``fs.defaultFS``, credentials), exactly as Spark's
own writer would. Operations on a missing path raise :class:`FileNotFoundError` naming it, unless the
function says otherwise; other failures of the file system are Py4J's errors, carrying the Java exception.

Atomicity is the file system's: an exclusive create (:func:`write_bytes` with ``overwrite=False``) and a
:func:`rename` are atomic on HDFS, best effort on object stores, and not atomic on Hadoop's local file system
(callers with a local folder use Python's own ``os`` calls where they need an atomic step).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

if TYPE_CHECKING:  # pyspark.ml is imported only when a model is built
    from pyspark.ml.clustering import KMeansModel

__all__ = [
    "clear_delta_log_cache",
    "delete",
    "exists",
    "file_statuses",
    "is_folder",
    "kmeans_model",
    "list_names",
    "make_dirs",
    "modification_time",
    "qualified",
    "read_text",
    "rename",
    "require_java_class",
    "touch",
    "write_bytes",
    "write_text",
]

_NOT_FOUND = "java.io.FileNotFoundException"


def _jvm(spark: SparkSession) -> Any:
    """The Py4J view of a classic session's driver JVM."""
    return spark.sparkContext._jvm


def _resolve(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Hadoop Path) of ``uri``, as Spark's writer resolves it."""
    path = _jvm(spark).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


@contextlib.contextmanager
def _missing_as_error(uri: str) -> Iterator[None]:
    """Hadoop's ``FileNotFoundException`` as Python's :class:`FileNotFoundError` naming ``uri``."""
    try:
        yield
    except Py4JJavaError as exc:
        if str(exc.java_exception.getClass().getName()) == _NOT_FOUND:
            raise FileNotFoundError(f"no such file or folder: {uri}") from None
        raise


def exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or folder exists at ``uri``.

    Parameters
    ----------
    spark : a classic session (its driver's Hadoop configuration resolves the URI).
    uri : the path to look at.
    """
    fs, path = _resolve(spark, uri)
    return bool(fs.exists(path))


def qualified(spark: SparkSession, uri: str) -> str:
    """``uri`` fully qualified, as Spark's writer resolves it (``/tmp/x`` becomes ``file:/tmp/x``).

    The path need not exist. Relative paths resolve against the file system's working folder.
    """
    fs, path = _resolve(spark, uri)
    return str(fs.makeQualified(path).toString())


def list_names(spark: SparkSession, folder: str, *, pattern: str | None = None, files_only: bool = False) -> list[str]:
    """Names (not paths) of the entries in ``folder``, sorted.

    Parameters
    ----------
    folder : the folder to list.
    pattern : only names matching this glob, matched by the file system as it lists (Hadoop's glob: ``*``,
        ``?``, ``[0-9]``, ``{a,b}``); None lists every entry.
    files_only : leave sub-folders out.

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    """
    fs, path = _resolve(spark, folder)
    if pattern is None:
        with _missing_as_error(folder):
            statuses = fs.listStatus(path)
    else:
        statuses = fs.globStatus(_jvm(spark).org.apache.hadoop.fs.Path(f"{folder}/{pattern}"))
        if statuses is None or len(statuses) == 0:
            # A glob in a missing folder matches nothing rather than failing: told apart here.
            if not fs.exists(path):
                raise FileNotFoundError(f"no such file or folder: {folder}")
            return []
    return sorted(str(s.getPath().getName()) for s in statuses if not files_only or s.isFile())


def read_text(spark: SparkSession, uri: str, encoding: str = "UTF-8") -> str:
    """The whole content of the file at ``uri`` as text (bytes that do not decode become U+FFFD).

    Raises
    ------
    FileNotFoundError
        No file at ``uri``.
    """
    fs, path = _resolve(spark, uri)
    with _missing_as_error(uri):
        stream = fs.open(path)
    try:  # commons-io ships with Spark
        return str(_jvm(spark).org.apache.commons.io.IOUtils.toString(stream, encoding))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, uri: str, data: bytes, *, overwrite: bool) -> bool:
    """Write ``data`` as the whole file at ``uri``, creating missing parent folders.

    Parameters
    ----------
    data : the file's content.
    overwrite : replace a file already there; with False the write is an exclusive create that leaves an
        existing file alone (atomic where the file system's create is: HDFS; best effort on object stores).

    Returns
    -------
    Whether the file was written: False only when ``overwrite`` is False and a file was there (or another
    writer created it first).
    """
    fs, path = _resolve(spark, uri)
    if overwrite:
        stream = fs.create(path, True)
    else:
        if fs.exists(path):
            return False
        try:
            stream = fs.create(path, False)
        except Exception:  # FileAlreadyExistsException: another writer won the race
            return False
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
    return True


def write_text(spark: SparkSession, uri: str, text: str, *, overwrite: bool, encoding: str = "utf-8") -> bool:
    """Write ``text`` encoded with ``encoding`` as the whole file at ``uri``; see :func:`write_bytes`."""
    return write_bytes(spark, uri, text.encode(encoding), overwrite=overwrite)


def rename(spark: SparkSession, source: str, target: str) -> bool:
    """Move the file or folder ``source`` to ``target``; whether it moved (False when the file system refused,
    for example because ``source`` is gone on HDFS)."""
    fs, path = _resolve(spark, source)
    return bool(fs.rename(path, _jvm(spark).org.apache.hadoop.fs.Path(target)))


def delete(spark: SparkSession, uri: str, *, recursive: bool = False) -> bool:
    """Delete the file or folder at ``uri``; whether anything was deleted (False when nothing was there).

    Parameters
    ----------
    recursive : delete a folder with everything in it; without it a non-empty folder is an error.
    """
    fs, path = _resolve(spark, uri)
    return bool(fs.delete(path, recursive))


def make_dirs(spark: SparkSession, uri: str) -> None:
    """Create the folder ``uri`` and any missing parents; an existing folder is left as it is."""
    fs, path = _resolve(spark, uri)
    if not fs.mkdirs(path):
        raise OSError(f"could not create the folder {uri}")


def modification_time(spark: SparkSession, uri: str) -> float:
    """When the file at ``uri`` was last modified, in seconds since the epoch (the file system's clock).

    Raises
    ------
    FileNotFoundError
        Nothing at ``uri``.
    """
    fs, path = _resolve(spark, uri)
    with _missing_as_error(uri):
        status = fs.getFileStatus(path)
    return float(status.getModificationTime()) / 1000.0


def is_folder(spark: SparkSession, uri: str) -> bool:
    """Whether ``uri`` names an existing folder (False for a file, a glob or nothing)."""
    fs, path = _resolve(spark, uri)
    try:
        return bool(fs.getFileStatus(path).isDirectory())
    except Py4JJavaError as exc:
        if str(exc.java_exception.getClass().getName()) == _NOT_FOUND:
            return False
        raise


def file_statuses(spark: SparkSession, uris: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Size in bytes and modification time in milliseconds since the epoch of each file, by its URI as given.

    Raises
    ------
    FileNotFoundError
        A file is missing (named in the message).
    """
    statuses: dict[str, tuple[int, int]] = {}
    for uri in uris:
        fs, path = _resolve(spark, uri)
        with _missing_as_error(uri):
            status = fs.getFileStatus(path)
        statuses[uri] = (int(status.getLen()), int(status.getModificationTime()))
    return statuses


def touch(spark: SparkSession, uri: str) -> None:
    """Set the modification time of the file at ``uri`` to now (this machine's clock).

    Raises
    ------
    FileNotFoundError
        Nothing at ``uri``.
    """
    fs, path = _resolve(spark, uri)
    with _missing_as_error(uri):
        fs.setTimes(path, int(time.time() * 1000), -1)


def clear_delta_log_cache(spark: SparkSession) -> None:
    """Drop the Delta logs this session's JVM has cached, so the next look at a table reads its log again."""
    _jvm(spark).org.apache.spark.sql.delta.DeltaLog.clearCache()


def require_java_class(spark: SparkSession, class_name: str) -> None:
    """Load ``class_name`` (``io.delta.tables.DeltaTable``) in the driver's JVM.

    Raises
    ------
    LookupError
        The class cannot be loaded (not on the classpath); the cause says why.
    """
    jvm = _jvm(spark)
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()
        jvm.Class.forName(class_name, True, loader)
    except Exception as exc:
        raise LookupError(f"{class_name} cannot be loaded in the driver's JVM") from exc


def kmeans_model(spark: SparkSession, centres: Sequence[Sequence[float]]) -> KMeansModel | None:
    """An MLlib ``KMeansModel`` whose cluster centres are exactly ``centres``, or None where it cannot be built.

    It is built the way MLlib builds one after a fit: an ``mllib`` ``KMeansModel`` of the centres wrapped by
    the ``ml`` model (milliseconds; pyspark has no public way to start from given centres). Its parameters
    are MLlib's defaults; the caller sets the columns and ``k``. None means the JVM or MLlib's constructors
    are not reachable (Spark Connect, a changed constructor).

    Parameters
    ----------
    centres : K rows of equal length, one per cluster.
    """
    try:
        jvm = _jvm(spark)
        gateway = spark.sparkContext._gateway
        if gateway is None:  # no py4j gateway: as unreachable as a missing JVM
            return None
        linalg = jvm.org.apache.spark.mllib.linalg
        vectors = gateway.new_array(linalg.Vector, len(centres))
        for i, centre in enumerate(centres):
            values = gateway.new_array(jvm.double, len(centre))
            for j, v in enumerate(centre):
                values[j] = float(v)
            vectors[i] = linalg.Vectors.dense(values)
        parent = jvm.org.apache.spark.mllib.clustering.KMeansModel(vectors)
        uid = jvm.org.apache.spark.ml.util.Identifiable.randomUID("kmeans")
        java_model = jvm.org.apache.spark.ml.clustering.KMeansModel(uid, parent)
    except Exception:  # no JVM gateway (Spark Connect) or MLlib's internals changed
        return None
    from pyspark.ml.clustering import KMeansModel

    model = KMeansModel(java_model)
    model._transfer_params_from_java()
    return model

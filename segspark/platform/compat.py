"""What differs between the two supported Spark lines (4.1 with Delta 4.3, the default; 3.5 with Delta 3.3).

Everything version-specific lives here, so the rest of the package is one code path for both lines.
"""

from __future__ import annotations

import importlib.metadata

import pyspark
from pyspark.sql import Column
from pyspark.sql import types as T

__all__ = ["DELTA_VERSION", "SPARK_LINE", "delta_artifact", "scala_binary_version", "try_cast"]

#: ``(major, minor)`` of the PySpark this process runs.
SPARK_LINE: tuple[int, int] = tuple(int(p) for p in pyspark.__version__.split(".")[:2])  # type: ignore[assignment]
DELTA_VERSION = importlib.metadata.version("delta-spark")


def scala_binary_version() -> str:
    """Scala of the PySpark wheel: Spark 4 is built for 2.13 only, the 3.5 wheels for 2.12."""
    return "2.13" if SPARK_LINE >= (4, 0) else "2.12"


def delta_artifact() -> str:
    """Maven coordinates of the Delta jar matching this PySpark and delta-spark.

    From Delta 4.1 on, the artifact names the Spark line it is built for (``delta-spark_4.1_2.13``); earlier
    ones name only Scala (``delta-spark_2.12``). This is the rule delta-spark's own pip helper follows.
    """
    delta_line = tuple(int(p) for p in DELTA_VERSION.split(".")[:2])
    if delta_line >= (4, 1):
        name = f"delta-spark_{SPARK_LINE[0]}.{SPARK_LINE[1]}_{scala_binary_version()}"
    else:
        name = f"delta-spark_{scala_binary_version()}"
    return f"io.delta:{name}:{DELTA_VERSION}"


def try_cast(column: Column, data_type: T.DataType | str) -> Column:
    """``column`` cast to ``data_type``, null where the value does not convert (never an error).

    Spark 4 runs in ANSI mode, where a plain cast of bad text fails the whole job; ``try_cast`` keeps the
    row so it can become a reasoned reject. Spark 3.5's Column API has no ``try_cast``; there ANSI mode is
    off by default and a plain cast already gives null (docs/deployment.md, "Spark versions": keep
    ``spark.sql.ansi.enabled`` false on a 3.5 cluster).
    """
    if hasattr(Column, "try_cast"):
        return column.try_cast(data_type)
    return column.cast(data_type)

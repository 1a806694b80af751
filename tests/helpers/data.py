"""Input builders: CSV files, the Online Retail line cases and copies of a trained lakehouse."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from segspark.config.paths import local_path

__all__ = ["LINES", "RETAIL_HEADER", "copy_features", "read_truth", "write_csv"]

#: The header of the UCI Online Retail CSV files (the columns ``conf/layouts/online_retail.yaml`` maps).
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"

# One Online Retail line per ingest case (test_ingest, test_privacy); the comment is the expected outcome.
LINES = [
    "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",  # clean
    "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",  # duplicate
    "536365,85123A,WHITE HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",  # duplicate
    "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom",  # missing_customer_id (null)
    "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,NaN,United Kingdom",  # missing_customer_id (NaN)
    "536366,22633,HAND WARMER,6,not a date,0,   ,United Kingdom",  # missing_customer_id (blank wins)
    "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,,United Kingdom",  # missing_customer_id (copy)
    "536367,22633,HAND WARMER,6,not a date,1.85,13047.0,United Kingdom",  # invalid_timestamp
    "536367,22634,X,0,2010-12-01 08:34:00,1.85,13047.0,France",  # invalid_quantity (zero)
    "536367,22635,X,abc,2010-12-01 08:34:00,abc,13047.0,France",  # invalid_quantity (before price)
    "536367,22636,X,,2010-12-01 08:34:00,1.85,13047.0,France",  # invalid_quantity (null)
    "536367,22637,X,2.5,2010-12-01 08:34:00,1.85,13047.0,France",  # invalid_quantity (fraction)
    "536367,22638,X,2,2010-12-01 08:34:00,0,13047.0,France",  # invalid_price (zero)
    "536367,22639,X,2,2010-12-01 08:34:00,-1.5,13047.0,France",  # invalid_price (negative)
    "536367,22640,X,2,2010-12-01 08:34:00,,13047.0,France",  # invalid_price (null)
    "536367,22641,X,2,2010-12-01 08:34:00,£3,13047.0,France",  # invalid_price (unparseable)
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527.0,United Kingdom",  # clean return (prefix)
    "536380,22961,JAM,-3,2010-12-01 09:45:00,1.45, 007 ,United Kingdom",  # clean return (qty), id 007
    '536381,22962,"JAM, LARGE",4.0,2010-12-01 09:45,1.455,12583,France',  # clean, other format, 4.0
    '536381,22962,"JAM, LARGE",4,2010-12-01 09:45,1.455,12583,France',  # clean: not an exact copy
    "C536382,22963,MUG,3,2010-12-02,0.85,12583,",  # clean return (prefix, positive qty), bare date
]


def write_csv(
    folder: Path,
    lines: Iterable[str | Sequence[object]],
    *,
    header: str = RETAIL_HEADER,
    name: str = "part-0.csv",
    encoding: str = "utf-8",
) -> Path:
    """Write ``header`` and ``lines`` to ``folder / name``, one per line with a final newline; return the folder.

    A line is written as given when it is text, or joined with commas when it is a row of values (no quoting).
    The folder is created when missing; ``encoding`` is the file's (a Latin-1 export, say).
    """
    rows = [line if isinstance(line, str) else ",".join(str(v) for v in line) for line in lines]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return folder


def read_truth(path: Path) -> dict[str, str]:
    """Customer id -> planted behaviour type, from the truth file ``segspark.synthetic.generate`` writes."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["customer_id", "behaviour_type"]
        return {row["customer_id"]: row["behaviour_type"] for row in reader}


def copy_features(planted: dict, lake: Path) -> Path:
    """A new lakehouse holding only the planted customer_features (so tests do not see each other's models)."""
    shutil.copytree(local_path(planted["config"].table_path("customer_features")), lake / "customer_features")
    return lake

"""The stamp of one stage run: the run id, the snapshot, the model and the time every row it writes carries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segspark.contracts.schemas import AS_OF_DATE, CREATED_AT, MODEL_VERSION, RUN_ID

__all__ = ["RunStamp"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RunStamp:
    """Who wrote a row, as one value: a stage makes it once and passes it to each of its writers.

    ``as_of`` is the snapshot the rows describe; ``model_version`` the model they come from (None for the
    stages before train); ``created_at`` the time of the run, the same in every table the run writes.
    """

    run_id: str
    as_of: dt.date
    model_version: str | None = None
    created_at: dt.datetime = field(default_factory=_now)

    def values(self) -> dict[str, object]:
        """The stamp's columns by name, for rows built on the driver."""
        return {
            RUN_ID: self.run_id,
            MODEL_VERSION: self.model_version,
            AS_OF_DATE: self.as_of,
            CREATED_AT: self.created_at,
        }

    def literals(self) -> dict[str, Column]:
        """The stamp's columns as literal Spark columns, for :meth:`DataFrame.withColumns`."""
        return {name: F.lit(value) for name, value in self.values().items()}

    def on(self, df: DataFrame, *columns: str) -> DataFrame:
        """``df`` with the named stamp columns (all four when none is named) set to this stamp's values."""
        literals = self.literals()
        return df.withColumns({c: literals[c] for c in (columns or tuple(literals))})

"""Pseudonymised customer ids: HMAC-SHA-256 under a key taken from the environment.

Spark has no keyed hash. Building HMAC from ``sha2`` and ``concat`` would put the key (XORed with a public
constant, so readable) into the query plan as a literal, and plans appear in the Spark UI, event logs and
error messages. The hash therefore runs in a vectorised pandas UDF: the key travels to the executors inside
the function's closure and never appears in a plan, a log line or a table. Each Arrow batch hashes its
distinct ids once (ids repeat on every invoice line).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import types as T

# pandas_udf's own module: pyspark.sql.functions re-exports it only implicitly, which strict mypy does not follow.
from pyspark.sql.pandas.functions import pandas_udf

from segspark.config.settings import PrivacySettings
from segspark.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql._typing import UserDefinedFunctionLike

#: ``pandas_udf(returnType)``, the decorator of a type-hinted Series -> Series function that Spark documents since
#: 3.0. pyspark's stubs model only the older form that also passes a ``functionType``, hence the cast.
_series_udf = cast(
    Callable[[T.DataType], Callable[[Callable[[pd.Series], pd.Series]], "UserDefinedFunctionLike"]], pandas_udf
)

#: Shortest key accepted: HMAC-SHA-256 keys shorter than the 32-byte digest weaken it.
MIN_KEY_BYTES = 32


def id_key(settings: PrivacySettings, environ: dict[str, str] | None = None) -> bytes | None:
    """The pseudonymisation key (UTF-8 bytes of the variable), or None when ids are kept as they are.

    Raises ConfigError (exit 2) naming the variable, never its value, when it is unset or too short.
    """
    if not settings.pseudonymise_ids:
        return None
    value = (os.environ if environ is None else environ).get(settings.key_env, "")
    if not value:
        raise ConfigError(
            f"privacy.pseudonymise_ids is on but the environment variable {settings.key_env} "
            "(privacy.key_env) is not set: export the key there (for example: openssl rand -hex 32)"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the key in {settings.key_env} is {len(key)} bytes; privacy.pseudonymise_ids needs at least "
            f"{MIN_KEY_BYTES} (for example: openssl rand -hex 32)"
        )
    return key


def pseudonym(customer_id: str, key: bytes) -> str:
    """HMAC-SHA-256 of the id's UTF-8 bytes, as 64 lower-case hex characters."""
    return hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymised(ids: Column, key: bytes | None) -> Column:
    """``ids`` replaced by their pseudonyms (nulls stay null); unchanged when ``key`` is None."""
    if key is None:
        return ids

    # A Python UDF on purpose: Spark has no keyed hash, and one built from sha2 would put the key in the plan
    # (see the module docstring). Vectorised: each Arrow batch hashes its distinct ids once.
    @_series_udf(T.StringType())
    def segspark_pseudonym(batch: pd.Series) -> pd.Series:
        distinct = batch.dropna().unique()
        mapping = {value: pseudonym(value, key) for value in distinct}
        return batch.map(mapping)

    return segspark_pseudonym(ids)

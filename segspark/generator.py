"""Deprecated alias of :mod:`segspark.synthetic`, the demo data generator; removed in the release after 0.1.

``segspark.generator`` was a documented import before the package moved into subpackages. It keeps working for one
release: importing it warns once, and every name resolves to the one in :mod:`segspark.synthetic`.
"""

from __future__ import annotations

import warnings
from typing import Any

from segspark import synthetic as _target

warnings.warn(
    "segspark.generator is deprecated and will be removed in the next release: import from segspark.synthetic instead",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)


if __name__ == "__main__":
    raise SystemExit(_target.main())

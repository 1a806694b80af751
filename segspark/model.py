"""Deprecated alias of :mod:`segspark.segmentation.model`; removed in the release after 0.1.

``segspark.model`` was a documented import before the package moved into subpackages. It keeps working for one
release: importing it warns once, and every name resolves to the one in :mod:`segspark.segmentation.model`.
"""

from __future__ import annotations

import warnings
from typing import Any

from segspark.segmentation import model as _target

warnings.warn(
    "segspark.model is deprecated and will be removed in the next release: "
    "import from segspark.segmentation.model instead",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(_target, name)


def __dir__() -> list[str]:
    return dir(_target)

"""The one way a figure becomes text for a person: console summaries, segment reasons, the report, logs.

Pure Python. :func:`number` covers every style segspark prints (readable precision, fixed decimals, compact
``12k``) and :func:`percent` shares; both give ``missing`` for None and NaN.
"""

from __future__ import annotations

import math

__all__ = ["MISSING", "number", "percent"]

#: What a missing figure (None or NaN) reads as, unless the caller says otherwise.
MISSING = "n/a"


def _is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, digits: int | None = None, *, missing: str = MISSING, compact: bool = False) -> str:
    """A figure as text.

    Parameters
    ----------
    value : float, int or None
        The figure; None and NaN give ``missing``.
    digits : int, optional
        Fixed decimals with thousands separators (``1,234.5`` for 1): the style of tables and counts. None gives
        readable precision instead: whole numbers from 100 up (with separators), one decimal from 10, two
        below (``3``, ``39.2``, ``0.42``, ``12,345``).
    missing : str
        The text of a missing figure (``n/a``; logs use ``-``).
    compact : bool
        Short enough for a heatmap cell: ``1.2M``, ``12k``, ``350``, ``3.4``, ``0.42`` (two significant digits
        below 1). ``digits`` is ignored.
    """
    if _is_missing(value):
        return missing
    assert value is not None
    if compact:
        return _compact(float(value))
    if digits is not None:
        return f"{value:,.{digits}f}"
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def _compact(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.0f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.2g}" if magnitude < 1 else f"{value:.1f}"


def percent(value: float | None, digits: int = 1, *, missing: str = MISSING) -> str:
    """A share (0.355) as a percentage with ``digits`` decimals (``35.5%``); ``missing`` for None and NaN."""
    if _is_missing(value):
        return missing
    assert value is not None
    return f"{100 * value:.{digits}f}%"

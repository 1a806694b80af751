"""The one number formatter (segspark.maths.numbers): every style segspark prints, with golden strings."""

from __future__ import annotations

import math

import pytest

from segspark.maths.numbers import number, percent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "3"),
        (3.0, "3"),
        (39.25, "39.2"),
        (0.4249, "0.42"),
        (-7.5, "-7.50"),
        (150.6, "151"),
        (12345.4, "12,345"),
        (2_000_000, "2,000,000"),
        (None, "n/a"),
        (math.nan, "n/a"),
    ],
)
def test_readable_precision(value, expected):
    assert number(value) == expected


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [(1234, 0, "1,234"), (0.32149, 3, "0.321"), (1234.56, 1, "1,234.6"), (0, 0, "0"), (None, 3, "n/a")],
)
def test_fixed_decimals_with_separators(value, digits, expected):
    assert number(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1_234_567, "1.2M"), (-25_000, "-25k"), (12_345, "12k"), (350.4, "350"), (3.44, "3.4"), (0.4249, "0.42")],
)
def test_compact_for_heatmap_cells(value, expected):
    assert number(value, compact=True) == expected


def test_missing_text_is_the_callers_choice():
    assert number(None, 0, missing="-") == "-"
    assert percent(float("nan"), missing="-") == "-"


@pytest.mark.parametrize(("value", "digits", "expected"), [(0.355, 1, "35.5%"), (0.355, 0, "36%"), (1, 0, "100%")])
def test_percent(value, digits, expected):
    assert percent(value, digits) == expected

"""How values and errors are shown: numbers for people, strict JSON, one error line."""

from __future__ import annotations

import math

from tunebook.core.formatting import error_line, finite_json, format_value


def test_format_value_shows_four_significant_digits() -> None:
    assert format_value(None) == "-"
    assert format_value(0.123456) == "0.1235"
    assert format_value(1234567.0) == "1.235e+06"
    assert format_value(math.nan) == "nan" and format_value(-math.inf) == "-inf"
    assert format_value(12345678) == "12345678"  # integers are shown whole
    assert format_value("relu") == "relu" and format_value(True) == "True"
    assert format_value(0.123456, digits=2) == "0.12"


def test_error_line_is_the_last_line_that_says_something() -> None:
    trace = "Traceback (most recent call last):\n  File 'x'\nValueError: bad lr\n\n  \n"
    assert error_line(trace) == "ValueError: bad lr"
    assert error_line(None) == error_line("  \n") == "(no error recorded)"
    assert error_line("x" * 500, limit=10) == "x" * 10


def test_strict_json_has_no_nan_or_infinity() -> None:
    assert finite_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}}) == {
        "a": [1.0, None], "b": {"c": None}}
    assert finite_json(("x", 2, -math.inf, None)) == ["x", 2, None, None]

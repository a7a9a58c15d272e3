"""Curve summaries, the guessed direction of a metric, and how values are shown."""

from __future__ import annotations

import math

import pytest

from tunebook.summary import (
    CurveSummary,
    error_line,
    finite_json,
    format_value,
    guess_goal,
    summarize,
)


def test_best_and_final_points_of_a_curve() -> None:
    points = [(30, 0.4), (10, 0.9), (20, 0.3)]  # out of order: sorted by step
    assert summarize(points, "minimize") == CurveSummary(20, 0.3, 30, 0.4)
    assert summarize(points, "maximize") == CurveSummary(10, 0.9, 30, 0.4)


def test_ties_keep_the_earliest_step() -> None:
    assert summarize([(10, 0.5), (20, 0.5), (30, 0.7)], "minimize").best_step == 10


def test_non_finite_values_are_never_best_and_a_diverged_end_has_no_final_value() -> None:
    s = summarize([(10, math.nan), (20, 0.8), (30, -math.inf), (40, math.inf)], "minimize")
    assert (s.best_step, s.best_value) == (20, 0.8)
    assert (s.final_step, s.final_value) == (40, None)
    assert summarize([(10, math.nan)], "maximize") == CurveSummary(None, None, 10, None)


def test_an_empty_curve_has_no_summary() -> None:
    s = summarize([], "minimize")
    assert s == CurveSummary(None, None, None, None)
    assert s.value() is None and s.value(final=True) is None
    assert s.as_dict() == {"best_step": None, "best_value": None, "final_step": None,
                           "final_value": None}


def test_value_picks_best_or_final() -> None:
    s = CurveSummary(1, 0.1, 2, 0.2)
    assert s.value() == 0.1 and s.value(final=True) == 0.2


@pytest.mark.parametrize(("metric", "goal"), [
    ("accuracy", "maximize"), ("val_acc", "maximize"), ("test-F1", "maximize"),
    ("episode_reward", "maximize"), ("BLEU", "maximize"),
    ("loss", "minimize"), ("val_error", "minimize"), ("perplexity", "minimize"),
    ("accurate_loss", "minimize"), ("something", "minimize"),
])
def test_guess_goal_reads_the_words_of_a_metric_name(metric: str, goal: str) -> None:
    assert guess_goal(metric) == goal


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

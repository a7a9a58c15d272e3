"""Search-space checks: best points at the edge of the space."""

from __future__ import annotations

import math

import pytest
from checkdata import (
    flat,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_boundary,
)
from tunebook.search.space import Categorical, Float, Hyperparameter, Int


# ----------------------------------------------------------------------------- 1. boundary
def test_boundary_best_at_high_edge_is_a_problem_with_widened_log_bound() -> None:
    data = make_data([
        tr(flat(0.1), params={"lr": 0.9, "x": 0.5}),
        tr(flat(0.3), params={"lr": 0.01, "x": 0.5}),
        tr(flat(0.4), params={"lr": 0.003, "x": 0.4}),
    ])
    f = only(check_boundary(data))
    assert (f.check, f.severity, f.hyperparameter, f.study) == ("boundary", "problem", "lr", "main")
    ev = f.evidence
    assert ev["side"] == "high" and ev["overall_best_at_edge"] is True
    assert ev["suggested_high"] == pytest.approx(100.0)  # 1 * sqrt(1 / 1e-4)
    assert "suggested_low" not in ev
    assert [t["id"] for t in ev["studies"][0]["trials"]] == [1]
    assert ev["studies"][0]["trials"][0]["unit"] > 0.9


def test_boundary_cluster_in_other_study_is_info_on_low_side() -> None:
    mid = {"lr": 0.01, "x": 0.5}
    data = make_data([
        tr(flat(0.1), study="a", params=mid),
        tr(flat(0.2), study="a", params={"lr": 0.02, "x": 0.6}),
        tr(flat(0.3), study="b", params=mid),
        tr(flat(0.4), study="b", params={"lr": 1.2e-4, "x": 0.5}),
        tr(flat(0.5), study="b", params={"lr": 1.5e-4, "x": 0.5}),
    ])
    f = only(check_boundary(data))
    assert (f.severity, f.hyperparameter, f.study) == ("info", "lr", "b")
    ev = f.evidence
    assert ev["side"] == "low"
    assert ev["suggested_low"] == pytest.approx(1e-6)  # 1e-4 / sqrt(1e4)
    entry = ev["studies"][0]
    assert entry["best_at_edge"] is False and entry["n_at_edge"] == 2
    assert [t["id"] for t in entry["trials"]] == [4, 5]


def test_boundary_best_of_a_non_best_study_is_a_warning() -> None:
    data = make_data([
        tr(flat(0.1), study="a", params={"lr": 0.01, "x": 0.5}),
        tr(flat(0.3), study="b", params={"lr": 0.01, "x": 0.95}),
        tr(flat(0.4), study="b", params={"lr": 0.01, "x": 0.5}),
    ])
    f = only(check_boundary(data))
    assert (f.severity, f.hyperparameter, f.study) == ("warning", "x", "b")
    assert f.evidence["suggested_high"] == 1.0 and f.evidence["clamped"] is True
    assert "natural limit" in f.message and "if values beyond 1 are valid" in f.action


def test_boundary_borderline_inside_does_not_fire() -> None:
    data = make_data([
        tr(flat(0.1), params={"lr": 0.01, "x": 0.11}),  # unit 0.11: inside
        tr(flat(0.2), params={"lr": 0.01, "x": 0.05}),  # one at the edge, not the best
        tr(flat(0.3), params={"lr": 0.01, "x": 0.5}),
        tr(flat(0.4), params={"lr": 0.01, "x": 0.5}),
        tr(flat(0.5), params={"lr": 0.01, "x": 0.5}),
        tr(flat(0.6), params={"lr": 0.01, "x": 0.02}),  # 6th: outside the top 5
    ])
    assert check_boundary(data) == []


def test_boundary_maximize_follows_the_direction() -> None:
    space: dict[str, Hyperparameter] = {"x": Float(0.0, 2.0)}
    trials = [tr(flat(0.9), params={"x": 1.9}), tr(flat(0.5), params={"x": 1.0}),
              tr(flat(0.4), params={"x": 0.8})]
    f = only(check_boundary(make_data(trials, nuisance=space, goal="maximize", metric="acc")))
    assert f.evidence["side"] == "high" and f.hyperparameter == "x"
    assert f.evidence["suggested_high"] == pytest.approx(3.0)
    # Minimised, the x = 1.9 trial is the worst of three: nothing at the edge matters.
    assert check_boundary(make_data(trials, nuisance=space)) == []


def test_boundary_int_rounds_outward_and_clamps() -> None:
    space: dict[str, Hyperparameter] = {"layers": Int(1, 8), "c": Categorical(("a", "b"))}
    data = make_data([tr(flat(0.1), params={"layers": 8, "c": "a"}),
                      tr(flat(0.2), params={"layers": 4, "c": "b"})], nuisance=space)
    f = only(check_boundary(data))
    assert f.evidence["suggested_high"] == 12 and isinstance(f.evidence["suggested_high"], int)
    data = make_data([tr(flat(0.1), params={"layers": 1, "c": "a"})], nuisance=space)
    f = only(check_boundary(data))
    assert f.evidence["suggested_low"] == 1 and f.evidence["clamped"] is True
    assert "natural limit" in f.message


@pytest.mark.parametrize(("hp", "side", "expected"), [
    (Float(0.5, 0.99, "one_minus_log"), "high", 1 - 0.01 / math.sqrt(50)),
    (Float(0.5, 0.99, "one_minus_log"), "low", 0.0),  # 1 - 0.5 * sqrt(50) < 0: clamped
    (Float(0.9, 0.99, "one_minus_log"), "low", 1 - 0.1 * math.sqrt(10)),
    (Float(0.0, 0.5), "low", 0.0),
    (Float(-1.0, 1.0), "low", -2.0),
    (Float(0.0, 0.5), "high", 0.75),
    (Float(0.2, 1.0), "high", 1.0),  # a fraction stays <= 1
    (Int(2, 8, "log"), "low", 1),
    (Int(4, 15, "log"), "high", 31),  # (15 + 1) * sqrt(16 / 4) - 1
    (Int(10, 19), "low", 5),
])
def test_boundary_widened_bounds(hp: Float | Int, side: str, expected: float) -> None:
    from tunebook.analysis.checks.search_space import _widened

    value, _ = _widened(hp, side)
    assert value == pytest.approx(expected)


def test_boundary_tolerates_missing_and_bad_params() -> None:
    data = make_data([tr(flat(0.1), params={"x": "oops"}), tr(flat(0.2), params={"lr": -1.0}),
                      tr(flat(0.3))])
    assert check_boundary(data) == []

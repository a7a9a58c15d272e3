"""The helpers every check family shares: study order, sign, curves as arrays, rankings,
tolerances, scaled positions and message formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from checkdata import make_data, tr

from tunebook.analysis.checks import common
from tunebook.analysis.data import Curve
from tunebook.search.space import Categorical, Discrete, Float, Int


def test_studies_keep_the_declared_order_then_add_those_only_on_trials() -> None:
    data = make_data([tr([1.0], study="c"), tr([1.0], study="b"), tr([1.0], study="a")],
                     studies=["b", "z"])
    assert common.studies(data) == ["b", "z", "c", "a"]


@pytest.mark.parametrize(("goal", "sign"), [("minimize", 1.0), ("maximize", -1.0)])
def test_sign_makes_lower_better(goal: str, sign: float) -> None:
    data = make_data([tr([0.2]), tr([0.8])], goal=goal)
    assert common.sign(data) == sign
    best = data.ranked()[0]
    assert all(best.best_value * sign <= t.best_value * sign  # type: ignore[operator]
               for t in data.trials)


def test_points_are_the_finite_points_times_the_factor() -> None:
    data = make_data([tr([1.0, math.nan, 3.0, math.inf, 5.0], train=[9.0, 8.0])])
    (trial,) = data.trials
    steps, values = common.points(trial, "loss", -2.0)
    assert steps.dtype == values.dtype == np.float64
    assert steps.tolist() == [10.0, 30.0, 50.0]
    assert values.tolist() == [-2.0, -6.0, -10.0]
    assert common.points(trial, "train_loss")[1].tolist() == [9.0, 8.0]
    empty = common.points(trial, "accuracy")  # a metric the trial never reported
    assert [a.tolist() for a in empty] == [[], []]


def test_points_of_a_malformed_curve_are_empty_not_an_error() -> None:
    data = make_data([tr([1.0, 2.0])])
    (trial,) = data.trials
    # Steps and values of different lengths (a curve built wrongly): no points, no crash.
    broken = Curve((10, 20, 30), (1.0, 2.0))
    trial.curves["loss"] = broken  # type: ignore[index]
    assert [a.tolist() for a in common.points(trial, "loss")] == [[], []]


def test_best_curves_give_each_study_s_best_trial_with_enough_points() -> None:
    data = make_data([
        tr([0.9, 0.8, 0.7], study="a"),
        tr([0.5, 0.4, 0.3], study="a"),            # a's best
        tr([0.1, math.nan, 0.05], study="b"),      # b's best, two finite points only: skipped
        tr([0.6, 0.6, 0.6], study="b"),
        tr([0.01, 0.01, 0.01], study="c", status="failed"),  # c: nothing ranked
        tr([0.3, 0.2, 0.1, 0.05], study="d"),
    ], studies=["d", "c", "b", "a"])
    out = list(common.best_curves(data, -1.0))
    assert [(study, t.id) for study, t, _, _ in out] == [("d", 6), ("a", 2)]
    _, _, steps, y = out[1]
    assert steps.tolist() == [10.0, 20.0, 30.0]
    assert y.tolist() == [-0.5, -0.4, pytest.approx(-0.3)]


def test_best_curves_follow_the_goal() -> None:
    data = make_data([tr([0.1, 0.2, 0.3]), tr([0.5, 0.6, 0.7])], goal="maximize")
    ((study, best, _, y),) = common.best_curves(data, common.sign(data))
    assert (study, best.id) == ("main", 2)
    assert y.tolist() == [-0.5, -0.6, -0.7]  # loss-like: lower is better inside a check


def test_objective_is_the_finite_value_under_the_data_s_objective() -> None:
    data = make_data([tr([0.5, 0.2, 0.4]), tr(None, status="failed")])
    done, failed = data.trials
    assert common.objective(data, done) == pytest.approx(0.2)
    assert common.objective(data, failed) is None
    final = make_data([tr([0.5, 0.2, 0.4])], final=True)
    assert common.objective(final, final.trials[0]) == pytest.approx(0.4)


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_study_bests_are_ordered_best_first(goal: str) -> None:
    data = make_data([
        tr([0.4], study="a"), tr([0.2], study="a"),
        tr([0.9], study="b"),
        tr([0.1], study="c", status="infeasible"),  # no ranked trial: left out
        tr([0.6], study="d"),
    ], goal=goal)
    got = [(study, t.id, v) for study, t, v in common.study_bests(data)]
    if goal == "minimize":
        assert got == [("a", 2, 0.2), ("d", 5, 0.6), ("b", 3, 0.9)]
    else:
        assert got == [("b", 3, 0.9), ("d", 5, 0.6), ("a", 1, 0.4)]


def test_fit_is_least_squares() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert common.fit(x, 2.0 * x + 1.0) == (pytest.approx(2.0), pytest.approx(1.0))
    slope, intercept = common.fit(x, np.array([1.0, 0.0, 1.0, 0.0]))
    assert (slope, intercept) == (pytest.approx(-0.2), pytest.approx(0.8))
    # One distinct x: no slope to fit, the intercept is the mean.
    assert common.fit(np.array([5.0, 5.0]), np.array([1.0, 3.0])) == (0.0, 2.0)


def test_tol_is_relative_with_an_absolute_floor() -> None:
    assert common.tol(2.0) == pytest.approx(2e-3)
    assert common.tol(-2.0) == pytest.approx(2e-3)
    assert common.tol(0.0) == common.ABS_EPS
    assert common.tol(1e-8) == common.ABS_EPS  # 0.1% of it is below the floor


def test_num_takes_finite_numbers_only() -> None:
    assert common.num(3) == 3.0 and isinstance(common.num(3), float)
    assert common.num(0.5) == 0.5
    for bad in (None, True, "0.5", math.nan, math.inf, 10**400, [1.0]):
        assert common.num(bad) is None, bad


def test_unit_is_the_position_in_the_scaled_space() -> None:
    lr = Float(1e-4, 1.0, "log")
    assert common.unit(lr, 1e-2) == pytest.approx(0.5)
    assert common.unit(Float(0.0, 10.0), 2.5) == pytest.approx(0.25)
    assert common.unit(Discrete((16, 32, 64)), 32) == pytest.approx(0.5)
    assert common.unit(Int(0, 9), 4) == pytest.approx(0.45)
    # Outside the range is still a position (the boundary checks look for exactly that).
    assert common.unit(Float(0.0, 10.0), 20.0) == pytest.approx(2.0)


@pytest.mark.parametrize(("hp", "value"), [
    (Categorical(("relu", "gelu")), "relu"),   # unordered: no position
    (Float(1e-4, 1.0, "log"), 0.0),            # log of zero
    (Float(1e-4, 1.0, "log"), -1.0),
    (Float(0.0, 0.9, "one_minus_log"), 2.0),   # log of a negative
    (Discrete((16, 32, 64)), 48),              # not one of the values
    (Float(0.0, 1.0), "0.5"),
    (Float(0.0, 1.0), None),
    (Float(0.0, 1.0), True),
    (Float(0.0, 1.0), math.nan),
])
def test_unit_is_none_where_there_is_no_position(hp: object, value: object) -> None:
    assert common.unit(hp, value) is None  # type: ignore[arg-type]


def test_jsonable_keeps_plain_values_and_names_the_rest() -> None:
    for plain in (None, True, 3, "relu", 0.25):
        assert common.jsonable(plain) == plain and type(common.jsonable(plain)) is type(plain)
    assert [common.jsonable(v) for v in (math.nan, math.inf, -math.inf)] == [
        "nan", "inf", "-inf"]
    assert common.jsonable((1, 2)) == "(1, 2)"


def test_fmt_and_pct_for_messages() -> None:
    assert [common.fmt(x) for x in (0.123456, 12345678.0, 1e-7, 2.0, -0.5)] == [
        "0.1235", "1.235e+07", "1e-07", "2", "-0.5"]
    assert [common.pct(x) for x in (0.0, 0.256, 0.5, 1.0, 1.5)] == [
        "0%", "26%", "50%", "100%", "150%"]


def test_labels_and_trial_ref_name_trials() -> None:
    data = make_data([tr([1.0], study="a"), tr([1.0], study="a"), tr([1.0], study="b", id=9)])
    assert common.labels(data.trials) == ["a #0", "a #1", "b #0"]
    assert common.labels(iter(data.trials[2:])) == ["b #0"]
    assert [common.trial_ref(t) for t in data.trials] == [
        {"id": 1, "label": "a #0"}, {"id": 2, "label": "a #1"}, {"id": 9, "label": "b #0"}]

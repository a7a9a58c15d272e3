"""Failure checks: infeasible and crashed trials."""

from __future__ import annotations

import pytest
from checkdata import (
    GOOD,
    flat,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_failed_trials,
    check_infeasible,
)
from tunebook.search.space import Categorical, Discrete, Hyperparameter


# ----------------------------------------------------------------------------- 8. infeasible
def test_infeasible_located_at_high_learning_rate() -> None:
    feasible = [tr(flat(0.1 + 0.01 * i), params={"lr": 10 ** (-4 + 2 * i / 11), "x": i / 12})
                for i in range(12)]  # lr in [1e-4, 1e-2]
    infeasible = [tr(None, status="infeasible", params={"lr": 10 ** (-1 + i / 7), "x": i / 8},
                     reason="loss is nan") for i in range(7)]
    infeasible.append(tr(None, status="infeasible", params={"lr": 1e-3, "x": 0.5},
                         reason="loss is nan"))
    f = only(check_infeasible(make_data(feasible + infeasible)))
    assert (f.severity, f.hyperparameter) == ("warning", "lr")
    assert "8 of 20 finished trials (40%) are infeasible" in f.message
    assert "7 of 8 infeasible trials have lr >= 0.1 (top 25% of its log range)" in f.message
    assert "0 of 12 feasible do" in f.message
    where = f.evidence["where"]
    assert where["side"] == "high" and where["separation"] == pytest.approx(7 / 8)
    assert f.evidence["reasons"] == {"loss is nan": 8}
    assert f.evidence["separations"][0]["hyperparameter"] == "lr"


def test_infeasible_categorical_value() -> None:
    space: dict[str, Hyperparameter] = {"opt": Categorical(("sgd", "adam")),
                                        "bs": Discrete((32, 64, 128))}
    trials = [tr(flat(0.2), params={"opt": "adam", "bs": b}) for b in (32, 64, 128, 32, 64)]
    trials += [tr(None, status="infeasible", params={"opt": "sgd", "bs": b})
               for b in (32, 64, 128)]
    f = only(check_infeasible(make_data(trials, nuisance=space)))
    assert f.hyperparameter == "opt"
    assert "3 of 3 infeasible trials have opt = sgd; 0 of 5 feasible do" in f.message
    assert f.evidence["where"]["rates"]["sgd"]["rate"] == pytest.approx(1.0)


def test_infeasible_exactly_twenty_percent_does_not_fire() -> None:
    trials = [tr(flat(0.2), params={"lr": 0.01, "x": 0.5}) for _ in range(8)]
    trials += [tr(None, status="infeasible", params={"lr": 0.9, "x": 0.5}) for _ in range(2)]
    trials += [tr(None, status="failed", error="boom") for _ in range(5)]  # not counted
    assert check_infeasible(make_data(trials)) == []


def test_infeasible_all_is_a_problem() -> None:
    trials = [tr(None, status="infeasible", params={"lr": 0.5, "x": 0.5}) for _ in range(3)]
    f = only(check_infeasible(make_data(trials)))
    assert f.severity == "problem" and f.evidence["where"] is None
    assert f.evidence["n_completed"] == 0 and f.hyperparameter is None


# ----------------------------------------------------------------------------- 10. failed
def test_failed_trials_grouped_by_last_traceback_line() -> None:
    tb = "Traceback (most recent call last):\n  File 'x.py'\nRuntimeError: CUDA out of memory\n"
    data = make_data([tr(GOOD), tr(None, status="failed", error=tb),
                      tr(None, status="failed", error=tb),
                      tr(None, status="failed", error="ValueError: bad\n\n"),
                      tr(None, status="failed")])
    f = only(check_failed_trials(data))
    assert f.severity == "warning"
    errors = f.evidence["errors"]
    assert [(e["error"], e["count"]) for e in errors] == [
        ("RuntimeError: CUDA out of memory", 2), ("(no error recorded)", 1),
        ("ValueError: bad", 1)]
    assert errors[0]["ids"] == [2, 3]
    assert "4 of 5 trials failed with 3 distinct errors" in f.message


def test_no_failed_trials() -> None:
    assert check_failed_trials(make_data([tr(GOOD)])) == []

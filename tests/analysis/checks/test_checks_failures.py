"""Failure checks: infeasible and crashed trials."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from checkdata import (
    GOOD,
    flat,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_at_chance,
    check_failed_trials,
    check_infeasible,
    check_near_divergence,
    reconcile,
)
from tunebook.analysis.checks.divergence import spearman
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding, contradictions
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


def test_failed_trials_name_their_trials_and_advise_a_retry() -> None:
    data = make_data([tr(GOOD), tr(None, status="failed", error="boom")])
    f = only(check_failed_trials(data))
    assert f.trials == [{"id": 2, "label": "main #1"}]
    assert f.advice == {"failed_trials": "retry"}


# ----------------------------------------------------------------------------- at chance
def _error_specs(levels: list[float], lrs: list[float],
                 chance: float | None = 0.9) -> list[dict[str, Any]]:
    """One trial per level (flat error curves), the first reporting ``val_error_chance``."""
    extra = {"val_error_chance": [chance]} if chance is not None else None
    return [tr(flat(v), params={"lr": lr, "x": 0.5}, curves=extra if i == 0 else None)
            for i, (v, lr) in enumerate(zip(levels, lrs, strict=True))]


def _errors(levels: list[float], lrs: list[float], chance: float | None = 0.9,
            **kwargs: Any) -> ExperimentData:
    return make_data(_error_specs(levels, lrs, chance), metric="val_error", **kwargs)


GOOD_LEVELS = [0.1 + 0.01 * i for i in range(12)]
GOOD_LRS = [float(v) for v in np.geomspace(1e-3, 0.1, 12)]


def test_at_chance_names_the_trials_and_where_they_are() -> None:
    data = _errors([*GOOD_LEVELS, 0.88, 0.9, 0.95], [*GOOD_LRS, 0.3, 0.5, 0.9])
    f = only(check_at_chance(data))
    assert f.severity == "warning" and f.hyperparameter == "lr"
    # margin = 10% of (0.9 - 0.1): 0.88 on 10 classes is at chance
    assert f.evidence["margin"] == pytest.approx(0.08)
    assert "3 of 15 completed trials are no better than chance" in f.message
    assert "at least 0.82 counts" in f.message and "main #12 0.88" in f.message
    assert "3 of 3 at-chance trials have lr >= 0.3" in f.message
    assert [t["label"] for t in f.trials] == ["main #12", "main #13", "main #14"]
    assert f.advice == {"search_space": "adjust"}
    # 3 of 15 is not too many infeasible trials, and none diverged
    assert check_infeasible(data) == []


def test_at_chance_silent_without_a_chance_level_or_when_all_learned() -> None:
    assert check_at_chance(_errors([*GOOD_LEVELS, 0.88], [*GOOD_LRS, 0.5], chance=None)) == []
    assert check_at_chance(_errors([*GOOD_LEVELS, 0.75], [*GOOD_LRS, 0.5])) == []


def test_at_chance_level_from_the_settings() -> None:
    data = _errors([*GOOD_LEVELS, 0.88], [*GOOD_LRS, 0.5], chance=None,
                   checks={"resolution": {"chance_level": 0.9}})
    f = only(check_at_chance(data))
    assert f.evidence["chance"] == 0.9 and f.evidence["trials"] == [13]


def test_at_chance_is_judged_within_the_resolution() -> None:
    # 300 validation examples: min_change(0.9) = 1 binomial SE = 0.0173; a best of 0.87 is
    # 9 examples better than chance but only 0.03: every trial is at chance.
    extra = {"val_error_chance": [0.9], "val_examples": [300]}
    trials = [tr(flat(v), params={"lr": lr, "x": 0.5}, curves=extra if i == 0 else None)
              for i, (v, lr) in enumerate([(0.89, 0.01), (0.885, 0.02), (0.87, 0.03)])]
    f = only(check_at_chance(make_data(trials, metric="val_error")))
    assert f.evidence["margin"] == pytest.approx(np.sqrt(0.09 / 300))
    assert f.evidence["trials"] == [1, 2]
    assert "within 5 of 300 examples" in f.message


def test_a_study_whose_best_is_at_chance_is_a_problem() -> None:
    extra = {"val_error_chance": [0.9]}
    trials = [tr(flat(0.1 + 0.01 * i), study="a", params={"lr": 0.01, "x": i / 12},
                 curves=extra if i == 0 else None) for i in range(12)]
    trials += [tr(flat(0.89 + 0.001 * i), study="b", params={"lr": 0.01, "x": i / 12})
               for i in range(12)]
    f = only(check_at_chance(make_data(trials, metric="val_error")))
    assert f.severity == "problem" and f.study == "b" and f.hyperparameter is None
    assert "The best trial of b is at chance" in f.message
    assert f.action.startswith("Check the training pipeline")


def test_at_chance_for_a_maximised_accuracy() -> None:
    extra = {"val_accuracy_chance": [0.1]}
    trials = [tr([0.05, 0.08, v], params={"lr": 0.01, "x": 0.5},
                 curves=extra if i == 0 else None)
              for i, v in enumerate([0.9, 0.85, 0.8, 0.12])]
    data = make_data(trials, metric="val_accuracy", goal="maximize")
    f = only(check_at_chance(data))
    # margin 10% of (0.9 - 0.1) = 0.08: an accuracy of at most 0.18 is at chance
    assert f.evidence["trials"] == [4] and "at most 0.18 counts" in f.message


def test_infeasible_counts_the_trials_at_chance_with_the_diverged_ones() -> None:
    diverged = [tr(None, status="infeasible", params={"lr": lr, "x": 0.5}, reason="nan")
                for lr in (0.4, 0.7, 0.9)]
    trials = _error_specs([*GOOD_LEVELS, 0.89, 0.9], [*GOOD_LRS, 0.3, 0.5]) + diverged
    data = make_data(trials, metric="val_error")
    f = only(check_infeasible(data))
    assert "5 of 17 finished trials (29%) are infeasible (2 of them completed no better " \
           "than chance)" in f.message
    assert "5 of 5 infeasible trials have lr >= 0.3" in f.message
    assert f.evidence["reasons"] == {"nan": 3, "completed at chance level": 2}
    assert f.advice == {"search_space": "adjust", "range:lr": "narrow_high"}
    assert {t["id"] for t in f.trials} == {13, 14, 15, 16, 17}
    # the same trials, the same word: at_chance names the two completed ones
    assert only(check_at_chance(data)).evidence["trials"] == [13, 14]


def test_infeasible_without_a_clear_split_advises_no_range() -> None:
    trials = [tr(flat(0.2), params={"lr": lr, "x": 0.5}) for lr in (1e-3, 1e-2, 1e-1) * 3]
    trials += [tr(None, status="infeasible", params={"lr": lr, "x": 0.5})
               for lr in (1e-3, 1e-2, 1e-1)]
    f = only(check_infeasible(make_data(trials)))
    assert f.advice == {"search_space": "adjust"}


def test_infeasible_and_boundary_at_the_same_edge_are_resolved() -> None:
    feasible = [tr(flat(0.3 - 0.01 * i), params={"lr": 10 ** (-3 + 2.5 * i / 11), "x": 0.5})
                for i in range(12)]
    infeasible = [tr(None, status="infeasible", params={"lr": lr, "x": 0.5})
                  for lr in (0.4, 0.6, 0.8, 0.9)]
    data = make_data(feasible + infeasible)
    inf = only(check_infeasible(data))
    assert inf.advice["range:lr"] == "narrow_high"
    boundary = Finding("boundary", "warning", "lr's best trials are at the high edge",
                       section=inf.section, action="widen", hyperparameter="lr",
                       advice={"range:lr": "widen_high"})
    out = reconcile([inf, boundary], data)
    assert not contradictions(out)
    assert {f.check for f in out} == {"infeasible", "boundary"}
    resolved = next(f for f in out if f.check == "infeasible")
    assert resolved.advice == {"search_space": "adjust", "stability": "improve"}
    assert "edge of instability" in resolved.message


# ----------------------------------------------------------------------------- near divergence
def _edge(top: float, bad: list[float], slope: float = 0.06, status: str = "infeasible",
          study: str = "main", between: list[float] | None = None) -> list[dict[str, Any]]:
    """13 feasible trials with lr in [1e-3, top] improving towards top, ``bad`` above."""
    trials = [tr(flat(0.1 + slope * float(np.log10(top / lr))), study=study,
                 params={"lr": float(lr), "x": 0.5}) for lr in np.geomspace(1e-3, top, 13)]
    trials += [tr(flat(0.4), study=study, params={"lr": lr, "x": 0.5}) for lr in between or []]
    trials += [tr(None, status=status, study=study, params={"lr": lr, "x": 0.5})
               for lr in bad]
    return trials


def test_near_divergence_fires_on_the_best_lr_at_the_edge() -> None:
    data = make_data(_edge(0.05, [0.08, 0.2, 0.5]))
    f = only(check_near_divergence(data))
    assert (f.severity, f.hyperparameter, f.study) == ("warning", "lr", "main")
    assert f.advice == {"stability": "improve"}
    assert f.evidence["side"] == "high" and f.evidence["n_bad_beyond"] == 3
    assert f.evidence["trend"] == pytest.approx(1.0)
    assert "(main #12, lr = 0.05) is the last feasible one" in f.message
    assert "3 of the 3 trials above it are (lr = 0.08, 0.2, 0.5)" in f.message
    assert "warmup or gradient clipping" in f.action
    assert [t["label"] for t in f.trials] == ["main #12", "main #13", "main #14", "main #15"]


def test_near_divergence_on_the_low_side_and_per_study() -> None:
    # the best is the smallest feasible lr and the smaller ones diverge, in study b only
    good = [tr(flat(0.1 + 0.05 * float(np.log10(lr / 0.01))), study="b",
               params={"lr": float(lr), "x": 0.5}) for lr in np.geomspace(0.01, 1.0, 13)]
    bad = [tr(None, status="infeasible", study="b", params={"lr": lr, "x": 0.5})
           for lr in (1e-4, 5e-4, 2e-3)]
    other = _edge(0.05, [], study="a")
    f = only(check_near_divergence(make_data(other + good + bad)))
    assert (f.study, f.evidence["side"]) == ("b", "low")
    assert "the nearest trial below it is infeasible" in f.message


def test_near_divergence_silent_when_a_feasible_trial_sits_between() -> None:
    assert check_near_divergence(make_data(_edge(0.05, [0.2, 0.5], between=[0.08]))) == []


def test_near_divergence_needs_two_bad_trials_and_a_trend() -> None:
    assert check_near_divergence(make_data(_edge(0.05, [0.08]))) == []
    # flat results: the best sits at the edge by the luck of the noise
    flat_results = _edge(0.05, [0.08, 0.2, 0.5], slope=0.0)
    for i, t in enumerate(flat_results[:13]):
        t["values"] = flat(0.1 + 0.001 * ((i * 7) % 13))
    flat_results[12]["values"] = flat(0.099)
    assert check_near_divergence(make_data(flat_results)) == []


def test_near_divergence_counts_trials_at_chance_as_bad() -> None:
    trials = _edge(0.05, [])
    trials[0]["curves"] = {"loss_chance": [2.3]}
    trials += [tr(flat(2.35), params={"lr": lr, "x": 0.5}) for lr in (0.08, 0.2, 0.5)]
    f = only(check_near_divergence(make_data(trials)))
    assert f.evidence["bad_trials"] == [14, 15, 16]


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None

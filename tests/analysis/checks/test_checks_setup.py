"""Setup checks: the batch size searched or compared, too few trials for the nuisance space."""

from __future__ import annotations

from typing import Any

import pytest
from checkdata import flat, make_data, only, tr

from tunebook.analysis.checks import (
    SetupThresholds,
    check_batch_size_tuned,
    check_too_few_trials,
    reconcile,
    run_checks,
)
from tunebook.analysis.checks.setup import adam_role, is_batch_size, is_learning_rate
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding, contradictions
from tunebook.search.space import Discrete, Float, Hyperparameter

LR = Float(1e-4, 1.0, "log")


@pytest.mark.parametrize(("name", "expected"), [
    ("batch_size", True), ("Batch_Size", True), ("batch", True), ("batchsize", True),
    ("train_batch_size", True), ("per_device_batchsize", True),
    ("eval_batch_size", False), ("val_batch_size", False), ("batches_per_epoch", False),
    ("batch_norm", False), ("bs", False),
])
def test_batch_size_names(name: str, expected: bool) -> None:
    assert is_batch_size(name) is expected


@pytest.mark.parametrize(("name", "role"), [
    ("lr", "learning_rate"), ("learning_rate", "learning_rate"), ("base_lr", "learning_rate"),
    ("beta1", "beta1"), ("one_minus_beta1", "beta1"), ("adam_beta_1", "beta1"),
    ("beta2", "beta2"), ("one_minus_beta2", "beta2"), ("epsilon", "epsilon"),
    ("adam_eps", "epsilon"), ("weight_decay", None), ("momentum", None), ("lrelu_slope", None),
])
def test_adam_roles(name: str, role: str | None) -> None:
    assert adam_role(name) == role
    assert is_learning_rate(name) is (role == "learning_rate")


def _data(space: dict[str, Hyperparameter], n: int, **kwargs: Any) -> ExperimentData:
    trials = [tr(flat(0.2 + 0.01 * i), params={name: hp.from_unit((i + 0.5) / n)
                                               for name, hp in space.items()})
              for i in range(n)]
    return make_data(trials, nuisance=space, search_trials=n, **kwargs)


# ----------------------------------------------------------------------------- batch size
def test_batch_size_as_nuisance_is_a_warning() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "batch_size": Discrete((32, 64, 128))}
    f = only(check_batch_size_tuned(_data(space, 12)))
    assert (f.severity, f.hyperparameter) == ("warning", "batch_size")
    assert "searched over discrete 32, 64, 128; the best trials use 32" in f.message
    assert f.advice == {"range:batch_size": "fix", "choose:batch_size": "by_cost"}
    assert f.trials == [{"id": 1, "label": "main #0"}]
    assert f.section == "Choosing the batch size"


def test_batch_size_as_scientific_is_information() -> None:
    trials = [tr(flat(0.2 + 0.01 * i), study=f"batch_size={b}", params={"lr": 0.01})
              for b in (32, 256) for i in range(3)]
    data = make_data(trials, nuisance={"lr": LR}, scientific={"batch_size": [32, 256]})
    f = only(check_batch_size_tuned(data))
    assert (f.severity, f.advice) == ("info", {"choose:batch_size": "by_cost"})
    assert "The nuisance hyperparameters include lr" in f.message
    assert [t["label"] for t in f.trials] == ["batch_size=32 #0", "batch_size=256 #0"]


def test_batch_size_compared_without_a_tuned_learning_rate_is_a_warning() -> None:
    trials = [tr(flat(0.2), study=f"batch_size={b}", params={"x": 0.5}) for b in (32, 256)]
    data = make_data(trials, nuisance={"x": Float(0.0, 1.0)},
                     scientific={"batch_size": [32, 256]})
    f = only(check_batch_size_tuned(data))
    assert f.severity == "warning" and "No learning rate" in f.message


def test_fixed_batch_size_is_fine() -> None:
    assert check_batch_size_tuned(_data({"lr": LR}, 12, fixed={"batch_size": 64})) == []


def test_boundary_on_the_batch_size_is_set_aside() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "batch_size": Discrete((32, 64, 128))}
    data = _data(space, 12)
    batch = only(check_batch_size_tuned(data))
    boundary = Finding("boundary", "problem", "best at the low edge", action="widen",
                       hyperparameter="batch_size", advice={"range:batch_size": "widen_low"})
    out = reconcile([boundary, batch], data)
    assert [f.check for f in out] == ["batch_size_tuned"] and not contradictions(out)
    assert out[0].evidence["superseded"][0]["check"] == "boundary"
    assert "set aside" in out[0].message


# ----------------------------------------------------------------------------- too few trials
def test_six_trials_over_six_nuisance_hyperparameters() -> None:
    space: dict[str, Hyperparameter] = {n: Float(0.0, 1.0) for n in "abcde"}
    space["lr"] = LR
    f = only(check_too_few_trials(_data(space, 6)))
    assert f.severity == "warning" and f.advice == {"trials": "more"}
    assert f.message == ("Each study plans 6 trials for 6 nuisance hyperparameters "
                         "(a, b, c, d, e, lr): fewer than 5 per hyperparameter (30 would be).")
    assert f.evidence["needed"] == 30 and f.evidence["adam"] is False


def test_five_trials_per_hyperparameter_are_enough() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "x": Float(0.0, 1.0)}
    assert check_too_few_trials(_data(space, 10)) == []
    assert only(check_too_few_trials(_data(space, 9))).evidence["needed"] == 10


def test_the_planned_budget_is_judged_and_the_finished_trials_reported() -> None:
    space: dict[str, Hyperparameter] = {n: Float(0.0, 1.0) for n in "abc"}
    trials = [tr(flat(0.2), params={"a": 0.5, "b": 0.5, "c": 0.5}) for _ in range(4)]
    f = only(check_too_few_trials(make_data(trials, nuisance=space, search_trials=12)))
    assert "plans 12 trials" in f.message and "(so far 4 finished in the smallest study)" \
        in f.message
    # no trial has run: the plan alone is judged
    assert only(check_too_few_trials(make_data([], nuisance=space, search_trials=12)))


ADAM: dict[str, Hyperparameter] = {
    "lr": LR, "beta1": Float(0.5, 0.99, "one_minus_log"),
    "beta2": Float(0.9, 0.9999, "one_minus_log"), "epsilon": Float(1e-10, 1e-6, "log")}


@pytest.mark.parametrize(("budget", "excess"), [
    (8, ["beta1", "beta2", "epsilon"]), (9, ["beta1", "beta2", "epsilon"]),
    (10, ["beta2", "epsilon"]), (24, ["beta2", "epsilon"]), (25, ["beta2"]), (49, ["beta2"]),
    (50, []),
])
def test_adam_budgets(budget: int, excess: list[str]) -> None:
    findings = check_too_few_trials(_data(ADAM, budget, fixed={"optimizer": "adam"}))
    if not excess:
        assert findings == []
        return
    f = only(findings)
    assert f.evidence["adam_excess"] == excess
    assert f.advice == {"trials": "more", **{f"range:{n}": "fix" for n in excess}}
    assert f"{', '.join(excess)} {'is' if len(excess) == 1 else 'are'} searched too" in f.message


def test_adam_message_at_eight_trials() -> None:
    f = only(check_too_few_trials(_data(ADAM, 8, fixed={"optimizer": "AdamW"})))
    assert ("with Adam and 8 trials per study the playbook tunes only the learning rate, but "
            "beta1, beta2, epsilon are searched too") in f.message
    assert f.action.startswith("Fix beta1, beta2, epsilon (e.g. at the optimizer's defaults)")


def test_adam_is_recognised_from_the_scientific_values_or_the_names() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "momentum": Float(0.5, 0.99)}
    # 12 trials for lr and momentum: plenty, and not Adam
    assert check_too_few_trials(_data(space, 12, fixed={"optimizer": "sgd"})) == []
    eps = {"lr": LR, "eps": Float(1e-10, 1e-6, "log")}
    assert only(check_too_few_trials(_data(eps, 12))).evidence["adam_excess"] == ["eps"]
    trials = [tr(flat(0.2), study=f"optimizer={o}", params={"lr": 0.01, "eps": 1e-8})
              for o in ("sgd", "nadam")]
    data = make_data(trials, nuisance=eps, search_trials=12,
                     scientific={"optimizer": ["sgd", "nadam"]})
    assert only(check_too_few_trials(data)).evidence["adam"] is True


def test_too_few_trials_thresholds_from_the_experiment_file() -> None:
    space: dict[str, Hyperparameter] = {n: Float(0.0, 1.0) for n in "abc"}
    data = _data(space, 9, checks={"setup": {"min_trials_per_hp": 3}})
    assert not [f for f in run_checks(data) if f.check == "too_few_trials"]
    assert check_too_few_trials(data, SetupThresholds())


def test_boundary_on_an_adam_hyperparameter_fixed_at_this_budget_is_set_aside() -> None:
    data = _data(ADAM, 8, fixed={"optimizer": "adam"})
    few = only(check_too_few_trials(data))
    boundary = Finding("boundary", "warning", "best at the high edge of beta2", action="widen",
                       hyperparameter="beta2", advice={"range:beta2": "widen_high"})
    out = reconcile([few, boundary], data)
    assert [f.check for f in out] == ["too_few_trials"] and not contradictions(out)
    assert "The boundary finding on beta2 is set aside" in out[0].message

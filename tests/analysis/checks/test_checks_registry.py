"""The check registry: every check on partial data, run_checks, thresholds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from checkdata import (
    GOOD,
    OVERFIT,
    SECTIONS,
    dumpable,
    flat,
    make_data,
    tr,
)

from tunebook.analysis.checks import (
    CHECKS,
    CurveThresholds,
    check_infeasible,
    registered,
    run_checks,
    thresholds_from_config,
    thresholds_used,
)
from tunebook.analysis.data import ExperimentData
from tunebook.errors import ConfigError
from tunebook.experiment import Experiment
from tunebook.report import build_report

# ----------------------------------------------------------------------------- partial data
NAN = float("nan")
DEGENERATE: dict[str, ExperimentData] = {
    "no trials": make_data([], studies=["main", "empty"]),
    "only pending": make_data([tr(None, status="pending"), tr(None, status="running")]),
    "one evaluation": make_data([tr([0.5], params={"lr": 0.01, "x": 0.5}),
                                 tr([0.6], params={"lr": 0.02, "x": 0.4})]),
    "nan curves": make_data([tr([NAN, NAN, NAN], params={"lr": 0.01, "x": 0.5}),
                             tr([1.0, NAN, 0.5, NAN], params={"lr": 0.02, "x": 0.4},
                                train=[NAN, 1.0, NAN, NAN])]),
    "no curves": make_data([tr(None, params={"lr": 0.01}), tr(None, params={"lr": 0.9})]),
    "empty study": make_data([tr(flat(0.2), study="a", params={"lr": 0.01, "x": 0.5})],
                             studies=["a", "b"]),
    "all infeasible": make_data([tr([NAN], status="infeasible"), tr(None, status="infeasible")]),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", list(CHECKS))
def test_checks_survive_partial_data(case: str, name: str) -> None:
    findings = CHECKS[name](DEGENERATE[case])
    dumpable(findings)
    if case == "all infeasible" and name == "infeasible":
        assert [f.severity for f in findings] == ["problem"]
    elif case in ("nan curves", "one evaluation") and name == "eval_steps":
        assert len(findings) == 1  # completed with 1-4 evaluations of the 10 expected
    else:
        assert findings == []


def test_final_value_objective_is_supported() -> None:
    data = make_data([tr(OVERFIT, params={"lr": 0.9, "x": 0.5}), tr(GOOD)], final=True)
    findings = run_checks(data)
    dumpable(findings)
    # Final values rank GOOD (0.40) above OVERFIT (0.80): lr = 0.9 is not the best any more.
    assert not [f for f in findings if f.check == "boundary" and f.severity == "problem"]


# ----------------------------------------------------------------------------- run_checks
def test_registry_names_match_functions() -> None:
    # Registration order is family by family (the package imports its modules in the playbook's
    # order); before the split the training-length and failure checks were interleaved.
    assert list(CHECKS) == [
        "boundary", "no_effect", "overfitting", "late_variance", "train_loss_increases",
        "still_improving",
        "saturated_early", "best_step_position", "infeasible", "failed_trials", "eval_steps",
        "enough_trials"]
    specs = registered()
    for name, fn in CHECKS.items():
        assert fn.__name__ == f"check_{name}" and fn.__doc__
        assert specs[name].function is fn and specs[name].section in SECTIONS


def test_run_checks_sorted_and_serialisable() -> None:
    data = make_data([
        tr([1.0, 0.6, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2], params={"lr": 0.9, "x": 0.5}),
        tr(GOOD, params={"lr": 0.01, "x": 0.5}, steps=[10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
        tr(None, status="failed", error="boom"),
    ])
    findings = run_checks(data)
    dumpable(findings)
    got = [(f.severity, f.check) for f in findings]
    # (Two trials are too few for the boundary model: severity grows with evidence.)
    assert got == [("warning", "eval_steps"), ("warning", "failed_trials"),
                   ("info", "saturated_early")]
    assert [f.check for f in run_checks(data, only=["saturated_early", "eval_steps"])] == [
        "eval_steps", "saturated_early"]
    with pytest.raises(ConfigError, match=r"unknown check 'saturated'.*did you mean "
                                          r"'saturated_early'"):
        run_checks(data, only=["saturated"])


def test_every_finding_carries_its_registered_section() -> None:
    data = make_data([tr(OVERFIT, params={"lr": 0.9, "x": 0.99}), tr(GOOD),
                      tr(None, status="failed", error="boom")])
    findings = run_checks(data)
    assert findings
    for f in findings:
        assert f.section == registered()[f.check].section


def test_thresholds_from_the_experiment_file_change_the_verdict() -> None:
    # 30% infeasible fires at the default 20% and not when the experiment allows 40%.
    trials = [tr(GOOD)] * 7 + [tr(None, status="infeasible")] * 3
    assert check_infeasible(make_data(trials))
    config = {"failures": {"infeasible_fraction": 0.4}}
    th = thresholds_from_config(config)
    assert th["failures"].infeasible_fraction == 0.4
    assert th["curves"] == CurveThresholds()
    assert run_checks(make_data(trials), only=["infeasible"], thresholds=th) == []
    exp = dataclasses.replace(make_data(trials).experiment, checks=config)
    data = dataclasses.replace(make_data(trials), experiment=exp)
    assert run_checks(data, only=["infeasible"]) == []
    assert thresholds_used(data)["failures"] == {"infeasible_fraction": 0.4}


@pytest.mark.parametrize(("config", "key", "message"), [
    ({"curve": {}}, "checks.curve", "unknown check family 'curve' (did you mean 'curves'?)"),
    ({"curves": {"overfit_rise": 0.1}}, "checks.curves.overfit_rise",
     "unknown threshold 'overfit_rise' (did you mean 'overfit_rel_rise'?)"),
    ({"curves": {"overfit_top_k": 2.5}}, "checks.curves.overfit_top_k", "must be an integer"),
    ({"curves": {"overfit_rel_rise": "x"}}, "checks.curves.overfit_rel_rise",
     "must be a number"),
    ({"curves": {"overfit_rel_rise": True}}, "checks.curves.overfit_rel_rise",
     "must be a number"),
    ({"curves": {"overfit_rel_rise": -1}}, "checks.curves.overfit_rel_rise", ">= 0"),
    ({"curves": {"train_loss_metric": 3}}, "checks.curves.train_loss_metric",
     "non-empty string"),
    ({"curves": [1]}, "checks.curves", "must be a mapping"),
])
def test_bad_thresholds_are_config_errors(config: dict[str, Any], key: str,
                                          message: str) -> None:
    with pytest.raises(ConfigError) as info:
        thresholds_from_config(config, "exp.yaml")
    assert info.value.source == "exp.yaml" and info.value.key == key
    assert message in info.value.message


def test_integer_accepted_for_a_float_threshold() -> None:
    th = thresholds_from_config({"curves": {"overfit_rel_rise": 1}})
    assert th["curves"].overfit_rel_rise == 1.0 and isinstance(th["curves"].overfit_rel_rise,
                                                               float)


# ----------------------------------------------------------------------------- experiment file
EXPERIMENT = {"name": "e", "workload": "m:f", "objective": {"metric": "loss"},
              "max_train_steps": 100, "eval_every": 10,
              "nuisance": {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"}}}


def test_checks_section_of_the_experiment_file_round_trips() -> None:
    exp = Experiment.from_dict({**EXPERIMENT, "checks": {"curves": {"overfit_rel_rise": 0.05}}},
                               source="e.yaml")
    assert exp.checks == {"curves": {"overfit_rel_rise": 0.05}}
    assert Experiment.from_dict(exp.to_dict(), source="e.yaml") == exp
    # Thresholds change how results are read, never which trials run.
    assert exp.identity() == Experiment.from_dict(EXPERIMENT).identity()
    assert "checks" not in Experiment.from_dict(EXPERIMENT).to_dict()


@pytest.mark.parametrize(("checks", "key"), [
    ([1], "checks"),
    ({"curves": 0.05}, "checks.curves"),
    ({"curves": {"overfit_rel_rise": [1]}}, "checks.curves.overfit_rel_rise"),
])
def test_checks_section_must_be_a_mapping_of_mappings_of_scalars(checks: Any, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict({**EXPERIMENT, "checks": checks}, source="e.yaml")
    assert info.value.source == "e.yaml" and info.value.key == key


def test_a_misspelt_threshold_in_the_file_names_the_file_key_and_nearest_name() -> None:
    exp = Experiment.from_dict({**EXPERIMENT, "checks": {"curves": {"overfit_rise": 0.02}}},
                               source="e.yaml")
    data = dataclasses.replace(make_data([tr(GOOD)]), experiment=exp)
    with pytest.raises(ConfigError) as info:
        run_checks(data)
    assert str(info.value).startswith("e.yaml: checks.curves.overfit_rise: unknown threshold "
                                      "'overfit_rise' (did you mean 'overfit_rel_rise'?)")


def test_the_report_prints_the_thresholds_used() -> None:
    trials = [tr(GOOD, params={"lr": 0.01, "x": 0.5})]
    base = make_data(trials)
    exp = dataclasses.replace(base.experiment, checks={"failures": {"infeasible_fraction": 0.4}})
    page = build_report(dataclasses.replace(base, experiment=exp)).html
    assert "thresholds used" in page
    assert "infeasible_fraction=0.4" in page and "overfit_rel_rise=0.02" in page

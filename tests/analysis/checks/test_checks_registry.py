"""The check registry: every check on partial data, run_checks, thresholds."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
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
from scenarios_curves import (
    overfitting_and_early_peaks_while_best_still_improves,
    overfitting_while_best_trial_still_improves,
    overfitting_with_late_best_steps_elsewhere,
    saturated_best_with_late_trials_elsewhere,
    still_improving_best_with_early_trials_elsewhere,
)

from tunebook.analysis.checks import (
    CHECKS,
    CurveThresholds,
    check_infeasible,
    reconcile,
    registered,
    run_checks,
    thresholds_from_config,
    thresholds_used,
)
from tunebook.analysis.checks.resolutions import follow_best, groups
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding, contradictions
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
        "still_improving", "saturated_early", "best_step_position", "infeasible", "at_chance",
        "failed_trials", "near_divergence", "eval_steps", "enough_trials", "batch_size_tuned",
        "too_few_trials", "clipping", "class_imbalance", "periodic_validation", "input_bound",
        "eval_subset", "isolation"]
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
    assert thresholds_used(data)["failures"]["infeasible_fraction"] == 0.4


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


# ----------------------------------------------------------------------------- reconcile
def _alone(data: ExperimentData) -> list[Finding]:
    """Every check's findings, each check run by itself (nothing reconciled)."""
    return [f for name in CHECKS for f in run_checks(data, only=[name])]


def test_overfitting_and_late_best_steps_become_one_finding() -> None:
    data = overfitting_with_late_best_steps_elsewhere()
    alone = _alone(data)
    assert {f.check for f in alone} == {"overfitting", "best_step_position"}
    assert [k for _, _, k in contradictions(alone)] == ["training_length"]
    (f,) = run_checks(data)
    over = next(a for a in alone if a.check == "overfitting")
    late = next(a for a in alone if a.check == "best_step_position")
    assert (f.check, f.study, f.severity) == ("overfitting", "main", "problem")
    assert f.advice == {"regularization": "more", "training_length": "shorter"}
    assert f.trials[:len(over.trials)] == over.trials
    assert {t["id"] for t in f.trials} == {t["id"] for t in over.trials + late.trials}
    assert [x["check"] for x in f.evidence["combined_with"]] == ["best_step_position"]
    assert f.evidence["best_trial"] == over.trials[0]
    assert f.evidence["training_length"] == "shorter"
    assert "while its train_loss keeps falling" in f.message
    assert "10 of 12 trials reach their best only in the last 25%" in f.message
    assert "regularise, or stop earlier" in f.message
    # The late trials are named, the overfitting ones are not repeated among them.
    late_part = f.message.split("last 25% of training")[1]
    assert all(t["label"] not in late_part.split(":")[0] for t in over.trials)


def test_the_direction_follows_the_group_holding_the_best_trial() -> None:
    data = overfitting_while_best_trial_still_improves()
    (f,) = run_checks(data)
    best = data.ranked("main")[0]
    assert f.evidence["best_trial"]["id"] == best.id
    assert f.advice == {"regularization": "more", "training_length": "longer"}
    assert f.severity == "warning"  # 2 of the top 3 overfit, the best does not
    over, still = groups(f)
    assert (over.direction, still.direction) == ("shorter", "longer")
    assert still.trials == [{"id": best.id, "label": best.label}]
    assert follow_best({"id": best.id}, [over, still]) == "longer"
    assert follow_best({"id": over.trials[0]["id"]}, [over, still]) == "shorter"
    both = dataclasses.replace(over, trials=[*over.trials, *still.trials])
    assert follow_best({"id": best.id}, [both, still]) is None  # in both: no direction
    assert follow_best({"id": -1}, [over, still]) is None        # in neither
    assert follow_best(None, [over, still]) is None


def test_without_a_direction_the_combined_finding_drops_the_knob() -> None:
    data = overfitting_while_best_trial_still_improves()
    alone = _alone(data)
    over = next(a for a in alone if a.check == "overfitting")
    still = next(a for a in alone if a.check == "still_improving")
    # Pretend the still-improving trial is not the best one: the best is then in no group.
    elsewhere = dataclasses.replace(still, evidence={**still.evidence, "id": -1})
    (f,) = reconcile([over, elsewhere], data)
    assert f.advice == {"regularization": "more"}
    assert "regularise first, then judge the training length again" in f.message


def test_a_combined_finding_absorbs_a_third_one() -> None:
    data = overfitting_and_early_peaks_while_best_still_improves()
    alone = _alone(data)
    assert {f.check for f in alone} == {"overfitting", "still_improving", "best_step_position"}
    assert len(contradictions(alone)) == 2
    (f,) = run_checks(data)
    assert [x["check"] for x in f.evidence["combined_with"]] == ["still_improving",
                                                                 "best_step_position"]
    assert [g.check for g in groups(f)] == ["overfitting", "still_improving",
                                            "best_step_position"]
    assert f.advice == {"regularization": "more", "training_length": "longer"}
    assert len({t["id"] for t in f.trials}) == len(f.trials) == 12


def test_saturated_best_with_late_trials_elsewhere_says_shorter_once() -> None:
    (f,) = run_checks(saturated_best_with_late_trials_elsewhere())
    assert (f.check, f.severity, f.advice) == ("saturated_early", "info",
                                               {"training_length": "shorter"})
    assert "slower, worse configurations" in f.message


def test_still_improving_best_with_early_trials_elsewhere_says_longer_once() -> None:
    (f,) = run_checks(still_improving_best_with_early_trials_elsewhere())
    assert (f.check, f.severity, f.advice) == ("still_improving", "warning",
                                               {"training_length": "longer"})
    assert "the median trial reached its best by 10% of training" in f.message


def test_combinations_in_different_studies_are_left_alone() -> None:
    # Study a overfits, study b's best trial is still improving: different scopes, no merge.
    rng = np.random.default_rng(0)
    t = np.arange(1, 21) / 20
    over = 0.3 + 0.3 * np.exp(-12 * t) + 0.05 * np.clip(2 * t - 1, 0, None)
    still = 0.3 + 0.3 * np.exp(-12 * t) + 0.08 * (1 - t)
    trials = [tr(list(over + rng.normal(0, 0.002, 20)), study="a"),
              tr(list(still + rng.normal(0, 0.002, 20)), study="b")]
    found = run_checks(make_data(trials, max_train_steps=200), only=["overfitting",
                                                                      "still_improving"])
    assert {(f.check, f.study) for f in found} == {("overfitting", "a"),
                                                   ("still_improving", "b")}
    assert all("combined_with" not in f.evidence for f in found)


def test_thresholds_given_to_run_checks_reach_the_shared_analyses() -> None:
    # enough_trials reads the comparison, whose thresholds are another family's: a stricter
    # sign test given to run_checks must change the verdict every check sees
    import dataclasses as dc

    from tunebook.analysis.checks import thresholds_from_config
    from tunebook.analysis.comparison import ComparisonThresholds

    a = [0.1 + 0.03 * i for i in range(12)]
    data = make_data([tr([v + 0.5, v], study="a") for v in a]
                     + [tr([v + 0.51, v + 0.01], study="b") for v in a],
                     max_train_steps=20)
    loose = run_checks(data, only=["isolation"])
    assert loose[0].evidence["verdict"] == "differ"
    th = thresholds_from_config(None)
    th["comparison"] = dc.replace(ComparisonThresholds(), sign_alpha=1e-9)
    strict = run_checks(data, only=["isolation", "enough_trials"], thresholds=th)
    assert {f.evidence.get("verdict") for f in strict if f.check == "isolation"} == {
        "within_spread"}
    # enough_trials saw the same verdict (with the file's thresholds it would have seen
    # "differ" and stayed silent)
    assert [f.check for f in strict] == ["enough_trials", "isolation"]
    assert [f.check for f in run_checks(data, only=["isolation", "enough_trials"])] == [
        "isolation"]


# ----------------------------------------------------------------------------- procedure checks
def test_procedure_checks_read_evidence_use_thresholds_and_stay_out_of_run_checks() -> None:
    from tunebook.analysis.checks import (
        PROCEDURE_CHECKS,
        PipelineThresholds,
        check,
        procedure_findings,
    )
    from tunebook.analysis.checks.registry import finding

    @check("test_share", playbook_section="Optimizing the input pipeline",
           thresholds=PipelineThresholds, procedure="test-procedure")
    def check_test_share(evidence: Any, th: PipelineThresholds) -> list[Finding]:
        share = evidence["share"]
        out = [finding("test_share", "warning", f"share {share}", advice={"batch_size": "smaller"})]
        out.append(finding("test_share", "info", "other", advice={"batch_size": "larger"}))
        return out if share > th.input_bound_share else []

    assert "test_share" in PROCEDURE_CHECKS and "test_share" not in CHECKS
    assert registered()["test_share"].procedure == "test-procedure"
    with pytest.raises(ConfigError, match="unknown check 'test_share'"):
        run_checks(make_data([tr(flat(0.2))]), only=["test_share"])
    assert procedure_findings("test-procedure", {"share": 0.4}) == []
    # The experiment's checks: section sets the threshold; the opposite advice is superseded
    # (no experiment for a resolver to read), keeping the warning.
    found = procedure_findings("test-procedure", {"share": 0.4},
                               {"pipeline": {"input_bound_share": 0.3}})
    assert [(f.severity, f.message) for f in found] == [("warning", "share 0.4")]
    assert found[0].evidence["superseded"][0]["message"] == "other"
    assert found[0].section == "Optimizing the input pipeline"
    assert procedure_findings("another-procedure", {"share": 0.9}) == []

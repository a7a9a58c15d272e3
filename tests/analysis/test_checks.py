"""The playbook checks on hand-built experiment data: what must fire, what must not."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from tunebook.analysis.checks import (
    CHECKS,
    check_best_step_position,
    check_boundary,
    check_enough_trials,
    check_eval_steps,
    check_failed_trials,
    check_infeasible,
    check_late_variance,
    check_overfitting,
    check_saturated_early,
    check_still_improving,
    check_train_loss_increases,
    run_checks,
)
from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.analysis.findings import Finding
from tunebook.experiment import Experiment, Objective
from tunebook.space import Categorical, Discrete, Float, Hyperparameter, Int, SearchSpace
from tunebook.summary import summarize

SECTIONS = {
    "Extracting insight from experimental results",
    "Identifying bad search space boundaries",
    "Not sampling enough points in the search space",
    "Examining the training curves",
    "Deciding how long to train when training is not compute-bound",
    "Setting up periodic evaluations",
}

DEFAULT_SPACE: dict[str, Hyperparameter] = {
    "lr": Float(1e-4, 1.0, "log"),
    "x": Float(0.0, 1.0),
}


# ----------------------------------------------------------------------------- builders
def tr(values: Sequence[float] | None = None, *, study: str = "main",
       status: str = "completed", params: dict[str, Any] | None = None,
       steps: Sequence[int] | None = None, every: int = 10,
       train: Sequence[float] | None = None, error: str | None = None,
       reason: str | None = None, id: int | None = None) -> dict[str, Any]:
    """A trial spec for :func:`make_data`: objective values at steps every, 2*every, ..."""
    return {"values": values, "study": study, "status": status, "params": params or {},
            "steps": steps, "every": every, "train": train, "error": error, "reason": reason,
            "id": id}


def _curve(values: Sequence[float], steps: Sequence[int] | None, every: int) -> Curve:
    s = tuple(steps) if steps is not None else tuple(every * (i + 1) for i in range(len(values)))
    return Curve(s, tuple(float(v) for v in values))


def make_data(trials: Sequence[dict[str, Any]], *, max_train_steps: int = 100,
              eval_every: int = 10, nuisance: dict[str, Hyperparameter] | None = None,
              goal: str = "minimize", metric: str = "loss",
              studies: Sequence[str] | None = None, final: bool = False) -> ExperimentData:
    """ExperimentData built directly: trials get ids/indexes in order, summaries per ``goal``."""
    exp = Experiment(name="t", objective=Objective(metric, goal),  # type: ignore[arg-type]
                     max_train_steps=max_train_steps, eval_every=eval_every,
                     nuisance=SearchSpace(nuisance if nuisance is not None else DEFAULT_SPACE),
                     workload="x:y")
    out = []
    per_study: dict[str, int] = {}
    for i, spec in enumerate(trials):
        curves: dict[str, Curve] = {}
        if spec["values"] is not None:
            curves[metric] = _curve(spec["values"], spec["steps"], spec["every"])
        if spec["train"] is not None:
            curves["train_loss"] = _curve(spec["train"], None, spec["every"])
        obj = curves.get(metric)
        s = summarize(zip(obj.steps, obj.values, strict=True) if obj else [],
                      goal)  # type: ignore[arg-type]
        index = per_study.get(spec["study"], 0)
        per_study[spec["study"]] = index + 1
        out.append(TrialData(
            id=spec["id"] if spec["id"] is not None else i + 1, study=spec["study"], index=index,
            status=spec["status"], params=spec["params"], seed=i, best_step=s.best_step,
            best_value=s.best_value, final_step=s.final_step, final_value=s.final_value,
            curves=curves, error=spec["error"], infeasible_reason=spec["reason"]))
    names = list(studies) if studies is not None else list(dict.fromkeys(
        t.study for t in out)) or ["main"]
    return ExperimentData(experiment=exp, metric=metric, goal=goal,  # type: ignore[arg-type]
                          final=final, studies=tuple(names), trials=tuple(out))


def flat(level: float, n: int = 10) -> list[float]:
    """A curve decreasing to ``level`` and staying there (best step reached mid-way)."""
    return [level + 0.5 * max(0, 4 - i) for i in range(n)]


def dumpable(findings: Sequence[Finding]) -> None:
    for f in findings:
        json.dumps(f.as_dict(), allow_nan=False)
        assert f.section in SECTIONS
        assert f.action and f.message
        assert f.severity in ("problem", "warning", "info")


def only(findings: list[Finding]) -> Finding:
    dumpable(findings)
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


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
    from tunebook.analysis.checks import _widened

    value, _ = _widened(hp, side)
    assert value == pytest.approx(expected)


def test_boundary_tolerates_missing_and_bad_params() -> None:
    data = make_data([tr(flat(0.1), params={"x": "oops"}), tr(flat(0.2), params={"lr": -1.0}),
                      tr(flat(0.3))])
    assert check_boundary(data) == []


# ----------------------------------------------------------------------------- 2. overfitting
OVERFIT = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.5, 0.6, 0.7, 0.8]
GOOD = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.42, 0.41, 0.40]


def test_overfitting_best_trial_is_a_problem() -> None:
    data = make_data([tr(OVERFIT), tr([v + 0.1 for v in GOOD])])
    f = only(check_overfitting(data))
    assert (f.severity, f.study) == ("problem", "main")
    t = f.evidence["trials"][0]
    assert (t["id"], t["best_step"], t["last_step"]) == (1, 60, 100)
    assert t["rise"] == pytest.approx(0.36)
    assert f.evidence["best_trial_overfits"] is True
    assert "regularization" in f.action


def test_overfitting_two_of_top_three_is_a_warning() -> None:
    data = make_data([tr([v - 0.1 for v in GOOD]), tr(OVERFIT), tr([v + 0.01 for v in OVERFIT])])
    f = only(check_overfitting(data))
    assert f.severity == "warning"
    assert [t["id"] for t in f.evidence["trials"]] == [2, 3]
    assert "2 of its top 3" in f.message


def test_overfitting_single_non_best_trial_does_not_fire() -> None:
    data = make_data([tr([v - 0.1 for v in GOOD]), tr(OVERFIT), tr([v + 0.2 for v in GOOD])])
    assert check_overfitting(data) == []


def test_overfitting_noise_level_rise_does_not_fire() -> None:
    # Best 0.48, last 0.55: +15%, well above the 2% floor, and about 2 noise std (0.037).
    values = [1.0, 0.8, 0.6, 0.48, 0.52, 0.49, 0.53, 0.48, 0.52, 0.49, 0.55]
    assert check_overfitting(make_data([tr(values)], max_train_steps=110)) == []


def test_overfitting_small_relative_rise_does_not_fire() -> None:
    values = [1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5001, 0.5002, 0.5003, 0.5004]  # +0.08%
    assert check_overfitting(make_data([tr(values)])) == []


def test_overfitting_maximize() -> None:
    acc = [0.1, 0.5, 0.8, 0.9, 0.92, 0.85, 0.8, 0.75, 0.7, 0.65]
    f = only(check_overfitting(make_data([tr(acc)], goal="maximize", metric="acc")))
    t = f.evidence["trials"][0]
    assert (t["best_step"], t["best_value"], t["last_value"]) == (50, 0.92, 0.65)
    rising = [0.1, 0.5, 0.8, 0.9, 0.92, 0.93, 0.94, 0.95, 0.95, 0.96]
    assert check_overfitting(make_data([tr(rising)], goal="maximize", metric="acc")) == []


def test_overfitting_best_at_last_evaluation_does_not_fire() -> None:
    assert check_overfitting(make_data([tr(GOOD)])) == []


# ----------------------------------------------------------------------------- 3. late variance
def _wiggly(base: float, amp: float, n: int = 20) -> list[float]:
    """Decreasing to ``base``, then alternating by ``amp`` over the last 5 points."""
    head = [base + 0.05 * (n - 5 - i) for i in range(n - 5)]
    return head + [base + amp * (1 if i % 2 == 0 else -1) for i in range(5)]


def test_late_variance_noise_larger_than_gap_between_studies() -> None:
    data = make_data([tr(_wiggly(0.50, 0.05), study="a"), tr(_wiggly(0.52, 0.05), study="b")],
                     max_train_steps=200)
    f = only(check_late_variance(data))
    assert f.severity == "warning"
    assert f.evidence["gap"] == pytest.approx(0.02)
    assert f.evidence["median_noise"] > 0.01
    assert f.evidence["gap_between"]["studies"] == ["a", "b"]
    assert "Polyak" in f.action and "batch size" in f.action


def test_late_variance_quiet_curves_do_not_fire() -> None:
    data = make_data([tr(_wiggly(0.50, 0.001), study="a"), tr(_wiggly(0.52, 0.001), study="b")],
                     max_train_steps=200)
    assert check_late_variance(data) == []


def test_late_variance_single_study_uses_best_versus_third() -> None:
    trials = [tr(_wiggly(0.50 + 0.001 * i, 0.05)) for i in range(3)]
    f = only(check_late_variance(make_data(trials, max_train_steps=200)))
    assert f.evidence["gap_between"]["kind"] == "trials"
    assert f.evidence["gap_between"]["trials"] == [1, 3]
    assert f.evidence["gap"] == pytest.approx(0.002)
    # Two trials only: no third to compare with.
    assert check_late_variance(make_data(trials[:2], max_train_steps=200)) == []


def test_late_variance_zero_gap_does_not_fire() -> None:
    data = make_data([tr(_wiggly(0.5, 0.05), study="a"), tr(_wiggly(0.5, 0.05), study="b")],
                     max_train_steps=200)
    assert check_late_variance(data) == []


# ----------------------------------------------------------------------------- 4. still improving
LINEAR = [1.0 - 0.04 * i for i in range(20)]  # steps 5..100, still going down


def test_still_improving_fires_when_best_at_end_and_trend_down() -> None:
    f = only(check_still_improving(make_data([tr(LINEAR, every=5)], eval_every=5)))
    assert (f.severity, f.study) == ("warning", "main")
    ev = f.evidence
    assert ev["best_step"] == 100 and ev["tail_points"] == 5
    assert ev["improvement"] == pytest.approx(0.16)
    assert ev["slope"] == pytest.approx(-0.008)
    assert "Train longer" in f.action


def test_still_improving_maximize() -> None:
    acc = [0.2 + 0.03 * i for i in range(20)]
    data = make_data([tr(acc, every=5)], eval_every=5, goal="maximize", metric="acc")
    f = only(check_still_improving(data))
    assert f.evidence["best_value"] == pytest.approx(0.77)
    assert f.evidence["slope"] == pytest.approx(0.006)
    # The same curve minimised has its best at the first step.
    assert check_still_improving(make_data([tr(acc, every=5)], eval_every=5)) == []


def test_still_improving_best_at_85_percent_does_not_fire() -> None:
    # Best at step 85 after a steep drop: the tail trend improves, but the best is not late.
    values = [1.0 - 0.03 * i for i in range(16)] + [0.36, 0.37, 0.38, 0.39]
    assert check_still_improving(make_data([tr(values, every=5)], eval_every=5)) == []
    values = [1.0 - 0.04 * i for i in range(18)] + [0.33, 0.34]  # best at step 90: fires
    f = only(check_still_improving(make_data([tr(values, every=5)], eval_every=5)))
    assert f.evidence["best_step"] == 90


def test_still_improving_lucky_last_step_on_a_flat_noisy_curve_does_not_fire() -> None:
    # Noise about 0.02; the fitted improvement over the last 5 points is 0.024 (< 2 noise).
    values = [1.0, 0.8, 0.6] + [0.5 + (0.01 if i % 2 else -0.01) for i in range(16)] + [0.46]
    data = make_data([tr(values, every=5)], eval_every=5)
    assert check_still_improving(data) == []


# ----------------------------------------------------------------------------- 5. saturated early
def test_saturated_early_fires_for_a_curve_flat_from_step_30() -> None:
    values = [1.0, 0.6, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    f = only(check_saturated_early(make_data([tr(values)])))
    assert (f.severity, f.study) == ("info", "main")
    assert f.evidence["first_within_tol_step"] == 30


def test_saturated_early_counts_within_noise() -> None:
    values = [1.0, 0.6, 0.3] + [0.2 + (0.01 if i % 2 else -0.01) for i in range(7)]
    f = only(check_saturated_early(make_data([tr(values)])))
    assert f.evidence["first_within_tol_step"] == 40
    assert f.evidence["noise"] > 0


def test_saturated_early_reaching_best_at_half_does_not_fire() -> None:
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]  # first at step 50 = 0.5 * 100
    assert check_saturated_early(make_data([tr(values)])) == []
    assert check_saturated_early(make_data([tr(GOOD)])) == []


def test_saturated_early_maximize() -> None:
    acc = [0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    f = only(check_saturated_early(make_data([tr(acc)], goal="maximize", metric="acc")))
    assert f.evidence["best_value"] == pytest.approx(0.9)


# ----------------------------------------------------------------------------- 6. best step
def _best_at(step: int, n: int = 10) -> list[float]:
    return [abs(10 * (i + 1) - step) / 100 + 0.1 for i in range(n)]


def test_best_step_early_warns_too_many_steps() -> None:
    data = make_data([tr(_best_at(10)) for _ in range(5)] + [tr(_best_at(60))])
    f = only(check_best_step_position(data))
    assert f.severity == "warning" and f.evidence["verdict"] == "too_many_steps"
    assert f.evidence["median_fraction"] == pytest.approx(0.1)
    assert "max_train_steps" in f.action


def test_best_step_late_suggests_training_longer() -> None:
    data = make_data([tr(_best_at(s)) for s in (80, 90, 100, 100, 40)])
    f = only(check_best_step_position(data))
    assert f.severity == "info" and f.evidence["verdict"] == "train_longer"
    assert f.evidence["share_late"] == pytest.approx(0.8)
    data = make_data([tr(_best_at(s)) for s in (80, 90, 100, 40, 40)])  # 60% late
    assert check_best_step_position(data) == []


def test_best_step_needs_five_trials() -> None:
    assert check_best_step_position(make_data([tr(_best_at(10)) for _ in range(4)])) == []


def test_best_step_median_above_ten_percent_does_not_fire() -> None:
    data = make_data([tr(_best_at(s)) for s in (10, 10, 20, 30, 40)])
    assert check_best_step_position(data) == []


# ----------------------------------------------------------------------------- 7. train loss
UP = [1.0, 0.5, 0.4, 0.6, 0.9, 1.2, 1.5, 1.8, 2.0, 2.2]
DOWN = [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.28, 0.26, 0.25]


def test_train_loss_increase_in_best_trial_is_a_problem() -> None:
    data = make_data([tr(GOOD, train=UP), tr(OVERFIT, train=DOWN)])
    f = only(check_train_loss_increases(data))
    assert f.severity == "problem"
    assert [t["id"] for t in f.evidence["trials"]] == [1]
    assert f.evidence["trials"][0]["study_best"] is True
    assert "main #0" in f.message and "bug" in f.message


def test_train_loss_increase_in_a_quarter_of_trials() -> None:
    trials = [tr([v + 0.1 * i for v in GOOD], train=DOWN) for i in range(3)]
    data = make_data([*trials, tr([v + 1 for v in GOOD], train=UP)])  # 1 of 4: 25%
    f = only(check_train_loss_increases(data))
    assert f.evidence["share"] == pytest.approx(0.25)
    data = make_data([*trials, tr([v + 0.5 for v in GOOD], train=DOWN),
                      tr([v + 1 for v in GOOD], train=UP)])  # 1 of 5: 20%, not the best
    assert check_train_loss_increases(data) == []


def test_train_loss_noisy_flat_does_not_fire() -> None:
    # End 0.53 vs early minimum 0.48: +10%, but the noise is about 0.05.
    noisy = [0.5, 0.48, 0.53, 0.47, 0.52, 0.46, 0.53, 0.49, 0.52, 0.54]
    assert check_train_loss_increases(make_data([tr(GOOD, train=noisy)])) == []
    steady = [0.5, 0.48, 0.49, 0.5, 0.5, 0.51, 0.52, 0.52, 0.53, 0.53]
    assert len(check_train_loss_increases(make_data([tr(GOOD, train=steady)]))) == 1


def test_train_loss_not_recorded() -> None:
    assert check_train_loss_increases(make_data([tr(GOOD), tr(OVERFIT)])) == []


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


# ----------------------------------------------------------------------------- 9. eval steps
def test_eval_steps_flags_offsets_and_gaps() -> None:
    ok = tr(GOOD)
    odd = tr([1.0, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
             steps=[10, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100])
    gap = tr([1.0, 0.9, 0.8, 0.7], steps=[10, 20, 30, 100])
    f = only(check_eval_steps(make_data([ok, odd, gap])))
    assert f.severity == "warning"
    ex = f.evidence["examples"]
    assert [e["id"] for e in ex] == [2, 3]
    assert ex[0]["unexpected"] == [25] and ex[0]["n_missing"] == 0
    assert ex[1]["missing"] == [40, 50, 60, 70, 80] and ex[1]["n_missing"] == 6
    assert f.evidence["n_checked"] == 3 and f.evidence["n_irregular"] == 2


def test_eval_steps_regular_with_final_step_and_step_zero() -> None:
    steps = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    data = make_data([tr([1.0 - 0.05 * i for i in range(11)], steps=steps),
                      tr([1.0], status="infeasible", steps=[7])],  # not completed: ignored
                     max_train_steps=95)
    assert check_eval_steps(data) == []


def test_eval_steps_repeated_step() -> None:
    data = make_data([tr([1.0, 0.9, 0.9, 0.8], steps=[10, 20, 20, 30])], max_train_steps=30)
    assert only(check_eval_steps(data)).evidence["examples"][0]["unexpected"] == [20]


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


# ----------------------------------------------------------------------------- 11. enough trials
def _spread(best: float, n: int) -> list[dict[str, Any]]:
    return [tr(flat(best + 0.1 * i)) for i in range(n)]


def test_enough_trials_wide_bootstrap_versus_small_gap() -> None:
    trials = [{**t, "study": "a"} for t in _spread(0.10, 4)]
    trials += [{**t, "study": "b"} for t in _spread(0.11, 4)]
    data = make_data(trials)
    f = only(check_enough_trials(data))
    assert f.severity == "info"
    assert f.evidence["seed"] == 0 and f.evidence["draws"] == 1000
    assert f.evidence["gap"] == pytest.approx(0.01)
    assert {r["study"] for r in f.evidence["studies"]} == {"a", "b"}
    assert check_enough_trials(data) == check_enough_trials(data)  # seeded


def test_enough_trials_clear_gap_does_not_fire() -> None:
    trials = [{**t, "study": "a"} for t in [tr(flat(0.1)) for _ in range(5)]]
    trials += [{**t, "study": "b"} for t in [tr(flat(0.5 + 0.001 * i)) for i in range(5)]]
    assert check_enough_trials(make_data(trials)) == []


def test_enough_trials_needs_two_studies() -> None:
    assert check_enough_trials(make_data(_spread(0.1, 5))) == []


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
    assert list(CHECKS) == [
        "boundary", "overfitting", "late_variance", "still_improving", "saturated_early",
        "best_step_position", "train_loss_increases", "infeasible", "eval_steps",
        "failed_trials", "enough_trials"]
    for name, fn in CHECKS.items():
        assert fn.__name__ == f"check_{name}" and fn.__doc__


def test_run_checks_sorted_and_serialisable() -> None:
    data = make_data([
        tr([1.0, 0.6, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2], params={"lr": 0.9, "x": 0.5}),
        tr(GOOD, params={"lr": 0.01, "x": 0.5}, steps=[10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
        tr(None, status="failed", error="boom"),
    ])
    findings = run_checks(data)
    dumpable(findings)
    got = [(f.severity, f.check) for f in findings]
    assert got == [("problem", "boundary"), ("warning", "eval_steps"),
                   ("warning", "failed_trials"), ("info", "saturated_early")]
    assert [f.check for f in run_checks(data, only=["saturated_early", "boundary"])] == [
        "boundary", "saturated_early"]
    with pytest.raises(KeyError):
        run_checks(data, only=["nope"])

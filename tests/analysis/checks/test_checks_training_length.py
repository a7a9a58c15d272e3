"""Training-length checks: still improving, saturated early, best step position."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from checkdata import (
    GOOD,
    make_data,
    only,
    tr,
)
from scenarios_curves import (
    best_step_early_across_trials,
    best_step_late_across_trials,
    flat_noisy_tail_drifting_down,
    report,
)

from tunebook.analysis.checks import (
    check_best_step_position,
    check_saturated_early,
    check_still_improving,
)
from tunebook.analysis.checks.training_length import reach
from tunebook.analysis.data import Curve

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
    """Noise-free: falls by 0.1 per evaluation to 0.1 at ``step``, then worsens by 0.02 per
    evaluation (a gentler slope after the best, as real curves have: a symmetric V sampled
    this coarsely looks like noise to the first-difference estimator)."""
    return [0.1 + (step - x) / 100 if x <= step else 0.1 + 0.2 * (x - step) / 100
            for x in (10 * (i + 1) for i in range(n))]


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


# ----------------------------------------------------------------------------- reach, resolution
def test_reach_is_the_first_evaluation_within_the_margin_of_the_best() -> None:
    # Flat from step 40 with noise 0.002 (seeded): the arg-min lands late, the best is reached
    # (to within one noise std) much earlier.
    rng = np.random.default_rng(4)
    values = [1.0, 0.7, 0.5, *(0.3 + rng.normal(0, 0.002, 17))]
    data = make_data([tr(values)], max_train_steps=200)
    r = reach(data, data.trials[0])
    assert r is not None
    assert r.margin == pytest.approx(max(r.noise, 1e-3 * r.best)) and r.min_change == 0.0
    assert r.reached_step < r.best_step
    assert all(v > r.best + r.margin for v in r.y[:r.reached_index])
    assert r.y[r.reached_index] <= r.best + r.margin
    assert reach(data, data.trials[0]) is r  # computed once per data


def test_reach_margin_includes_the_metrics_resolution() -> None:
    values = [0.6, 0.45, 0.36, 0.354, 0.352, 0.35, 0.35, 0.35, 0.348, 0.346]
    base = make_data([tr(values)], metric="val_error")
    r = reach(base, base.trials[0])
    assert r is not None and r.reached_step == 100  # noise-free: every step is an improvement
    sized = report(base, val_examples=500)
    r = reach(sized, sized.trials[0])
    assert r is not None and r.min_change == pytest.approx(np.sqrt(0.346 * 0.654 / 500))
    assert r.reached_step == 30  # 0.36 is within 0.0213 (one SE) of 0.346


def test_best_step_flat_noisy_tail_does_not_count_as_late() -> None:
    data = flat_noisy_tail_drifting_down()
    max_steps = data.experiment.max_train_steps
    argmin_late = [t for t in data.ranked() if (t.best_step or 0) >= 0.75 * max_steps]
    assert len(argmin_late) == 12  # the arg-min alone would say "train longer"
    assert check_best_step_position(data) == []


def test_best_step_late_with_noise_names_the_late_trials() -> None:
    data = best_step_late_across_trials()
    f = only(check_best_step_position(data))
    assert f.evidence["verdict"] == "train_longer" and f.advice == {"training_length": "longer"}
    assert f.trials == f.evidence["flagged"] and len(f.trials) >= 10
    assert all(row["reached_step"] >= 150 for row in f.evidence["trials"]
               if {"id": row["id"], "label": row["label"]} in f.trials)


def test_best_step_late_improvement_below_resolution_is_not_late() -> None:
    # Every trial improves by 2 examples of 500 (0.004) in its last 25%, without noise.
    values = [0.6, 0.45, 0.4] + [0.354] * 12 + [0.353, 0.352, 0.351, 0.35, 0.35]
    trials = [tr([v + 0.01 * i for v in values]) for i in range(6)]
    base = make_data(trials, metric="val_error", max_train_steps=200)
    f = only(check_best_step_position(base))
    assert f.evidence["verdict"] == "train_longer"
    assert f.evidence["resolution"]["source"] == "none"  # float sums: no clean lattice
    assert check_best_step_position(report(base, val_examples=500)) == []


def test_best_step_early_of_noisy_flat_curves_needs_the_resolution() -> None:
    # Flat from 8% of training with noise 0.002: the reach lands anywhere in the first half
    # against the noise alone, by 10% against the binomial SE of 1,000 examples (0.0145).
    data = best_step_early_across_trials()
    f = only(check_best_step_position(data))
    assert f.evidence["verdict"] == "too_many_steps" and f.advice == {"training_length": "shorter"}
    assert f.evidence["resolution"]["examples"] == 1000
    first = data.trials[0]
    unsized = dataclasses.replace(data, trials=(dataclasses.replace(first, curves={
        k: v for k, v in first.curves.items() if k != "val_examples"}), *data.trials[1:]))
    # Without the size the values still lie on the 1/1000 lattice: the resolution is inferred.
    assert only(check_best_step_position(unsized)).evidence["resolution"]["source"] == "inferred"
    jittered = dataclasses.replace(unsized, trials=tuple(
        dataclasses.replace(t, curves={"val_error": Curve(
            t.curves["val_error"].steps,
            tuple(v + 1e-7 * i for i, v in enumerate(t.curves["val_error"].values)))})
        for t in unsized.trials))
    assert check_best_step_position(jittered) == []  # continuous: the noise alone


def test_still_improving_below_resolution_does_not_fire() -> None:
    # Falls by 0.01 (5 examples of 500) over its last 25%, noise-free.
    values = [0.6, 0.45, 0.4] + [0.36 - 0.0025 * i for i in range(17)]
    base = make_data([tr(values)], metric="val_error", max_train_steps=200)
    f = only(check_still_improving(base))
    assert f.advice == {"training_length": "longer"} and f.trials == [{"id": 1,
                                                                       "label": "main #0"}]
    assert check_still_improving(report(base, val_examples=500)) == []
    f = only(check_still_improving(report(base, val_examples=100_000)))
    assert "improving by 0.01 (1000 of 100000 examples)" in f.message


def test_saturated_early_tolerance_includes_the_resolution() -> None:
    # Creeps down by 0.01 from step 60 to the end: not saturated against the noise, saturated
    # within one binomial SE of 500 examples (0.021).
    values = [0.6, 0.45, 0.36] + [0.36 - 0.000625 * i for i in range(1, 18)]
    base = make_data([tr(values)], metric="val_error", max_train_steps=200)
    assert check_saturated_early(base) == []
    f = only(check_saturated_early(report(base, val_examples=500)))
    assert f.evidence["first_within_tol_step"] == 30
    assert f.advice == {"training_length": "shorter"} and f.trials == [{"id": 1,
                                                                        "label": "main #0"}]


def test_saturated_early_leaves_an_overfitting_best_trial_to_overfitting() -> None:
    values = [1.0, 0.5, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65]
    data = make_data([tr(values)])
    assert check_saturated_early(data) == []
    # When the experiment's thresholds do not call it overfitting, it is saturation.
    exp = dataclasses.replace(data.experiment, checks={"curves": {"overfit_rel_rise": 10.0}})
    relaxed = dataclasses.replace(data, experiment=exp)
    assert only(check_saturated_early(relaxed)).evidence["first_within_tol_step"] == 30


def test_saturated_early_and_still_improving_never_share_a_trial() -> None:
    # still_improving needs the best reached in the last 10%, saturated_early before 50%.
    for values in (LINEAR, [1.0, 0.6, 0.2] + [0.2] * 17, [1.0 - 0.02 * i for i in range(20)]):
        data = make_data([tr(values, every=5)], eval_every=5)
        assert not (check_still_improving(data) and check_saturated_early(data))

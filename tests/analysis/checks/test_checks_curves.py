"""Training-curve checks: overfitting, late variance, a rising training loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from checkdata import (
    GOOD,
    OVERFIT,
    healthy_curve,
    make_data,
    only,
    tr,
)
from scenarios_curves import report

from tunebook.analysis.checks import (
    check_late_variance,
    check_overfitting,
    check_train_loss_increases,
)
from tunebook.analysis.checks.curves import CurveThresholds
from tunebook.analysis.comparison import compare
from tunebook.analysis.data import Curve, ExperimentData

# ----------------------------------------------------------------------------- 2. overfitting


def test_overfitting_best_trial_is_a_problem() -> None:
    data = make_data([tr(OVERFIT), tr([v + 0.1 for v in GOOD])])
    f = only(check_overfitting(data))
    assert (f.severity, f.study) == ("problem", "main")
    t = f.evidence["trials"][0]
    assert (t["id"], t["best_step"], t["last_step"]) == (1, 60, 100)
    # The mean of the last 2 evaluations - the mean of the best and its neighbours.
    assert t["rise"] == pytest.approx(0.75 - (0.45 + 0.44 + 0.5) / 3)
    assert (t["tail_points"], t["tail_from_step"], t["last_value"]) == (2, 90, 0.8)
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


def test_overfitting_finding_names_its_trials_and_advice() -> None:
    data = make_data([tr(OVERFIT, train=[1.0 - 0.05 * i for i in range(10)]),
                      tr([v + 0.1 for v in GOOD])])
    f = only(check_overfitting(data))
    assert f.trials == [{"id": 1, "label": "main #0"}]
    assert f.advice == {"regularization": "more", "training_length": "shorter"}
    train = f.evidence["trials"][0]["train"]
    assert train["falling"] and (train["at_best_step"], train["at_last_step"]) == (0.75, 0.55)
    assert "train_loss keeps falling (0.75 → 0.55)" in f.message


def test_overfitting_one_unlucky_last_step_does_not_fire() -> None:
    # Flat after its best with noise 0.002, then one last step 0.015 up: the last value passes
    # 3 noise and 2% of the value; the mean of the last 20% (4 evaluations) does not.
    rng = np.random.default_rng(0)
    flat = [1.0, 0.8, 0.6, *(0.5 + rng.normal(0, 0.002, 16))]
    data = make_data([tr([*flat, flat[-1] + 0.015], every=5)], eval_every=5)
    assert check_overfitting(data) == []
    old = CurveThresholds(overfit_tail_fraction=0.0)  # the last evaluation alone
    assert only(check_overfitting(data, old)).evidence["trials"][0]["tail_points"] == 1
    # The same jump held over the last 4 evaluations is a trend.
    held = [*flat[:-3], *(np.asarray(flat[-3:]) + 0.015), flat[-1] + 0.015]
    f = only(check_overfitting(make_data([tr(held, every=5)], eval_every=5)))
    assert f.evidence["trials"][0]["tail_points"] == 4
    assert f.evidence["trials"][0]["rise"] > 0.01


# The MLP: validation error ~0.35 over 500 examples rises by ~5 examples (0.0107, from
# the mean around its best to the mean of its last 3 evaluations) with a step-to-step noise
# of ~0: above 3 noise and 2% of the value (0.007), within one binomial standard error
# (sqrt(0.35 * 0.65 / 500) = 0.021).
MLP = [0.6, 0.5, 0.42, 0.38, 0.36, 0.35, 0.35, 0.352, 0.354, 0.356, 0.358, 0.362, 0.364, 0.366]


def test_overfitting_below_the_metrics_resolution_does_not_fire() -> None:
    base = make_data([tr(MLP)], metric="val_error", max_train_steps=140)
    f = only(check_overfitting(report(base, val_examples=100_000)))  # SE 0.0015: a real rise
    assert f.evidence["trials"][0]["rise"] == pytest.approx(0.364 - 1.06 / 3, abs=1e-9)
    assert "worse by 0.01067 (1067 of 100000 examples) than around its best" in f.message
    assert f.evidence["resolution"]["source"] == "reported"
    assert check_overfitting(report(base, val_examples=500)) == []


def test_overfitting_message_counts_examples() -> None:
    values = [0.6, 0.4, 0.3, 0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.4]
    f = only(check_overfitting(report(make_data([tr(values)], metric="val_error"),
                                      val_examples=200)))
    ev = f.evidence["trials"][0]
    # From the mean around the best (0.4, 0.3, 0.3) to the mean of the last 2 evaluations (0.4).
    assert ev["rise"] == pytest.approx(0.4 - 1 / 3) and ev["examples"] == "13 of 200 examples"
    assert ev["min_change"] == pytest.approx(np.sqrt(0.3 * 0.7 / 200))
    assert "worse by 0.06667 (13 of 200 examples)" in f.message
    assert "the smallest change val_error resolves is 0.0324" in f.message


def test_overfitting_inferred_resolution_without_a_reported_size() -> None:
    # An error rate on a 1/1000 lattice (many repeated values): 4 examples is not a rise at
    # ~0.06 (SE 0.0075), 20 examples is (13 from the mean around the best, 0.0667).
    def curve(rise: int) -> list[float]:
        return [k / 1000 for k in [300, 150, 80, 60, 60, 60, 60, 61, 60, 60]
                + [60 + rise] * 10]
    for_trials = [tr(curve(4)) for _ in range(3)]
    data = make_data(for_trials, metric="val_error", max_train_steps=200)
    assert check_overfitting(data) == []
    f = only(check_overfitting(make_data([tr(curve(20)) for _ in range(3)],
                                         metric="val_error", max_train_steps=200)))
    assert f.evidence["resolution"]["source"] == "inferred"
    assert f.evidence["trials"][0]["examples"] == "13 of 1000 examples"


def test_overfitting_small_absolute_noise_still_fires() -> None:
    # A loss around 3e-4 with noise ~1e-8 that rises by 3e-5 (10%): tiny in absolute terms.
    rng = np.random.default_rng(0)
    t = np.arange(1, 21) / 20
    values = 3e-4 + 3e-4 * np.exp(-12 * t) + 3e-5 * np.clip(2 * t - 1, 0, None)
    data = make_data([tr(list(values + rng.normal(0, 1e-8, 20)))], max_train_steps=200)
    f = only(check_overfitting(data))
    ev = f.evidence["trials"][0]
    assert ev["rise"] > 2e-5 and ev["threshold"] == pytest.approx(0.02 * ev["best_value"])
    flat = 3e-4 + 3e-4 * np.exp(-12 * t) + rng.normal(0, 1e-8, 20)
    assert check_overfitting(make_data([tr(list(flat))], max_train_steps=200)) == []


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


def _paired(a: list[float], b: list[float], noise: float, seed: int,
            examples: int | None = None) -> ExperimentData:
    """Studies a and b on shared nuisance points, curves from ``healthy_curve`` (on a
    1/examples lattice with ``val_examples`` reported when ``examples`` is given)."""
    rng = np.random.default_rng(seed)
    trials = [tr(healthy_curve(v, rng, noise=noise), study=s)
              for s, values in (("a", a), ("b", b)) for v in values]
    if examples is not None:
        for t in trials:
            t["values"] = [round(v * examples) / examples for v in t["values"]]
    data = make_data(trials, max_train_steps=200, metric="val_error")
    if examples is None:
        return data
    size = Curve((10,), (float(examples),))
    return dataclasses.replace(data, trials=tuple(
        dataclasses.replace(t, curves={**t.curves, "val_examples": size}) for t in data.trials))


def test_late_variance_fires_when_step_noise_limits_the_comparison() -> None:
    a = [0.3 + 0.0005 * i for i in range(12)]
    data = _paired(a, [v + 0.004 for v in a], noise=0.02, seed=5)
    cmp = compare(data)
    assert cmp is not None and cmp.limit == "step_noise" and cmp.verdict == "within_spread"
    f = only(check_late_variance(data))
    assert f.evidence["median_noise"] == cmp.step_noise and f.evidence["gap"] == cmp.gap
    assert f.advice == {"step_noise": "reduce"} and len(f.trials) == 6
    assert "what limits the comparison" in f.message


def test_late_variance_is_silent_when_sampling_limits_the_comparison() -> None:
    # the gap is ~0 and the curves are noisy, but another sample of the nuisance space moves
    # a study's best far more: "more trials" (enough_trials), not "bigger batch"
    rng = np.random.default_rng(19)
    a = [float(v) for v in rng.uniform(0.2, 0.6, 12)]
    b = [float(v) for v in rng.uniform(0.2, 0.6, 12)]
    data = _paired(a, b, noise=0.005, seed=12)
    cmp = compare(data)
    assert cmp is not None and cmp.limit == "sampling" and cmp.verdict == "within_spread"
    # the old rule (late noise above half the gap) would have fired
    assert cmp.step_noise is not None and cmp.step_noise > 0.5 * cmp.gap
    assert check_late_variance(data) == []


def test_late_variance_is_silent_below_the_resolution() -> None:
    # one example of 300 between the studies: nothing a lucky step could decide
    a = [0.2 + 0.01 * i for i in range(12)]
    data = _paired(a, [v + 1 / 300 for v in a], noise=0.004, seed=13, examples=300)
    cmp = compare(data)
    assert cmp is not None and cmp.gap < cmp.resolution
    assert check_late_variance(data) == []


def test_late_variance_single_study_respects_the_resolution() -> None:
    size = Curve((10,), (300.0,))
    trials = [tr([round(v * 300) / 300 for v in _wiggly(0.50 + i / 300, 0.05)])
              for i in range(3)]
    data = make_data(trials, max_train_steps=200, metric="val_error")
    data = dataclasses.replace(data, trials=tuple(
        dataclasses.replace(t, curves={**t.curves, "val_examples": size}) for t in data.trials))
    # best and 3rd best 2 examples apart: below the 3-example resolution
    assert check_late_variance(data) == []


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


def test_train_loss_finding_names_its_trials_and_has_no_knob() -> None:
    data = make_data([tr(GOOD, train=UP), tr(OVERFIT, train=DOWN)])
    f = only(check_train_loss_increases(data))
    assert f.trials == [{"id": 1, "label": "main #0"}] and f.advice == {}


def test_train_loss_rise_below_its_resolution_does_not_fire() -> None:
    # A training error rate over 200 examples that creeps up by 2 examples (0.01, 10%) with no
    # noise: within the binomial SE (sqrt(0.1 * 0.9 / 200) = 0.021) once the size is known.
    creeping = [0.1, 0.1, 0.1, 0.1, 0.1, 0.105, 0.105, 0.11, 0.11, 0.11]
    th = CurveThresholds(train_loss_metric="train_error")
    data = make_data([tr(GOOD)], metric="val_error")
    data = dataclasses.replace(data, trials=(dataclasses.replace(
        data.trials[0], curves={**data.trials[0].curves,
                                "train_error": Curve(tuple(range(10, 101, 10)),
                                                     tuple(creeping))}),))
    f = only(check_train_loss_increases(data, th))
    assert f.evidence["resolution"]["source"] == "none"
    assert check_train_loss_increases(report(data, train_examples=200), th) == []

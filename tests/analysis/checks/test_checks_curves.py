"""Training-curve checks: overfitting, late variance, a rising training loss."""

from __future__ import annotations

import pytest
from checkdata import (
    GOOD,
    OVERFIT,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_late_variance,
    check_overfitting,
    check_train_loss_increases,
)

# ----------------------------------------------------------------------------- 2. overfitting


def test_overfitting_best_trial_is_a_problem() -> None:
    data = make_data([tr(OVERFIT), tr([v + 0.1 for v in GOOD])])
    f = only(check_overfitting(data))
    assert (f.severity, f.study) == ("problem", "main")
    t = f.evidence["trials"][0]
    assert (t["id"], t["best_step"], t["last_step"]) == (1, 60, 100)
    assert t["rise"] == pytest.approx(0.75 - 0.44)  # mean of the last 2 evaluations - best
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

"""Training-length checks: still improving, saturated early, best step position."""

from __future__ import annotations

import pytest
from checkdata import (
    GOOD,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_best_step_position,
    check_saturated_early,
    check_still_improving,
)

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

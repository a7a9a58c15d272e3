"""The pipeline checks: class_imbalance, periodic_validation, input_bound."""

from __future__ import annotations

import numpy as np
import pytest
from checkdata import GOOD, make_data, only, tr

from tunebook.analysis.checks import (
    PipelineThresholds,
    check_class_imbalance,
    check_eval_subset,
    check_input_bound,
    check_periodic_validation,
)
from tunebook.analysis.checks.pipeline import class_counts, full_metric
from tunebook.analysis.data import ExperimentData


def _counts(examples: list[int], correct: list[int]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for k, (ex, ok) in enumerate(zip(examples, correct, strict=True)):
        out[f"val_class{k}_examples"] = [float(ex)] * len(GOOD)
        out[f"val_class{k}_correct"] = [float(ok)] * len(GOOD)
    return out


def test_a_rarely_right_class_is_named_with_its_counts() -> None:
    data = make_data([tr(GOOD, curves=_counts([100, 100, 100, 100], [80, 85, 30, 82]))])
    f = only(check_class_imbalance(data))
    assert f.severity == "warning" and f.evidence["rare"] == [2]
    assert "class 2 (30% of 100)" in f.message and f.advice == {"eval_data": "per_class"}
    assert f.trials == [{"id": 1, "label": "main #0"}]


def test_a_class_at_the_ratio_or_with_few_examples_is_not_singled_out() -> None:
    # 41% vs median 82%: just above half. 19 examples at 0%: too few to judge.
    data = make_data([tr(GOOD, curves=_counts([100, 100, 100, 19], [82, 82, 41, 0]))])
    assert check_class_imbalance(data) == []
    th = PipelineThresholds(min_class_examples=10)
    assert only(check_class_imbalance(data, th)).evidence["rare"] == [3]


def test_an_imbalanced_set_is_info_at_ten_times() -> None:
    data = make_data([tr(GOOD, curves=_counts([500, 50, 60], [400, 40, 48]))])
    f = only(check_class_imbalance(data))
    assert f.severity == "info" and f.evidence["imbalance_ratio"] == 10
    balanced = make_data([tr(GOOD, curves=_counts([499, 50, 60], [400, 40, 48]))])
    assert check_class_imbalance(balanced) == []


def test_class_counts_read_the_last_evaluation_and_need_both_metrics() -> None:
    data = make_data([tr(GOOD, curves={"val_class0_examples": [10.0] * 10,
                                       "val_class0_correct": [1.0] * 9 + [7.0],
                                       "val_class1_correct": [3.0] * 10})])
    assert class_counts(data.trials[0]) == {"val_": {0: (10.0, 7.0)}}
    assert check_class_imbalance(data) == []  # one class: nothing to compare


def _periodic(n: int, amplitude: float, period: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    y = 0.2 + 0.3 * np.exp(-12 * t / n) + rng.normal(0, 0.002, n)
    return list(y + amplitude * np.sin(2 * np.pi * t / period))


def test_a_periodic_curve_gives_its_period_in_steps() -> None:
    data = make_data([tr(_periodic(40, 0.02, 8))], max_train_steps=400)
    f = only(check_periodic_validation(data))
    assert f.evidence["trials"][0]["period_steps"] == 80
    assert f.advice == {"data_order": "shuffle"} and f.trials


def test_noise_short_curves_and_uneven_steps_are_not_periodic() -> None:
    for seed in range(20):
        data = make_data([tr(_periodic(40, 0.0, 8, seed))], max_train_steps=400)
        assert check_periodic_validation(data) == [], seed
    short = make_data([tr(_periodic(23, 0.02, 6))], max_train_steps=230)
    assert check_periodic_validation(short) == []
    steps = [*range(10, 210, 10), *range(220, 620, 20)]
    uneven = make_data([tr(_periodic(40, 0.02, 8), steps=steps)], max_train_steps=600)
    assert check_periodic_validation(uneven) == []


def test_input_bound_on_the_median_share_over_trials() -> None:
    shares = [[0.7] * 10, [0.6] * 10, [0.1] * 10]
    data = make_data([tr(GOOD, curves={"data_share": s}) for s in shares])
    f = only(check_input_bound(data))
    assert f.evidence["median_share"] == 0.6 and len(f.trials) == 2
    assert f.advice == {"input_pipeline": "speed_up"}
    at = make_data([tr(GOOD, curves={"data_share": [0.5] * 10})])
    assert check_input_bound(at) == []
    assert check_input_bound(make_data([tr(GOOD)])) == []


def _subset_data(subset: list[float], full: list[float], n: int = 400,
                 big: int = 4000) -> ExperimentData:
    trials = []
    for s, f in zip(subset, full, strict=True):
        curve = [s + 0.1 * (9 - i) for i in range(10)]
        trials.append(tr(curve, extra={"val_full_error": ([100], [f]),
                                       "val_examples": ([10], [float(n)]),
                                       "val_full_examples": ([10], [float(big)])}))
    return make_data(trials, metric="val_error")


def test_a_skewed_subset_is_measured_in_standard_errors() -> None:
    # p = 0.2, n = 400 of 4000: se = sqrt(0.16 / 400 * 0.9) = 0.019; 3 se = 0.057.
    full = [0.2, 0.1, 0.3]
    skewed = _subset_data([f + 0.06 for f in full], full)
    f = only(check_eval_subset(skewed))
    assert f.severity == "warning" and f.advice == {"eval_data": "resample"}
    assert abs(f.evidence["standard_error"] - np.sqrt(0.16 / 400 * 0.9)) < 1e-12
    assert f.evidence["mean_skew"] == pytest.approx(0.06) and len(f.trials) == 3
    assert check_eval_subset(_subset_data([v + 0.05 for v in full], full)) == []


def test_a_subset_too_small_for_the_best_trials_spread() -> None:
    # 40 of 4000: sqrt(2) se = 0.089 > the spread 0.02 of the three trials.
    small = _subset_data([0.2, 0.21, 0.22], [0.2, 0.21, 0.22], n=40)
    f = only(check_eval_subset(small))
    assert f.severity == "info" and f.advice == {"eval_data": "enlarge"}
    assert check_eval_subset(_subset_data([0.2, 0.21, 0.22], [0.2, 0.21, 0.22], n=40,
                                          big=40)) == []  # the whole set: no sampling error
    assert full_metric("val_error") == "val_full_error" and full_metric("loss") is None


def test_no_full_metric_or_not_a_rate_says_nothing() -> None:
    assert check_eval_subset(make_data([tr(GOOD)], metric="val_error")) == []
    loss = _subset_data([1.2, 1.5, 1.9], [0.2, 0.1, 0.3])  # values above 1: not a rate
    assert check_eval_subset(loss) == []

"""Search-space checks: the best region at an edge (``boundary``), no effect (``no_effect``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from checkdata import healthy_curve, make_data, only, tr

from tunebook.analysis.checks import check_boundary, check_no_effect, run_checks
from tunebook.analysis.checks.search_space import SearchSpaceThresholds, _widened
from tunebook.analysis.data import Curve, ExperimentData
from tunebook.search.space import Categorical, Float, Hyperparameter, Int

LR = Float(1e-4, 1.0, "log")
WD = Float(1e-6, 1e-2, "log")


def sampled(units: dict[str, Any], level: Callable[..., float], *, seed: int = 0,
            noise: float = 0.005, space: dict[str, Hyperparameter] | None = None,
            goal: str = "minimize", metric: str = "loss", eval_noise: float = 0.002
            ) -> ExperimentData:
    """One trial per row of ``units`` (unit coordinates; categorical values as they are), with
    a healthy curve levelling off at ``level(**units)`` plus seeded trial noise ``noise`` (the
    curve's own evaluation noise is ``eval_noise``)."""
    space = space or {"lr": LR}
    rng = np.random.default_rng(seed)
    n = len(next(iter(units.values())))
    trials = []
    for i in range(n):
        u = {k: v[i] for k, v in units.items()}
        params = {k: (space[k].from_unit(min(float(x), 1 - 1e-12)) if space[k].ordered else x)
                  for k, x in u.items()}
        value = level(**u) + rng.normal(0, noise)
        if goal == "maximize":
            curve = [-v for v in healthy_curve(-value, rng, noise=eval_noise)]
        else:
            curve = healthy_curve(value, rng, noise=eval_noise)
        trials.append(tr(curve, params=params))
    return make_data(trials, nuisance=space, goal=goal, metric=metric, max_train_steps=200)


def spread(n: int, low: float = 0.0, high: float = 1.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return low + (high - low) * (rng.permutation(n) + rng.random(n)) / n


# ----------------------------------------------------------------------------- boundary
def test_trend_into_an_edge_fires_even_with_no_trial_near_it() -> None:
    data = sampled({"lr": spread(14, 0.0, 0.88)}, lambda lr: 0.5 - 0.1 * lr)
    f = only(check_boundary(data))
    assert (f.check, f.severity, f.hyperparameter, f.study) == ("boundary", "warning", "lr", None)
    ev = f.evidence
    assert ev["side"] == "high" and ev["n_at_edge"] == 0 and ev["p_value"] < 0.01
    assert ev["fitted_best_unit"] >= 0.9 and ev["gain"] == pytest.approx(0.025, rel=0.3)
    # Half the log range is 2 decades: capped at one decade per side.
    assert ev["suggested_high"] == pytest.approx(10.0) and "suggested_low" not in ev
    # No trial in the slab: the one closest to the edge is named.
    closest = max(data.trials, key=lambda t: t.params["lr"])
    assert f.trials == [{"id": closest.id, "label": closest.label}]
    assert f.advice == {"range:lr": "widen_high"}
    assert "p = " in f.message and "widen the high bound from 1 to 10" in f.message


def test_strong_evidence_is_a_problem_and_one_trial_at_the_edge_is_not() -> None:
    u = np.concatenate([spread(27, 0.1, 1.0), [0.02, 0.05, 0.08]])
    f = only(check_boundary(sampled({"lr": u}, lambda lr: 0.3 + 0.1 * lr)))
    assert f.severity == "problem" and f.evidence["side"] == "low"
    assert f.evidence["n_at_edge"] == 3 and f.evidence["best_at_edge"] is True
    assert len(f.trials) == 3 and f.evidence["suggested_low"] == pytest.approx(1e-5)
    assert f.evidence["top_trials"] == 3 and "one of the best 3 trials overall" in f.message
    # The same trend with a single trial (the best) at the edge: at most a warning.
    u = np.concatenate([spread(29, 0.1, 1.0), [0.02]])
    f = only(check_boundary(sampled({"lr": u}, lambda lr: 0.3 + 0.1 * lr)))
    assert f.severity == "warning" and f.evidence["n_at_edge"] == 1
    assert f.evidence["best_at_edge"] is True


def test_severity_follows_the_p_value_grades() -> None:
    data = sampled({"lr": spread(14)}, lambda lr: 0.5 - 0.1 * lr)
    p = only(check_boundary(data)).evidence["p_value"]
    assert p < 0.01
    lax = SearchSpaceThresholds(p_problem=p / 2, p_warning=p / 2, p_info=1.0)
    assert only(check_boundary(data, lax)).severity == "info"
    strict = SearchSpaceThresholds(p_info=p / 2)
    assert check_boundary(data, strict) == []


def test_curve_steep_at_one_end_and_still_falling_at_the_other() -> None:
    # Like MNIST-1D's learning rate: a big drop from the low end, then still a decline of 23
    # examples in 1000 over the last quarter into the high edge. A quadratic over the whole
    # range put its optimum inside or its drop over the last quarter below the binomial
    # standard error; the chosen cubic and the local line see the trend.
    fired = 0
    for seed in range(10):
        data = sampled({"lr": spread(16, seed=seed)},
                       lambda lr: 0.27 + 0.33 * math.exp(-2.5 * lr), seed=seed,
                       noise=0.003, metric="val_error")
        size = Curve((10,), (1000.0,))
        data = dataclasses.replace(data, trials=tuple(
            dataclasses.replace(t, curves={**t.curves, "val_examples": size})
            for t in data.trials))
        findings = check_boundary(data)
        assert [f.evidence["side"] for f in findings] in ([], ["high"])
        for f in findings:
            assert f.evidence["gain"] > f.evidence["min_change"] > 0.012
            assert "examples" in f.message
        fired += len(findings)
    assert fired >= 8


def test_a_significant_hyperparameter_flat_at_one_edge_is_not_a_boundary() -> None:
    # Flat over the low half, worse at large values (weight decay: off below some value, too
    # much above): the hyperparameter matters, the low edge is no better than the middle.
    fired = []
    for seed in range(20):
        data = sampled({"lr": spread(16, seed=seed)},
                       lambda lr: 0.3 + 0.3 * max(0.0, lr - 0.5) ** 2, seed=seed)
        fired += [f.severity for f in check_boundary(data)]
    # The side is picked where the noise looks best, so once in a while the local line is
    # steep by chance: rarely, and never a problem.
    assert len(fired) <= 2 and "problem" not in fired


def test_edge_with_mediocre_trials_is_silent() -> None:
    # The best learning rates are mid-range, large ones hurt a lot, small ones a little: the
    # trials at the low edge rank 4th and 5th of 12 (the old "2 of the top 5" rule fired), but
    # the model sees the bowl.
    u = [0.02, 0.05, 0.08, 0.5, 0.55, 0.6, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98]

    def level(lr: float) -> float:
        return 0.3 + (0.15 * (0.55 - lr) ** 2 if lr < 0.55 else 2 * (lr - 0.55) ** 2)

    data = sampled({"lr": u}, level, noise=0.003)
    top = [LR.to_unit(t.params["lr"]) for t in data.ranked()[:5]]
    assert sum(v < 0.1 for v in top) == 2  # the old rule's trigger
    assert check_boundary(data) == []


def test_optimum_in_the_middle_and_no_trend_are_silent() -> None:
    assert check_boundary(sampled({"lr": spread(16)}, lambda lr: 0.3 + (lr - 0.5) ** 2)) == []
    # Too few trials for a model: nothing, even with the best at the edge.
    assert check_boundary(sampled({"lr": [0.99, 0.5, 0.3]}, lambda lr: 1 - lr)) == []


def test_a_trend_below_the_resolution_is_not_an_improvement() -> None:
    # 3 examples of 500 across the whole range: real (tiny noise) but not resolvable.
    data = sampled({"lr": spread(16)}, lambda lr: 0.2 - 0.006 * lr, noise=0.0002,
                   metric="val_error")
    size = Curve((10,), (500.0,))
    data = dataclasses.replace(data, trials=tuple(
        dataclasses.replace(t, curves={**t.curves, "val_examples": size}) for t in data.trials))
    assert check_boundary(data) == []
    # Without the evaluation set's size, the same trend is an edge.
    plain = sampled({"lr": spread(16)}, lambda lr: 0.2 - 0.006 * lr, noise=0.0002,
                    metric="val_error")
    assert only(check_boundary(plain)).evidence["side"] == "high"


def test_maximised_objective_follows_the_direction() -> None:
    space: dict[str, Hyperparameter] = {"x": Float(0.0, 2.0)}
    f = only(check_boundary(sampled({"x": spread(14)}, lambda x: 0.5 + 0.1 * x, space=space,
                                    goal="maximize", metric="acc")))
    assert f.evidence["side"] == "high" and f.evidence["suggested_high"] == pytest.approx(3.0)
    assert f.evidence["effect_curve"][-1][1] > f.evidence["effect_curve"][0][1]  # acc units
    # Minimised, the same data has its best at the low edge.
    f = only(check_boundary(sampled({"x": spread(14)}, lambda x: 0.5 + 0.1 * x, space=space)))
    assert f.evidence["side"] == "low" and f.advice == {"range:x": "widen_low"}


def test_natural_limit_of_an_int_and_a_fraction() -> None:
    space: dict[str, Hyperparameter] = {"layers": Int(1, 8)}
    units = spread(16)
    f = only(check_boundary(sampled({"layers": units}, lambda layers: 0.3 + 0.1 * layers,
                                    space=space)))
    assert f.evidence["suggested_low"] == 1 and f.evidence["clamped"] is True
    assert "natural limit" in f.message and "if values beyond 1 are valid" in f.action
    space = {"dropout": Float(0.0, 1.0)}
    f = only(check_boundary(sampled({"dropout": units}, lambda dropout: 0.5 - 0.1 * dropout,
                                    space=space)))
    assert f.evidence["suggested_high"] == 1.0 and "natural limit" in f.message


def test_categorical_and_discrete_hyperparameters_are_not_boundaries() -> None:
    acts = ("relu", "gelu", "tanh")
    space: dict[str, Hyperparameter] = {"lr": LR, "act": Categorical(acts)}
    penalty = {"relu": 0.1, "gelu": 0.05, "tanh": 0.0}  # "tanh" is the last value listed
    data = sampled({"lr": spread(18), "act": [acts[i % 3] for i in range(18)]},
                   lambda lr, act: 0.3 + 0.4 * (lr - 0.5) ** 2 + penalty[act], space=space)
    assert check_boundary(data) == [] and check_no_effect(data) == []


def test_weight_decay_example_from_the_issue() -> None:
    # 12 trials; weight decay below ~1e-4 is off (a plateau), the best two at 2-4e-4, the next
    # best at the low edge. The old rule rated this a problem and suggested 3.2e-8.
    wd = [0.02, 0.06, 0.62, 0.66, 0.3, 0.45, 0.75, 0.85, 0.95, 0.15, 0.52, 0.38]
    lr = [0.45, 0.55, 0.5, 0.48, 0.2, 0.8, 0.35, 0.65, 0.1, 0.9, 0.3, 0.7]

    def level(wd: float, lr: float) -> float:
        dip = -0.012 * math.exp(-((wd - 0.64) / 0.06) ** 2)
        return 0.3 + dip + 0.15 * max(0.0, wd - 0.7) + 0.3 * (lr - 0.5) ** 2

    for seed in range(5):
        data = sampled({"wd": wd, "lr": lr}, level, seed=seed, noise=0.002,
                       space={"wd": WD, "lr": LR})
        units = [WD.to_unit(t.params["wd"]) for t in data.ranked()[:4]]
        assert all(0.6 < u < 0.7 for u in units[:2]) and all(u < 0.1 for u in units[2:])
        findings = check_boundary(data) + check_no_effect(data)
        assert not [f for f in findings if f.severity == "problem"]
        assert all(f.evidence.get("suggested_low", 1.0) >= 1e-7 for f in findings)


@pytest.mark.parametrize(("hp", "side", "expected"), [
    (Float(0.5, 0.99, "one_minus_log"), "high", 1 - 0.01 / math.sqrt(50)),
    (Float(0.5, 0.99, "one_minus_log"), "low", 0.0),  # 1 - 0.5 * sqrt(50) < 0: clamped
    (Float(0.9, 0.99, "one_minus_log"), "low", 1 - 0.1 * math.sqrt(10)),
    (Float(0.9, 0.9999, "one_minus_log"), "high", 1 - 1e-5),  # capped: x10, not x31.6
    (Float(1e-6, 1e-2, "log"), "low", 1e-7),  # capped: not 1e-8
    (Float(1e-3, 1e-1, "log"), "high", 1.0),  # sqrt(100) = 10: exactly the cap
    (Float(0.0, 0.5), "low", 0.0),
    (Float(-1.0, 1.0), "low", -2.0),
    (Float(0.0, 0.5), "high", 0.75),
    (Float(0.2, 1.0), "high", 1.0),  # a fraction stays <= 1
    (Int(2, 8, "log"), "low", 1),
    (Int(4, 15, "log"), "high", 31),  # (15 + 1) * sqrt(16 / 4) - 1
    (Int(1, 10000, "log"), "high", 100009),  # capped at x10
    (Int(10, 19), "low", 5),
])
def test_widened_bounds(hp: Float | Int, side: str, expected: float) -> None:
    value, _ = _widened(hp, side)
    assert value == pytest.approx(expected)


def test_tolerates_missing_and_bad_params() -> None:
    data = make_data([tr([0.1], params={"lr": "oops"}), tr([0.2], params={"lr": -1.0}),
                      tr([0.3])])
    assert check_boundary(data) == [] and check_no_effect(data) == []


# ----------------------------------------------------------------------------- no_effect
def test_no_effect_fires_on_a_flat_hyperparameter() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "wd": WD}
    data = sampled({"lr": spread(20, seed=2), "wd": spread(20, seed=3)},
                   lambda lr, wd: 0.3 + 0.4 * (lr - 0.5) ** 2, seed=7, space=space)
    # (With no effect the p-value is uniform: this sample is one with p >= 0.5.)
    f = only(check_no_effect(data))
    assert (f.check, f.severity, f.hyperparameter) == ("no_effect", "info", "wd")
    ev = f.evidence
    assert ev["p_value"] >= 0.5 and ev["effect_size"] <= ev["allowed"] and ev["n_trials"] == 20
    assert f.advice == {"range:wd": "fix"} and len(f.trials) == 20
    assert f.message.startswith("wd has no measurable effect between 1e-06 and 0.01")
    assert ev["suggested_value"] == data.ranked()[0].params["wd"]
    assert check_boundary(data) == []


def test_no_effect_needs_enough_trials_and_a_small_effect() -> None:
    space: dict[str, Hyperparameter] = {"lr": LR, "wd": WD}
    data = sampled({"lr": spread(9, seed=2), "wd": spread(9, seed=3)},
                   lambda lr, wd: 0.3 + 0.4 * (lr - 0.5) ** 2, seed=4, space=space)
    assert check_no_effect(data) == []  # 9 < 10 trials
    # 18 trials over 4 hyperparameters: 9 coefficients, 9 residual degrees of freedom (< 10):
    # too little power to call anything "no effect" (the demo: 16 trials, 4 hyperparameters).
    wide: dict[str, Hyperparameter] = {"lr": LR, "wd": WD, "m": Float(0.0, 1.0),
                                       "n": Float(0.0, 1.0)}
    for seed in range(10):
        data = sampled({k: spread(18, seed=seed + i) for i, k in enumerate(wide)},
                       lambda lr, wd, m, n: 0.3 + 0.4 * (lr - 0.5) ** 2, seed=seed, space=wide)
        assert check_no_effect(data) == []
    # A real effect of wd: never "no effect".
    data = sampled({"lr": spread(20, seed=2), "wd": spread(20, seed=3)},
                   lambda lr, wd: 0.3 + 0.4 * (lr - 0.5) ** 2 + 0.05 * (wd - 0.5) ** 2,
                   seed=4, space=space)
    assert check_no_effect(data) == []


def test_no_effect_within_the_resolution_says_so_in_examples() -> None:
    # A wiggle of 1 example in 1000: the metric cannot resolve it.
    # (A p-value below 0.5 would keep it silent: this sample has p = 0.82.)
    data = sampled({"lr": spread(20)}, lambda lr: 0.2 + 0.0002 * math.sin(6 * lr), seed=11,
                   noise=0.0004, metric="val_error")
    size = Curve((10,), (1000.0,))
    data = dataclasses.replace(data, trials=tuple(
        dataclasses.replace(t, curves={**t.curves, "val_examples": size}) for t in data.trials))
    f = only(check_no_effect(data))
    assert "within the metric's resolution" in f.message and "of 1000 examples" in f.message


def test_boundary_and_no_effect_never_fire_together() -> None:
    # Over many samples with and without an effect, the two never name the same
    # hyperparameter (and never give opposite advice after run_checks).
    space: dict[str, Hyperparameter] = {"lr": LR, "wd": WD}
    for seed in range(25):
        slope = 0.02 * (seed % 3)
        data = sampled({"lr": spread(14, seed=seed), "wd": spread(14, seed=seed + 100)},
                       lambda lr, wd, s=slope: 0.3 + 0.4 * (lr - 0.5) ** 2 + s * wd,
                       seed=seed, space=space)
        edges = {f.hyperparameter for f in check_boundary(data)}
        flat = {f.hyperparameter for f in check_no_effect(data)}
        assert not edges & flat
        checks = {f.check for f in run_checks(data, only=["boundary", "no_effect"])}
        assert checks <= {"boundary", "no_effect"}

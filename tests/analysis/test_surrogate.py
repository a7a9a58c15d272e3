"""The model of the whole search space: recovers planted effects, calibrated p-values, seeded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.analysis.surrogate import fit, surrogate
from tunebook.experiment import Experiment, Objective
from tunebook.search.space import Categorical, Float, Hyperparameter, Int, SearchSpace

SPACE: dict[str, Hyperparameter] = {"a": Float(1e-4, 1.0, "log"), "b": Float(0.0, 1.0)}


def make_data(rows: Sequence[tuple[str, dict[str, Any], float]],
              space: dict[str, Hyperparameter] | None = None, goal: str = "minimize"
              ) -> ExperimentData:
    """Completed trials ``(study, params, value)`` with one-point curves."""
    exp = Experiment(name="t", objective=Objective("loss", goal),  # type: ignore[arg-type]
                     max_train_steps=10, eval_every=10,
                     nuisance=SearchSpace(space or SPACE), workload="x:y")
    trials = tuple(TrialData(id=i + 1, study=study, index=i, status="completed", params=params,
                             seed=i, best_step=10, best_value=value, final_step=10,
                             final_value=value, curves={"loss": Curve((10,), (value,))})
                   for i, (study, params, value) in enumerate(rows))
    studies = tuple(dict.fromkeys(t.study for t in trials)) or ("main",)
    return ExperimentData(experiment=exp, metric="loss", goal=goal,  # type: ignore[arg-type]
                          final=False, studies=studies, trials=trials)


def sampled(n: int, level: Callable[..., float], seed: int, *,
            space: dict[str, Hyperparameter] | None = None, noise: float = 0.01,
            studies: tuple[str, ...] = ("main",), goal: str = "minimize",
            extra: Callable[[int], dict[str, Any]] | None = None) -> ExperimentData:
    """``n`` uniformly sampled points (shared by every study), one-point curves at
    ``level(**units, study=...)`` plus Gaussian noise."""
    space = space or SPACE
    rng = np.random.default_rng(seed)
    units = {k: rng.random(n) for k, hp in space.items() if hp.ordered}
    rows = []
    for study in studies:
        for i in range(n):
            u = {k: float(v[i]) for k, v in units.items()}
            params: dict[str, Any] = {k: space[k].from_unit(x) for k, x in u.items()}
            params.update(extra(i) if extra else {})
            value = level(**u, **{k: params[k] for k in params if k not in u},
                          study=study) + rng.normal(0, noise)
            rows.append((study, params, float(value)))
    return make_data(rows, space, goal)


def test_recovers_a_known_additive_effect() -> None:
    data = sampled(60, lambda a, b, study: 0.5 + 0.4 * (a - 0.3) ** 2 + 0.1 * b, seed=1)
    m = fit(data)
    a, b = m.effects["a"], m.effects["b"]
    assert a.minimiser == pytest.approx(0.3, abs=0.05)
    assert a.size == pytest.approx(0.4 * 0.7**2, rel=0.15)  # worst at u = 1
    assert b.minimiser == 0.0 and b.size == pytest.approx(0.1, rel=0.25)
    # The curve is relative to its best point and follows the planted shape.
    assert min(a.curve) == 0.0 and a.at(1.0) == pytest.approx(a.size, rel=1e-9)
    assert a.at(0.0) == pytest.approx(0.4 * 0.09, abs=0.03)
    assert a.p_value < 0.01 and b.p_value < 0.01
    assert m.sigma == pytest.approx(0.01, rel=0.35)
    # The planted curves are quadratic: cross-validation picks quadratics (1 + 2 + 2 columns).
    assert len(m.trials) == 60 and len(a.units) == 60 and (m.degree, m.columns) == (2, 5)


def test_permutation_p_is_small_for_a_real_effect_and_about_uniform_for_none() -> None:
    ps = np.asarray([fit(sampled(20, lambda a, b, study: 0.5 + 0.2 * (a - 0.5) ** 2,
                                 seed=s)).effects["b"].p_value for s in range(60)])
    # No effect of b: p is roughly uniform on (0, 1].
    assert 0.35 < float(np.mean(ps)) < 0.65
    assert float(np.mean(ps < 0.1)) < 0.25 and float(np.mean(ps >= 0.5)) > 0.3
    real = [fit(sampled(20, lambda a, b, study: 0.5 + 0.05 * b, seed=s)).effects["b"].p_value
            for s in range(10)]
    assert max(real) < 0.01


def test_deterministic_under_the_seed() -> None:
    data = sampled(25, lambda a, b, study: 0.5 + 0.02 * a, seed=3)
    one, two = fit(data), fit(data)
    assert one.effects == two.effects and one.sigma == two.sigma
    other = fit(data, seed=1)
    assert other.effects["a"].curve == one.effects["a"].curve  # only the test is random
    assert surrogate(data) is surrogate(data)  # computed once per data
    assert fit(data, permutations=50).permutations == 50


def test_study_offsets_do_not_become_effects() -> None:
    # Two studies share the points; b is 0.2 worse everywhere. The effect of a is pooled, and
    # the study difference goes into the intercepts, not into a or b.
    data = sampled(20, lambda a, b, study: 0.5 + 0.1 * a + (0.2 if study == "b" else 0.0),
                   seed=4, studies=("a", "b"))
    m = fit(data)
    assert m.effects["a"].minimiser == 0.0 and m.effects["a"].size == pytest.approx(0.1, rel=0.3)
    assert m.effects["b"].size < 0.05 and m.sigma < 0.02
    assert m.columns == 8 and m.intercepts == 2  # two intercepts, two cubics


def test_outliers_are_clipped_at_the_upper_fence() -> None:
    def level(a: float, b: float, study: str) -> float:
        return 0.5 + 0.3 * (a - 0.5) ** 2

    data = sampled(30, level, seed=5)
    trials = list(data.trials)
    worst = max(range(30), key=lambda i: trials[i].params["a"])
    # A near-diverged trial at the high edge, far worse than the rest.
    trials[worst] = dataclasses.replace(trials[worst], best_value=50.0)
    m = fit(dataclasses.replace(data, trials=tuple(trials)))
    assert m.clipped == 1
    assert m.effects["a"].minimiser == pytest.approx(0.5, abs=0.1)


def test_categorical_and_int_effects() -> None:
    space: dict[str, Hyperparameter] = {"act": Categorical(("relu", "tanh", "gelu")),
                                        "layers": Int(1, 8)}
    acts = ("relu", "tanh", "gelu")
    penalty = {"relu": 0.05, "tanh": 0.2, "gelu": 0.0}
    data = sampled(30, lambda layers, act, study: 0.5 + penalty[act] - 0.1 * layers,
                   seed=6, space=space, extra=lambda i: {"act": acts[i % 3]})
    m = fit(data)
    act = m.effects["act"]
    assert not act.ordered and act.minimiser == "gelu" and act.units == ()
    assert dict(zip(act.grid, act.curve, strict=True))["tanh"] == pytest.approx(0.2, abs=0.02)
    assert m.effects["layers"].minimiser >= 0.9 and m.effects["layers"].p_value < 0.01


def test_maximised_objective_is_made_loss_like() -> None:
    data = sampled(30, lambda a, b, study: 0.9 - 0.3 * (a - 0.7) ** 2, seed=7, goal="maximize")
    assert fit(data).effects["a"].minimiser == pytest.approx(0.7, abs=0.06)


def test_too_few_trials_or_values() -> None:
    m = fit(sampled(3, lambda a, b, study: a, seed=8))
    assert m.effects == {} and set(m.left_out) == {"a", "b"}
    # 7 trials: no room for curvature (1 + 2 + 2 columns and 2 residual dof), straight lines.
    m = fit(sampled(7, lambda a, b, study: a, seed=8))
    assert set(m.effects) == {"a", "b"} and m.columns == 3
    assert fit(make_data([])).effects == {}


def test_missing_values_drop_trials_or_the_hyperparameter() -> None:
    data = sampled(20, lambda a, b, study: 0.5 + 0.2 * a, seed=9)
    trials = list(data.trials)
    # One trial without b: dropped. b missing in most trials: b is left out instead.
    trials[0] = dataclasses.replace(trials[0], params={"a": trials[0].params["a"]})
    m = fit(dataclasses.replace(data, trials=tuple(trials)))
    assert len(m.trials) == 19 and set(m.effects) == {"a", "b"}
    trials = [dataclasses.replace(t, params={"a": t.params["a"], "b": "oops"}) for t in trials]
    m = fit(dataclasses.replace(data, trials=tuple(trials)))
    assert set(m.effects) == {"a"} and "b" in m.left_out and len(m.trials) == 20


def test_in_slab_counts_trials_at_each_side() -> None:
    data = sampled(40, lambda a, b, study: 0.5, seed=10)
    e = fit(data).effects["b"]
    low, high = e.in_slab("low", 0.1), e.in_slab("high", 0.1)
    assert [i for i, u in enumerate(e.units) if u < 0.1] == low
    assert all(e.units[i] > 0.9 for i in high) and low and high


def test_points_shared_by_studies_count_once() -> None:
    # Two studies on the same 8 points (the demo's design): 16 trials, but only 8 points to
    # estimate the effects from. Two hyperparameters: quadratics fit (4 columns, 3 to spare;
    # cubics would leave 1, a planted cubic-looking noise cannot get them);
    # four with a categorical: not even straight lines do, so no model at all.
    two = sampled(8, lambda a, b, study: 0.5 + 0.5 * (a - 0.5) ** 2, seed=11,
                  studies=("x", "y"), noise=0.002)
    assert (fit(two).degree, fit(two).columns) == (2, 2 + 4)
    space: dict[str, Hyperparameter] = {**SPACE, "c": Float(0.0, 1.0),
                                        "act": Categorical(("relu", "tanh", "gelu"))}
    acts = ("relu", "tanh", "gelu")
    four = sampled(8, lambda a, b, c, act, study: 0.5 + 0.1 * a, seed=11, space=space,
                   studies=("x", "y"), extra=lambda i: {"act": acts[i % 3]})
    m = fit(four)
    assert m.effects == {} and m.left_out["a"] == "too few trials for a model"

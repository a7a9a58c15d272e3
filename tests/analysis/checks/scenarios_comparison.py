"""Comparison scenarios: the isolation verdict, and the checks that must agree with it.

Every study searches the same 12 learning rates (the shared nuisance points; trial ``i`` of
each study is the same point), and the objective depends on the learning rate with its best in
the middle of the range, so nothing else is planted. ``isolation`` fires on every experiment
with 2 comparable studies; the planted problem decides the verdict and which of
``enough_trials`` (sampling limits) or ``late_variance`` (step noise limits) joins it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from checkdata import make_data, tr
from scenarios import scenario

from tunebook.analysis.data import Curve, ExperimentData
from tunebook.search.space import Float

SPACE = {"lr": Float(1e-3, 1.0, "log")}


def lrs(n: int = 12) -> list[float]:
    """The shared nuisance points: ``n`` learning rates spread over the middle of the range."""
    return [float(v) for v in np.geomspace(2e-3, 0.5, n)]


def curve(level: float, rng: np.random.Generator, noise: float) -> list[float]:
    """20 evaluations falling linearly to ``level`` at 55% of training and flat after it (so
    neither saturated early nor still improving, the best step anywhere in the flat part),
    with independent ``noise``."""
    t = np.arange(1, 21) / 20
    return [float(v) for v in level + np.maximum(0.0, 0.55 - t) + rng.normal(0, noise, 20)]


def response(lr: float, depth: float = 0.3, center: float = -1.5) -> float:
    """The objective at a learning rate: best (0.3) at ``10**center``, ``depth`` worse per
    decade away."""
    return 0.3 + depth * abs(float(np.log10(lr)) - center)


def _verdict(expected: str) -> Callable[[list[Any]], bool]:
    return lambda fs: len(fs) == 1 and fs[0].evidence["verdict"] == expected


def _limit(expected: str) -> Callable[[list[Any]], bool]:
    return lambda fs: len(fs) == 1 and fs[0].evidence["limit"] == expected


def studies(levels: dict[str, Sequence[float | None]], *, noise: float = 0.001,
            shared_noise: bool = False, seed: int = 0, examples: int | None = None
            ) -> ExperimentData:
    """One study per key, trial ``i`` at ``lrs(n)[i]`` levelling off at ``levels[study][i]``
    (None: infeasible). ``shared_noise`` gives trial ``i`` of every study the same noise
    (the same seed on the same nuisance point); ``examples`` puts the objective ``val_error``
    on a ``1/examples`` lattice and reports ``val_examples``."""
    rng = np.random.default_rng(seed)
    trials = []
    for study, values in levels.items():
        points = lrs(len(values))
        for i, level in enumerate(values):
            params = {"lr": points[i]}
            if level is None:
                trials.append(tr(None, study=study, status="infeasible", params=params,
                                 reason="loss diverged"))
                continue
            gen = np.random.default_rng(1000 * seed + i) if shared_noise else rng
            y = curve(level, gen, noise)
            if examples is not None:
                y = [round(v * examples) / examples for v in y]
            trials.append(tr(y, study=study, params=params))
    data = make_data(trials, nuisance=SPACE, max_train_steps=200, metric="val_error")
    if examples is None:
        return data
    size = Curve((10,), (float(examples),))
    return dataclasses.replace(data, trials=tuple(
        dataclasses.replace(t, curves={**t.curves, "val_examples": size}) if t.curves else t
        for t in data.trials))


@scenario("compare_identical_studies", fires={"isolation", "enough_trials"},
          expect={"isolation": lambda fs: _verdict("within_spread")(fs)
                  and fs[0].evidence["limit"] == "sampling"})
def compare_identical_studies() -> ExperimentData:
    # the scientific value changes nothing: the same response on every nuisance point, with
    # independent evaluation noise. No difference shown; the best nuisance point is 0.011
    # better than the next, so which study comes first depends on the sample of points
    points = lrs()
    base = [response(lr, depth=0.05, center=float(np.log10(points[5]))) for lr in points]
    return studies({"a": base, "b": base}, seed=2)


@scenario("compare_difference_only_pairing_detects", fires={"isolation"},
          expect={"isolation": lambda fs: _verdict("differ")(fs)
                  # unpaired, the sampling spread would hide it
                  and fs[0].evidence["sampling"] > fs[0].evidence["gap"]})
def compare_difference_only_pairing_detects() -> ExperimentData:
    # b is 0.004 worse on every nuisance point; the best nuisance point is 0.011 better than
    # the next, so another sample of points would move a study's best by more than the gap
    points = lrs()
    base = [response(lr, depth=0.05, center=float(np.log10(points[5]))) for lr in points]
    return studies({"a": base, "b": [v + 0.004 for v in base]}, shared_noise=True, noise=0.0005,
                   seed=2)


@scenario("compare_difference_below_resolution", fires={"isolation"},
          expect={"isolation": lambda fs: _verdict("within_spread")(fs)
                  and fs[0].evidence["limit"] == "resolution"})
def compare_difference_below_resolution() -> ExperimentData:
    # b is one example of 300 worse everywhere: consistent, but below the metric's resolution
    base = [response(lr) for lr in lrs()]
    return studies({"a": base, "b": [v + 1 / 300 for v in base]}, shared_noise=True, seed=3,
                   noise=0.004, examples=300)


@scenario("compare_clear_difference", fires={"isolation"},
          expect={"isolation": _verdict("differ")})
def compare_clear_difference() -> ExperimentData:
    base = [response(lr) for lr in lrs()]
    return studies({"a": base, "b": [v + 0.1 for v in base]}, seed=4)


@scenario("compare_sampling_limited", fires={"isolation", "enough_trials"},
          expect={"isolation": _limit("sampling")})
def compare_sampling_limited() -> ExperimentData:
    # the studies prefer different learning rates (b's optimum 4.5x a's), each with one
    # nuisance point 0.011 better than the next: which one is better
    # depends on the nuisance point, and another sample of points could reorder them
    points = lrs()
    a_best, b_best = (float(np.log10(points[k])) for k in (4, 7))
    return studies({"a": [response(lr, 0.05, a_best) for lr in points],
                    "b": [response(lr, 0.05, b_best) for lr in points]}, seed=5)


@scenario("compare_step_noise_limited", fires={"isolation", "late_variance"},
          expect={"isolation": _limit("step_noise")})
def compare_step_noise_limited() -> ExperimentData:
    # 24 trials per study all about equally good (so another sample of them changes little),
    # late curves noisy: a lucky last step decides the comparison
    base = [response(lr, depth=0.002) for lr in lrs(24)]
    return studies({"a": base, "b": [v + 0.002 for v in base]}, noise=0.02, seed=6)


@scenario("compare_three_studies", fires={"isolation"},
          expect={"isolation": lambda fs: _verdict("differ")(fs)
                  and [o["verdict"] for o in fs[0].evidence["others"]] == ["differ"]})
def compare_three_studies() -> ExperimentData:
    base = [response(lr) for lr in lrs()]
    return studies({"a": [v + 0.2 for v in base], "b": base, "c": [v + 0.05 for v in base]},
                   seed=7)


@scenario("compare_one_study_infeasible_heavy", fires={"isolation", "infeasible"},
          expect={"isolation": _verdict("differ")})
def compare_one_study_infeasible_heavy() -> ExperimentData:
    # b diverges at the 5 largest learning rates (infeasible counts as a lost pair) and is
    # worse where it trains
    base = [response(lr) for lr in lrs()]
    b: list[float | None] = [v + 0.05 for v in base[:7]] + [None] * 5
    return studies({"a": base, "b": b}, seed=8)

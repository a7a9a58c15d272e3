"""Pipeline scenarios: a rarely-right class, an imbalanced evaluation set, a periodic
validation curve, an input-bound workload, and a healthy experiment that records all of it."""

from __future__ import annotations

from typing import Any

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Float

SPACE = {"lr": Float(1e-3, 1.0, "log")}
N = 20  # evaluations of a healthy curve (every 10 steps, 200 steps)


def _level(lr: float) -> float:
    """A healthy bowl around lr = 0.03, far from any edge of [1e-3, 1]."""
    return 0.2 + 0.05 * abs(np.log10(lr) + 1.5)


def _counts(examples: list[int], accuracy: list[float], n: int = N
            ) -> dict[str, list[float]]:
    """Per-class count curves (constant over the evaluations) for ``tr(curves=...)``."""
    out: dict[str, list[float]] = {}
    for k, (ex, acc) in enumerate(zip(examples, accuracy, strict=True)):
        out[f"val_class{k}_examples"] = [float(ex)] * n
        out[f"val_class{k}_correct"] = [float(round(ex * acc))] * n
    return out


def _experiment(seed: int, extra: Any = None, n: int = N, **curve_kwargs: Any
                ) -> ExperimentData:
    """Twelve healthy trials over the learning rate; ``extra(i, rng)`` adds curves to each."""
    rng = np.random.default_rng(seed)
    trials = []
    for i, lr in enumerate(np.geomspace(3e-3, 0.3, 12)):
        values = healthy_curve(_level(lr), rng, n=n)
        trials.append(tr(values, params={"lr": lr},
                         curves=extra(i, rng) if extra is not None else {}))
    return make_data(trials, nuisance=SPACE, max_train_steps=10 * n)


@scenario("pipeline_healthy", fires=set())
def pipeline_healthy() -> ExperimentData:
    # Balanced classes, all about equally right; the steps wait 10% for data; the periodic
    # subset (1000 of 2000 examples) agrees with the full set to within its sampling error.
    def extra(i: int, rng: np.random.Generator) -> dict[str, list[float]]:
        return {**_counts([100] * 10, list(rng.uniform(0.75, 0.85, 10))),
                "data_share": list(rng.uniform(0.05, 0.15, N))}
    return _with_full(_experiment(20, extra), 1000, 2000, skew=0.0)


def _with_full(data: ExperimentData, n: int, big: int, skew: float) -> ExperimentData:
    """``data`` rebuilt with the objective on the full set at the last step: the subset's
    value (the curve, whose noise stands for the subset's sampling error) minus ``skew``; the
    sizes reported."""
    trials = []
    for t in data.trials:
        steps, values = t.curves[data.metric].steps, t.curves[data.metric].values
        full = float(values[-1] - skew)
        trials.append(tr(list(values), params=t.params, steps=list(steps), extra={
            "val_full_loss": ([steps[-1]], [full]), "val_examples": ([steps[0]], [float(n)]),
            "val_full_examples": ([steps[0]], [float(big)]),
            **{m: (list(cv.steps), list(cv.values)) for m, cv in t.curves.items()
               if m != data.metric}}))
    return make_data(trials, nuisance=SPACE, max_train_steps=data.experiment.max_train_steps,
                     metric="val_loss")


@scenario("eval_subset_skewed", fires={"eval_subset"},
          expect={"eval_subset": lambda fs: [f.severity for f in fs] == ["warning"]})
def eval_subset_skewed() -> ExperimentData:
    # The periodic subset (1000 of 2000) reads 0.05 worse than the full set: 5 standard errors.
    return _with_full(_experiment(65), 1000, 2000, skew=0.05)


@scenario("eval_subset_too_small", fires={"eval_subset"},
          expect={"eval_subset": lambda fs: [f.severity for f in fs] == ["info"]})
def eval_subset_too_small() -> ExperimentData:
    # 100 of 2000 examples: a difference between two trials has a standard error of 0.06,
    # more than the best trials' spread.
    return _with_full(_experiment(66), 100, 2000, skew=0.0)


@scenario("rare_class", fires={"class_imbalance"},
          expect={"class_imbalance": lambda fs: [f.severity for f in fs] == ["warning"]})
def rare_class() -> ExperimentData:
    # Class 7 is right 20% of the time, the others about 80%.
    def extra(i: int, rng: np.random.Generator) -> dict[str, list[float]]:
        acc = list(rng.uniform(0.75, 0.85, 10))
        acc[7] = 0.2
        return _counts([100] * 10, acc)
    return _experiment(61, extra)


@scenario("imbalanced_eval_set", fires={"class_imbalance"},
          expect={"class_imbalance": lambda fs: [f.severity for f in fs] == ["info"]})
def imbalanced_eval_set() -> ExperimentData:
    # 1000 examples of class 0, 50 of each other; every class about equally right.
    def extra(i: int, rng: np.random.Generator) -> dict[str, list[float]]:
        return _counts([1000] + [50] * 4, list(rng.uniform(0.75, 0.85, 5)))
    return _experiment(62, extra)


@scenario("periodic_validation_curve",
          fires={"periodic_validation", "late_variance", "saturated_early"})
def periodic_validation_curve() -> ExperimentData:
    # Unshuffled data: the validation loss wobbles with the epoch (8 evaluations, 80 steps),
    # by 10 times the noise. The wobble is also late step-to-step variance (late_variance),
    # and it makes the flat end look no better than its middle (saturated_early).
    n = 40
    rng = np.random.default_rng(63)
    t = np.arange(1, n + 1)
    trials = []
    for lr in np.geomspace(3e-3, 0.3, 12):
        base = np.asarray(healthy_curve(_level(lr), rng, n=n))
        trials.append(tr(list(base + 0.02 * np.sin(2 * np.pi * t / 8)), params={"lr": lr}))
    return make_data(trials, nuisance=SPACE, max_train_steps=10 * n)


@scenario("input_bound_workload", fires={"input_bound"})
def input_bound_workload() -> ExperimentData:
    # The steps wait about 70% of their time for the next batch.
    def extra(i: int, rng: np.random.Generator) -> dict[str, list[float]]:
        return {"data_share": list(rng.uniform(0.6, 0.8, N))}
    return _experiment(64, extra)

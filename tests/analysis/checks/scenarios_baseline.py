"""Baseline scenarios: healthy experiments on which no check may fire."""

from __future__ import annotations

import numpy as np
from checkdata import make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Float


def healthy_curve(level: float, rng: np.random.Generator, n: int = 20,
                  noise: float = 0.002) -> list[float]:
    """Falls, then levels off at ``level`` in the second half of training (best step at 60-100%
    of training, decided by noise): nothing to report."""
    t = np.arange(1, n + 1) / n
    return list(level + 0.3 * np.exp(-12 * t) + rng.normal(0, noise, n))


@scenario("single_healthy_study")
def single_healthy_study() -> ExperimentData:
    rng = np.random.default_rng(1)
    space = {"lr": Float(1e-3, 1.0, "log")}
    trials = [tr(healthy_curve(0.3 + 0.1 * abs(np.log10(lr) + 1.5), rng),
                 params={"lr": lr}) for lr in np.geomspace(2e-3, 0.5, 12)]
    return make_data(trials, nuisance=space, max_train_steps=200)

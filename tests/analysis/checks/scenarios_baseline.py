"""Baseline scenarios: healthy experiments on which no check may fire."""

from __future__ import annotations

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Float


@scenario("single_healthy_study")
def single_healthy_study() -> ExperimentData:
    rng = np.random.default_rng(1)
    space = {"lr": Float(1e-3, 1.0, "log")}
    trials = [tr(healthy_curve(0.3 + 0.1 * abs(np.log10(lr) + 1.5), rng),
                 params={"lr": lr}) for lr in np.geomspace(2e-3, 0.5, 12)]
    return make_data(trials, nuisance=space, max_train_steps=200)

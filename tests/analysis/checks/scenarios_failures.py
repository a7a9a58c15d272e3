"""Failure scenarios: trials at chance, the best trial next to the divergent region."""

from __future__ import annotations

from typing import Any

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Float

SPACE = {"lr": Float(1e-4, 1.0, "log")}
#: Chance for the error rate of 10 balanced classes, reported once like the workloads do.
CHANCE = {"val_error_chance": [0.9]}


def _severity(severity: str) -> Any:
    return lambda fs: [f.severity for f in fs] == [severity]


def _chance_trials(chance: bool) -> list[dict[str, Any]]:
    """12 healthy trials (best near lr = 0.03) and 3 at very low learning rates that learned
    nothing (error ~0.89 on 10 classes); 3 of 15 is not "too many infeasible" (20%)."""
    rng = np.random.default_rng(11)
    trials = [tr(healthy_curve(0.1 + 0.05 * abs(np.log10(lr) + 1.5), rng), params={"lr": lr},
                 curves=CHANCE if chance and i == 0 else None)
              for i, lr in enumerate(np.geomspace(2e-3, 0.5, 12))]
    trials += [tr(healthy_curve(0.885 + 0.005 * j, rng), params={"lr": lr})
               for j, lr in enumerate((1.2e-4, 2e-4, 3.5e-4))]
    return trials


@scenario("trials_at_chance", fires={"at_chance"},
          expect={"at_chance": _severity("warning")})
def trials_at_chance() -> ExperimentData:
    return make_data(_chance_trials(True), nuisance=SPACE, metric="val_error",
                     max_train_steps=200)


@scenario("trials_at_chance_level_from_settings", fires={"at_chance"})
def trials_at_chance_level_from_settings() -> ExperimentData:
    return make_data(_chance_trials(False), nuisance=SPACE, metric="val_error",
                     max_train_steps=200, checks={"resolution": {"chance_level": 0.9}})


@scenario("high_error_without_known_chance")
def high_error_without_known_chance() -> ExperimentData:
    # The same trials, but nothing says what chance is: nothing to report.
    return make_data(_chance_trials(False), nuisance=SPACE, metric="val_error",
                     max_train_steps=200)


def _edge_trials(rng: np.random.Generator, top: float) -> list[dict[str, Any]]:
    """13 feasible trials with lr in [1e-3, top], the error falling as lr grows."""
    return [tr(healthy_curve(0.1 + 0.06 * np.log10(top / lr), rng), params={"lr": lr})
            for lr in np.geomspace(1e-3, top, 13)]


@scenario("best_lr_next_to_divergence", fires={"near_divergence"},
          expect={"near_divergence": lambda fs: fs[0].hyperparameter == "lr"})
def best_lr_next_to_divergence() -> ExperimentData:
    # Figure 7a: the best learning rate (0.05) is the last one that trains; every larger
    # one diverges (3 of 16: not "too many infeasible").
    rng = np.random.default_rng(12)
    trials = _edge_trials(rng, 0.05)
    trials += [tr(None, status="infeasible", params={"lr": lr}, reason="loss is nan")
               for lr in (0.08, 0.2, 0.5)]
    return make_data(trials, nuisance=SPACE, max_train_steps=200)


@scenario("best_lr_next_to_chance_region", fires={"near_divergence", "at_chance"})
def best_lr_next_to_chance_region() -> ExperimentData:
    # The same edge, but the larger learning rates complete at chance instead of diverging.
    rng = np.random.default_rng(15)
    trials = _edge_trials(rng, 0.05)
    trials[0]["curves"] = CHANCE
    trials += [tr(healthy_curve(0.89, rng), params={"lr": lr}) for lr in (0.08, 0.2, 0.5)]
    return make_data(trials, nuisance=SPACE, metric="val_error", max_train_steps=200)


@scenario("divergence_far_from_the_best")
def divergence_far_from_the_best() -> ExperimentData:
    # The largest learning rates diverge, but the best (~0.01) has feasible, worse trials
    # between it and them: nothing limits the search.
    rng = np.random.default_rng(14)
    trials = [tr(healthy_curve(0.1 + 0.1 * abs(np.log10(lr) + 2), rng), params={"lr": lr})
              for lr in np.geomspace(1e-3, 0.1, 13)]
    trials += [tr(None, status="infeasible", params={"lr": lr}, reason="loss is nan")
               for lr in (0.2, 0.4, 0.8)]
    return make_data(trials, nuisance=SPACE, max_train_steps=200)

"""Setup scenarios: the batch size searched or compared, too few trials for the nuisance space."""

from __future__ import annotations

from typing import Any

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Discrete, Float, Hyperparameter


def _severity(severity: str) -> Any:
    return lambda fs: [f.severity for f in fs] == [severity]


def _says(text: str) -> Any:
    return lambda fs: len(fs) == 1 and text in fs[0].message


def _lr_level(lr: float) -> float:
    """A healthy bowl around lr = 0.03, far from any edge of [1e-3, 1]."""
    return 0.2 + 0.05 * abs(np.log10(lr) + 1.5)


@scenario("batch_size_as_nuisance", fires={"batch_size_tuned"},
          expect={"batch_size_tuned": _severity("warning")})
def batch_size_as_nuisance() -> ExperimentData:
    rng = np.random.default_rng(20)
    space: dict[str, Hyperparameter] = {"lr": Float(1e-3, 1.0, "log"),
                                        "batch_size": Discrete((32, 64, 128, 256))}
    sizes = [32, 64, 128, 256] * 3
    trials = [tr(healthy_curve(_lr_level(lr), rng), params={"lr": lr, "batch_size": b})
              for lr, b in zip(np.geomspace(3e-3, 0.3, 12), sizes, strict=True)]
    return make_data(trials, nuisance=space, max_train_steps=200)


@scenario("batch_size_as_scientific", fires={"batch_size_tuned"},
          expect={"batch_size_tuned": _severity("info")})
def batch_size_as_scientific() -> ExperimentData:
    # Two batch sizes, the learning rate re-tuned for each: legitimate (to compare speed),
    # worth a reminder. The studies differ clearly (0.2 vs 0.4): nothing else to say.
    rng = np.random.default_rng(26)
    space = {"lr": Float(1e-3, 1.0, "log")}
    trials = [tr(healthy_curve(_lr_level(lr) + 0.2 * j, rng), study=f"batch_size={b}",
                 params={"lr": lr})
              for j, b in enumerate((32, 256)) for lr in np.geomspace(3e-3, 0.3, 12)]
    return make_data(trials, nuisance=space, max_train_steps=200,
                     scientific={"batch_size": [32, 256]},
                     studies=["batch_size=32", "batch_size=256"])


def _spread_params(names: list[str], space: dict[str, Hyperparameter], n: int,
                   rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` points with every hyperparameter at shuffled positions in the middle of its
    range (units 0.25-0.75): the few trials sit at no edge."""
    units = {name: rng.permutation(np.linspace(0.25, 0.75, n)) for name in names}
    return [{name: space[name].from_unit(float(units[name][i])) for name in names}
            for i in range(n)]


def _lr_only(space: dict[str, Hyperparameter], n: int, seed: int,
             **kwargs: Any) -> ExperimentData:
    """``n`` trials over ``space`` whose result depends on the learning rate only."""
    rng = np.random.default_rng(seed)
    params = _spread_params(list(space), space, n, rng)
    trials = [tr(healthy_curve(_lr_level(p["lr"]), rng), params=p) for p in params]
    return make_data(trials, nuisance=space, max_train_steps=200, search_trials=n, **kwargs)


@scenario("six_trials_six_nuisance", fires={"too_few_trials"},
          expect={"too_few_trials": _says("6 trials for 6 nuisance hyperparameters")})
def six_trials_six_nuisance() -> ExperimentData:
    space: dict[str, Hyperparameter] = {
        "lr": Float(1e-3, 1.0, "log"), "weight_decay": Float(1e-6, 1e-2, "log"),
        "dropout": Float(0.0, 0.5), "label_smoothing": Float(0.0, 0.2),
        "warmup": Float(0.0, 0.1), "momentum": Float(0.5, 0.99, "one_minus_log")}
    return _lr_only(space, 6, 23)


@scenario("adam_eight_trials_tuning_betas", fires={"too_few_trials"},
          expect={"too_few_trials": _says("the playbook tunes only the learning rate")})
def adam_eight_trials_tuning_betas() -> ExperimentData:
    space: dict[str, Hyperparameter] = {
        "lr": Float(1e-3, 1.0, "log"), "beta1": Float(0.5, 0.99, "one_minus_log"),
        "beta2": Float(0.9, 0.9999, "one_minus_log"), "epsilon": Float(1e-10, 1e-6, "log")}
    return _lr_only(space, 8, 24, fixed={"optimizer": "adam"})


@scenario("adam_epsilon_before_25_trials", fires={"too_few_trials"},
          expect={"too_few_trials": _says("tunes only the learning rate and beta1")})
def adam_epsilon_before_25_trials() -> ExperimentData:
    # 20 trials for 2 hyperparameters is plenty in general, but the playbook adds Adam's
    # epsilon only from 25 trials.
    space: dict[str, Hyperparameter] = {"lr": Float(1e-3, 1.0, "log"),
                                        "adam_epsilon": Float(1e-10, 1e-6, "log")}
    return _lr_only(space, 20, 23, fixed={"optimizer": "adam"})


@scenario("adam_enough_trials")
def adam_enough_trials() -> ExperimentData:
    # 12 trials for the learning rate and beta1 under Adam: what the playbook does.
    space: dict[str, Hyperparameter] = {"lr": Float(1e-3, 1.0, "log"),
                                        "one_minus_beta1": Float(0.01, 0.5, "log")}
    return _lr_only(space, 12, 25, fixed={"optimizer": "adam"})

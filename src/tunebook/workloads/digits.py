"""An MLP on scikit-learn's digits (8x8 images, 10 classes, bundled with scikit-learn).

The 1,797 images are split once, with a fixed seed (a permutation by ``numpy``'s generator
seeded 0), into 1,079 for training, 359 for validation and 359 for test, and standardised with
the training set's per-pixel mean and deviation; every trial sees the same split. Training
reports ``val_*`` on the validation set only; the test set is read by :func:`train_mlp_final_eval`
alone, which ``tunebook final-eval`` calls once exploration has ended (the playbook: the test set
is not a tuning tool). Loading is cached per process, so a long-lived worker pays it once.

Hyperparameters of the model:

================  ========  =========================================================
name              default   meaning
================  ========  =========================================================
``num_layers``    1         hidden layers (0: a linear classifier)
``width``         128       units per hidden layer
``activation``    ``relu``  ``relu``, ``gelu``, ``tanh`` or ``silu``
``dropout``       0.0       dropout after each hidden activation (in [0, 1))
``batch_size``    64        training batch size (at most 1,079)
================  ========  =========================================================

and every training hyperparameter of :mod:`tunebook.workloads.common` (``optimizer`` [adam],
``learning_rate``, ``beta1``, ``beta2``, ``momentum``, ``weight_decay``, ``schedule``,
``warmup_steps``, ``grad_clip``, ``label_smoothing``...). Any other name is refused (the trial
fails with the closest known name), so a typo cannot silently run a study at the default.

Reports ``train_loss``, ``train_error`` (on the whole training set, in eval mode), ``val_loss``,
``val_error`` and ``learning_rate`` every ``eval_every`` steps and at the end, ``grad_norm``
(the unclipped norm) at every update, and checkpoints at each evaluation
so a killed trial resumes exactly where it stopped. :func:`train_mlp_final_eval` gives
``test_error``, ``test_loss`` and ``test_examples`` of a trial's best checkpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tunebook.execution.final_eval import FinalEvalTrial
from tunebook.execution.trial import Trial
from tunebook.workloads.common import (
    ACTIVATIONS,
    TRAINING_HPARAMS,
    check_hparams,
    float_hparam,
    int_hparam,
    mlp,
    str_hparam,
    train_classifier,
)
from tunebook.workloads.final import test_metrics

__all__ = ["HPARAMS", "SPLIT_FRACTIONS", "load_digits_split", "load_digits_test", "train_mlp",
           "train_mlp_final_eval"]

REQUIRES = {"torch": "demo", "sklearn": "demo"}
"""Packages this workload needs (import name -> the tunebook extra that installs them), checked
when it is loaded, before any trial starts."""

HPARAMS = TRAINING_HPARAMS | {"num_layers", "width", "activation", "dropout"}
"""Every hyperparameter name :func:`train_mlp` reads."""


SPLIT_FRACTIONS = (0.2, 0.2)
"""The shares of the 1,797 images held out for test and validation (359 each, rounded down);
the rest (1,079) is the training set."""


@functools.cache
def _split() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three parts, standardised with the training part's statistics."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test, n_val = (int(len(x) * f) for f in SPLIT_FRACTIONS)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    return {name: (torch.from_numpy(x[index]), torch.from_numpy(y[index]))
            for name, index in (("train", train), ("val", val), ("test", test))}


def load_digits_split() -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_val, y_val)``: standardised float32 images and int64 labels; the
    split is fixed (seed 0) for every trial, and the validation images are training data held
    out, never the test set."""
    parts = _split()
    return (*parts["train"], *parts["val"])


def load_digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_test, y_test)``: the held-out test images (standardised like training), for the
    final evaluation only."""
    return _split()["test"]


def _model(hparams: dict[str, Any]) -> torch.nn.Module:
    return mlp(64, 10, num_layers=int_hparam(hparams, "num_layers", 1, minimum=0),
               width=int_hparam(hparams, "width", 128),
               activation=str_hparam(hparams, "activation", "relu", ACTIVATIONS),
               dropout=float_hparam(hparams, "dropout", 0.0, high=1.0))


def train_mlp(hparams: dict[str, Any], trial: Trial, *,
              on_step: Callable[[int], None] | None = None) -> None:
    """Train the MLP for ``trial.max_train_steps`` steps (see the module docstring)."""
    check_hparams(hparams, HPARAMS)
    x_train, y_train, x_val, y_val = load_digits_split()
    torch.manual_seed(trial.seed)
    model = _model(hparams)
    train_classifier(trial, model, (x_train, y_train), (x_val, y_val), hparams,
                     default_batch_size=64, on_step=on_step)


def train_mlp_final_eval(hparams: dict[str, Any], trial: FinalEvalTrial) -> dict[str, float]:
    """The final evaluation of :func:`train_mlp`: the trial's selected checkpoint on the test
    set (``test_error``, ``test_loss``, ``test_examples``)."""
    check_hparams(hparams, HPARAMS)
    return test_metrics(trial, _model(hparams), load_digits_test())

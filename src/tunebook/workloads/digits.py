"""An MLP on scikit-learn's digits (8x8 images, 10 classes, bundled with scikit-learn).

The 1,797 images are split once, with a fixed seed, into 1,198 for training and 599 for
validation, and standardised with the training set's per-pixel mean and deviation; every trial
sees the same split. Loading is cached per process, so a long-lived worker pays it once.

Hyperparameters of the model:

================  ========  =========================================================
name              default   meaning
================  ========  =========================================================
``num_layers``    1         hidden layers (0: a linear classifier)
``width``         128       units per hidden layer
``activation``    ``relu``  ``relu``, ``gelu``, ``tanh`` or ``silu``
``dropout``       0.0       dropout after each hidden activation (in [0, 1))
``batch_size``    64        training batch size (at most 1,198)
================  ========  =========================================================

and every training hyperparameter of :mod:`tunebook.workloads.common` (``optimizer`` [adam],
``learning_rate``, ``beta1``, ``beta2``, ``momentum``, ``weight_decay``, ``schedule``,
``warmup_steps``, ``grad_clip``, ``label_smoothing``...). Any other name is refused (the trial
fails with the closest known name), so a typo cannot silently run a study at the default.

Reports ``train_loss``, ``train_error`` (on the whole training set, in eval mode), ``val_loss``,
``val_error`` and ``learning_rate`` every ``eval_every`` steps and at the end, ``grad_norm``
(the unclipped norm) at every update, and checkpoints at each evaluation
so a killed trial resumes exactly where it stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

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

__all__ = ["HPARAMS", "load_digits_split", "train_mlp"]

REQUIRES = {"torch": "demo", "sklearn": "demo"}
"""Packages this workload needs (import name -> the tunebook extra that installs them), checked
when it is loaded, before any trial starts."""

HPARAMS = TRAINING_HPARAMS | {"num_layers", "width", "activation", "dropout"}
"""Every hyperparameter name :func:`train_mlp` reads."""


@functools.cache
def load_digits_split(val_fraction: float = 1 / 3) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_val, y_val)``: standardised float32 images and int64 labels; the
    split is fixed (seed 0) for every trial."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def train_mlp(hparams: dict[str, Any], trial: Trial, *,
              on_step: Callable[[int], None] | None = None) -> None:
    """Train the MLP for ``trial.max_train_steps`` steps (see the module docstring)."""
    check_hparams(hparams, HPARAMS)
    x_train, y_train, x_val, y_val = load_digits_split()
    torch.manual_seed(trial.seed)
    model = mlp(64, 10, num_layers=int_hparam(hparams, "num_layers", 1, minimum=0),
                width=int_hparam(hparams, "width", 128),
                activation=str_hparam(hparams, "activation", "relu", ACTIVATIONS),
                dropout=float_hparam(hparams, "dropout", 0.0, high=1.0))
    train_classifier(trial, model, (x_train, y_train), (x_val, y_val), hparams,
                     default_batch_size=64, on_step=on_step)

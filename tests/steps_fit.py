"""A workload whose training set is fit at a known step (tests of the ``steps`` procedure).

``train_error`` falls linearly from 1 to 0 at speed ``speed(lr)``: the training set is fit
(error 0) at step ``FIT_STEPS / speed(lr)``. The speed is highest, 1, at ``lr = BEST_LR`` and
falls off on a log scale either side, so the fastest learning rate is inside a range around it.
``weight_decay`` slows training (the sweep must set it to 0), a decaying ``schedule`` is refused
(the sweep must use a constant one). ``val_error`` ends lowest at ``BEST_LR``. ``floor``
(default 0) is an error the training never goes below: a training set that cannot be fit.
"""

from __future__ import annotations

import math
from typing import Any

from tunebook.execution.trial import Trial

FIT_STEPS = 140
BEST_LR = 0.1


def speed(lr: float) -> float:
    """Progress per step relative to the best learning rate (1 at ``BEST_LR``)."""
    return 1.0 / (1.0 + abs(math.log10(lr / BEST_LR)) * 2)


def fit_step(lr: float) -> float:
    """The exact step at which ``train_error`` reaches 0."""
    return FIT_STEPS / speed(lr)


def train(hparams: dict[str, Any], trial: Trial) -> None:
    """Report ``train_error``, ``train_loss`` and ``val_error`` at every evaluation."""
    if hparams.get("schedule", "constant") != "constant":
        raise ValueError("steps_fit: the sweep must use a constant schedule")
    lr = float(hparams["learning_rate"])
    rate = speed(lr) / FIT_STEPS / (1.0 + 10 * float(hparams.get("weight_decay", 0.0)))
    for step in range(trial.eval_every, trial.max_train_steps + 1, trial.eval_every):
        error = max(float(hparams.get("floor", 0.0)), 1.0 - rate * step)
        trial.report(step, train_error=error, train_loss=2.0 * error + 1e-4,
                     val_error=0.05 + 0.02 * abs(math.log10(lr / BEST_LR)) + 0.9 * error)

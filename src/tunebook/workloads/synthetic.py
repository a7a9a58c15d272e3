"""A synthetic training run that needs nothing but the standard library.

``quadratic`` imitates a training curve: the validation loss decays towards a floor set by how far
the hyperparameters are from an optimum, with noise, and diverges when the learning rate is too
high. It is useful to try tunebook in seconds, in tests, and in benchmarks where the cost of the
trial itself should be close to zero (``work`` adds a fixed amount of CPU work per step).

Hyperparameters (defaults in brackets):
    learning_rate [0.1]   log-scale optimum near 0.03; above 2.0 the run diverges
    x [0.0], y [0.0]      any other real hyperparameters; optimum at 0.3 and -0.2
    noise [0.01]          evaluation noise (seeded by the trial seed)
    work [0]              busy-loop iterations per step (CPU-bound trials)
    sleep [0.0]           seconds slept per step (slow trials for tests)
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from tunebook.execution.trial import Trial

__all__ = ["quadratic"]


def _burn(iterations: int) -> int:
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) % 1_000_003
    return acc


def quadratic(hparams: dict[str, Any], trial: Trial) -> None:
    """Simulated training; reports ``train_loss``, ``val_loss``, ``val_error``, ``grad_norm``."""
    lr = float(hparams.get("learning_rate", 0.1))
    x, y = float(hparams.get("x", 0.0)), float(hparams.get("y", 0.0))
    noise = float(hparams.get("noise", 0.01))
    work, sleep = int(hparams.get("work", 0)), float(hparams.get("sleep", 0.0))
    floor = 0.05 + (math.log10(lr) - math.log10(0.03)) ** 2 / 10 + (x - 0.3) ** 2 + (y + 0.2) ** 2
    rate = min(lr, 1.0) * 5 / trial.max_train_steps
    state = trial.load_state() or {"step": 0}
    step = state["step"]
    while step < trial.max_train_steps:
        step += 1
        if work:
            _burn(work)
        if sleep:
            time.sleep(sleep)
        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            # Evaluation noise is a function of (seed, step): a resumed run reproduces it.
            rng = random.Random(trial.seed * 1_000_003 + step)
            progress = 1 - math.exp(-rate * step * 50)
            train = floor * 0.8 + (1 - progress) * 2.0
            if lr > 2.0:
                train = train * math.exp(step / 10) if step < 5000 else math.inf
            val = floor + (1 - progress) * 2.0 + rng.gauss(0, noise)
            if lr > 2.0:
                val = math.nan
            grad_norm = abs(1.0 + rng.gauss(0, 0.2)) * (1 - progress + 0.1) * (1 + lr)
            trial.report(step, train_loss=train, val_loss=val,
                         val_error=min(1.0, max(0.0, val / 3)), grad_norm=grad_norm)
            trial.save_state(step, {"step": step})

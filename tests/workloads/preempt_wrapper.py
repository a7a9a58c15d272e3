"""Built-in workloads wrapped for the preemption test (importable by spawned workers).

Each wrapper records the attempt (``attempts``: pid and start step), then runs the built-in
workload with an ``on_step`` hook that sleeps ``sleep`` seconds (slowing the run down so a kill
lands at a step of the test's choosing) and publishes ``<pid> <step>`` in ``progress``
atomically. ``sleep`` is the only hyperparameter added; everything else goes to the workload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from tunebook.execution.trial import Trial
from tunebook.workloads import digits, text

Workload = Callable[..., None]


def _run(workload: Workload, hparams: dict[str, Any], trial: Trial) -> None:
    pid = os.getpid()
    with open(trial.dir / "attempts", "a", encoding="utf-8") as f:
        f.write(f"{pid} {trial.start_step}\n")
    sleep = float(hparams.get("sleep", 0.0))
    inner = {k: v for k, v in hparams.items() if k != "sleep"}

    def on_step(step: int) -> None:
        if sleep:
            time.sleep(sleep)
        tmp = trial.dir / f".progress.{pid}"
        tmp.write_text(f"{pid} {step}\n")
        os.replace(tmp, trial.dir / "progress")

    workload(inner, trial, on_step=on_step)


def digits_mlp(hparams: dict[str, Any], trial: Trial) -> None:
    """:func:`tunebook.workloads.digits.train_mlp`, observable step by step."""
    _run(digits.train_mlp, hparams, trial)


def transformer(hparams: dict[str, Any], trial: Trial) -> None:
    """:func:`tunebook.workloads.text.train_transformer`, observable step by step."""
    _run(text.train_transformer, hparams, trial)

"""A synthetic workload with a known unstable learning rate, a known shortest warmup and known
gradient norms (no torch, microseconds a step), for the stability and clip procedures' tests.

Rules (``update`` counts from 0; its rate is ``learning_rate * min(1, update / warmup_steps)``,
the built-in workloads' linear warmup):

- an update at a rate above ``STABLE_LR`` (0.5) makes training blow up unless the run warms up
  for at least ``MIN_WARMUP`` (30) steps (with ``warmup_helps: false``, warmup never helps) or
  clips its gradient norm (``grad_clip`` below the largest norm, 10). A blow-up above
  ``NAN_LR`` (5.0) gives NaN losses (the trial is infeasible); below it, a loss spike: the
  loss quadruples at every evaluation after it;
- otherwise the training loss decreases steadily: ``0.1 + 2 / (1 + progress)``, ``progress``
  the sum of the rates (capped at 0.5) so far; ``val_loss`` is ``train_loss + 0.05``;
- the unclipped gradient norm of step ``s`` (1-based) is ``1 + s % 10``, reported every step
  (unless ``report_norms: false``).

For the kill test (tests/procedures/test_procedure_kill.py), two environment variables that
change no result: ``WARMUP_WORKLOAD_SLEEP`` (seconds to sleep a step, so a procedure can be
killed mid-way) and ``WARMUP_WORKLOAD_LOG`` (a file each trial start appends its store id to).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from tunebook.execution.trial import Trial

STABLE_LR = 0.5
MIN_WARMUP = 30
NAN_LR = 5.0


def norm_at(step: int) -> float:
    """The unclipped gradient norm of ``step`` (1-based)."""
    return 1.0 + step % 10


def train(hparams: dict[str, Any], trial: Trial) -> None:
    """Simulated training by the rules of the module docstring."""
    lr = float(hparams.get("learning_rate", 0.1))
    warmup = int(hparams.get("warmup_steps", 0))
    clip = hparams.get("grad_clip")
    helps = bool(hparams.get("warmup_helps", True))
    clipped = clip is not None and float(clip) < 10.0
    progress, blown, loss = 0.0, False, math.inf
    pause = float(os.environ.get("WARMUP_WORKLOAD_SLEEP", "0"))
    if os.environ.get("WARMUP_WORKLOAD_LOG"):
        with open(os.environ["WARMUP_WORKLOAD_LOG"], "a", encoding="utf-8") as log:
            log.write(f"start {trial.id}\n")
    for update in range(trial.max_train_steps):
        step = update + 1
        rate = lr * min(1.0, update / warmup) if warmup > 0 else lr
        if rate > STABLE_LR and not clipped and not (helps and warmup >= MIN_WARMUP):
            blown = True
        progress += min(rate, STABLE_LR)
        metrics = {"grad_norm": norm_at(step)} if hparams.get("report_norms", True) else {}
        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            if blown and lr > NAN_LR:
                loss = math.nan
            elif blown:
                loss = 4 * loss if math.isfinite(loss) else 4.0
            else:
                loss = 0.1 + 2 / (1 + progress)
            metrics.update(train_loss=loss, val_loss=loss + 0.05)
        trial.report(step, **metrics)
        if pause:
            time.sleep(pause)

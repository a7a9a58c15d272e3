"""A workload with a known batch-size answer, for the batch-size probe's tests.

Each update sleeps ``T(B) = base_seconds * max(1, B / knee)``: the time per update is flat up
to ``knee`` (throughput doubles with every doubling of B) and proportional to B above it
(throughput flat: no gain). The first ``data_share`` of each update's sleep stands for fetching
the batch. It measures its own updates with the clock, as ``train_classifier`` does with
``step_timing``, and reports the same metrics. Above ``oom_above`` it raises ``MemoryError`` at
the first update, above ``max_batch`` a ``ValueError`` before it; ``peak_memory_mb`` is
``mb_per_example * B``.

Steps to a result (for ``--steps-to-result``): each evaluation also reports
``val_loss = 1 / (1 + step * q * min(B, critical) / (16 * steps16))``, where
``q = 1 / (1 + log10(learning_rate / 0.1) ** 2)`` is 1 at the best learning rate (0.1, the
same at every size, so that a search with one seed finds the same ``q`` at each). It reaches
0.5 after ``steps16 / q`` steps (and ``val_score = 1 - val_loss``, to be maximised, 0.5 at the
same step) at B = 16, half as many per doubling up to ``critical`` (perfect
scaling) and no fewer above it. The clock is only run (sleeps) with ``step_timing``: the
searches of the steps-to-result stage do not need it and stay fast.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tunebook.execution.trial import Trial


def saturating(hparams: dict[str, Any], trial: Trial) -> None:
    """See the module docstring."""
    b = int(hparams["batch_size"])
    knee, base = int(hparams.get("knee", 64)), float(hparams.get("base_seconds", 0.004))
    share = float(hparams.get("data_share", 0.25))
    oom_above = hparams.get("oom_above")
    if b > int(hparams.get("max_batch", 10**9)):  # like a batch larger than the training set
        raise ValueError(f"batch_size must be at most {hparams['max_batch']}, got {b}")
    if oom_above is not None and b > int(oom_above):
        raise MemoryError(f"simulated: batch size {b} does not fit")
    per_step = base * max(1.0, b / knee) if hparams.get("step_timing") else 0.0
    lr = float(hparams.get("learning_rate", 0.1))
    q = 1 / (1 + math.log10(lr / 0.1) ** 2)
    rate = q * min(b, float(hparams.get("critical", 10**9))) / (
        16 * float(hparams.get("steps16", 320)))
    step_sum = data_sum = 0.0
    count = 0
    for step in range(1, trial.max_train_steps + 1):
        start = time.perf_counter()
        if per_step:
            time.sleep(share * per_step)
        fetched = time.perf_counter()
        if per_step:
            time.sleep((1 - share) * per_step)
        end = time.perf_counter()
        step_sum, data_sum, count = step_sum + end - start, data_sum + fetched - start, count + 1
        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            val_loss = 1 / (1 + step * rate)
            trial.report(step, loss=1.0 / step, val_loss=val_loss, val_score=1 - val_loss,
                         step_seconds=step_sum / count,
                         data_seconds=data_sum / count,
                         examples_per_second=b * count / max(step_sum, 1e-12),
                         peak_memory_mb=float(hparams.get("mb_per_example", 0.0)) * b)
            step_sum = data_sum = 0.0
            count = 0

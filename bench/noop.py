"""A workload that does (almost) nothing: one metric reported once, then return.

Used by ``bench_overhead.py`` to measure what tunebook itself costs per trial. The time spent
inside the function is accumulated in :data:`INSIDE_SECONDS` (same process when the benchmark
runs trials in-process with ``workers=0``) so the benchmark can subtract it.
"""

from __future__ import annotations

import time
from typing import Any

from tunebook.execution.trial import Trial

__all__ = ["INSIDE_SECONDS", "noop", "reset"]

#: [total seconds spent inside ``noop``, number of calls] since the last :func:`reset`.
INSIDE_SECONDS: list[float] = [0.0, 0.0]


def reset() -> None:
    """Zero the accumulated time and call count."""
    INSIDE_SECONDS[0] = 0.0
    INSIDE_SECONDS[1] = 0.0


def noop(hparams: dict[str, Any], trial: Trial) -> None:
    """Report ``loss`` once at step 1 and return."""
    t0 = time.perf_counter()
    trial.report(1, loss=float(hparams.get("learning_rate", 0.0)))
    INSIDE_SECONDS[0] += time.perf_counter() - t0
    INSIDE_SECONDS[1] += 1

"""The input pipeline's share of the training step time (playbook: "Additional guidance for
the training pipeline": is the workload input-bound?).

:class:`DataShare` times each training step in two parts: fetching the batch (indexing,
loading, moving it to the device) and the rest (forward, backward, update). At every evaluation
:meth:`DataShare.take` returns the data part's share of the steps since the previous one, the
``data_share`` metric (0-1) that the ``input_bound`` check reads. The time spent evaluating is
not counted: each step ends at :meth:`DataShare.end`, before the evaluation.

On a GPU the fetch is timed when its host work is done; the loop's per-step ``loss.item()``
synchronises the device, so the previous step's kernels cannot be counted as data wait.
"""

from __future__ import annotations

import time

__all__ = ["DataShare"]


class DataShare:
    """Accumulates data-wait and whole-step seconds between evaluations.

    Call :meth:`begin` at the start of a step, :meth:`fetched` once the batch is ready,
    :meth:`end` after the update, and :meth:`take` at an evaluation.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._fetched: float | None = None
        self.data_seconds = 0.0
        self.step_seconds = 0.0

    def begin(self) -> None:
        """A step starts."""
        self._start = time.perf_counter()
        self._fetched = None

    def fetched(self) -> None:
        """The step's batch is ready."""
        self._fetched = time.perf_counter()

    def end(self) -> None:
        """The step's update is done: add its times (nothing without a :meth:`begin`)."""
        if self._start is None:
            return
        now = time.perf_counter()
        self.step_seconds += now - self._start
        if self._fetched is not None:
            self.data_seconds += self._fetched - self._start
        self._start = self._fetched = None

    def take(self) -> float | None:
        """The data share of the steps since the last call (None when none was timed), and
        start counting afresh."""
        share = self.data_seconds / self.step_seconds if self.step_seconds > 0 else None
        self.data_seconds = self.step_seconds = 0.0
        return None if share is None else min(max(share, 0.0), 1.0)

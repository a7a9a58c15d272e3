"""The measurement sink of a claimed trial: every write is a compare-and-swap on the claim.

A worker that stopped sending heartbeats (a host suspended, a process stopped, a network cut)
loses its trial to another worker after ``--stale-after`` seconds. When it comes back, its own
heartbeat thread may not have noticed yet: whatever it writes next (a batch of measurements, a
checkpoint) must be refused by the store itself, in the same transaction as the check, or it
would land in the curve of the worker that now runs the trial.
"""

from __future__ import annotations

from tunebook.execution.trial import Lost
from tunebook.store.api import StoreAPI

__all__ = ["ClaimedSink"]


class ClaimedSink:
    """A :class:`~tunebook.execution.trial.MeasurementSink` writing as ``worker``.

    Measurements and checkpoint steps are written only while ``worker`` holds the trial
    ``running`` in the store; otherwise nothing is written and :class:`Lost` is raised (the
    worker abandons the attempt). A trial publishing a checkpoint asks first (a flush with
    nothing buffered is a check of the claim), so a stale worker publishes none.
    """

    def __init__(self, store: StoreAPI, worker: str) -> None:
        self.store = store
        self.worker = worker

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        """Write the rows while the claim holds; :class:`Lost` (nothing written) otherwise."""
        if not self.store.add_measurements(trial_id, rows, worker=self.worker):
            raise Lost()

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        """Record the checkpoint's step while the claim holds; :class:`Lost` otherwise."""
        if not self.store.set_checkpoint_step(trial_id, step, worker=self.worker):
            raise Lost()

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        """Delete measurements past ``after_step`` while the claim holds (0 deleted once it
        is lost: the next write raises :class:`Lost`)."""
        return self.store.truncate_measurements(trial_id, after_step, worker=self.worker)

"""The store's ledger of looks at the test set: one row per ``tunebook final-eval``.

A part of :class:`tunebook.store.sql.Store` (which inherits :class:`FinalEvals`), in its own
module for size, on the store's transactions like :mod:`tunebook.store.history`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tunebook.errors import StoreError
from tunebook.store.api import FinalEvalRow
from tunebook.store.checks import MAX_METRIC_LENGTH, MAX_NAME_LENGTH, check_text
from tunebook.store.schema import final_evals_t
from tunebook.store.tx import Transactions

__all__ = ["FinalEvals"]


class FinalEvals(Transactions):
    """Final evaluations (test-set metrics) of an experiment's trials."""

    def add_final_eval(self, experiment_id: int, trial_id: int, selection: Mapping[str, Any],
                       metrics: Mapping[str, float], host: str = "") -> int:
        """Record the test metrics of one final evaluation; returns its id.

        ``selection`` says how the trial was chosen (JSON); ``metrics`` maps names to finite
        numbers (a non-finite one is refused: JSON cannot hold it and a test number must be
        readable). Recorded once across outages: a look at the test set counted twice would
        misstate how often it was looked at.
        """
        clean: dict[str, float] = {}
        for name, value in metrics.items():
            check_text("metric name", name, MAX_METRIC_LENGTH)
            number = float(value)
            if not math.isfinite(number):
                raise StoreError(f"final evaluation: metric {name!r} is {number}, "
                                 "not a finite number")
            clean[name] = number
        values = {"experiment_id": experiment_id, "trial_id": trial_id,
                  "created_at": time.time(),
                  "host": host.replace("\x00", "")[:MAX_NAME_LENGTH],
                  "selection": json.dumps(dict(selection), sort_keys=True, allow_nan=False),
                  "metrics": json.dumps(clean, sort_keys=True)}
        return self._insert_once(final_evals_t, values,
                                 identity=("experiment_id", "trial_id", "created_at"))

    def final_evals(self, experiment_id: int) -> list[FinalEvalRow]:
        """The final evaluations of an experiment, oldest first."""
        rows = self._read(lambda conn: conn.execute(
            sa.select(final_evals_t).where(final_evals_t.c.experiment_id == experiment_id)
            .order_by(final_evals_t.c.id)).all())
        return [FinalEvalRow(id=r.id, experiment_id=r.experiment_id, trial_id=r.trial_id,
                             created_at=r.created_at, host=r.host,
                             selection=json.loads(r.selection), metrics=json.loads(r.metrics))
                for r in rows]

"""The store's history of an experiment: its runs, notes, and the procedures' recommendations.

Records written once and read back, beside the trial queue rather than part of it; a part of
:class:`tunebook.store.sql.Store` (which inherits :class:`History`), in its own module for size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tunebook.store.api import RecommendationRow, RunOutcome, RunRow
from tunebook.store.checks import MAX_NAME_LENGTH, check_text
from tunebook.store.schema import notes_t, recommendations_t, runs_t
from tunebook.store.tx import Transactions

__all__ = ["History"]


class History(Transactions):
    """Runs, notes and recommendations, on the store's transactions."""

    # ----------------------------------------------------------------- runs
    def start_run(self, experiment_id: int, host: str, workers: int,
                  provenance: Mapping[str, Any]) -> int:
        """Record that a run of the experiment started; returns its id.

        Recorded once across outages: a run row that never ends would show in the history.
        """
        return self._insert_once(runs_t, {
            "experiment_id": experiment_id, "started_at": time.time(),
            "host": host.replace("\x00", "")[:MAX_NAME_LENGTH], "workers": workers,
            "provenance": json.dumps(provenance)}, identity=("experiment_id", "host", "started_at"))

    def end_run(self, run_id: int, outcome: RunOutcome) -> None:
        """Record how a run ended."""
        self._write(lambda conn: conn.execute(sa.update(runs_t).where(runs_t.c.id == run_id).values(
            finished_at=time.time(), outcome=json.dumps(outcome.as_dict()))))

    def runs(self, experiment_id: int) -> list[RunRow]:
        """Runs of an experiment, oldest first (provenance and outcome decoded)."""
        rows = self._read(lambda conn: conn.execute(
            sa.select(runs_t).where(runs_t.c.experiment_id == experiment_id)
            .order_by(runs_t.c.id)).all())
        return [RunRow(id=r.id, started_at=r.started_at, finished_at=r.finished_at, host=r.host,
                       workers=r.workers, provenance=json.loads(r.provenance),
                       outcome=json.loads(r.outcome) if r.outcome else None) for r in rows]

    # ----------------------------------------------------------------- notes
    def add_note(self, experiment_id: int, text: str, study: str | None = None) -> None:
        """Attach a free-text note to an experiment (or one of its studies).

        Recorded once across outages: the same note twice would read as a user's mistake.
        """
        check_text("note", text, None)
        if study is not None:
            check_text("study name", study, MAX_NAME_LENGTH)
        self._insert_once(notes_t, {"experiment_id": experiment_id, "study": study,
                                   "created_at": time.time(), "text": text},
                         identity=("experiment_id", "created_at", "text"))

    def notes(self, experiment_id: int) -> list[tuple[float, str | None, str]]:
        """``(created_at, study, text)`` for an experiment, oldest first."""
        rows = self._read(lambda conn: conn.execute(
            sa.select(notes_t.c.created_at, notes_t.c.study, notes_t.c.text)
            .where(notes_t.c.experiment_id == experiment_id).order_by(notes_t.c.id)).all())
        return [(r[0], r[1], r[2]) for r in rows]

    # ----------------------------------------------------------------- recommendations
    def add_recommendation(self, experiment: str, procedure: str,
                           payload: Mapping[str, Any]) -> int:
        """Record a procedure's result for the base experiment ``experiment``; returns its id.

        Recorded once across outages: a retry after a lost reply must not record it twice.
        """
        check_text("experiment name", experiment, MAX_NAME_LENGTH)
        check_text("procedure name", procedure, 64)
        values = {"experiment": experiment, "procedure": procedure, "created_at": time.time(),
                  "payload": json.dumps(payload, allow_nan=False)}
        return self._insert_once(recommendations_t, values, identity=tuple(values))

    def recommendations(self, experiment: str,
                        procedure: str | None = None) -> list[RecommendationRow]:
        """The recommendations recorded for ``experiment`` (of one procedure), oldest first."""
        q = sa.select(recommendations_t).where(recommendations_t.c.experiment == experiment)
        if procedure is not None:
            q = q.where(recommendations_t.c.procedure == procedure)
        rows = self._read(lambda conn: conn.execute(q.order_by(recommendations_t.c.id)).all())
        return [RecommendationRow(r.id, r.experiment, r.procedure, r.created_at,
                                  json.loads(r.payload)) for r in rows]

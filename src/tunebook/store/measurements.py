"""The store's measurements: every metric of every trial at every evaluation, written fast and
only by the worker that holds the trial; read whole, by metric, or sampled. Kept as curve
chunks (:mod:`tunebook.store.chunks`; the SQL: :mod:`tunebook.store.ingest`). A part of
:class:`tunebook.store.sql.Store` (which inherits :class:`Measurements`), in its own module for
size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tunebook.store import chunks, ingest
from tunebook.store.chunks import Curve, assemble
from tunebook.store.queries import experiment_trial_ids
from tunebook.store.schema import curves_t
from tunebook.store.tx import Transactions

__all__ = ["Measurements", "holds"]


class Measurements(Transactions):
    """Measurements on the store's transactions."""

    def add_measurements(self, trial_id: int, rows: Sequence[tuple[int, str, float]], *,
                         worker: str | None = None) -> bool:
        """Write ``(step, metric, value)`` rows; a repeated (step, metric) replaces the old value.

        One transaction (see :meth:`add_measurements_many`, for many trials at once). An upsert,
        so safe to redo. Metric names longer than :data:`MAX_METRIC_LENGTH` or holding NUL, and
        steps beyond :data:`MAX_STEP`, refuse the whole batch (StoreError) before anything is
        written.

        With ``worker`` (a worker writing its claimed trial), the rows are written only while
        that worker holds the trial ``running``, checked in the same transaction (which
        refreshes the heartbeat, so a release waiting on the row then sees a live trial);
        False, nothing written, once the trial was given to another worker. Also with no
        rows: that is a check of the claim.
        """
        if not rows and worker is None:
            return True
        curves = ingest.prepare({trial_id: rows})

        def write(conn: Connection) -> bool:
            if worker is not None and not holds(conn, trial_id, worker):
                return False
            # holds() locked the trial's row already.
            ingest.write(conn, curves, lock=worker is None)
            return True

        return self._write(write)

    def add_measurements_many(self, batches: Mapping[int, Sequence[tuple[int, str, float]]]
                              ) -> None:
        """Write ``{trial_id: [(step, metric, value), ...]}`` in one transaction: the bulk path
        (imports, benchmarks, anything holding many trials' rows; bench/bench_ingest.py
        measures it). Same rules as :meth:`add_measurements` without ``worker``: an upsert (the
        last row of a repeated key wins), safe to redo, a bad name or step refuses everything
        before anything is written.
        """
        curves = ingest.prepare(batches)
        if curves:
            self._write(lambda conn: ingest.write(conn, curves))

    def truncate_measurements(self, trial_id: int, after_step: int, *,
                              worker: str | None = None) -> int:
        """Delete a trial's measurements past ``after_step`` (they are about to be recomputed).

        Safe to redo; a redo after a lost reply counts 0 deleted points. With ``worker``, only
        while that worker holds the trial (see :meth:`add_measurements`): 0 once it lost it.
        """
        def cut(conn: Connection) -> int:
            if worker is not None and not holds(conn, trial_id, worker):
                return 0
            if worker is None:
                ingest.lock_trials(conn, [trial_id])
            return ingest.truncate(conn, trial_id, after_step)

        return self._write(cut)

    def measurements(self, trial_ids: Sequence[int] | None = None, metric: str | None = None,
                     experiment_id: int | None = None) -> list[tuple[int, int, str, float]]:
        """``(trial_id, step, metric, value)`` rows ordered by trial, metric, step.

        NaN comes back as ``float('nan')``.
        """
        where: list[sa.ColumnElement[bool]] = []
        if trial_ids is not None:
            where.append(curves_t.c.trial_id.in_(list(trial_ids)))
        if experiment_id is not None:
            where.append(curves_t.c.trial_id.in_(experiment_trial_ids(experiment_id)))
        if metric is not None:
            where.append(curves_t.c.metric == metric)
        return self._read(lambda conn: assemble(ingest.read(conn, *where)))

    def curves(self, experiment_id: int, *, trial_ids: Sequence[int] | None = None,
               metrics: Sequence[str] | None = None, skip: Sequence[int] = (),
               every: int = 1, keep: Sequence[int] = ()) -> list[Curve]:
        """The experiment's curves ``(trial_id, metric, steps, values)`` (see
        :meth:`tunebook.store.api.StoreAPI.curves`)."""
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        where = [curves_t.c.trial_id.in_(experiment_trial_ids(experiment_id))]
        if trial_ids is not None:
            where.append(curves_t.c.trial_id.in_(sorted(set(trial_ids))))
        if metrics is not None:
            where.append(curves_t.c.metric.in_(sorted(set(metrics))))
        if skip:
            where.append(curves_t.c.trial_id.not_in(sorted(set(skip))))
        return self._read(lambda conn: chunks.curves(ingest.read(conn, *where), every,
                                                     frozenset(keep)))

    def metric_names(self, experiment_id: int) -> list[str]:
        """Every metric name any trial of the experiment reported."""
        # A few chunks per curve, where the points are hundreds.
        q = (sa.select(curves_t.c.metric).distinct()
             .where(curves_t.c.trial_id.in_(experiment_trial_ids(experiment_id))))
        return sorted(r[0] for r in self._read(lambda conn: conn.execute(q).all()))


def holds(conn: Connection, trial_id: int, worker: str) -> bool:
    """Whether ``worker`` holds the running trial, its heartbeat refreshed: an UPDATE, not a
    read, so that the trial's row stays locked (PostgreSQL) or the database is (SQLite) until
    the transaction's writes commit; a release cannot slip in between."""
    # The driver's SQL: SQLAlchemy's statement building cost as much as the update itself, on
    # every flush of every worker.
    m = ingest.mark(conn)
    return conn.exec_driver_sql(
        f"UPDATE trials SET heartbeat = {m} WHERE id = {m} AND worker = {m} "
        "AND status = 'running'", (time.time(), trial_id, worker)).rowcount == 1

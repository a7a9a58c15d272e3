"""The store: every experiment, study, trial and measurement, in one SQL database.

SQLAlchemy Core over SQLite by default (WAL, one file beside the trial folders) or any URL
SQLAlchemy understands (PostgreSQL for several machines). The store is also the work queue:
workers claim trials with a compare-and-swap update, so local worker processes and workers on
other machines use the same mechanism. Callers depend on :class:`tunebook.store.api.StoreAPI`,
which this class implements.

Statuses: ``pending`` -> ``running`` -> ``completed`` | ``infeasible`` | ``failed``; a running
trial whose worker died goes back to ``pending`` (or ``failed`` after ``max_attempts``); one
stopped by Ctrl-C becomes ``interrupted`` and is claimed again by the next run.

Every method runs in one transaction that rides out store outages (a PostgreSQL restart, a
SQLite lock held past the busy timeout): see :mod:`tunebook.store.tx`. A retried transaction
may be one whose commit succeeded but whose reply was lost, so each method is safe to redo.

Before anything is written, a SQLite file that is not a tunebook store (another application's
database, a corrupt or truncated file) and a PostgreSQL database holding other tables are
refused, untouched. Names, metric names, steps and seeds are checked against the limits of the
columns (``MAX_*``) up front, identically on every backend. The tables are in
:mod:`tunebook.store.schema`, the larger statements in :mod:`tunebook.store.queries`, runs,
notes and recommendations in :mod:`tunebook.store.history`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tunebook.core.paths import store_file
from tunebook.errors import StoreError
from tunebook.store.api import (
    ACTIVE,
    CLAIMABLE,
    TERMINAL,
    ExperimentRow,
    NewTrial,
    RecommendationRow,
    RunOutcome,
    RunRow,
    StoreAPI,
    StudyRow,
    StudySpec,
    TrialRow,
    TrialSummary,
)
from tunebook.store.checks import (
    MAX_METRIC_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    MAX_WORKER_LENGTH,
    check_int,
    check_registration,
    check_sqlite_path,
    check_text,
)
from tunebook.store.final_evals import FinalEvals
from tunebook.store.history import History
from tunebook.store.launches import Launches
from tunebook.store.measurements import Measurements, holds
from tunebook.store.queries import (
    CLAIMABLE_ONE,
    RECLAIM,
    add_trials,
    claim_statement,
    finish_values,
    in_budget,
    indices_present,
    register,
    release_values,
    swap_designer_state,
    trial_from_row,
    trial_select,
)
from tunebook.store.retry import resolve_outage_seconds
from tunebook.store.schema import (
    SCHEMA_VERSION,
    create_engine,
    ensure_schema,
    experiments_t,
    meta_t,
    metadata,
    schema_race,
    sqlite_url,
    studies_t,
    trials_t,
)

__all__ = ["ACTIVE", "CLAIMABLE", "MAX_METRIC_LENGTH", "MAX_NAME_LENGTH", "MAX_SEED", "MAX_STEP",
           "SCHEMA_VERSION", "TERMINAL", "ExperimentRow", "NewTrial", "RecommendationRow",
           "RunOutcome", "RunRow",
           "SQLStore", "Store", "StoreAPI", "StudyRow", "StudySpec", "TrialRow", "TrialSummary",
           "sqlite_url"]


class SQLStore(Measurements, History, Launches, FinalEvals):
    """Access to one tunebook database. Cheap to create; make one per process.

    Args:
        url: a SQLAlchemy URL (see :func:`sqlite_url`).
        create: create the store if it does not exist; False refuses a missing SQLite file.
        outage_seconds: how long a call keeps retrying a store it cannot reach (or a lock it
            cannot take) before :class:`StoreError`; default ``$TUNEBOOK_STORE_OUTAGE_SECONDS``,
            else 600.
        on_outage: called as ``on_outage(elapsed_seconds, cause)`` before each pause of such a
            retry; ``cause`` is one short line without the password. Progress displays use it.
        busy_timeout_seconds: how long SQLite waits for another process's lock before the
            attempt fails (and is retried, within ``outage_seconds``).
        wait_for_store: also wait out an unreachable server when opening. By default the
            first contact fails at once: an address nobody ever reached is most likely wrong,
            and a person is waiting for the answer. Worker processes of a run, which know the
            store exists, pass True.

    Raises:
        StoreError: bad URL; missing store with ``create=False``; a file or database that is
            not a tunebook store; another schema version; the store unreachable.
    """

    def __init__(self, url: str, create: bool = True, *, outage_seconds: float | None = None,
                 on_outage: Callable[[float, str], None] | None = None,
                 busy_timeout_seconds: float = 60.0, wait_for_store: bool = False) -> None:
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except Exception:
            raise StoreError("not a database URL: " + repr(url.split("@")[-1])) from None
        # What messages show: never a password.
        self.display_url = parsed.render_as_string(hide_password=True)
        self._password = str(parsed.password) if parsed.password else None
        self.outage_seconds = resolve_outage_seconds(outage_seconds)
        self.on_outage = on_outage
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database or "")
            self._retry(lambda _: check_sqlite_path(path, create, busy_timeout_seconds,
                                                   meta_t.name, metadata.tables))
        self.engine: Engine = create_engine(url, self.display_url, busy_timeout_seconds)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._claim = claim_statement(self.is_sqlite)
        self._study_names: dict[int, str] = {}
        # Several processes may open a new store at once; whoever loses the race to create a
        # table sees "already exists" or a duplicate key (or, on SQLite, "locked": a read
        # transaction cannot be upgraded once another writer committed) and checks again.
        self._write(lambda conn: ensure_schema(conn, self.display_url), races=schema_race,
                   fail_fast=not wait_for_store)

    @classmethod
    def at_root(cls, root: str | Path, create: bool = True, **options: Any) -> SQLStore:
        """The default SQLite store inside a tunebook root folder (options as for Store)."""
        return cls(sqlite_url(store_file(root)), create=create, **options)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # ----------------------------------------------------------------- experiments
    def get_experiment(self, name: str) -> ExperimentRow | None:
        """The experiment called ``name``, or None."""
        row = self._read(lambda conn: conn.execute(
            sa.select(experiments_t).where(experiments_t.c.name == name)).first())
        if row is None:
            return None
        return ExperimentRow(row.id, row.name, row.identity, json.loads(row.config), row.created_at)

    def require_experiment(self, name: str) -> ExperimentRow:
        """The experiment called ``name``; StoreError naming the known ones if absent."""
        exp = self.get_experiment(name)
        if exp is None:
            known = [e.name for e in self.experiments()]
            hint = f"; known: {', '.join(known)}" if known else "; the store is empty"
            raise StoreError(f"no experiment named {name!r} in {self.display_url}{hint}")
        return exp

    def experiments(self) -> list[ExperimentRow]:
        """Every experiment, oldest first."""
        rows = self._read(lambda conn: conn.execute(
            sa.select(experiments_t).order_by(experiments_t.c.id)).all())
        return [ExperimentRow(r.id, r.name, r.identity, json.loads(r.config), r.created_at)
                for r in rows]

    def register(self, name: str, identity: str, config: Mapping[str, Any],
                 studies: Sequence[StudySpec], trials: Mapping[str, Sequence[NewTrial]]) -> int:
        """Create or extend an experiment with its studies and trials, in one transaction.

        ``trials`` maps a study name to its trials. Existing trials are kept untouched; only
        missing indices are added. An experiment of the same name whose identity differs is
        refused: its trials would not mean the same thing. Names longer than
        :data:`MAX_NAME_LENGTH` or holding NUL, and indices or seeds beyond the columns'
        range, are refused (StoreError) before anything is written.
        """
        check_registration(name, studies, trials)
        # Reads, then writes: on SQLite another process committing in between makes the write
        # fail at once with "locked" (no busy wait); the retry redoes it. Safe to redo: only
        # missing rows are inserted. Processes registering the same experiment at once (a
        # batch scheduler starting many runs) race for its rows: the losers' duplicate keys
        # are retried, and then find the winner's rows.
        return self._write(lambda conn: register(conn, self.display_url, name, identity, config,
                                                studies, trials), races=schema_race)

    def studies(self, experiment_id: int) -> list[StudyRow]:
        """The studies of an experiment, in order."""
        rows = self._read(lambda conn: conn.execute(sa.select(studies_t).where(
            studies_t.c.experiment_id == experiment_id).order_by(studies_t.c.position)).all())
        return [StudyRow(r.id, r.experiment_id, r.name, r.position, json.loads(r.scientific),
                         r.algorithm, r.seed, r.budget) for r in rows]

    # ----------------------------------------------------------------- trials
    def trials(self, experiment_id: int, study: str | None = None,
               statuses: Iterable[str] | None = None) -> list[TrialRow]:
        """Trials of an experiment ordered by study then index."""
        q = trial_select().where(studies_t.c.experiment_id == experiment_id)
        if study is not None:
            q = q.where(studies_t.c.name == study)
        if statuses is not None:
            q = q.where(trials_t.c.status.in_(tuple(statuses)))
        q = q.order_by(studies_t.c.position, trials_t.c.idx)
        return [trial_from_row(r) for r in self._read(lambda conn: conn.execute(q).all())]

    def trial(self, trial_id: int) -> TrialRow:
        """One trial by id."""
        row = self._read(lambda conn: conn.execute(
            trial_select().where(trials_t.c.id == trial_id)).first())
        if row is None:
            raise StoreError(f"no trial with id {trial_id}")
        return trial_from_row(row)

    def counts(self, experiment_id: int) -> dict[str, int]:
        """Number of trials per status (within each study's current budget)."""
        q = (sa.select(trials_t.c.status, sa.func.count())
             .join(studies_t, trials_t.c.study_id == studies_t.c.id)
             .where(studies_t.c.experiment_id == experiment_id, in_budget())
             .group_by(trials_t.c.status))
        return {status: n for status, n in self._read(lambda conn: conn.execute(q).all())}

    def study_counts(self, experiment_id: int) -> dict[str, dict[str, int]]:
        """Number of trials per study and status (within each study's current budget); a
        study without trials is absent. One GROUP BY: no trial row is read (tunebook status)."""
        q = (sa.select(studies_t.c.name, trials_t.c.status, sa.func.count())
             .join(studies_t, trials_t.c.study_id == studies_t.c.id)
             .where(studies_t.c.experiment_id == experiment_id, in_budget())
             .group_by(studies_t.c.name, trials_t.c.status))
        out: dict[str, dict[str, int]] = {}
        for study, status, n in self._read(lambda conn: conn.execute(q).all()):
            out.setdefault(study, {})[status] = n
        return out

    def best_trial(self, experiment_id: int, goal: str) -> TrialRow | None:
        """The completed trial with the best stored objective value, or None."""
        order = trials_t.c.best_value.asc() if goal == "minimize" else trials_t.c.best_value.desc()
        q = (trial_select()
             .where(studies_t.c.experiment_id == experiment_id,
                    trials_t.c.status == "completed", trials_t.c.best_value.is_not(None))
             .order_by(order, trials_t.c.idx, trials_t.c.id).limit(1))
        row = self._read(lambda conn: conn.execute(q).first())
        return None if row is None else trial_from_row(row)

    def claim(self, experiment_id: int, worker: str) -> TrialRow | None:
        """Atomically take the next claimable trial (lowest index first, studies interleaved).

        A compare-and-swap on the status: of two workers racing for the same row exactly one
        update matches, the other tries the next candidate. Trials beyond a study's budget (it
        was lowered) stay in the store, dormant. A worker runs one trial at a time: after an
        outage the trial it already holds in this experiment (an earlier attempt of this
        claim committed, its reply was lost) is returned rather than a second one.
        """
        check_text("worker name", worker, MAX_WORKER_LENGTH)
        # One start time for every attempt: first_start recognises the attempt that set it.
        start = time.time()
        params = {"exp_id": experiment_id, "who": worker, "start": start}

        def take(conn: Connection) -> tuple[Any, bool]:
            row = conn.execute(self._claim, {**params, "now": time.time()}).first()
            # Nothing taken, yet something claimable: another worker won the race for it.
            return row, row is None and conn.execute(CLAIMABLE_ONE, params).first() is not None

        def held(conn: Connection) -> tuple[Any, bool] | None:
            row = conn.execute(RECLAIM, {**params, "now": time.time()}).first()
            return None if row is None else (row, False)

        for _ in range(1000):
            row, again = self._write(take, verify=held)
            if again:
                continue
            if row is None:
                return None
            m = row._mapping
            trial = trial_from_row(row, self._study_name(m["study_id"]),
                                   first_start=m["started_at"] == start and m["attempts"] == 1)
            # A new attempt: what earlier attempts ended with is not its result.
            return dataclasses.replace(
                trial, finished_at=None, infeasible_reason=None, infeasible_step=None,
                best_step=None, best_value=None, final_step=None, final_value=None)
        return None

    def _study_name(self, study_id: int) -> str:
        name = self._study_names.get(study_id)
        if name is None:
            rows = self._read(lambda conn: conn.execute(
                sa.select(studies_t.c.id, studies_t.c.name)).all())
            self._study_names.update((sid, sname) for sid, sname in rows)
            name = self._study_names[study_id]
        return name

    def heartbeat(self, trial_id: int, worker: str) -> bool:
        """Refresh a running trial's heartbeat; False if the worker no longer owns it."""
        return self._write(lambda conn: holds(conn, trial_id, worker))

    def finish(self, trial_id: int, worker: str, status: str, *, elapsed: float = 0.0,
               **fields: Any) -> bool:
        """Record the end of an attempt; ignored (False) if ``worker`` lost the trial."""
        values = finish_values(status, elapsed, fields)

        def end(conn: Connection) -> bool:
            return bool(conn.execute(sa.update(trials_t).where(
                trials_t.c.id == trial_id, trials_t.c.worker == worker,
                trials_t.c.status == "running").values(**values)).rowcount == 1)

        def ended(conn: Connection) -> bool | None:
            # Redone after a lost reply the update matches nothing: the trial already shows
            # this worker's outcome, and that is a success, not a lost trial.
            row = conn.execute(sa.select(trials_t.c.status, trials_t.c.worker)
                               .where(trials_t.c.id == trial_id)).first()
            return True if row is not None and tuple(row) == (status, worker) else None

        return self._write(end, verify=ended)

    def release_worker(self, worker: str, reason: str, max_attempts: int,
                       interrupted: bool = False) -> list[int]:
        """Put back the running trials of a worker that is gone.

        Returns the ids released. A trial that already used ``max_attempts`` fails instead,
        with ``reason``; with ``interrupted`` the trial is marked interrupted (user stop).
        """
        return self._release(trials_t.c.worker == worker, reason, max_attempts, interrupted)

    def release_stale(self, experiment_id: int, older_than: float, max_attempts: int,
                      exclude_workers: Sequence[str] = ()) -> list[int]:
        """Put back running trials whose heartbeat is older than ``older_than`` seconds,
        except those of ``exclude_workers`` (known to be alive)."""
        cutoff = time.time() - older_than
        study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
        cond = sa.and_(trials_t.c.study_id.in_(study_ids), trials_t.c.heartbeat < cutoff)
        if exclude_workers:
            cond = sa.and_(cond, trials_t.c.worker.not_in(list(exclude_workers)))
        # A trial whose row a write holds locked (PostgreSQL) is skipped: its worker is writing
        # (the write refreshes the heartbeat), or froze mid-transaction; waiting for that lock
        # would hang every run's supervision until the server drops the frozen connection.
        unlocked = (sa.select(trials_t.c.id).where(cond, trials_t.c.status == "running")
                    .with_for_update(skip_locked=True))
        return self._release(trials_t.c.id.in_(unlocked), "worker stopped sending heartbeats",
                             max_attempts, False)

    def _release(self, cond: Any, reason: str, max_attempts: int, interrupted: bool) -> list[int]:
        # One UPDATE ... RETURNING, never a read then a write: on SQLite a transaction that
        # read first cannot take the write lock once a worker has committed in between.
        # Safe to redo (only running trials match), but a redo after a lost reply returns no
        # ids: the trials were released all the same.
        values = release_values(reason, max_attempts, interrupted)
        rows = self._write(lambda conn: conn.execute(
            sa.update(trials_t).where(cond, trials_t.c.status == "running")
            .values(heartbeat=None, **values).returning(trials_t.c.id)).all())
        return [r[0] for r in rows]

    def requeue_failed(self, experiment_id: int) -> list[int]:
        """Put the experiment's failed trials back in the queue (``--retry-failed``).

        Their attempts start again from zero; the error stays until the trial finishes again.
        Infeasible trials are results, not failures: they are never re-queued. Returns the ids.
        """
        study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
        # Safe to redo (only failed trials match); a redo after a lost reply returns no ids.
        rows = self._write(lambda conn: conn.execute(
            sa.update(trials_t).where(trials_t.c.study_id.in_(study_ids),
                                      trials_t.c.status == "failed")
            .values(status="pending", attempts=0, finished_at=None, worker=None,
                    heartbeat=None).returning(trials_t.c.id)).all())
        return [r[0] for r in rows]

    def mark_completed(self, trial_ids: Sequence[int]) -> None:
        """Failed trials that turn out to be complete (they failed only for not reporting an
        objective that has since been corrected) become ``completed``, their error cleared."""
        if not trial_ids:
            return
        self._write(lambda conn: conn.execute(
            sa.update(trials_t).where(trials_t.c.id.in_(list(trial_ids)),
                                      trials_t.c.status == "failed")
            .values(status="completed", error=None)))

    def set_checkpoint_step(self, trial_id: int, step: int, *, worker: str | None = None
                            ) -> bool:
        """Remember the step of the trial's latest complete checkpoint.

        With ``worker``, only while that worker holds the trial (see :meth:`add_measurements`);
        False, nothing written, once it lost it.
        """
        check_int("checkpoint step", int(step), MAX_STEP)
        cond = [trials_t.c.id == trial_id]
        if worker is not None:
            cond += [trials_t.c.worker == worker, trials_t.c.status == "running"]
        res = self._write(lambda conn: conn.execute(sa.update(trials_t).where(*cond)
                                                    .values(checkpoint_step=step)))
        return worker is None or res.rowcount == 1

    def set_summaries(self, rows: Sequence[TrialSummary]) -> None:
        """Replace the best/final summaries of the trials named, in one transaction."""
        if not rows:
            return

        def update(conn: Connection) -> None:
            for r in rows:
                conn.execute(sa.update(trials_t).where(trials_t.c.id == r.id).values(
                    best_step=r.best_step, best_value=r.best_value,
                    final_step=r.final_step, final_value=r.final_value))

        self._write(update)

    # ----------------------------------------------------------------- designer state
    def designer_state(self, study_id: int) -> dict[str, Any]:
        """What the runner saved for the study's designer (``{}`` before the first save)."""
        row = self._read(lambda conn: conn.execute(sa.select(studies_t.c.designer_state).where(
            studies_t.c.id == study_id)).first())
        if row is None:
            raise StoreError(f"no study with id {study_id} in {self.display_url}")
        state: dict[str, Any] = json.loads(row[0] or "{}")
        return state

    def save_designer_state(self, study_id: int, state: Mapping[str, Any]) -> None:
        """Replace the study's designer state (safe to redo)."""
        self._write(lambda conn: conn.execute(sa.update(studies_t).where(
            studies_t.c.id == study_id).values(designer_state=json.dumps(state))))

    def add_trials(self, study_id: int, rows: Sequence[NewTrial],
                   designer_state: Mapping[str, Any]) -> int:
        """Append trials to a study and save the designer state that suggested them, in one
        transaction: a run killed in between finds both or neither.

        Indices already there are kept untouched (safe to redo). Returns how many were added.
        """
        for index, _params, seed in rows:
            check_int("trial index", int(index), MAX_STEP)
            check_int(f"trial {index}: seed", int(seed), MAX_SEED)
        wanted = [int(r[0]) for r in rows]
        before = self._read(lambda conn: indices_present(conn, study_id, wanted))

        def verify(conn: Connection) -> int | None:
            # After a lost reply: the trials (and the state, same transaction) are there if
            # the lost attempt committed; count what it added, not what the redo would.
            added = len(indices_present(conn, study_id, wanted) - before)
            return added or None

        return self._write(lambda conn: add_trials(conn, study_id, rows, designer_state),
                           verify=verify)

    def swap_designer_state(self, study_id: int, expected: Mapping[str, Any],
                            state: Mapping[str, Any], rows: Sequence[NewTrial] = ()) -> int | None:
        """Compare-and-swap of the study's designer state, with the trials it suggested.

        If the stored state still is ``expected`` (what this process last read or wrote), it
        becomes ``state`` and ``rows`` are added (indices already there kept), in one
        transaction; returns how many trials were added. Otherwise nothing is written and
        None is returned: another supervisor (a ``tunebook worker`` elsewhere) changed the study
        meanwhile, and the caller reloads the state and asks its designer again. Two
        supervisors of one study thus never add the same index twice, nor trials suggested
        from a state that is not the stored one.
        """
        for index, _params, seed in rows:
            check_int("trial index", int(index), MAX_STEP)
            check_int(f"trial {index}: seed", int(seed), MAX_SEED)
        old, new = json.dumps(expected), json.dumps(state)
        wanted = [int(r[0]) for r in rows]
        before = self._read(lambda conn: indices_present(conn, study_id, wanted)) if rows else set()

        def verify(conn: Connection) -> int | None:
            # After a lost reply: the state (and the trials, same transaction) are ours if the
            # lost attempt committed; count what it added, not what the redo would.
            current = conn.execute(sa.select(studies_t.c.designer_state).where(
                studies_t.c.id == study_id)).scalar()
            if current != new:
                return None
            return len(indices_present(conn, study_id, wanted) - before) if rows else 0

        return self._write(lambda conn: swap_designer_state(conn, study_id, old, new, rows),
                           verify=verify)


Store = SQLStore
"""The public name of the SQL store: ``Store(url)``, ``Store.at_root(root)``."""

if TYPE_CHECKING:
    # mypy proves the SQL store implements the protocol callers are typed against.
    _conforms: type[StoreAPI] = SQLStore

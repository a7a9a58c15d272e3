"""The SQL of the store's larger operations, as functions of a connection: registering an
experiment, the claim's compare-and-swap, releasing trials, reading trial rows.

:class:`tunebook.store.sql.Store` runs them inside its transactions (:mod:`tunebook.store.tx`);
nothing here retries or commits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tunebook.errors import StoreError
from tunebook.store.api import CLAIMABLE, TERMINAL, NewTrial, StudySpec, TrialRow
from tunebook.store.schema import (
    CLAIMABLE_SQL,
    claimable_ix,
    curves_t,
    experiments_t,
    studies_t,
    trials_t,
)
from tunebook.store.tx import new_id

__all__ = ["CLAIMABLE_ONE", "RECLAIM", "add_trials", "claim_statement", "experiment_trial_ids",
           "finish_values", "in_budget", "insert_trials", "register", "release_values",
           "swap_designer_state", "trial_from_row", "trial_select"]


def in_budget() -> Any:
    """Trials within their study's current budget (a lowered budget leaves the rest dormant)."""
    return trials_t.c.idx < studies_t.c.budget


def trial_select() -> sa.Select[Any]:
    """Trials joined with their study's name (``study_name``)."""
    return sa.select(trials_t, studies_t.c.name.label("study_name")).join(
        studies_t, trials_t.c.study_id == studies_t.c.id)


def trial_from_row(row: Any, study: str | None = None, *, first_start: bool = False
                   ) -> TrialRow:
    """A :class:`TrialRow` from a row of the trials table (``study`` if it has no study name)."""
    m = row._mapping
    return TrialRow(
        id=m["id"], study_id=m["study_id"], study=m["study_name"] if study is None else study,
        index=m["idx"], params=json.loads(m["params"]), seed=m["seed"], status=m["status"],
        attempts=m["attempts"], worker=m["worker"], heartbeat=m["heartbeat"],
        created_at=m["created_at"], started_at=m["started_at"],
        finished_at=m["finished_at"], run_seconds=m["run_seconds"] or 0.0,
        error=m["error"], infeasible_reason=m["infeasible_reason"],
        infeasible_step=m["infeasible_step"], checkpoint_step=m["checkpoint_step"],
        best_step=m["best_step"], best_value=m["best_value"],
        final_step=m["final_step"], final_value=m["final_value"], first_start=first_start)


def experiment_trial_ids(experiment_id: int) -> sa.Select[Any]:
    """The ids of an experiment's trials, as a subquery."""
    return (sa.select(trials_t.c.id).join(studies_t, trials_t.c.study_id == studies_t.c.id)
            .where(studies_t.c.experiment_id == experiment_id))


def _never_ran(conn: Connection, experiment_id: int) -> bool:
    """No trial of the experiment has a measurement, a result, a checkpoint or a live attempt."""
    ids = experiment_trial_ids(experiment_id)
    measured = conn.execute(sa.select(curves_t.c.trial_id)
                            .where(curves_t.c.trial_id.in_(ids)).limit(1)).first()
    busy = conn.execute(sa.select(trials_t.c.id).where(
        trials_t.c.id.in_(ids),
        sa.or_(trials_t.c.status.in_(("completed", "infeasible", "running")),
               trials_t.c.checkpoint_step.is_not(None))).limit(1)).first()
    return measured is None and busy is None


def _drop_trials(conn: Connection, experiment_id: int) -> None:
    study_ids = sa.select(studies_t.c.id).where(studies_t.c.experiment_id == experiment_id)
    conn.execute(sa.delete(trials_t).where(trials_t.c.study_id.in_(study_ids)))
    conn.execute(sa.delete(studies_t).where(studies_t.c.experiment_id == experiment_id))


def register(conn: Connection, where: str, name: str, identity: str, config: Mapping[str, Any],
             studies: Sequence[StudySpec], trials: Mapping[str, Sequence[NewTrial]]) -> int:
    """The body of :meth:`tunebook.store.sql.Store.register` (``where`` names the store).

    Safe to redo: only missing rows are inserted.
    """
    now = time.time()
    row = conn.execute(
        sa.select(experiments_t).where(experiments_t.c.name == name)).first()
    if row is not None and row.identity != identity and _never_ran(conn, row.id):
        # Nothing was ever measured (its trials failed before their first report: a typo
        # in the file, say): no result to protect, and the fix is a new file. Its trials
        # are replaced; the experiment's notes and runs stay.
        _drop_trials(conn, row.id)
        conn.execute(sa.update(experiments_t).where(experiments_t.c.id == row.id)
                     .values(identity=identity))
        row = conn.execute(
            sa.select(experiments_t).where(experiments_t.c.id == row.id)).first()
    if row is not None and row.identity != identity:
        raise StoreError(
            f"experiment {name!r} already exists in {where} with a different "
            "search space, workload or training length; give the new round a new name "
            "(only the objective, goal and trial budget may change between runs)")
    if row is None:
        exp_id = new_id(conn.execute(sa.insert(experiments_t).values(
            name=name, identity=identity, config=json.dumps(config),
            created_at=now, updated_at=now)))
    else:
        exp_id = row.id
        conn.execute(sa.update(experiments_t).where(experiments_t.c.id == exp_id)
                     .values(config=json.dumps(config), updated_at=now))
    existing = {r.name: r for r in conn.execute(
        sa.select(studies_t).where(studies_t.c.experiment_id == exp_id))}
    for st in studies:
        if st.name in existing:
            study_id = existing[st.name].id
            conn.execute(sa.update(studies_t).where(studies_t.c.id == study_id)
                         .values(budget=st.budget))
        else:
            study_id = new_id(conn.execute(sa.insert(studies_t).values(
                experiment_id=exp_id, name=st.name, position=st.position,
                scientific=json.dumps(st.scientific), algorithm=st.algorithm,
                seed=st.seed, budget=st.budget, designer_state="{}",
            )))
        have = {r[0] for r in conn.execute(
            sa.select(trials_t.c.idx).where(trials_t.c.study_id == study_id))}
        insert_trials(conn, study_id, trials.get(st.name, ()), have, now)
    return int(exp_id)


def insert_trials(conn: Connection, study_id: int, rows: Sequence[NewTrial], have: set[int],
                  now: float) -> int:
    """Insert the pending trials of ``rows`` whose index is not in ``have``; returns how many."""
    new = [{"study_id": study_id, "idx": i, "params": json.dumps(p), "seed": s,
            "status": "pending", "attempts": 0, "created_at": now, "run_seconds": 0.0}
           for i, p, s in rows if i not in have]
    if new:
        conn.execute(sa.insert(trials_t), new)
    return len(new)


def indices_present(conn: Connection, study_id: int, indices: Sequence[int]) -> set[int]:
    """Which of ``indices`` the study already has."""
    return {r[0] for r in conn.execute(sa.select(trials_t.c.idx).where(
        trials_t.c.study_id == study_id, trials_t.c.idx.in_(list(indices))))}


def add_trials(conn: Connection, study_id: int, rows: Sequence[NewTrial],
               designer_state: Mapping[str, Any]) -> int:
    """The body of :meth:`tunebook.store.sql.Store.add_trials`: safe to redo (indices already there
    are kept), the designer state saved with the trials it suggested."""
    have = indices_present(conn, study_id, [r[0] for r in rows])
    added = insert_trials(conn, study_id, rows, have, time.time())
    conn.execute(sa.update(studies_t).where(studies_t.c.id == study_id)
                 .values(designer_state=json.dumps(designer_state)))
    return added


def swap_designer_state(conn: Connection, study_id: int, expected: str, state: str,
                        rows: Sequence[NewTrial]) -> int | None:
    """The body of :meth:`tunebook.store.sql.Store.swap_designer_state`: the state (JSON text)
    becomes ``state`` only if it still is ``expected`` (or already ``state``: a redo), then the
    trials are added; None, and nothing written, when another process changed it meanwhile.

    The UPDATE comes first: on PostgreSQL it takes the study's row lock, so a second
    supervisor's swap waits for this transaction and then finds the state changed; on SQLite
    it takes the database's write lock before anything is read.
    """
    done = conn.execute(sa.update(studies_t).where(
        studies_t.c.id == study_id, studies_t.c.designer_state.in_((expected, state)))
        .values(designer_state=state))
    if done.rowcount != 1:
        return None
    have = indices_present(conn, study_id, [r[0] for r in rows]) if rows else set()
    return insert_trials(conn, study_id, rows, have, time.time())


# One statement: pick the next candidate and take it. Another worker may win the race for the
# same row (its status is then no longer claimable and nothing is updated): the caller tries
# again. On PostgreSQL, SKIP LOCKED lets racing workers pick different rows.
# O(1) in the number of trials: each study's first claimable trial is the first entry of the
# partial index of claimable trials (schema.claimable_ix), and the candidate is the lowest of
# these (studies interleaved: index, then position). The statuses are literals so that the
# planner may use the index; SQLite, which without statistics would rather walk the study's
# unique index past every finished trial, is told to (INDEXED BY: ensure_schema creates the
# index on opening, a store made before it existed included).
_CANDIDATE = (
    "SELECT trials.id FROM studies JOIN trials ON trials.id = ("
    "SELECT queue.id FROM trials AS queue{hint} WHERE queue.study_id = studies.id "
    f"AND queue.{CLAIMABLE_SQL} AND queue.idx < studies.budget "
    "ORDER BY queue.idx LIMIT 1{lock}) "
    "WHERE studies.experiment_id = :exp_id ORDER BY trials.idx, studies.position LIMIT 1")


def claim_statement(sqlite: bool) -> sa.UpdateBase:
    """The claim's compare-and-swap for a backend: SQLite (True) or PostgreSQL (False)."""
    text = _CANDIDATE.format(
        hint=f" INDEXED BY {claimable_ix.name}" if sqlite else "",
        lock="" if sqlite else " FOR UPDATE SKIP LOCKED")
    candidate = sa.text(text).columns(trials_t.c.id).scalar_subquery()
    return (
        sa.update(trials_t)
        .where(trials_t.c.id == candidate, trials_t.c.status.in_(CLAIMABLE))
        .values(status="running", worker=sa.bindparam("who"),
                heartbeat=sa.bindparam("now"), attempts=trials_t.c.attempts + 1,
                started_at=sa.func.coalesce(trials_t.c.started_at, sa.bindparam("start")))
        .returning(*trials_t.c))


# The trial a worker already holds in an experiment, its heartbeat refreshed.
RECLAIM = (
    sa.update(trials_t)
    .where(trials_t.c.worker == sa.bindparam("who"), trials_t.c.status == "running",
           trials_t.c.study_id.in_(sa.select(studies_t.c.id).where(
               studies_t.c.experiment_id == sa.bindparam("exp_id"))))
    .values(heartbeat=sa.bindparam("now"))
    .returning(*trials_t.c))
# Whether any trial is left to claim (the claim matched nothing: lost a race, or none left).
CLAIMABLE_ONE = (
    sa.select(trials_t.c.id)
    .join(studies_t, trials_t.c.study_id == studies_t.c.id)
    .where(studies_t.c.experiment_id == sa.bindparam("exp_id"),
           trials_t.c.status.in_(CLAIMABLE), in_budget()).limit(1))


def finish_values(status: str, elapsed: float, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The update that ends an attempt as ``status`` with the result ``fields`` (ValueError
    for a status an attempt cannot end with)."""
    if status not in (*TERMINAL, "interrupted", "pending"):
        raise ValueError(f"cannot finish a trial as {status!r}")
    # A workload's error message with a NUL in it must not make its trial unrecordable on
    # PostgreSQL: the text is kept, the character escaped.
    values: dict[str, Any] = {
        k: v.replace("\x00", "\\x00") if isinstance(v, str) else v for k, v in fields.items()}
    values.update(status=status, heartbeat=None, run_seconds=trials_t.c.run_seconds + elapsed)
    if status in TERMINAL:
        values["finished_at"] = time.time()
    if status == "interrupted":
        # A user's Ctrl-C does not count against the trial's attempts.
        values["attempts"] = trials_t.c.attempts - 1
    return values


def release_values(reason: str, max_attempts: int, interrupted: bool) -> dict[str, Any]:
    """The update of a released running trial: interrupted, back to pending, or failed once
    ``max_attempts`` were used (the error says which attempt and why)."""
    attempts = trials_t.c.attempts
    if interrupted:
        return {"status": "interrupted",
                "attempts": sa.case((attempts > 0, attempts - 1), else_=0)}
    gave_up = attempts >= max_attempts
    text_attempts = sa.cast(attempts, sa.String)
    return {
        "status": sa.case((gave_up, "failed"), else_="pending"),
        "finished_at": sa.case((gave_up, time.time()), else_=trials_t.c.finished_at),
        "error": sa.case(
            (gave_up, sa.literal(f"{reason}; gave up after ") + text_attempts
             + sa.literal(" attempts")),
            else_=sa.literal("attempt ") + text_attempts + sa.literal(f": {reason}"))}

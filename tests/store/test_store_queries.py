"""The store's SQL (tunebook.store.queries) on every backend: the claim's compare-and-swap,
registering and adding trials that only add what is missing (also when redone after a lost
reply), the updates that end and release attempts."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tunebook.store.api import StudySpec
from tunebook.store.queries import claim_statement, register
from tunebook.store.schema import trials_t
from tunebook.store.sql import Store

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    connect_fixture,
    store_fixture,
)
from store_backends import (
    register as register_exp,
)


def _ids(store: Store, exp_id: int) -> list[tuple[str, int, int]]:
    return [(t.study, t.index, t.id) for t in store.trials(exp_id)]


def test_register_redone_after_a_lost_reply_adds_nothing_twice(store: Store) -> None:
    exp_id = register_exp(store, n=2, studies=2)
    before = _ids(store, exp_id)
    lost = LostReply(store.engine, "INSERT INTO trials")
    lost.arm()
    assert register_exp(store, n=4, studies=2) == exp_id  # extends, its reply lost once
    assert lost.cuts == 1
    after = _ids(store, exp_id)
    assert after[:2] == before[:2] and after[4:6] == before[2:]  # old rows untouched
    assert [(s, i) for s, i, _ in after] == [(f"s{k}", i) for k in range(2) for i in range(4)]


def test_register_keeps_params_and_status_of_existing_trials(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    t = store.claim(exp_id, "w")
    assert t is not None
    specs = [StudySpec("s0", 0, {"k": 0}, "quasi_random", 0, 3)]
    with store.engine.begin() as conn:  # new params for old indices are ignored
        again = register(conn, store.display_url, "exp", "id1", {"changed": True}, specs,
                         {"s0": [(i, {"x": 99}, 7) for i in range(3)]})
    assert again == exp_id
    rows = store.trials(exp_id)
    assert [(r.params, r.seed, r.status) for r in rows] == [
        ({"x": 0.0, "k": 0}, 0, "running"), ({"x": 0.1, "k": 0}, 1, "pending"),
        ({"x": 99}, 7, "pending")]
    assert store.require_experiment("exp").config == {"changed": True}


def test_a_lowered_budget_leaves_trials_dormant_and_a_raised_one_wakes_them(
        store: Store) -> None:
    exp_id = register_exp(store, n=4)
    register_exp(store, n=2)  # the budget lowered: trials 2 and 3 stay, unclaimable
    assert len(store.trials(exp_id)) == 4 and store.counts(exp_id) == {"pending": 2}
    taken = [t.index for t in iter(lambda: store.claim(exp_id, "w"), None)]
    assert taken == [0, 1]
    register_exp(store, n=4)
    assert store.counts(exp_id) == {"running": 2, "pending": 2}
    assert [t.index for t in iter(lambda: store.claim(exp_id, "v"), None)] == [2, 3]


def test_add_trials_adds_only_new_indices_with_the_designer_state(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    [study] = store.studies(exp_id)
    lost = LostReply(store.engine, "INSERT INTO trials")
    lost.arm()
    rows = [(1, {"x": 9}, 9), (2, {"x": 0.2}, 2), (3, {"x": 0.3}, 3)]
    store.add_trials(study.id, rows, {"round": 2})
    assert lost.cuts == 1
    assert store.add_trials(study.id, rows, {"round": 3}) == 0  # redone: nothing new
    assert store.add_trials(study.id, [(4, {"x": 0.4}, 4)], {"round": 4}) == 1
    assert [(t.index, t.params) for t in store.trials(exp_id)] == [
        (0, {"x": 0.0, "k": 0}), (1, {"x": 0.1, "k": 0}), (2, {"x": 0.2}), (3, {"x": 0.3}),
        (4, {"x": 0.4})]
    assert store.designer_state(study.id) == {"round": 4}


def test_add_trials_across_a_lost_reply_says_how_many_it_added(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    [study] = store.studies(exp_id)
    lost = LostReply(store.engine, "INSERT INTO trials")
    lost.arm()
    added = store.add_trials(study.id, [(2, {"x": 0.2}, 2), (3, {"x": 0.3}, 3)], {"round": 2})
    assert lost.cuts == 1 and len(store.trials(exp_id)) == 4
    assert added == 2


def test_a_claim_across_a_lost_reply_returns_the_trial_it_took(store: Store) -> None:
    exp_id = register_exp(store, n=3)
    lost = LostReply(store.engine, "UPDATE trials")
    lost.arm()
    t = store.claim(exp_id, "w")
    assert lost.cuts == 1 and t is not None
    assert (t.index, t.attempts, t.first_start, t.worker) == (0, 1, True, "w")
    assert [r.id for r in store.trials(exp_id, statuses=["running"])] == [t.id]


def test_claim_is_a_compare_and_swap_on_the_status(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    claim = claim_statement(store.is_sqlite)
    with store.engine.begin() as conn:
        first = conn.execute(claim, {"exp_id": exp_id, "who": "a", "now": 1.0,
                                     "start": 1.0}).first()
        second = conn.execute(claim, {"exp_id": exp_id, "who": "b", "now": 1.0,
                                      "start": 1.0}).first()
        third = conn.execute(claim, {"exp_id": exp_id, "who": "c", "now": 1.0,
                                     "start": 1.0}).first()
    assert first is not None and second is not None and third is None
    assert first.id != second.id and (first.worker, second.worker) == ("a", "b")
    # A trial taken by someone else is never updated by a later claim of it.
    with store.engine.begin() as conn:
        taken = conn.execute(sa.update(trials_t).where(
            trials_t.c.id == first.id, trials_t.c.status.in_(("pending", "interrupted")))
            .values(worker="thief")).rowcount
    assert taken == 0 and store.trial(first.id).worker == "a"


def test_concurrent_claims_on_postgresql_skip_a_row_another_holds(postgres: Any) -> None:
    # The first claim's transaction is still open: the second neither waits for it nor takes
    # its row (SKIP LOCKED), and the first's commit keeps its own.
    store = Store(postgres.new_database())
    exp_id = register_exp(store, n=3)
    params = {"exp_id": exp_id, "now": 1.0, "start": 1.0}
    claim = claim_statement(sqlite=False)
    with store.engine.connect() as a, store.engine.connect() as b:
        a.execute(sa.text("SET lock_timeout = '5s'"))
        b.execute(sa.text("SET lock_timeout = '5s'"))
        held = a.execute(claim, {**params, "who": "a"}).one()
        other = b.execute(claim, {**params, "who": "b"}).one()
        b.commit()
        a.commit()
    assert held.idx == 0 and other.idx == 1
    assert {(t.index, t.worker) for t in store.trials(exp_id, statuses=["running"])} == {
        (0, "a"), (1, "b")}


def test_finish_after_a_lost_reply_counts_the_time_once(store: Store) -> None:
    exp_id = register_exp(store, n=1)
    t = store.claim(exp_id, "w")
    assert t is not None
    lost = LostReply(store.engine, "UPDATE trials")
    lost.arm()
    assert store.finish(t.id, "w", "completed", elapsed=2.5, best_value=0.5, best_step=3)
    assert lost.cuts == 1
    done = store.trial(t.id)
    assert (done.status, done.run_seconds, done.best_value) == ("completed", 2.5, 0.5)


@pytest.mark.parametrize(("status", "attempts"), [("interrupted", 0), ("pending", 1)])
def test_finish_that_is_not_an_end_keeps_the_trial_claimable(
        store: Store, status: str, attempts: int) -> None:
    exp_id = register_exp(store, n=1)
    t = store.claim(exp_id, "w")
    assert t is not None
    assert store.finish(t.id, "w", status, elapsed=1.0)
    row = store.trial(t.id)
    assert (row.status, row.attempts, row.finished_at, row.heartbeat) == (
        status, attempts, None, None)
    again = store.claim(exp_id, "v")
    assert again is not None and again.id == t.id and not again.first_start


def test_released_attempts_say_which_attempt_and_why(store: Store) -> None:
    exp_id = register_exp(store, n=1)
    t = store.claim(exp_id, "w")
    assert t is not None
    assert store.release_worker("w", "worker died", max_attempts=3) == [t.id]
    row = store.trial(t.id)
    assert (row.status, row.error, row.finished_at) == ("pending", "attempt 1: worker died", None)
    # An interrupted release of an attempt never counted leaves attempts at 0, not -1.
    with store.engine.begin() as conn:
        conn.execute(sa.update(trials_t).where(trials_t.c.id == t.id).values(
            status="running", worker="x", attempts=0))
    store.release_worker("x", "ctrl-c", max_attempts=3, interrupted=True)
    assert (store.trial(t.id).status, store.trial(t.id).attempts) == ("interrupted", 0)

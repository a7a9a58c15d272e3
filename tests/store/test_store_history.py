"""The store's history (tunebook.store.history) on every backend: runs, notes and
recommendations are recorded once across a lost reply, kept twice when asked twice, read back
oldest first, and refused whole when they cannot be stored."""

from __future__ import annotations

import math

import pytest

from tunebook.errors import StoreError
from tunebook.store.api import RunOutcome
from tunebook.store.checks import MAX_NAME_LENGTH
from tunebook.store.sql import Store

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    connect_fixture,
    register,
    store_fixture,
)


def test_a_run_started_across_a_lost_reply_is_recorded_once(store: Store) -> None:
    exp_id = register(store)
    lost = LostReply(store.engine, "INSERT INTO runs")
    lost.arm()
    run_id = store.start_run(exp_id, "host", 2, {"command": "tunebook run"})
    assert lost.cuts == 1
    [run] = store.runs(exp_id)
    assert (run.id, run.outcome, run.finished_at) == (run_id, None, None)  # still running
    lost = LostReply(store.engine, "UPDATE runs")
    lost.arm()
    store.end_run(run_id, RunOutcome({"completed": 3}, elapsed=2.0))
    [run] = store.runs(exp_id)
    assert run.outcome == {"counts": {"completed": 3}, "interrupted": False, "signal": None,
                           "elapsed": 2.0}


def test_runs_are_per_experiment_oldest_first_and_the_host_is_made_storable(
        store: Store) -> None:
    a, b = register(store, name="a"), register(store, name="b")
    first = store.start_run(a, "h\x00ost", 1, {"n": 1})
    store.start_run(b, "other", 1, {})
    second = store.start_run(a, "x" * (MAX_NAME_LENGTH + 50), 4, {"n": 2})
    runs = store.runs(a)
    assert [(r.id, r.provenance, r.workers) for r in runs] == [(first, {"n": 1}, 1),
                                                                 (second, {"n": 2}, 4)]
    assert runs[0].host == "host" and runs[1].host == "x" * MAX_NAME_LENGTH
    assert [r.host for r in store.runs(b)] == ["other"]


def test_a_note_across_a_lost_reply_is_recorded_once_a_note_given_twice_twice(
        store: Store) -> None:
    exp_id = register(store)
    lost = LostReply(store.engine, "INSERT INTO notes")
    lost.arm()
    store.add_note(exp_id, "tried a higher learning rate", study="s0")
    assert lost.cuts == 1
    store.add_note(exp_id, "tried a higher learning rate", study="s0")  # the user said it again
    notes = store.notes(exp_id)
    assert [(s, t) for _, s, t in notes] == [("s0", "tried a higher learning rate")] * 2
    assert notes[0][0] <= notes[1][0]


@pytest.mark.parametrize(("text", "study", "says"), [
    ("a\x00b", None, "note 'a\\x00b' contains a NUL character"),
    ("fine", "s" * (MAX_NAME_LENGTH + 1), "study name 'sss"),
])
def test_a_note_that_cannot_be_stored_is_refused_whole(store: Store, text: str,
                                                        study: str | None, says: str) -> None:
    exp_id = register(store)
    with pytest.raises(StoreError) as info:
        store.add_note(exp_id, text, study=study)
    assert str(info.value).startswith(says)
    assert store.notes(exp_id) == []


def test_recommendations_once_across_a_lost_reply_filtered_oldest_first(store: Store) -> None:
    # Keyed by the base experiment's name, which need not be stored itself.
    lost = LostReply(store.engine, "INSERT INTO recommendations")
    lost.arm()
    first = store.add_recommendation("base", "sweep", {"best": {"lr": 0.1}, "n": [1, 2]})
    assert lost.cuts == 1
    second = store.add_recommendation("base", "refine", {"best": {"lr": 0.05}})
    third = store.add_recommendation("base", "sweep", {"best": {"lr": 0.2}})
    store.add_recommendation("other", "sweep", {})
    rows = store.recommendations("base")
    assert [(r.id, r.procedure) for r in rows] == [(first, "sweep"), (second, "refine"),
                                                   (third, "sweep")]
    assert rows[0].payload == {"best": {"lr": 0.1}, "n": [1, 2]} and rows[0].experiment == "base"
    assert [r.id for r in store.recommendations("base", "sweep")] == [first, third]
    assert store.recommendations("nothing") == []


def test_a_recommendation_that_cannot_be_stored_is_refused_whole(store: Store) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):  # NaN is not JSON
        store.add_recommendation("base", "sweep", {"best": math.nan})
    with pytest.raises(StoreError, match="procedure name"):
        store.add_recommendation("base", "p" * 65, {})
    with pytest.raises(StoreError, match="experiment name"):
        store.add_recommendation("ba\x00se", "sweep", {})
    assert store.recommendations("base") == []

"""The test set's ledger (tunebook.store.final_evals) on every backend: each final evaluation is
recorded once across a lost reply, read back oldest first per experiment, refused whole when a
metric is not finite; and a SQLite store made before the table existed gets it on open."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from tunebook.errors import StoreError
from tunebook.store.schema import SCHEMA_VERSION
from tunebook.store.sql import Store, sqlite_url

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    connect_fixture,
    register,
    store_fixture,
)


def test_final_evals_are_recorded_once_and_read_back_per_experiment(store: Store) -> None:
    exp_id = register(store)
    other = register(store, name="other", identity="id2")
    [t0, t1, _] = store.trials(exp_id)
    assert store.final_evals(exp_id) == []
    lost = LostReply(store.engine, "INSERT INTO final_evals")
    lost.arm()
    first = store.add_final_eval(exp_id, t0.id, {"rule": "best", "metric": "loss"},
                                 {"test_error": 0.25, "test_examples": 400}, host="h")
    assert lost.cuts == 1
    second = store.add_final_eval(exp_id, t1.id, {"rule": "trial", "ref": "s0#1"},
                                  {"test_error": 0.5})
    store.add_final_eval(other, store.trials(other)[0].id, {"rule": "best"}, {"x": 1.0})
    rows = store.final_evals(exp_id)
    assert [r.id for r in rows] == [first, second]
    assert rows[0].trial_id == t0.id and rows[0].host == "h"
    assert rows[0].selection == {"rule": "best", "metric": "loss"}
    assert rows[0].metrics == {"test_error": 0.25, "test_examples": 400.0}
    assert rows[0].created_at <= rows[1].created_at


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_test_metric_is_refused_and_nothing_is_recorded(store: Store,
                                                                     bad: float) -> None:
    exp_id = register(store)
    with pytest.raises(StoreError, match="test_loss"):
        store.add_final_eval(exp_id, store.trials(exp_id)[0].id, {}, {"test_error": 0.1,
                                                                      "test_loss": bad})
    assert store.final_evals(exp_id) == []


def test_a_store_made_before_the_ledger_gets_it_on_open_same_schema_version(
        tmp_path: Path) -> None:
    path = tmp_path / "tunebook.db"
    store = Store(sqlite_url(path))
    exp_id = register(store)
    store.close()
    # What the previous code created: every table but this one.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE final_evals")
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "final_evals" not in names and "trials" in names
    store = Store(sqlite_url(path), create=False)
    trial = store.trials(exp_id)[0]
    store.add_final_eval(exp_id, trial.id, {"rule": "best"}, {"test_error": 0.1})
    assert [r.metrics for r in store.final_evals(exp_id)] == [{"test_error": 0.1}]
    with sqlite3.connect(path) as conn:
        version = conn.execute(
            "SELECT value FROM tunebook_meta WHERE key='schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    store.close()

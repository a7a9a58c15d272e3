"""Bulk ingestion and the store's load-bearing indexes on every backend: add_measurements_many
(upserts, the last row of a key winning, redone after a lost reply, PostgreSQL's COPY and its
merge when keys are already there), the trial_metrics table behind metric_names (kept with the
measurements, trimmed by truncation, filled once in a store written before it existed), and
the claim's partial index (used by the claim's plan, created in an older store on opening)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunebook.errors import StoreError
from tunebook.store.ingest import COPY_MIN_ROWS
from tunebook.store.queries import _CANDIDATE
from tunebook.store.schema import TRIAL_METRICS_KEY
from tunebook.store.sql import Store, sqlite_url

from store_backends import LostReply, connect_fixture, register, store_fixture  # noqa: F401


def _rows(n_steps: int, offset: float = 0.0) -> list[tuple[int, str, float]]:
    return [(s, m, s + k + offset) for s in range(1, n_steps + 1)
            for k, m in enumerate(("loss", "acc", "lr"))]


@pytest.mark.parametrize("steps", [3, COPY_MIN_ROWS])  # executemany; COPY on PostgreSQL
def test_many_trials_in_one_call_are_written_exactly(store: Store, steps: int) -> None:
    exp_id = register(store, n=3)
    ids = [t.id for t in store.trials(exp_id)]
    store.add_measurements_many({ids[0]: _rows(steps), ids[1]: _rows(steps, 0.5), ids[2]: []})
    got = store.measurements(experiment_id=exp_id)
    want = sorted([(ids[0], s, m, v) for s, m, v in _rows(steps)]
                  + [(ids[1], s, m, v) for s, m, v in _rows(steps, 0.5)],
                  key=lambda r: (r[0], r[2], r[1]))
    assert got == want
    assert store.metric_names(exp_id) == ["acc", "loss", "lr"]


@pytest.mark.parametrize("steps", [3, COPY_MIN_ROWS])
def test_a_repeated_key_is_replaced_and_the_last_of_a_batch_wins(store: Store, steps: int
                                                                 ) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements_many({a: _rows(steps)})
    # Again with new values, one key twice within the batch, a NaN and an infinity: on
    # PostgreSQL's COPY path the keys already there send the batch through the merge.
    again = [*_rows(steps, 10.0), (1, "loss", 7.0), (2, "acc", math.nan), (3, "lr", math.inf)]
    store.add_measurements_many({a: again, b: [(1, "loss", 1.0)]})
    values = {(t, s, m): v for t, s, m, v in store.measurements(experiment_id=exp_id)}
    assert len(values) == 3 * steps + 1
    assert values[(a, 1, "loss")] == 7.0 and math.isnan(values[(a, 2, "acc")])
    assert values[(a, 3, "lr")] == math.inf and values[(b, 1, "loss")] == 1.0
    assert values[(a, steps, "acc")] == steps + 1 + 10.0


@pytest.mark.parametrize("steps", [3, COPY_MIN_ROWS])
def test_a_batch_redone_after_a_lost_reply_is_written_once(store: Store, steps: int) -> None:
    exp_id = register(store, n=2)
    ids = [t.id for t in store.trials(exp_id)]
    lost = LostReply(store.engine, "INSERT INTO trial_metrics")
    lost.arm()
    store.add_measurements_many({tid: _rows(steps) for tid in ids})
    assert lost.cuts == 1
    assert len(store.measurements(experiment_id=exp_id)) == 2 * 3 * steps
    assert store.metric_names(exp_id) == ["acc", "loss", "lr"]


def test_bad_rows_refuse_the_whole_batch_before_anything_is_written(store: Store) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    with pytest.raises(StoreError, match="metric name"):
        store.add_measurements_many({a: [(1, "loss", 1.0)], b: [(1, "x" * 1000, 1.0)]})
    with pytest.raises(StoreError, match="step"):
        store.add_measurements_many({a: [(1, "loss", 1.0)], b: [(2**40, "loss", 1.0)]})
    # A trial that does not exist: trial_metrics's foreign key refuses it (measurements has
    # none in a new store), on the COPY path too.
    for steps in (1, COPY_MIN_ROWS):
        with pytest.raises(StoreError):
            store.add_measurements_many({a: _rows(steps), a + 1000: _rows(steps)})
    assert store.measurements(experiment_id=exp_id) == [] and store.metric_names(exp_id) == []


def test_a_measured_trial_cannot_be_deleted(store: Store) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements_many({a: [(1, "loss", 1.0)]})
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM trials WHERE id = :a"), {"a": a})
    with store.engine.begin() as conn:  # an unmeasured one can (a registration replaced)
        conn.execute(sa.text("DELETE FROM trials WHERE id = :b"), {"b": b})
    assert [t.id for t in store.trials(exp_id)] == [a]


def test_truncation_forgets_the_metric_names_no_longer_measured(store: Store) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements_many({a: [(1, "loss", 1.0), (5, "late", 2.0)],
                                 b: [(1, "acc", 1.0)]})
    assert store.metric_names(exp_id) == ["acc", "late", "loss"]
    assert store.truncate_measurements(a, 1) == 1
    assert store.metric_names(exp_id) == ["acc", "loss"]
    assert store.truncate_measurements(b, 0) == 1
    assert store.metric_names(exp_id) == ["loss"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT trial_id, metric FROM trial_metrics")).all() == [
            (a, "loss")]


def _as_before_trial_metrics(store: Store) -> None:
    """Make ``store`` look written by the tunebook before trial_metrics and the claim index."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE trial_metrics"))
        conn.execute(sa.text("DROP INDEX ix_trials_claimable"))
        conn.execute(sa.text(f"DELETE FROM tunebook_meta WHERE key = '{TRIAL_METRICS_KEY}'"))
        if not store.is_sqlite:  # its measurements had a foreign key (SQLite: the next test)
            conn.execute(sa.text("ALTER TABLE measurements ADD FOREIGN KEY (trial_id) "
                                 "REFERENCES trials (id)"))
    store.close()


def test_an_older_store_gets_its_metric_names_and_claim_index_on_opening(
        connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s, n=3)
    ids = [t.id for t in s.trials(exp_id)]
    s.add_measurements_many({ids[0]: [(1, "loss", 1.0), (2, "acc", 0.5)],
                             ids[2]: [(1, "grad_norm", 3.0)]})
    _as_before_trial_metrics(s)
    again = connect()
    assert again.metric_names(exp_id) == ["acc", "grad_norm", "loss"]
    with again.engine.connect() as conn:
        assert "ix_trials_claimable" in {
            ix["name"] for ix in sa.inspect(conn).get_indexes("trials")}
        # Filled once: the marker is written with the rows, in one transaction.
        assert conn.execute(sa.text("SELECT value FROM tunebook_meta WHERE key = :k"),
                            {"k": TRIAL_METRICS_KEY}).all() == [("1",)]
    claimed = again.claim(exp_id, "w")
    assert claimed is not None and claimed.index == 0
    again.add_measurements(ids[1], [(1, "val_loss", 0.1)])
    assert again.metric_names(exp_id) == ["acc", "grad_norm", "loss", "val_loss"]
    # The bulk path (COPY on PostgreSQL) into the older layout, new keys and repeated ones.
    again.add_measurements_many({ids[1]: _rows(COPY_MIN_ROWS), ids[0]: [(1, "loss", 2.0)]})
    again.add_measurements_many({ids[1]: _rows(COPY_MIN_ROWS, 1.0)})
    values = {(t, s, m): v for t, s, m, v in again.measurements(experiment_id=exp_id)}
    assert len(values) == 3 + 3 * COPY_MIN_ROWS + 1
    assert values[(ids[0], 1, "loss")] == 2.0 and values[(ids[1], 1, "lr")] == 4.0


def test_a_store_file_written_without_trial_metrics_is_filled_from_sqlite3(
        tmp_path: Path) -> None:
    # The older layout made with the sqlite3 module alone: nothing of this version touched it.
    path = tmp_path / "tunebook.db"
    s = Store(sqlite_url(path))
    exp_id = register(s, n=2)
    a = s.trials(exp_id)[0].id
    s.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE trial_metrics")
        conn.execute("DROP INDEX ix_trials_claimable")
        conn.execute("DELETE FROM tunebook_meta WHERE key = ?", (TRIAL_METRICS_KEY,))
        # Its measurements were a rowid table (new stores have WITHOUT ROWID).
        conn.execute("DROP TABLE measurements")
        conn.execute("CREATE TABLE measurements (trial_id INTEGER NOT NULL, metric VARCHAR(128) "
                     "NOT NULL, step INTEGER NOT NULL, value FLOAT, PRIMARY KEY (trial_id, "
                     "metric, step), FOREIGN KEY(trial_id) REFERENCES trials (id))")
        conn.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?)",
                         [(a, "loss", 1, 0.5), (a, "loss", 2, 0.25), (a, "acc", 1, None)])
    conn.close()
    again = Store(sqlite_url(path))
    assert again.metric_names(exp_id) == ["acc", "loss"]
    again.add_measurements_many({a: [(2, "loss", 0.125), (3, "loss", 0.0625)]})
    assert [v for _, _, m, v in again.measurements([a]) if m == "loss"] == [0.5, 0.125, 0.0625]


def test_new_sqlite_stores_keep_measurements_in_their_key(tmp_path: Path) -> None:
    Store(sqlite_url(tmp_path / "tunebook.db")).close()
    with sqlite3.connect(tmp_path / "tunebook.db") as conn:
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'measurements'").fetchone()[0]
    conn.close()
    assert sql.rstrip().endswith("WITHOUT ROWID")


def test_the_claim_reads_the_claimable_index(store: Store) -> None:
    exp_id = register(store, n=40, studies=2)
    sql = _CANDIDATE.format(
        hint=" INDEXED BY ix_trials_claimable" if store.is_sqlite else "",
        lock="" if store.is_sqlite else " FOR UPDATE SKIP LOCKED")
    explain = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN "
    with store.engine.connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.execute(sa.text(explain + sql),
                                                         {"exp_id": exp_id}))
    assert "ix_trials_claimable" in plan
    # Claimed in order, studies interleaved, as before the index.
    got = [(t.study, t.index) for t in iter(lambda: store.claim(exp_id, "w"), None)
           if store.finish(t.id, "w", "completed")][:6]
    assert got == [("s0", 0), ("s1", 0), ("s0", 1), ("s1", 1), ("s0", 2), ("s1", 2)]


def test_study_counts_are_per_study_and_status_within_the_budget(store: Store) -> None:
    exp_id = register(store, n=4, studies=2)
    t = store.claim(exp_id, "w")  # s0's index 0
    assert t is not None and store.finish(t.id, "w", "completed")
    assert store.claim(exp_id, "w2") is not None  # s1's index 0, left running
    assert store.study_counts(exp_id) == {"s0": {"completed": 1, "pending": 3},
                                          "s1": {"running": 1, "pending": 3}}
    register(store, n=2, studies=2)  # the budget lowered to 2: indices 2 and 3 dormant
    assert store.study_counts(exp_id) == {"s0": {"completed": 1, "pending": 1},
                                          "s1": {"running": 1, "pending": 1}}
    assert store.study_counts(exp_id + 1) == {}

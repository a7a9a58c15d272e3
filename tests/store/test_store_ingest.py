"""Measurements as curve chunks on every backend: add_measurements_many (upserts, the last row
of a key winning, appends filling a curve's last chunk, merges of steps written again, redone
after a lost reply), truncation inside a chunk, metric names, a version 1 store (a row per
point) migrated on opening, and the claim's partial index (used by the claim's plan, created in
an older store on opening)."""

from __future__ import annotations

import functools
import itertools
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunebook.errors import StoreError
from tunebook.store.chunks import CHUNK_POINTS
from tunebook.store.queries import _CANDIDATE
from tunebook.store.schema import SCHEMA_VERSION
from tunebook.store.sql import Store, sqlite_url

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    at_once,
    connect_fixture,
    register,
    store_fixture,
)

# More steps than a chunk holds: a curve of several chunks.
LONG = CHUNK_POINTS + 7


def _rows(n_steps: int, offset: float = 0.0, start: int = 1) -> list[tuple[int, str, float]]:
    return [(s, m, s + k + offset) for s in range(start, start + n_steps)
            for k, m in enumerate(("loss", "acc", "lr"))]


def _chunks(store: Store, trial_id: int, metric: str) -> list[tuple[int, int, int]]:
    """``(first_step, last_step, points)`` of a curve's chunks, in step order."""
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT first_step, last_step, points FROM curves WHERE trial_id = :t "
            "AND metric = :m ORDER BY first_step"), {"t": trial_id, "m": metric})]


@pytest.mark.parametrize("steps", [3, LONG])
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
    assert store.measurements([ids[1]], metric="lr") == [r for r in want
                                                         if r[0] == ids[1] and r[2] == "lr"]
    chunks = _chunks(store, ids[0], "loss")
    assert sum(c[2] for c in chunks) == steps and len(chunks) == -(-steps // CHUNK_POINTS)


@pytest.mark.parametrize("steps", [3, LONG])
def test_a_repeated_key_is_replaced_and_the_last_of_a_batch_wins(store: Store, steps: int
                                                                 ) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements_many({a: _rows(steps)})
    # Again with new values, one key twice within the batch, a NaN and an infinity: the
    # steps already there send every curve through the merge.
    again = [*_rows(steps, 10.0), (1, "loss", 7.0), (2, "acc", math.nan), (3, "lr", math.inf)]
    store.add_measurements_many({a: again, b: [(1, "loss", 1.0)]})
    values = {(t, s, m): v for t, s, m, v in store.measurements(experiment_id=exp_id)}
    assert len(values) == 3 * steps + 1
    assert values[(a, 1, "loss")] == 7.0 and math.isnan(values[(a, 2, "acc")])
    assert values[(a, 3, "lr")] == math.inf and values[(b, 1, "loss")] == 1.0
    assert values[(a, steps, "acc")] == steps + 1 + 10.0
    assert sum(c[2] for c in _chunks(store, a, "acc")) == steps


def test_flushes_fill_the_last_chunk_and_a_step_again_is_merged(store: Store) -> None:
    exp_id = register(store, n=1)
    (a,) = (t.id for t in store.trials(exp_id))
    # A worker's flushes: a few evaluations at a time, out of order within one flush.
    for start in range(1, 2 * CHUNK_POINTS, 100):
        rows = _rows(100, start=start)
        store.add_measurements(a, rows[::-1])
    n = 2 * CHUNK_POINTS - 1 + 100 - (2 * CHUNK_POINTS - 1) % 100
    assert _chunks(store, a, "loss") == [(1, CHUNK_POINTS, CHUNK_POINTS),
                                         (CHUNK_POINTS + 1, 2 * CHUNK_POINTS, CHUNK_POINTS),
                                         (2 * CHUNK_POINTS + 1, n, n - 2 * CHUNK_POINTS)]
    # A resumed trial reporting steps again, across two chunks: merged, then read whole.
    again = range(CHUNK_POINTS - 2, CHUNK_POINTS + 3)
    store.add_measurements(a, [(s, "loss", -1.0) for s in again])
    loss = [(s, v) for _, s, m, v in store.measurements([a]) if m == "loss"]
    assert [s for s, _ in loss] == list(range(1, n + 1))
    assert [v for s, v in loss if v == -1.0] == [-1.0] * 5
    assert loss[0] == (1, 1.0) and loss[-1] == (n, float(n))
    chunks = _chunks(store, a, "loss")
    assert sum(c[2] for c in chunks) == n
    assert all(x[1] < y[0] for x, y in itertools.pairwise(chunks))


def test_truncation_cuts_inside_a_chunk_and_forgets_metric_names(store: Store) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements_many({a: [*_rows(LONG), (LONG + 5, "late", 2.0)],
                                 b: [(1, "acc", 1.0)]})
    assert store.metric_names(exp_id) == ["acc", "late", "loss", "lr"]
    assert store.truncate_measurements(a, 10) == 3 * (LONG - 10) + 1
    assert store.truncate_measurements(a, 10) == 0  # a redo
    assert store.metric_names(exp_id) == ["acc", "loss", "lr"]
    assert [s for _, s, m, _ in store.measurements([a]) if m == "lr"] == list(range(1, 11))
    assert _chunks(store, a, "lr") == [(1, 10, 10)]
    # The trial goes on from step 10: its next points fill the cut chunk.
    store.add_measurements(a, _rows(5, start=11))
    assert _chunks(store, a, "lr") == [(1, 15, 15)]
    assert store.truncate_measurements(b, 0) == 1
    assert store.metric_names(exp_id) == ["acc", "loss", "lr"]
    assert store.measurements([b]) == []


@pytest.mark.parametrize("steps", [3, LONG])
def test_a_batch_redone_after_a_lost_reply_is_written_once(store: Store, steps: int) -> None:
    exp_id = register(store, n=2)
    ids = [t.id for t in store.trials(exp_id)]
    store.add_measurements_many({ids[0]: _rows(2)})
    lost = LostReply(store.engine, "INSERT INTO curves")
    lost.arm()
    store.add_measurements_many({tid: _rows(steps) for tid in ids})
    assert lost.cuts == 1
    assert len(store.measurements(experiment_id=exp_id)) == 2 * 3 * steps
    assert store.metric_names(exp_id) == ["acc", "loss", "lr"]
    assert sum(c[2] for c in _chunks(store, ids[0], "lr")) == steps


def test_bad_rows_refuse_the_whole_batch_before_anything_is_written(store: Store) -> None:
    exp_id = register(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    with pytest.raises(StoreError, match="metric name"):
        store.add_measurements_many({a: [(1, "loss", 1.0)], b: [(1, "x" * 1000, 1.0)]})
    with pytest.raises(StoreError, match="step"):
        store.add_measurements_many({a: [(1, "loss", 1.0)], b: [(2**40, "loss", 1.0)]})
    with pytest.raises(TypeError):
        store.add_measurements_many({a: [(1, "loss", 1.0)], b: [(1, "loss", "high")]})
    # A trial that does not exist: the curves' foreign key refuses it.
    for steps in (1, LONG):
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


def test_writers_of_one_curve_at_once_lose_nothing(connect: Callable[[], Store]) -> None:
    # Each thread its own store (connection pool): flushes of interleaved steps, each thread
    # also rewriting a step the other wrote (a merge), racing on the same chunks.
    first = connect()
    exp_id = register(first, n=1)
    (a,) = (t.id for t in first.trials(exp_id))

    def flushes(k: int) -> None:
        s = connect()
        try:
            for i in range(40):
                step = 2 * i + k + 1
                s.add_measurements_many({a: [(step, "loss", float(step)),
                                             (step, "acc", -float(step))]})
        finally:
            s.close()

    _, errors = at_once([functools.partial(flushes, k) for k in (0, 1)])
    assert errors == []
    got = first.measurements([a], metric="loss")
    assert [(s, v) for _, s, _, v in got] == [(s, float(s)) for s in range(1, 81)]
    chunks = _chunks(first, a, "loss")
    assert sum(c[2] for c in chunks) == 80
    assert all(x[1] < y[0] for x, y in itertools.pairwise(chunks))


def _as_version_1(store: Store, rows: list[tuple[int, str, int, float | None]]) -> None:
    """Make ``store`` look written by the tunebook of schema version 1: a row per point in
    ``measurements`` (NULL for NaN), ``trial_metrics``, no claim index."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE curves"))
        conn.execute(sa.text("DROP INDEX ix_trials_claimable"))
        conn.execute(sa.text(
            # No foreign key (version 1's stores from its bulk path on had none).
            "CREATE TABLE measurements (trial_id INTEGER NOT NULL, metric VARCHAR(128) NOT NULL, "
            "step INTEGER NOT NULL, value FLOAT, PRIMARY KEY (trial_id, metric, step))"))
        conn.execute(sa.text("CREATE TABLE trial_metrics (trial_id INTEGER NOT NULL, "
                             "metric VARCHAR(128) NOT NULL, PRIMARY KEY (trial_id, metric))"))
        if rows:
            conn.execute(sa.text("INSERT INTO measurements VALUES (:t, :m, :s, :v)"),
                         [{"t": t, "m": m, "s": s, "v": v} for t, m, s, v in rows])
        conn.execute(sa.text("INSERT INTO tunebook_meta VALUES ('trial_metrics_filled', '1')"))
        conn.execute(sa.text("UPDATE tunebook_meta SET value = '1' "
                             "WHERE key = 'schema_version'"))
    store.close()


def test_a_version_1_store_is_migrated_on_opening(connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s, n=3)
    ids = [t.id for t in s.trials(exp_id)]
    rows = [(ids[0], m, st, float(st) if m == "loss" else None)
            for m in ("loss", "acc") for st in range(1, LONG + 1)]
    rows.append((ids[2], "grad_norm", 7, 3.0))
    _as_version_1(s, rows)
    again = connect()
    assert again.metric_names(exp_id) == ["acc", "grad_norm", "loss"]
    got = again.measurements(experiment_id=exp_id)
    assert [(t, st, m, v) for t, st, m, v in got if m != "acc"] == sorted(
        [(t, st, m, v) for t, m, st, v in rows if m != "acc"], key=lambda r: (r[0], r[2], r[1]))
    acc = [v for _, _, m, v in got if m == "acc"]
    assert len(acc) == LONG and all(math.isnan(v) for v in acc)
    with again.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text(
            "SELECT value FROM tunebook_meta WHERE key = 'schema_version'")).scalar()
        keys = {r[0] for r in conn.execute(sa.text("SELECT key FROM tunebook_meta"))}
    assert "measurements" not in tables and "trial_metrics" not in tables
    assert version == str(SCHEMA_VERSION) and keys == {"schema_version"}
    # The claim's index is back, and the store works as a new one.
    claimed = again.claim(exp_id, "w")
    assert claimed is not None and claimed.index == 0
    again.add_measurements(ids[0], [(LONG + 1, "loss", 0.5)], worker="w")
    assert again.measurements([ids[0]], metric="loss")[-1] == (ids[0], LONG + 1, "loss", 0.5)
    again.close()
    assert connect().metric_names(exp_id) == ["acc", "grad_norm", "loss"]


def test_a_failed_migration_leaves_the_version_1_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "tunebook.db"
    s = Store(sqlite_url(path))
    exp_id = register(s, n=2)
    a, b = (t.id for t in s.trials(exp_id))
    # A point of a trial that does not exist: the curves' foreign key stops the migration
    # after a's curve was copied.
    _as_version_1(s, [(a, "loss", 1, 0.5), (a, "loss", 2, 0.25), (b + 100, "loss", 1, 9.0)])
    with pytest.raises(StoreError):
        Store(sqlite_url(path))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM tunebook_meta WHERE key = 'schema_version'"
                            ).fetchone() == ("1",)
        assert conn.execute("SELECT count(*) FROM measurements").fetchone() == (3,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'curves'"
                            ).fetchone() is None
        conn.execute("DELETE FROM measurements WHERE trial_id = ?", (b + 100,))
    conn.close()
    fixed = Store(sqlite_url(path))
    assert fixed.measurements([a]) == [(a, 1, "loss", 0.5), (a, 2, "loss", 0.25)]


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tunebook.db"
    Store(sqlite_url(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tunebook_meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(StoreError, match="a newer tunebook wrote it"):
        Store(sqlite_url(path))


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


def test_processes_opening_a_version_1_store_at_once_migrate_it_once(
        connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s, n=2)
    a, b = (t.id for t in s.trials(exp_id))
    rows = [(t, "loss", st, st / 10) for t in (a, b) for st in range(1, 300)]
    _as_version_1(s, rows)
    opened, errors = at_once([connect] * 4)
    assert errors == [] and len(opened) == 4
    want = sorted([(t, st, m, v) for t, m, st, v in rows], key=lambda r: (r[0], r[2], r[1]))
    for store in opened:
        assert store.measurements(experiment_id=exp_id) == want
    assert sum(c[2] for c in _chunks(opened[0], a, "loss")) == 299
    for store in opened:
        store.close()

"""The SQL store, one conformance suite run on every backend: a real SQLite file on disk and a
real PostgreSQL server started by the test setup."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunebook.errors import StoreError
from tunebook.store.sql import (
    MAX_METRIC_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    RunOutcome,
    SQLStore,
    Store,
    StoreAPI,
    StudySpec,
)

from store_backends import at_once, connect_fixture, store_fixture  # noqa: F401 (fixtures)


def _register(store: Store, n: int = 5, identity: str = "id1", studies: int = 2,
              name: str = "exp", study: str = "s", seed: int = 0, first_index: int = 0) -> int:
    specs = [StudySpec(f"{study}{k}", k, {"k": k}, "quasi_random", 0, n) for k in range(studies)]
    trials = {f"{study}{k}": [(first_index + i, {"x": i / 10, "k": k}, seed or 100 * k + i)
                              for i in range(n)] for k in range(studies)}
    return store.register(name, identity, {"objective": {"metric": "loss", "goal": "minimize"}},
                          specs, trials)


def test_missing_store_is_not_created_for_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no tunebook store"):
        Store.at_root(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_register_is_idempotent_and_extends(store: Store) -> None:
    exp_id = _register(store, n=3)
    assert _register(store, n=3) == exp_id
    assert len(store.trials(exp_id)) == 6
    _register(store, n=5)  # a larger budget adds the missing indices only
    rows = store.trials(exp_id)
    assert [(t.study, t.index) for t in rows] == [(f"s{k}", i) for k in range(2) for i in range(5)]
    assert rows[1].params == {"x": 0.1, "k": 0} and rows[1].seed == 1


def test_register_refuses_a_different_identity_once_anything_was_measured(store: Store) -> None:
    exp_id = _register(store)
    t = store.claim(exp_id, "w")
    assert t is not None
    store.add_measurements(t.id, [(1, "loss", 1.0)])
    store.finish(t.id, "w", "failed", error="boom")
    with pytest.raises(StoreError, match="'exp' already exists"):
        _register(store, identity="other")


def test_an_experiment_that_never_measured_anything_takes_the_new_file(store: Store) -> None:
    # Its trials failed before their first report (a typo in the file): fixing the file must
    # not force a new name. Its notes stay.
    exp_id = _register(store, n=3)
    t = store.claim(exp_id, "w")
    assert t is not None
    store.finish(t.id, "w", "failed", error="could not start: KeyError")
    store.add_note(exp_id, "typo in the file")
    assert _register(store, n=2, identity="other") == exp_id
    rows = store.trials(exp_id)
    assert len(rows) == 4 and {r.status for r in rows} == {"pending"}
    assert store.notes(exp_id)[0][2] == "typo in the file"
    assert store.get_experiment("exp").identity == "other"  # type: ignore[union-attr]
    # A trial being run blocks the replacement.
    assert store.claim(exp_id, "w") is not None
    with pytest.raises(StoreError, match="'exp' already exists"):
        _register(store, identity="third")


def test_claim_order_interleaves_studies_and_is_exclusive(store: Store) -> None:
    exp_id = _register(store, n=3)
    order = []
    while (t := store.claim(exp_id, "w")) is not None:
        order.append((t.index, t.study))
        assert t.status == "running" and t.attempts == 1
    assert order == [(0, "s0"), (0, "s1"), (1, "s0"), (1, "s1"), (2, "s0"), (2, "s1")]


def test_concurrent_claims_never_hand_out_a_trial_twice(connect: Callable[[], Store]) -> None:
    exp_id = _register(connect(), n=40)

    def worker(name: str) -> list[int]:
        s = connect()  # one store (engine) per worker, as processes do
        return [t.id for t in iter(lambda: s.claim(exp_id, name), None)]

    claimed, errors = at_once([functools.partial(worker, f"w{k}") for k in range(4)])
    got = [tid for ids in claimed for tid in ids]
    assert errors == [] and len(got) == 80 and len(set(got)) == 80


def test_measurements_upsert_nan_and_truncate(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    tid = store.trials(exp_id)[0].id
    store.add_measurements(tid, [(1, "loss", 2.0), (2, "loss", math.nan), (2, "acc", 0.5)])
    store.add_measurements(tid, [(1, "loss", 1.5), (3, "loss", math.inf)])
    rows = store.measurements([tid])
    assert [(s, m) for _, s, m, _ in rows] == [(2, "acc"), (1, "loss"), (2, "loss"), (3, "loss")]
    values = {(s, m): v for _, s, m, v in rows}
    assert values[(1, "loss")] == 1.5  # replaced, not duplicated
    assert math.isnan(values[(2, "loss")]) and values[(3, "loss")] == math.inf
    assert store.truncate_measurements(tid, 1) == 3
    assert [(s, m) for _, s, m, _ in store.measurements([tid])] == [(1, "loss")]
    assert store.metric_names(exp_id) == ["loss"]


def test_finish_only_by_the_owner(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    t = store.claim(exp_id, "w1")
    assert t is not None
    assert not store.finish(t.id, "w2", "completed")
    assert store.finish(t.id, "w1", "completed", elapsed=1.5, best_value=0.1, best_step=3)
    done = store.trial(t.id)
    assert (done.status, done.best_value, done.best_step, done.run_seconds) == (
        "completed", 0.1, 3, 1.5)
    assert done.finished_at is not None
    with pytest.raises(ValueError):
        store.finish(t.id, "w1", "bogus")


def test_a_worker_writes_only_while_it_holds_the_trial(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    t = store.claim(exp_id, "w1")
    assert t is not None
    assert store.add_measurements(t.id, [(1, "loss", 1.0), (2, "loss", 0.5)], worker="w1")
    assert store.set_checkpoint_step(t.id, 2, worker="w1")
    assert store.add_measurements(t.id, [], worker="w1")  # a check of the claim
    # w1 went silent: its trial was released and claimed by w2, which resumes from step 1.
    assert store.release_stale(exp_id, older_than=-1, max_attempts=3) == [t.id]
    assert not store.add_measurements(t.id, [(3, "loss", 0.1)], worker="w1")  # pending now
    again = store.claim(exp_id, "w2")
    assert again is not None and again.id == t.id
    assert store.truncate_measurements(t.id, 1, worker="w1") == 0
    assert store.truncate_measurements(t.id, 1, worker="w2") == 1
    assert store.add_measurements(t.id, [(2, "loss", 0.6)], worker="w2")
    # w1 comes back: every write of its is refused, nothing of it lands in w2's curve.
    assert not store.add_measurements(t.id, [(2, "loss", 9.0), (3, "loss", 9.0)], worker="w1")
    assert not store.add_measurements(t.id, [], worker="w1")
    assert not store.set_checkpoint_step(t.id, 3, worker="w1")
    assert store.trial(t.id).checkpoint_step == 2
    assert [(s, v) for _, s, _, v in store.measurements([t.id])] == [(1, 1.0), (2, 0.6)]
    assert store.add_measurements(t.id, [(3, "loss", 0.2)])  # without a worker: unguarded
    assert store.finish(t.id, "w2", "completed")
    assert not store.add_measurements(t.id, [(4, "loss", 0.1)], worker="w2")  # ended


def test_release_requeues_then_fails_after_max_attempts(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    for attempt in (1, 2):
        t = store.claim(exp_id, f"w{attempt}")
        assert t is not None and t.attempts == attempt
        assert store.release_worker(f"w{attempt}", "worker died", max_attempts=3) == [t.id]
        assert store.trial(t.id).status == "pending"
    t = store.claim(exp_id, "w3")
    assert t is not None and t.attempts == 3
    store.release_worker("w3", "worker died", max_attempts=3)
    failed = store.trial(t.id)
    assert failed.status == "failed" and "gave up after 3 attempts" in (failed.error or "")


def test_interrupted_does_not_count_as_an_attempt(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    for _ in range(5):
        t = store.claim(exp_id, "w")
        assert t is not None and t.attempts == 1
        store.release_worker("w", "ctrl-c", max_attempts=3, interrupted=True)
        assert store.trial(t.id).status == "interrupted"


def test_stale_heartbeats_are_released(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    t = store.claim(exp_id, "remote")
    assert t is not None
    assert store.release_stale(exp_id, older_than=3600, max_attempts=3) == []
    assert store.heartbeat(t.id, "remote")
    assert store.release_stale(exp_id, older_than=-1, max_attempts=3) == [t.id]
    assert store.trial(t.id).status == "pending"
    assert not store.heartbeat(t.id, "remote")


def test_a_trial_locked_by_a_frozen_write_does_not_hang_its_release(postgres: Any) -> None:
    import psycopg

    store = Store(postgres.new_database())
    exp_id = _register(store, n=2, studies=1)
    frozen, other = store.claim(exp_id, "frozen"), store.claim(exp_id, "other")
    assert frozen is not None and other is not None
    # A worker stopped mid-transaction: its write's lock on the trial's row stays held.
    url = store.engine.url
    with psycopg.connect(host=url.host, port=url.port, user=url.username,
                         dbname=url.database) as conn:
        conn.execute("SELECT id FROM trials WHERE id = %s FOR UPDATE", (frozen.id,))
        assert store.release_stale(exp_id, older_than=-1, max_attempts=3) == [other.id]
    # Once the connection is gone (the server dropped it), the trial is released.
    assert store.release_stale(exp_id, older_than=-1, max_attempts=3) == [frozen.id]


def test_notes(store: Store) -> None:
    exp_id = _register(store)
    store.add_note(exp_id, "<script>alert(1)</script>")
    store.add_note(exp_id, "second", study="s1")
    assert [(s, t) for _, s, t in store.notes(exp_id)] == [
        (None, "<script>alert(1)</script>"), ("s1", "second")]


def test_bad_url() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store("::nonsense::")


def test_concurrent_schema_creation(connect: Callable[[], Store]) -> None:
    _, errors = at_once([lambda: connect().close()] * 4)
    assert errors == []


def test_concurrent_registration_of_one_experiment(connect: Callable[[], Store]) -> None:
    # A batch scheduler starting many `tunebook run` (or workers) at once on a new store.
    stores = [connect() for _ in range(6)]
    ids, errors = at_once([functools.partial(_register, s, n=50, studies=2) for s in stores])
    assert errors == [] and len(set(ids)) == 1
    assert stores[0].counts(ids[0]) == {"pending": 100}


def test_runs_and_best_trial(store: Store) -> None:
    exp_id = _register(store, n=3, studies=1)
    run_id = store.start_run(exp_id, "host", 2, {"command": "tunebook run x.yaml"})
    store.end_run(run_id, RunOutcome({"completed": 3}, interrupted=True, signal="SIGINT",
                                     elapsed=1.5))
    [run] = store.runs(exp_id)
    assert run.provenance["command"] == "tunebook run x.yaml" and run.workers == 2
    assert run.outcome == {"counts": {"completed": 3}, "interrupted": True, "signal": "SIGINT",
                           "elapsed": 1.5}
    assert run.finished_at is not None and run.finished_at >= run.started_at
    for value in (0.5, 0.2, 0.9):
        t = store.claim(exp_id, "w")
        assert t is not None
        store.finish(t.id, "w", "completed", best_value=value, best_step=1)
    assert store.best_trial(exp_id, "minimize").best_value == 0.2  # type: ignore[union-attr]
    assert store.best_trial(exp_id, "maximize").best_value == 0.9  # type: ignore[union-attr]


def test_an_abandoned_run_keeps_only_its_reason(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    run_id = store.start_run(exp_id, "host", 1, {})
    store.end_run(run_id, RunOutcome(abandoned="its process died"))
    assert [r.outcome for r in store.runs(exp_id)] == [
        {"abandoned": True, "reason": "its process died"}]


def test_the_sql_store_implements_the_protocol(store: Store) -> None:
    """Conformance with :class:`StoreAPI` on every backend: each member exists, and each
    method takes the protocol's parameters (names, kinds, defaults) in the protocol's order."""
    assert isinstance(store, StoreAPI)
    assert isinstance(store, SQLStore) and Store is SQLStore
    methods = [n for n, v in vars(StoreAPI).items() if callable(v) and not n.startswith("_")]
    assert len(methods) == 41  # a method added to the protocol gets checked here too
    for name in methods:
        want = inspect.signature(getattr(StoreAPI, name)).parameters
        have = inspect.signature(getattr(SQLStore, name)).parameters
        assert [(p.name, p.kind, p.default) for p in have.values()] == [
            (p.name, p.kind, p.default) for p in want.values()], name
    for name in StoreAPI.__annotations__:
        assert hasattr(store, name), name


LONG_NAME = "n" * (MAX_NAME_LENGTH + 1)


@pytest.mark.parametrize(("override", "says"), [
    ({"name": LONG_NAME},
     f"experiment name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…' is {MAX_NAME_LENGTH + 1} "
     f"characters long; the store allows at most {MAX_NAME_LENGTH}"),
    ({"name": "e\x00xp"},
     "experiment name 'e\\x00xp' contains a NUL character (\\x00), which PostgreSQL cannot "
     "store"),
    ({"study": LONG_NAME[:-1]}, "study name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…' is 256 "
     "characters long; the store allows at most 255"),
    ({"study": "s\x00"}, "study name 's\\x000' contains a NUL character"),
    ({"seed": MAX_SEED + 1}, f"study 's0', trial 0: seed {MAX_SEED + 1} is out of range: the "
     f"store holds integers from {-MAX_SEED - 1} to {MAX_SEED}"),
    ({"first_index": MAX_STEP}, f"study 's0': trial index {MAX_STEP + 1} is out of range"),
])
def test_names_and_numbers_beyond_the_columns_are_refused_up_front(
        store: Store, override: dict[str, object], says: str) -> None:
    with pytest.raises(StoreError) as info:
        _register(store, n=2, **override)  # type: ignore[arg-type]
    assert str(info.value).startswith(says) and "\n" not in str(info.value)
    assert store.experiments() == []  # nothing written, on either backend


def test_names_and_numbers_at_the_limits_are_stored(store: Store) -> None:
    name = "e" * MAX_NAME_LENGTH
    exp_id = _register(store, n=1, studies=1, name=name, study="s" * (MAX_NAME_LENGTH - 1),
                       seed=MAX_SEED, first_index=MAX_STEP)
    [t] = store.trials(exp_id)
    assert (store.require_experiment(name).id, t.index, t.seed) == (exp_id, MAX_STEP, MAX_SEED)
    metric = "m" * MAX_METRIC_LENGTH
    store.add_measurements(t.id, [(MAX_STEP, metric, 1.0), (-MAX_STEP - 1, metric, 2.0)])
    assert store.measurements([t.id]) == [(t.id, -MAX_STEP - 1, metric, 2.0),
                                          (t.id, MAX_STEP, metric, 1.0)]


@pytest.mark.parametrize(("rows", "says"), [
    ([(1, "m" * (MAX_METRIC_LENGTH + 1), 1.0)],
     f"metric name 'mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm…' is {MAX_METRIC_LENGTH + 1} "
     f"characters long; the store allows at most {MAX_METRIC_LENGTH}"),
    ([(1, "lo\x00ss", 1.0)], "metric name 'lo\\x00ss' contains a NUL character"),
    ([(MAX_STEP + 1, "loss", 1.0)], f"step {MAX_STEP + 1} is out of range"),
])
def test_metric_names_and_steps_beyond_the_columns_are_refused_up_front(
        store: Store, rows: list[tuple[int, str, float]], says: str) -> None:
    exp_id = _register(store, n=1, studies=1)
    tid = store.trials(exp_id)[0].id
    with pytest.raises(StoreError) as info:
        store.add_measurements(tid, [(1, "loss", 0.5), *rows])
    assert str(info.value).startswith(says) and "\n" not in str(info.value)
    assert store.measurements([tid]) == []  # the whole batch, valid rows too


def test_a_nul_in_an_error_message_is_recorded_escaped(store: Store) -> None:
    exp_id = _register(store, n=1, studies=1)
    t = store.claim(exp_id, "w")
    assert t is not None
    assert store.finish(t.id, "w", "failed", error="bad byte \x00 here")
    assert store.trial(t.id).error == "bad byte \\x00 here"


def test_stale_heartbeats_of_live_local_workers_are_kept(tmp_path: Path) -> None:
    store = Store.at_root(tmp_path)
    exp_id = store.register("e", "i", {}, [StudySpec("s", 0, {}, "grid", 0, 2)],
                            {"s": [(0, {}, 1), (1, {}, 2)]})
    a, b = store.claim(exp_id, "alive"), store.claim(exp_id, "remote")
    assert a is not None and b is not None
    assert store.release_stale(exp_id, -1, 3, exclude_workers=("alive",)) == [b.id]
    assert store.trial(a.id).status == "running"


def test_the_password_of_an_unreachable_store_is_never_shown() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:1/d")
    assert "s3cret" not in str(info.value)

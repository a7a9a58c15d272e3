"""``StoreAPI.curves``: every curve as two sequences, whole or sampled, filtered by trial,
metric and skipped trials in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest

from tunebook.store.sql import Store

from store_backends import (  # noqa: F401 (fixtures)
    connect_fixture,
    store_fixture,
)
from store_backends import (
    register as register_exp,
)


def _flat(curves: list[tuple[int, str, list[int], list[float]]]) -> list[tuple[int, int, str]]:
    return [(tid, s, m) for tid, m, steps, _ in curves for s in steps]


def test_curves_keep_multiples_the_steps_asked_for_and_the_last_point(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    other = register_exp(store, n=1, name="other", identity="id2")
    ids = [t.id for t in store.trials(exp_id)]
    for tid in ids:
        store.add_measurements(tid, [(s, m, s / 10 + tid) for s in range(1, 24)
                                     for m in ("loss", "acc")])
    store.add_measurements(ids[0], [(15, "loss", math.nan)])
    store.add_measurements(store.trials(other)[0].id, [(5, "loss", 1.0)])  # not this experiment

    sampled = store.curves(exp_id, every=5, keep=(1, 23))
    expected_steps = [1, 5, 10, 15, 20, 23]
    assert _flat(sampled) == [(tid, s, m) for tid in sorted(ids) for m in ("acc", "loss")
                              for s in expected_steps]
    full = {(t, s, m): v for t, s, m, v in store.measurements(experiment_id=exp_id)}
    for tid, m, steps, values in sampled:
        for s, v in zip(steps, values, strict=True):
            if (tid, s, m) == (ids[0], 15, "loss"):
                assert v is math.nan  # the one NaN object, as measurements() gives it
            else:
                assert v == full[(tid, s, m)]
    # Every step kept: the same points as measurements().
    assert _flat(store.curves(exp_id)) == [
        (t, s, m) for t, s, m, _ in store.measurements(experiment_id=exp_id)]
    # Past every multiple: only each curve's last point.
    assert _flat(store.curves(exp_id, every=100)) == [
        (tid, 23, m) for tid in sorted(ids) for m in ("acc", "loss")]
    # Only some metrics, some trials left out (they are read whole elsewhere), or only some.
    assert _flat(store.curves(exp_id, every=10, metrics=["loss"], skip=[ids[0]])) == [
        (ids[1], s, "loss") for s in (10, 20, 23)]
    assert [c[:2] for c in store.curves(exp_id, trial_ids=[ids[1]], metrics=["acc"])] == [
        (ids[1], "acc")]
    assert store.curves(exp_id, trial_ids=[store.trials(other)[0].id]) == []
    with pytest.raises(ValueError, match="every must be a positive"):
        store.curves(exp_id, every=0)


def test_a_trial_that_stopped_early_keeps_its_last_point(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements(a, [(s, "loss", 1.0 / s) for s in range(1, 101)])
    # Diverged at step 37: its last point is where it ended, not a multiple of anything.
    store.add_measurements(b, [(s, "loss", float(s)) for s in range(1, 38)])
    curves = store.curves(exp_id, every=25, keep=(1, 100))
    assert [(tid, list(steps)) for tid, _, steps, _ in curves] == [
        (a, [1, 25, 50, 75, 100]), (b, [1, 25, 37])]
    assert curves[-1][3][-1] == 37.0

"""``StoreAPI.sampled_measurements``: a sample of every curve, selected by the database, on
SQLite and PostgreSQL."""

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


def test_sampled_measurements_keep_multiples_and_the_steps_asked_for(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    other = register_exp(store, n=1, name="other", identity="id2")
    ids = [t.id for t in store.trials(exp_id)]
    for tid in ids:
        store.add_measurements(tid, [(s, m, s / 10 + tid) for s in range(1, 24)
                                     for m in ("loss", "acc")])
    store.add_measurements(ids[0], [(15, "loss", math.nan)])
    store.add_measurements(store.trials(other)[0].id, [(5, "loss", 1.0)])  # not this experiment

    rows = store.sampled_measurements(exp_id, 5, keep=(1, 23))
    expected_steps = [1, 5, 10, 15, 20, 23]
    assert [r[:3] for r in rows] == [(tid, s, m) for tid in sorted(ids) for m in ("acc", "loss")
                                     for s in expected_steps]
    full = {(t, s, m): v for t, s, m, v in store.measurements(experiment_id=exp_id)}
    for t, s, m, v in rows:
        if (t, s, m) == (ids[0], 15, "loss"):
            assert math.isnan(v)
        else:
            assert v == full[(t, s, m)]
    # Every step kept: the same rows as measurements().
    assert [r[:3] for r in store.sampled_measurements(exp_id, 1)] == [
        r[:3] for r in store.measurements(experiment_id=exp_id)]
    # Past every multiple: only each curve's last point.
    assert [r[:3] for r in store.sampled_measurements(exp_id, 100)] == [
        (tid, 23, m) for tid in sorted(ids) for m in ("acc", "loss")]
    # Only some metrics, some trials left out (they are read whole elsewhere).
    assert [r[:3] for r in store.sampled_measurements(exp_id, 10, metrics=["loss"],
                                                      skip=[ids[0]])] == [
        (ids[1], s, "loss") for s in (10, 20, 23)]
    with pytest.raises(ValueError, match="every must be a positive"):
        store.sampled_measurements(exp_id, 0)


def test_a_trial_that_stopped_early_keeps_its_last_point(store: Store) -> None:
    exp_id = register_exp(store, n=2)
    a, b = (t.id for t in store.trials(exp_id))
    store.add_measurements(a, [(s, "loss", 1.0 / s) for s in range(1, 101)])
    # Diverged at step 37: its last point is where it ended, not a multiple of anything.
    store.add_measurements(b, [(s, "loss", float(s)) for s in range(1, 38)])
    rows = store.sampled_measurements(exp_id, 25, keep=(1, 100))
    assert [r[:2] for r in rows] == [(a, s) for s in (1, 25, 50, 75, 100)] + [
        (b, s) for s in (1, 25, 37)]
    assert rows[-1][3] == 37.0

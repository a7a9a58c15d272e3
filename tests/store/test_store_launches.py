"""The launch history (a table added after schema 1): round trip on SQLite and PostgreSQL,
recorded once across a lost reply, created in a store made by an older tunebook."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tunebook.errors import StoreError
from tunebook.store.sql import Store

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    connect_fixture,
    register,
    store_fixture,
)


def test_launches_round_trip_oldest_first(store: Store) -> None:
    assert store.launches() == []
    payload = {"replicates": {"mean": 0.95, "sd": 0.004, "n": 5, "values": [0.95] * 5},
               "comparison": None, "params": {"lr": 0.1, "opt": "adam ünïcode"}}
    first = store.add_launch("exp/s0#1", "first baseline", payload)
    second = store.add_launch("exp", "better by 2 sd", {"comparison": {"verdict": "better"}})
    rows = store.launches()
    assert [r.id for r in rows] == [first, second]
    assert (rows[0].ref, rows[0].note, rows[0].payload) == ("exp/s0#1", "first baseline",
                                                            payload)
    assert rows[1].payload["comparison"]["verdict"] == "better"
    assert rows[0].created_at <= rows[1].created_at


def test_a_launch_across_a_lost_reply_is_recorded_once(store: Store) -> None:
    lost = LostReply(store.engine, "INSERT INTO launches")
    lost.arm()
    store.add_launch("exp", "once", {})
    assert lost.cuts == 1
    assert [r.note for r in store.launches()] == ["once"]


def test_what_a_store_cannot_hold_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="NUL"):
        store.add_launch("exp", "a\x00b", {})
    with pytest.raises(ValueError):
        store.add_launch("exp", "nan", {"mean": math.nan})  # strict JSON only
    assert store.launches() == []


def test_a_store_made_before_launches_gets_the_table(connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s)
    with s.engine.begin() as conn:  # a store made by the previous tunebook
        conn.execute(sa.text("DROP TABLE launches"))
    s.close()
    again = connect()
    assert len(again.trials(exp_id)) == 3
    assert again.launches() == []
    again.add_launch("exp", "after the upgrade", {})
    assert [r.note for r in again.launches()] == ["after the upgrade"]

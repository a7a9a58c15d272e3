"""The retry loop's policy, with the drivers' own exception types and a clock that the sleeps
advance: backoff from 0.1 s doubling to 5 s with jitter, the outage bound, ``on_outage`` before
every pause, what is transient and what is raised at once. (The real outages, on real servers,
are in test_store_outage.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from tunebook.errors import StoreError
from tunebook.store.retry import MAX_RACES, classify, retry


class Clock:
    """Time that passes only when the loop sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def failing(times: int, exc: BaseException, calls: list[bool]) -> Callable[[bool], str]:
    def attempt(retrying: bool) -> str:
        calls.append(retrying)
        if len(calls) <= times:
            raise exc
        return "done"
    return attempt


def test_backoff_doubles_from_a_tenth_of_a_second_to_five_with_jitter() -> None:
    clock, calls, heard = Clock(), list[bool](), list[tuple[float, str]]()
    result = retry(failing(12, sqlite3.OperationalError("database is locked"), calls),
                   where="sqlite:///x.db", outage_seconds=600, sleep=clock.sleep, clock=clock,
                   on_outage=lambda e, c: heard.append((e, c)))
    assert result == "done"
    assert calls == [False] + [True] * 12  # every attempt after a failure knows it is a retry
    for i, pause in enumerate(clock.sleeps):
        full = min(0.1 * 2**i, 5.0)
        assert full / 2 <= pause <= full
    assert len(heard) == 12 and heard[0] == (0.0, "database is locked")
    assert [e for e, _ in heard] == sorted(e for e, _ in heard)


def test_after_the_bound_one_line_names_the_store_the_time_and_the_cause() -> None:
    clock, calls, heard = Clock(), list[bool](), list[tuple[float, str]]()
    with pytest.raises(StoreError) as info:
        retry(failing(10**6, sqlite3.OperationalError("database is locked\nmore"), calls),
              where="sqlite:///x.db", outage_seconds=30, sleep=clock.sleep, clock=clock,
              on_outage=lambda e, c: heard.append((e, c)))
    assert str(info.value) == "store sqlite:///x.db unreachable for 30 s: database is locked"
    assert sum(clock.sleeps) == pytest.approx(30)  # the last pause ends at the bound
    assert max(e for e, _ in heard) < 30


def test_other_errors_go_through_at_once() -> None:
    clock = Clock()
    for exc in (sqlite3.IntegrityError("UNIQUE constraint failed"),
                sqlite3.OperationalError("no such table: trials"),
                StoreError("schema version 2"), ValueError("bad")):
        calls: list[bool] = []
        with pytest.raises(type(exc)):
            retry(failing(1, exc, calls), where="w", outage_seconds=600,
                  sleep=clock.sleep, clock=clock)
        assert calls == [False]
    assert clock.sleeps == []


def test_postgresql_connection_failures_are_transient_configuration_errors_are_not() -> None:
    psycopg = pytest.importorskip("psycopg")
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
        "refused\n\tIs the server running on that host and accepting TCP/IP connections?")
    transient = classify(refused)
    assert transient is not None and transient.kind == "connection"
    assert transient.cause.endswith("failed: Connection refused")
    shutdown = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert classify(shutdown) is not None
    for permanent in ('connection failed: FATAL:  database "x" does not exist',
                      'connection failed: FATAL:  password authentication failed for user "u"'):
        assert classify(psycopg.OperationalError(permanent)) is None
    assert classify(psycopg.errors.UniqueViolation("duplicate key")) is None
    # Nothing was ever reached: a wrong address is said at once, not after ten minutes.
    clock = Clock()
    with pytest.raises(StoreError, match=r"^store pg unreachable: connection failed: .*refused$"):
        retry(failing(10, refused, []), where="pg", outage_seconds=600,
              fail_fast=True, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_creation_races_are_retried_a_few_times_only_and_silently() -> None:
    clock, heard = Clock(), list[tuple[float, str]]()
    race = sqlite3.OperationalError("table experiments already exists")
    calls: list[bool] = []
    assert retry(failing(3, race, calls), where="w", outage_seconds=0,
                 races=lambda e: "already exists" in str(e), sleep=clock.sleep, clock=clock,
                 on_outage=lambda e, c: heard.append((e, c))) == "done"
    assert heard == [] and len(clock.sleeps) == 3
    with pytest.raises(sqlite3.OperationalError):
        retry(failing(10**6, race, []), where="w", outage_seconds=600,
              races=lambda e: "already exists" in str(e), sleep=clock.sleep, clock=clock)
    assert len(clock.sleeps) == 3 + MAX_RACES - 1


def test_the_password_never_shows() -> None:
    clock, heard = Clock(), list[tuple[float, str]]()
    exc = sqlite3.OperationalError("database is locked by s3cret")
    with pytest.raises(StoreError) as info:
        retry(failing(10**6, exc, []), where="pg://u:***@h/d", outage_seconds=1,
              secret="s3cret", sleep=clock.sleep, clock=clock,
              on_outage=lambda e, c: heard.append((e, c)))
    assert "s3cret" not in str(info.value) and all("s3cret" not in c for _, c in heard)

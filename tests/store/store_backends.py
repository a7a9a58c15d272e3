"""What the store's test modules share: the backend fixtures ``connect`` and ``store`` (a real
SQLite file on disk, and a database on the session's real PostgreSQL server; a test module
imports ``connect_fixture`` and ``store_fixture`` to use them), a small registration, and
:class:`LostReply`, which commits a transaction and then loses its reply, as a network cut at
the worst moment does, and :func:`at_once`, which starts calls together in threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tunebook.store.sql import Store, StudySpec, sqlite_url


@pytest.fixture(name="connect", params=["sqlite", "postgresql"])
def connect_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens (another connection to) one fresh database of the backend under test."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "root" / "tunebook.db")
    else:
        url = request.getfixturevalue("postgres").new_database()
    return lambda: Store(url)


@pytest.fixture(name="store")
def store_fixture(connect: Callable[[], Store]) -> Store:
    """A fresh store of the backend under test."""
    return connect()


def register(store: Store, n: int = 3, studies: int = 1, identity: str = "id1",
             name: str = "exp") -> int:
    """Register ``name`` with ``studies`` studies of ``n`` trials each; returns its id."""
    specs = [StudySpec(f"s{k}", k, {"k": k}, "quasi_random", 0, n) for k in range(studies)]
    trials = {f"s{k}": [(i, {"x": i / 10, "k": k}, 100 * k + i) for i in range(n)]
              for k in range(studies)}
    return store.register(name, identity, {"objective": {"metric": "loss", "goal": "minimize"}},
                          specs, trials)


def transient_error(engine: Engine) -> Exception:
    """The driver's own error for a connection lost (PostgreSQL) or a lock (SQLite)."""
    if engine.dialect.name == "sqlite":
        return sqlite3.OperationalError("database is locked")
    import psycopg

    return psycopg.OperationalError("consuming input failed: server closed the connection "
                                    "unexpectedly")


class LostReply:
    """Once armed, the next transaction that runs a statement starting with ``prefix`` is
    committed by the driver, and the caller then sees a transient error instead of the
    commit's reply: it cannot know whether its transaction happened, and retries."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.prefix = prefix.upper()
        self.armed = False
        self.seen = False
        self.cuts = 0
        self.error = transient_error(engine)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)

    def arm(self) -> None:
        """Lose the reply of the next commit of a transaction with a matching statement."""
        self.armed = True

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.armed and statement.lstrip().upper().startswith(self.prefix):
            self.seen = True

    def _commit(self, conn: Any) -> None:
        if self.seen:
            self.armed = self.seen = False
            conn.connection.driver_connection.commit()
            self.cuts += 1
            raise self.error


def at_once(calls: Sequence[Callable[[], Any]]) -> tuple[list[Any], list[BaseException]]:
    """Run ``calls`` in threads released together (a barrier); their results and their
    errors, each in the order they came."""
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results.append(call())
        except BaseException as exc:  # returned to the test, which asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors

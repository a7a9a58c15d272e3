"""The store's one transaction helper (tunebook.store.tx), on real databases: a reply lost
after a commit is verified and not applied twice, an insert is recorded once across retries,
a failed attempt leaves nothing behind, and what is not transient becomes one StoreError line
naming the store (never its password)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from tunebook.errors import StoreError
from tunebook.store.schema import notes_t
from tunebook.store.sql import Store, sqlite_url

from store_backends import (  # noqa: F401 (fixtures)
    LostReply,
    connect_fixture,
    register,
    store_fixture,
    transient_error,
)


def _notes(store: Store) -> list[str]:
    return store._read(lambda conn: [r[0] for r in conn.execute(
        sa.select(notes_t.c.text).order_by(notes_t.c.id))])


def _note_values(exp_id: int, text: str) -> dict[str, Any]:
    return {"experiment_id": exp_id, "study": None, "created_at": time.time(), "text": text}


def test_a_lost_reply_after_a_commit_is_verified_and_not_applied_twice(store: Store) -> None:
    exp_id = register(store)
    lost = LostReply(store.engine, "INSERT INTO notes")
    calls: list[str] = []
    values = _note_values(exp_id, "once")

    def work(conn: Connection) -> str:
        calls.append("work")
        conn.execute(sa.insert(notes_t).values(**values))
        return "inserted"

    def verify(conn: Connection) -> str | None:
        calls.append("verify")
        found = conn.execute(sa.select(notes_t.c.id).where(notes_t.c.text == "once")).first()
        return None if found is None else "found"

    lost.arm()
    assert store._write(work, verify=verify) == "found"
    assert lost.cuts == 1
    assert calls == ["work", "verify"]  # verify only on the retry, and the work not redone
    assert _notes(store) == ["once"]


def test_a_retry_that_finds_nothing_does_the_work(store: Store) -> None:
    # The first attempt failed before it committed: verify must not mistake that for success.
    exp_id = register(store)
    failures = [transient_error(store.engine)]

    @event.listens_for(store.engine, "before_cursor_execute")
    def fail_once(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO notes") and failures:
            raise failures.pop()

    verified: list[str | None] = []

    def verify(conn: Connection) -> str | None:
        found = conn.execute(sa.select(notes_t.c.text)).scalar()
        verified.append(found)
        return found

    values = _note_values(exp_id, "after a failure")
    result = store._write(
        lambda conn: conn.execute(sa.insert(notes_t).values(**values)) and "inserted",
        verify=verify)
    assert (result, verified) == ("inserted", [None])
    assert _notes(store) == ["after a failure"]


def test_insert_once_records_once_and_returns_the_committed_rows_id(store: Store) -> None:
    exp_id = register(store)
    lost = LostReply(store.engine, "INSERT INTO notes")
    first = store._insert_once(notes_t, _note_values(exp_id, "a"), ("experiment_id", "text"))
    lost.arm()
    second = store._insert_once(notes_t, _note_values(exp_id, "b"),
                                ("experiment_id", "created_at", "text"))
    assert lost.cuts == 1
    ids = store._read(lambda conn: [tuple(r) for r in conn.execute(
        sa.select(notes_t.c.id, notes_t.c.text).order_by(notes_t.c.id))])
    assert ids == [(first, "a"), (second, "b")]


def test_a_failing_transaction_leaves_nothing_behind(store: Store) -> None:
    exp_id = register(store)

    def half_then_fail(conn: Connection) -> None:
        conn.execute(sa.insert(notes_t).values(**_note_values(exp_id, "half")))
        raise ValueError("the caller's own error")

    with pytest.raises(ValueError, match="the caller's own error"):  # not retried, not wrapped
        store._write(half_then_fail)
    assert _notes(store) == []


def test_an_integrity_error_is_one_line_naming_the_store(store: Store) -> None:
    register(store)
    dup = {"name": "exp", "identity": "x", "config": "{}", "created_at": 0.0, "updated_at": 0.0}
    from tunebook.store.schema import experiments_t

    with pytest.raises(StoreError) as info:
        store._write(lambda conn: conn.execute(sa.insert(experiments_t).values(**dup)))
    message = str(info.value)
    assert message.startswith(f"store {store.display_url}: ") and "\n" not in message
    assert "unique" in message.lower() or "duplicate" in message.lower()
    assert isinstance(info.value.__cause__, sa.exc.IntegrityError)


def test_the_password_is_masked_in_a_mapped_error(postgres: Any) -> None:
    # The test server trusts every local connection: the password is only there to be hidden.
    url = postgres.new_database().replace("tunebook@", "tunebook:s3cret@")
    store = Store(url)
    with pytest.raises(StoreError) as info:  # PostgreSQL quotes the bad value back
        store._read(lambda conn: conn.execute(sa.text("SELECT CAST(:v AS integer)"),
                                              {"v": "s3cret"}).scalar())
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    assert str(info.value).startswith(f"store {store.display_url}: ")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    path = tmp_path / "tunebook.db"
    s = Store(sqlite_url(path), busy_timeout_seconds=0.1, outage_seconds=0.5)
    yield s, path
    s.close()


def test_a_lock_held_past_the_bound_is_a_store_error_and_nothing_is_written(
        sqlite_store: tuple[Store, Path]) -> None:
    store, path = sqlite_store
    exp_id = register(store)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as info:
            store._insert_once(notes_t, _note_values(exp_id, "never"), ("text",))
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert str(info.value).startswith(f"store {store.display_url} unreachable for ")
    assert str(info.value).endswith(" s: database is locked")
    assert _notes(store) == []
    store._insert_once(notes_t, _note_values(exp_id, "later"), ("text",))  # works again
    assert _notes(store) == ["later"]


def test_outage_settings_changed_while_open_take_effect(
        sqlite_store: tuple[Store, Path]) -> None:
    # The runner shortens the bound and a progress display sets on_outage on an open store.
    store, _ = sqlite_store
    exp_id = register(store)
    heard: list[tuple[float, str]] = []
    store.on_outage = lambda elapsed, cause: heard.append((elapsed, cause))
    lost = LostReply(store.engine, "INSERT INTO notes")
    lost.arm()
    store._insert_once(notes_t, _note_values(exp_id, "x"), ("text",))
    assert heard == [(0.0, "database is locked")]
    store.outage_seconds = 0
    lost.arm()
    with pytest.raises(StoreError, match="unreachable for 0 s"):
        store._write(lambda conn: conn.execute(sa.insert(notes_t).values(
            **_note_values(exp_id, "y"))))
    assert _notes(store) == ["x", "y"]  # committed, though its caller was told otherwise


def test_reads_are_retried_too(store: Store) -> None:
    register(store)
    lost = LostReply(store.engine, "SELECT")
    heard: list[str] = []
    store.on_outage = lambda _e, cause: heard.append(cause)
    lost.arm()
    assert [e.name for e in store.experiments()] == ["exp"]
    assert lost.cuts == 1 and len(heard) == 1


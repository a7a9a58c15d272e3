"""The store's tables and how a database becomes a store (tunebook.store.schema), on real
databases: every table and the version on a new store, a store half created or missing a newer
table completed on opening, other databases and versions refused before anything is created,
and each backend's connection settings."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tunebook.errors import StoreError
from tunebook.store.schema import (
    SCHEMA_VERSION,
    create_engine,
    ensure_schema,
    libpq_args,
    metadata,
    schema_race,
    sqlite_url,
)
from tunebook.store.sql import Store

from store_backends import connect_fixture, register, store_fixture  # noqa: F401 (fixtures)


def _tables(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def _version(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(
            "SELECT value FROM tunebook_meta WHERE key = 'schema_version'"))]


def test_a_new_store_has_every_table_and_its_version(store: Store) -> None:
    assert _tables(store) == set(metadata.tables)
    assert _version(store) == [str(SCHEMA_VERSION)]


def test_a_table_added_later_is_created_in_an_existing_store(
        connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s)
    with s.engine.begin() as conn:  # a store made before recommendations existed
        conn.execute(sa.text("DROP TABLE recommendations"))
    s.close()
    again = connect()
    assert _tables(again) == set(metadata.tables)
    assert len(again.trials(exp_id)) == 3 and _version(again) == [str(SCHEMA_VERSION)]
    again.add_recommendation("exp", "sweep", {})


def test_a_store_whose_creation_stopped_after_the_marker_is_completed(
        connect: Callable[[], Store]) -> None:
    # The marker table is created first so that a process opening the store meanwhile does
    # not take it for a foreign database; a creation cut short right after it is finished.
    s = connect()
    with s.engine.begin() as conn:
        for name in reversed(metadata.sorted_tables):
            if name.name != "tunebook_meta":
                conn.execute(sa.text(f"DROP TABLE {name.name}"))
        conn.execute(sa.text("DELETE FROM tunebook_meta"))
    s.close()
    again = connect()
    assert _tables(again) == set(metadata.tables)
    assert _version(again) == [str(SCHEMA_VERSION)]
    assert again.experiments() == []


def test_schema_is_versioned_and_reopens(connect: Callable[[], Store]) -> None:
    s = connect()
    exp_id = register(s)
    s.close()
    again = connect()
    assert again.require_experiment("exp").id == exp_id
    with again.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tunebook_meta SET value='999' WHERE key='schema_version'"))
    again.close()
    with pytest.raises(StoreError, match=f"schema version 999.*versions 1 to {SCHEMA_VERSION}"):
        connect()


def _reopened(connect: Callable[[], Store], *statements: str) -> tuple[Store, str]:
    """Change a new store with ``statements``; the StoreError of opening it again."""
    s = connect()
    with s.engine.begin() as conn:
        for sql in statements:
            conn.execute(sa.text(sql))
    s.close()
    with pytest.raises(StoreError) as info:
        connect()
    return s, str(info.value)


def test_another_version_is_refused_before_anything_is_created(
        connect: Callable[[], Store]) -> None:
    newer = SCHEMA_VERSION + 1
    s, message = _reopened(
        connect, f"UPDATE tunebook_meta SET value = '{newer}' WHERE key = 'schema_version'",
        "DROP TABLE recommendations")
    assert message.endswith(
        f"has schema version {newer}, this tunebook understands versions 1 to {SCHEMA_VERSION}"
        ": a newer tunebook wrote it, upgrade this one")
    assert "recommendations" not in _tables(s)  # a newer tunebook's store is left as it is


def test_a_database_with_other_tables_is_not_a_store(connect: Callable[[], Store]) -> None:
    _, message = _reopened(connect, "CREATE TABLE customers (id INTEGER PRIMARY KEY)",
                           "DROP TABLE tunebook_meta")
    assert "is another application's " in message
    # The first five names in order: what the message lists whatever tables later versions add.
    names = sorted({"customers", *metadata.tables} - {"tunebook_meta"})
    assert f"database (tables: {', '.join(names[:5])}, …); point " in message


def test_ensure_schema_refuses_another_applications_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    engine = sa.create_engine(sqlite_url(path))
    try:
        with pytest.raises(StoreError) as info, engine.begin() as conn:
            ensure_schema(conn, "sqlite:///app.db")
        assert str(info.value).startswith(
            "store sqlite:///app.db is another application's database (tables: invoices)")
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["invoices"]  # nothing created
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_the_busy_timeout(tmp_path: Path) -> None:
    store = Store(sqlite_url(tmp_path / "tunebook.db"), busy_timeout_seconds=2.5)
    with store.engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                   for p in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 2500,
                       "synchronous": 1}
    # Foreign keys are enforced: a trial of a study that does not exist is refused.
    with pytest.raises(StoreError, match="FOREIGN KEY constraint failed"):
        store._write(lambda conn: conn.execute(sa.text(
            "INSERT INTO trials (study_id, idx, params, seed, status, attempts, created_at, "
            "run_seconds) VALUES (42, 0, '{}', 0, 'pending', 0, 0, 0)")))
    store.close()


def test_libpq_gets_keepalives_unless_the_url_sets_them() -> None:
    url = sa.engine.make_url("postgresql+psycopg://u@h/d?connect_timeout=3&keepalives_idle=5")
    assert libpq_args(url) == {"keepalives": 1, "keepalives_interval": 10,
                               "keepalives_count": 3}
    assert libpq_args(sa.engine.make_url("sqlite:///x.db")) == {}
    assert libpq_args(sa.engine.make_url("postgresql+pg8000://u@h/d")) == {}


def test_postgresql_engines_test_connections_and_use_the_keepalives(postgres: Any) -> None:
    store = Store(postgres.new_database())
    assert store.engine.pool._pre_ping  # a server restart leaves dead pooled connections
    with store.engine.connect() as conn:
        params = conn.connection.driver_connection.info.get_parameters()
    store.close()
    assert {k: params.get(k) for k in ("keepalives", "keepalives_idle", "connect_timeout")} == {
        "keepalives": "1", "keepalives_idle": "30", "connect_timeout": "10"}


def test_an_engine_for_a_missing_driver_is_a_store_error() -> None:
    with pytest.raises(StoreError) as info:
        create_engine("postgresql+nosuchdriver://u:pw@h/d", "postgresql+nosuchdriver://u@h/d", 1)
    assert str(info.value).startswith("cannot open store 'postgresql+nosuchdriver://u@h/d': ")
    assert "pw" not in str(info.value)


def test_only_creation_races_count_as_races(tmp_path: Path) -> None:
    engine = sa.create_engine(sqlite_url(tmp_path / "x.db"))
    errors: list[BaseException] = []
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        for sql in ("CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1)",
                    "SELECT * FROM missing"):
            try:
                conn.exec_driver_sql(sql)
            except sa.exc.DBAPIError as exc:
                errors.append(exc)
    engine.dispose()
    assert [schema_race(e) for e in errors] == [True, True, False]
    assert not schema_race(ValueError("already exists"))

"""Files and databases that are not tunebook stores are refused, one line, and left untouched:
another application's SQLite database, random bytes, a truncated tunebook.db, and a PostgreSQL
database holding other tables; through the Store and through the real ``tunebook`` command."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunebook.errors import StoreError
from tunebook.store.sql import Store, StudySpec, sqlite_url

from conftest import run_cli


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tunebook.db with an experiment, 30 trials and their measurements (about 100 pages)."""
    path = tmp_path_factory.mktemp("real") / "tunebook.db"
    store = Store(sqlite_url(path))
    exp_id = store.register("exp", "id1", {}, [StudySpec("s", 0, {}, "quasi_random", 0, 30)],
                            {"s": [(i, {"x": i / 30}, i) for i in range(30)]})
    for t in store.trials(exp_id):
        store.add_measurements(t.id, [(step, "loss", 1 / step) for step in range(1, 200)])
    store.close()  # the last connection folds the WAL back into the file
    assert not path.with_name("tunebook.db-wal").exists()
    return path


def _foreign(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    return "is another application's SQLite database (tables: customers, orders); point " \
           "--root/--store elsewhere"


def _corrupt(path: Path) -> str:
    path.write_bytes(bytes(range(256)) * 40)
    return "is not a tunebook store: not an SQLite database"


def _truncated(path: Path, real: Path) -> str:
    data = real.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return "is not a tunebook store: corrupt or truncated (database disk image is malformed)"


@pytest.fixture(params=["foreign", "corrupt", "truncated"])
def bad_file(request: pytest.FixtureRequest, tmp_path: Path, real_store: Path
             ) -> tuple[Path, str]:
    """A file that is not a tunebook store, and what the refusal says about it."""
    path = tmp_path / "data" / "app.db"
    path.parent.mkdir()
    makers: dict[str, Callable[[], str]] = {
        "foreign": lambda: _foreign(path), "corrupt": lambda: _corrupt(path),
        "truncated": lambda: _truncated(path, real_store)}
    return path, makers[request.param]()


@pytest.mark.parametrize("create", [True, False])
def test_a_file_that_is_not_a_store_is_refused_untouched(bad_file: tuple[Path, str],
                                                         create: bool) -> None:
    path, says = bad_file
    before = sha256(path)
    with pytest.raises(StoreError) as info:
        Store(sqlite_url(path), create=create)
    assert str(info.value) == f"{path} {says}"
    assert sha256(path) == before
    assert not path.with_name("app.db-journal").exists()


COMMANDS = [["status"], ["best", "exp"], ["trials", "exp"], ["report", "exp"],
            ["findings", "exp"], ["note", "exp", "a note"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_the_cli_refuses_a_file_that_is_not_a_store(bad_file: tuple[Path, str],
                                                    command: list[str], tmp_path: Path) -> None:
    path, says = bad_file
    before = sha256(path)
    root = tmp_path / "root"
    proc = run_cli(*command, "--store", sqlite_url(path), "--root", str(root))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"tunebook: error: {path} {says}"]
    assert proc.stdout == ""
    assert sha256(path) == before
    assert not root.exists()


def test_an_empty_file_becomes_a_store_but_is_not_read_as_one(tmp_path: Path) -> None:
    path = tmp_path / "tunebook.db"
    path.touch()
    with pytest.raises(StoreError, match=r"no tunebook store at .*tunebook.db \(the file is empty"):
        Store(sqlite_url(path), create=False)
    assert path.stat().st_size == 0
    Store(sqlite_url(path)).close()
    assert Store(sqlite_url(path), create=False).experiments() == []


def test_a_real_store_copied_whole_still_opens(real_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copyfile(real_store, copy)
    store = Store(sqlite_url(copy), create=False)
    assert len(store.measurements(experiment_id=store.require_experiment("exp").id)) == 30 * 199


def _tables(url: str) -> list[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_a_postgresql_database_with_other_tables_is_refused_untouched(postgres: Any) -> None:
    import sqlalchemy as sa

    url = postgres.new_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id serial PRIMARY KEY, name text)"))
        conn.execute(sa.text("CREATE TABLE orders (id serial PRIMARY KEY)"))
    engine.dispose()
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store(url, create=create)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"store {url} is another application's database "
                                  "(tables: customers, orders)")
    proc = run_cli("status", "--store", url)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"tunebook: error: {message}"]
    assert _tables(url) == ["customers", "orders"]  # nothing created

"""What the store refuses before writing: values its columns cannot hold, files that are not
tunebook stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tunebook.errors import StoreError
from tunebook.store.api import StudySpec
from tunebook.store.checks import (
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    check_int,
    check_registration,
    check_sqlite_file,
    check_sqlite_path,
    check_text,
    foreign_database,
)


def test_text_with_nul_or_too_long_is_refused_and_shown_cut() -> None:
    check_text("name", "x" * MAX_NAME_LENGTH, MAX_NAME_LENGTH)
    check_text("note", "y" * 10_000, None)
    with pytest.raises(StoreError, match=r"contains a NUL character"):
        check_text("name", "a\x00b", None)
    with pytest.raises(StoreError, match=r"is 256 characters long; the store allows at most 255"
                       ) as info:
        check_text("name", "x" * 256, MAX_NAME_LENGTH)
    assert "x" * 41 not in str(info.value)  # the value is shown cut


def test_integers_must_fit_a_signed_column() -> None:
    check_int("seed", MAX_SEED, MAX_SEED)
    check_int("seed", -MAX_SEED - 1, MAX_SEED)
    with pytest.raises(StoreError, match=r"seed 9223372036854775808 is out of range"):
        check_int("seed", MAX_SEED + 1, MAX_SEED)
    with pytest.raises(StoreError, match=r"from -2147483648 to 2147483647"):
        check_int("step", -MAX_STEP - 2, MAX_STEP)


def test_a_registration_names_the_study_and_trial_at_fault() -> None:
    ok = [StudySpec("s", 0, {}, "grid", 0, 2)]
    check_registration("e", ok, {"s": [(0, {}, 1), (1, {}, 2)]})
    with pytest.raises(StoreError, match=r"study 's': budget"):
        check_registration("e", [StudySpec("s", 0, {}, "grid", 0, MAX_STEP + 1)], {})
    with pytest.raises(StoreError, match=r"study 's', trial 1: seed"):
        check_registration("e", ok, {"s": [(0, {}, 1), (1, {}, MAX_SEED + 1)]})
    with pytest.raises(StoreError, match=r"experiment name"):
        check_registration("e\x00", ok, {})


def test_a_foreign_database_lists_a_few_of_its_tables() -> None:
    err = foreign_database("db.sqlite", ["g", "f", "e", "d", "c", "b", "a"], "SQLite database",
                           "--root")
    assert str(err) == ("db.sqlite is another application's SQLite database (tables: a, b, c, "
                        "d, e, …); point --root elsewhere")


def _sqlite(path: Path, *tables: str) -> Path:
    conn = sqlite3.connect(path)
    for t in tables:
        conn.execute(f"CREATE TABLE {t} (x INTEGER)")
    conn.commit()
    conn.close()
    return path


def test_only_sqlite_files_with_the_marker_table_are_stores(tmp_path: Path) -> None:
    check_sqlite_file(_sqlite(tmp_path / "ok.db", "meta", "trials"), 1.0, "meta", ["trials"])
    with pytest.raises(StoreError, match=r"another application's SQLite database"):
        check_sqlite_file(_sqlite(tmp_path / "other.db", "customers"), 1.0, "meta", [])
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database at all")
    with pytest.raises(StoreError, match=r"not an SQLite database"):
        check_sqlite_file(text, 1.0, "meta", [])


def test_a_missing_store_is_created_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "tunebook.db"
    with pytest.raises(StoreError, match=r"no tunebook store at"):
        check_sqlite_path(path, False, 1.0, "meta", [])
    check_sqlite_path(path, True, 1.0, "meta", [])
    assert path.parent.is_dir() and not path.exists()
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"\(the file is empty\)"):
        check_sqlite_path(path, False, 1.0, "meta", [])


def test_opening_a_store_never_opens_its_file_outside_sqlite(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # Closing any descriptor of a database file drops every POSIX lock the process holds on
    # it, a store already open in this process included: the checks must leave the file to
    # SQLite (which shares one descriptor per file between its connections).
    import builtins

    from tunebook.store.sql import Store

    first = Store.at_root(tmp_path)
    first.experiments()
    real_open = builtins.open
    db = (tmp_path / "tunebook.db").resolve()

    def guarded(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, str | Path) and Path(file).resolve() == db:
            raise AssertionError(f"open({file!r}) of the database file")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded)
    second = Store.at_root(tmp_path, create=False)
    second.experiments()
    second.close()
    assert first.experiments() == []
    first.close()

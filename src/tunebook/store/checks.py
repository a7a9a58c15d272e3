"""What the store refuses before it writes anything: values its columns cannot hold on every
backend, and SQLite files that are not tunebook stores.

SQLite accepts text of any length, NUL characters and 64-bit integers everywhere; PostgreSQL
refuses them mid-run, after part of the work is done. Checked up front, the same input fails
the same way, with one line, on both. :mod:`tunebook.store.sql` re-exports the limits.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tunebook.core.limits import (
    MAX_METRIC_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    MAX_WORKER_LENGTH,
)
from tunebook.errors import StoreError
from tunebook.store.api import NewTrial, StudySpec
from tunebook.store.retry import classify

__all__ = ["MAX_METRIC_LENGTH", "MAX_NAME_LENGTH", "MAX_SEED", "MAX_STEP", "MAX_WORKER_LENGTH",
           "check_int", "check_registration", "check_sqlite_file", "check_sqlite_path",
           "check_text", "foreign_database"]




def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def check_text(what: str, text: str, limit: int | None) -> None:
    """Refuse text the columns cannot hold on every backend (StoreError, one line)."""
    if "\x00" in text:
        raise StoreError(f"{what} {_shown(text)} contains a NUL character (\\x00), which "
                         "PostgreSQL cannot store")
    if limit is not None and len(text) > limit:
        raise StoreError(f"{what} {_shown(text)} is {len(text)} characters long; the store "
                         f"allows at most {limit}")


def check_int(what: str, value: int, limit: int) -> None:
    """Refuse integers outside a signed column's range, ``-limit - 1 .. limit`` (StoreError)."""
    if not -limit - 1 <= value <= limit:
        raise StoreError(f"{what} {value} is out of range: the store holds integers from "
                         f"{-limit - 1} to {limit}")


def check_registration(name: str, studies: Sequence[StudySpec],
                       trials: Mapping[str, Sequence[NewTrial]]) -> None:
    """Refuse an experiment whose names, seeds, budgets or trial indices the columns cannot
    hold (StoreError naming the study and trial)."""
    check_text("experiment name", name, MAX_NAME_LENGTH)
    for st in studies:
        check_text("study name", st.name, MAX_NAME_LENGTH)
        check_int(f"study {st.name!r}: seed", int(st.seed), MAX_SEED)
        check_int(f"study {st.name!r}: budget", int(st.budget), MAX_STEP)
    for study, rows in trials.items():
        for index, _params, seed in rows:
            check_int(f"study {study!r}: trial index", int(index), MAX_STEP)
            check_int(f"study {study!r}, trial {index}: seed", int(seed), MAX_SEED)


def foreign_database(where: str, tables: Iterable[str], kind: str, hint: str) -> StoreError:
    """The refusal of a database that holds tables but no tunebook marker table."""
    names = sorted(tables)
    shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
    return StoreError(f"{where} is another application's {kind} (tables: {shown}); "
                      f"point {hint} elsewhere")


def check_sqlite_file(path: Path, busy_timeout_seconds: float, marker: str,
                      tables: Iterable[str]) -> None:
    """Refuse, before anything writes to it, a file that is not a tunebook store.

    A file with tables but not ``marker`` belongs to another application. Read-only
    (``mode=ro``): not even the switch to WAL may touch it. A truncated or corrupt store fails
    here rather than hours into a run (SQLite notices a file shorter than its header says; the
    root page of each of the store's ``tables`` is read too). "Locked" goes through, for the
    caller to retry.
    """
    # Never open() the file itself: closing any descriptor of a database file drops every POSIX
    # lock this process holds on it, including those of a store already open in this process
    # (SQLite's "How To Corrupt An SQLite Database File", 2.2). SQLite reads the header itself
    # and answers SQLITE_NOTADB for a file that is not a database.
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read store {path}: Permission denied")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                               timeout=busy_timeout_seconds)
        try:
            found = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite^_%' ESCAPE '^'")}
            if found and marker not in found:
                raise foreign_database(str(path), found, "SQLite database", "--root/--store")
            for name in sorted(found & set(tables)):
                conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if classify(exc) is not None:
            raise
        reason = str(exc)
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise StoreError(f"{path} is not a tunebook store: not an SQLite database") from None
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN":
            raise StoreError(f"cannot open store {path}: {reason}") from None
        if "malformed" in reason:
            reason = f"corrupt or truncated ({reason})"
        raise StoreError(f"{path} is not a tunebook store: {reason}") from None


def check_sqlite_path(path: Path, create: bool, busy_timeout_seconds: float, marker: str,
                      tables: Iterable[str]) -> None:
    """Where a SQLite store is to be opened: an existing file must be a tunebook store
    (:func:`check_sqlite_file`), a missing one is refused unless ``create`` (its folder is
    then made)."""
    if path.exists() and path.stat().st_size > 0:
        check_sqlite_file(path, busy_timeout_seconds, marker, tables)
    elif not create:
        empty = " (the file is empty)" if path.exists() else ""
        raise StoreError(f"no tunebook store at {path}{empty} (run an experiment first, "
                         "or point --root/--store at an existing store)")
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create a store at {path}: "
                             f"{exc.strerror or exc}") from None

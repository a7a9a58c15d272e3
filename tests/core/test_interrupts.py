"""Stops delivered by signal handlers wait for the end of a store transaction."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tunebook.core.interrupts import deliver, protected
from tunebook.store.sql import Store, StudySpec


class Stopped(BaseException):
    pass


def test_a_stop_inside_a_protected_region_is_raised_at_its_end() -> None:
    done = []
    with pytest.raises(Stopped), protected():
        with protected():  # re-entrant: only the outermost end raises
            deliver(Stopped())
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    with pytest.raises(Stopped):
        deliver(Stopped())  # outside: at once


def test_sigterm_during_a_store_write_leaves_no_lock_behind(tmp_path: Path) -> None:
    store = Store.at_root(tmp_path)
    exp_id = store.register("e", "id", {"objective": {"metric": "m", "goal": "minimize"}},
                            [StudySpec("s", 0, {}, "quasi_random", 0, 1)],
                            {"s": [(0, {}, 1)]})
    row = store.claim(exp_id, "w")
    assert row is not None

    def handler(signum: int, frame: object) -> None:
        deliver(Stopped())

    from sqlalchemy import event

    sent = []

    def signal_mid_transaction(*args: object) -> None:
        if not sent:  # the signal arrives while the bulk insert is under way
            sent.append(True)
            os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, handler)
    event.listen(store.engine, "before_cursor_execute", signal_mid_transaction)
    rows = [(step, f"m{k}", 1.0) for step in range(20_000) for k in range(5)]
    try:
        with pytest.raises(Stopped):
            store.add_measurements(row.id, rows)
    finally:
        event.remove(store.engine, "before_cursor_execute", signal_mid_transaction)
        signal.signal(signal.SIGUSR1, previous)
    assert sent
    # The transaction ran to its end and released the write lock: another connection writes
    # at once (a half-done one would hold it and this would wait, then fail).
    other = sqlite3.connect(tmp_path / "tunebook.db", timeout=0.5)
    other.execute("INSERT INTO notes (experiment_id, created_at, text) VALUES (?, 0, 'x')",
                  (exp_id,))
    other.commit()
    other.close()
    assert len(store.measurements([row.id])) == 100_000

"""Writing measurements fast: the body of :meth:`tunebook.store.sql.Store.add_measurements_many`.

Every path is an upsert of ``(trial_id, metric, step)``: a repeated key replaces the old value
(the last one wins within a batch too), so a batch redone after a lost reply changes nothing.
The metric names of each trial go to ``trial_metrics`` in the same transaction.

- SQLite: one ``executemany`` of a driver-level ``INSERT ... ON CONFLICT DO UPDATE``.
- PostgreSQL, large batches: a binary ``COPY`` straight into ``measurements`` inside a
  savepoint (the common case: new steps of trials that are running); should a key already be
  there (a redo, a resumed trial reporting a step again), the savepoint is rolled back and the
  batch is copied into a temporary table and merged with ``INSERT ... SELECT ... ON CONFLICT
  DO UPDATE``.
- PostgreSQL, small batches (a worker's flush): the ``executemany`` upsert, which costs less
  than a COPY's round trips for a few rows.

Nothing here retries or commits: the store runs these inside its transactions
(:mod:`tunebook.store.tx`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tunebook.store.checks import MAX_METRIC_LENGTH, MAX_STEP, check_int, check_text

__all__ = ["COPY_MIN_ROWS", "Batch", "prepare", "trim_trial_metrics", "write"]

# From this many rows on, PostgreSQL gets a COPY: below it, the executemany upsert is as fast.
COPY_MIN_ROWS = 2000

Batch = tuple[list[tuple[int, str, int, float | None]], list[tuple[int, str]]]
"""Rows ``(trial_id, metric, step, value)`` (None for NaN) and the ``(trial_id, metric)``
pairs they hold."""

_UPSERT = ("INSERT INTO measurements (trial_id, metric, step, value) VALUES ({m}, {m}, {m}, {m}) "
           "ON CONFLICT (trial_id, metric, step) DO UPDATE SET value = excluded.value")
_NAMES = ("INSERT INTO trial_metrics (trial_id, metric) VALUES ({m}, {m}) "
          "ON CONFLICT (trial_id, metric) DO NOTHING")
_STAGE = "tunebook_ingest"
# COPY's binary format: half the client's work of the text one (no number printed, none parsed
# by the server), 40% more points per CPU second in all (bench/bench_ingest.py).
_TYPES = ["int4", "varchar", "int4", "float8"]
_MERGE = (
    # DISTINCT ON keeps the last row of each key (the batch's order is ``n``): the same rule
    # as the executemany upsert, and ON CONFLICT must not meet one key twice.
    "INSERT INTO measurements (trial_id, metric, step, value) "
    f"SELECT DISTINCT ON (trial_id, metric, step) trial_id, metric, step, value FROM {_STAGE} "
    "ORDER BY trial_id, metric, step, n DESC "
    "ON CONFLICT (trial_id, metric, step) DO UPDATE SET value = excluded.value")


def prepare(batches: Mapping[int, Sequence[tuple[int, str, float]]]) -> Batch:
    """Check and convert ``{trial_id: [(step, metric, value), ...]}`` before anything is written.

    Metric names longer than :data:`MAX_METRIC_LENGTH` or holding NUL, steps beyond
    :data:`MAX_STEP` and values that are not numbers refuse the whole batch (StoreError,
    TypeError or ValueError).
    """
    data: list[tuple[int, str, int, float | None]] = []
    pairs: list[tuple[int, str]] = []
    for trial_id, rows in batches.items():
        tid = int(trial_id)
        # NaN (f != f) is stored as NULL: SQLite cannot hold NaN in a REAL column.
        part = [(tid, m, int(s), None if (f := float(v)) != f else f) for s, m, v in rows]
        if not part:
            continue
        data += part
        pairs += [(tid, m) for m in {r[1] for r in part}]
    for metric in {m for _, m in pairs}:
        check_text("metric name", metric, MAX_METRIC_LENGTH)
    if data:
        # Every step lies between the smallest and the largest: two checks cover them all.
        steps = [r[2] for r in data]
        check_int("step", min(steps), MAX_STEP)
        check_int("step", max(steps), MAX_STEP)
    return data, pairs


def write(conn: Connection, batch: Batch) -> None:
    """Upsert a prepared batch in the transaction of ``conn``."""
    data, pairs = batch
    if not data:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    # The names first: on PostgreSQL this also opens the transaction that the COPY's
    # savepoint then lives in. exec_driver_sql, not the raw DBAPI cursor: a dropped connection
    # is then recognised (and the pooled connection discarded) like anywhere else.
    conn.exec_driver_sql(_NAMES.format(m=mark), pairs)
    if conn.dialect.name == "postgresql" and len(data) >= COPY_MIN_ROWS and _psycopg(conn):
        _copy(conn, data)
    else:
        conn.exec_driver_sql(_UPSERT.format(m=mark), data)


def trim_trial_metrics(conn: Connection, trial_id: int) -> None:
    """Forget the metric names a trial no longer has a measurement of (after a truncation)."""
    conn.execute(sa.text(
        "DELETE FROM trial_metrics WHERE trial_id = :t AND NOT EXISTS ("
        "SELECT 1 FROM measurements WHERE measurements.trial_id = trial_metrics.trial_id "
        "AND measurements.metric = trial_metrics.metric)"), {"t": trial_id})


def _psycopg(conn: Connection) -> bool:
    return conn.dialect.driver == "psycopg"


def _copy(conn: Connection, data: list[tuple[int, str, int, float | None]]) -> None:
    """COPY ``data`` into measurements (see the module's docstring), raising SQLAlchemy's
    errors so that the store's retry recognises a dropped connection as it does elsewhere."""
    import psycopg
    from psycopg import errors

    raw: Any = conn.connection.driver_connection
    try:
        with raw.cursor() as cur:
            try:
                with raw.transaction(), cur.copy(
                        "COPY measurements (trial_id, metric, step, value) FROM STDIN "
                        "(FORMAT BINARY)") as copy:
                    copy.set_types(_TYPES)
                    for row in data:
                        copy.write_row(row)
                return
            except errors.UniqueViolation:
                pass  # the savepoint is rolled back: merge instead
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (n bigint, trial_id integer, "
                        "metric varchar(128), step integer, value double precision) "
                        "ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY {_STAGE} (n, trial_id, metric, step, value) FROM STDIN "
                          "(FORMAT BINARY)") as copy:
                copy.set_types(["int8", *_TYPES])
                for n, row in enumerate(data):
                    copy.write_row((n, *row))
            cur.execute(_MERGE)
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate()
        raise sa.exc.DBAPIError.instance("COPY measurements", None, exc, psycopg.Error) from exc

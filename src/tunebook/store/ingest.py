"""Writing, cutting and reading curves: the SQL behind the store's measurements
(:class:`tunebook.store.measurements.Measurements`), on the chunk layout of
:mod:`tunebook.store.chunks`.

A write is an upsert of ``(trial, metric, step)``: a repeated step replaces the old value (the
last one wins within a batch too), so a batch redone after a lost reply changes nothing. Per
curve of the batch, one of three things happens:

- the new steps all come after the curve's last chunk: they fill that chunk up to
  :data:`~tunebook.store.chunks.CHUNK_POINTS` points (an UPDATE of its blobs), then new chunks
  (the common case: a running trial's next evaluations, a bulk import of new trials);
- they reach back into chunks already written (a redo, a resumed trial reporting a step
  again): those chunks are read, merged with the new points and written again;
- the curve is new: new chunks.

The trials written are held first (:func:`lock_trials`; a worker's compare-and-swap on its trial
already does), so two writers of one curve take turns. Nothing here retries or
commits: the store runs these inside its transactions (:mod:`tunebook.store.tx`).
"""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tunebook.store.checks import MAX_METRIC_LENGTH, MAX_STEP, check_int, check_text
from tunebook.store.chunks import CHUNK_POINTS, Chunk, merge, pack, pieces, unpack
from tunebook.store.schema import curves_t

__all__ = ["Curves", "insert", "lock_trials", "mark", "prepare", "read", "truncate", "write"]

Curves = dict[tuple[int, str], tuple[Sequence[int], Sequence[float]]]
"""Points by ``(trial_id, metric)``: steps increasing, each once, and their values."""

# Ids per IN list: well below SQLite's limit on a statement's parameters.
_IN_CHUNK = 1000
# The statements of a write, in the driver's own SQL: built by SQLAlchemy at every call, they
# cost a worker's flush more than the database does (bench/bench_overhead.py).
_HEADS = ("SELECT id, trial_id, metric, first_step, last_step, points FROM curves "
          "WHERE trial_id IN ({marks})")
_BLOBS = "SELECT id, steps, vals FROM curves WHERE id IN ({marks})"
_DELETE = "DELETE FROM curves WHERE id IN ({marks})"
_UPDATE = "UPDATE curves SET last_step = {m}, points = {m}, steps = {m}, vals = {m} WHERE id = {m}"
_INSERT = ("INSERT INTO curves (trial_id, metric, first_step, last_step, points, steps, vals) "
           "VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})")
_COLUMNS = (curves_t.c.id, curves_t.c.trial_id, curves_t.c.metric, curves_t.c.first_step,
            curves_t.c.last_step, curves_t.c.steps, curves_t.c.vals)


def prepare(batches: Mapping[int, Sequence[tuple[int, str, float]]]) -> Curves:
    """Check and convert ``{trial_id: [(step, metric, value), ...]}`` before anything is written.

    Metric names longer than :data:`MAX_METRIC_LENGTH` or holding NUL, steps beyond
    :data:`MAX_STEP` and values that are not numbers refuse the whole batch (StoreError,
    TypeError or ValueError). A step given twice for a metric keeps its last value.
    """
    out: Curves = {}
    lo, hi = 0, 0
    for trial_id, rows in batches.items():
        tid = int(trial_id)
        groups: dict[str, tuple[list[Any], list[Any]]] = {}
        for s, m, v in rows:
            g = groups.get(m)
            if g is None:
                g = groups[m] = ([], [])
            g[0].append(s)
            g[1].append(v)
        for metric, (steps, values) in groups.items():
            check_text("metric name", metric, MAX_METRIC_LENGTH)
            # Every step lies between the smallest and the largest: two checks cover them all.
            lo, hi = min(lo, min(steps)), max(hi, max(steps))
            check_int("step", int(lo), MAX_STEP)
            check_int("step", int(hi), MAX_STEP)
            out[(tid, metric)] = _curve(steps, values)
    return out


def _curve(steps: list[Any], values: list[Any]) -> tuple[Sequence[int], Sequence[float]]:
    """One metric's points as arrays, increasing steps, the last value of a repeated step."""
    try:
        s = array("q", steps)
    except TypeError:  # floats holding whole numbers, say
        s = array("q", [int(x) for x in steps])
    v = array("d", values)
    if all(map(operator.lt, s, s[1:])):
        return s, v
    points = dict(zip(s, v, strict=True))
    keys = sorted(points)
    return array("q", keys), array("d", [points[k] for k in keys])


def write(conn: Connection, curves: Curves, *, lock: bool = True) -> None:
    """Upsert prepared curves in the transaction of ``conn`` (see the module's docstring).

    ``lock=False`` when the caller already holds the trials' rows (a worker's compare-and-swap
    on its claimed trial).
    """
    if not curves:
        return
    tids = sorted({t for t, _ in curves})
    if lock:
        lock_trials(conn, tids)
    heads: dict[tuple[int, str], list[tuple[int, int, int, int]]] = {}
    for ids in _slices(tids):
        for cid, tid, metric, first, last, points in _run(conn, _HEADS, ids):
            heads.setdefault((tid, metric), []).append((cid, first, last, points))
    new: Curves = {}
    appends: dict[tuple[int, str], tuple[int, int]] = {}
    merges: dict[tuple[int, str], list[int]] = {}
    for key, (steps, values) in curves.items():
        hs = heads.get(key, [])
        later = [h[0] for h in hs if h[2] >= steps[0]]
        if later:
            merges[key] = later
        elif hs and (tail := max(hs, key=lambda h: h[2]))[3] < CHUNK_POINTS:
            appends[key] = (tail[0], tail[3])
        else:
            new[key] = (steps, values)
    blobs = _blobs(conn, [cid for cid, _ in appends.values()]
                   + [cid for ids in merges.values() for cid in ids])
    updates: list[tuple[Any, ...]] = []
    for key, (cid, points) in appends.items():
        steps, values = curves[key]
        room = CHUNK_POINTS - points
        s, v = blobs[cid][1:]
        s.extend(steps[:room])
        v.extend(values[:room])
        updates.append((s[-1], len(s), *pack(s, v), cid))
        if len(steps) > room:
            new[key] = (steps[room:], values[room:])
    gone: list[int] = []
    for key, ids in merges.items():
        # The rule of a read: the later written wins on a shared step, and these points are
        # written after every chunk (an id past theirs).
        new[key] = merge([blobs[cid] for cid in ids] + [(max(ids) + 1, *curves[key])])
        gone += ids
    for ids in _slices(gone):
        _run(conn, _DELETE, ids)
    if updates:
        conn.exec_driver_sql(_UPDATE.format(m=mark(conn)), updates)
    insert(conn, new)


def insert(conn: Connection, curves: Curves) -> None:
    """Write curves that have no chunk yet, as new chunks (also the migration's path)."""
    rows = [(tid, metric, *piece) for (tid, metric), (steps, values) in curves.items()
            for piece in pieces(steps, values)]
    if rows:
        conn.exec_driver_sql(_INSERT.format(m=mark(conn)), rows)


def lock_trials(conn: Connection, trial_ids: Sequence[int]) -> None:
    """Hold the trials until the transaction ends, before reading their chunks: another writer
    of their curves waits. PostgreSQL: their rows, locked in id order (two writers never wait
    on each other in a circle). SQLite: the database's write lock, taken by a write (the
    driver opens a transaction at the first write, not at a read)."""
    if not trial_ids:
        return
    if conn.dialect.name == "sqlite":
        _run(conn, "UPDATE trials SET id = id WHERE id IN ({marks})", [min(trial_ids)])
        return
    for ids in _slices(sorted(trial_ids)):
        _run(conn, "SELECT id FROM trials WHERE id IN ({marks}) ORDER BY id FOR UPDATE", ids)


def truncate(conn: Connection, trial_id: int, after_step: int) -> int:
    """Delete a trial's points past ``after_step``; returns how many."""
    deleted = 0
    for cid, first, points, s_blob, v_blob in conn.execute(
            sa.select(curves_t.c.id, curves_t.c.first_step, curves_t.c.points, curves_t.c.steps,
                      curves_t.c.vals)
            .where(curves_t.c.trial_id == trial_id, curves_t.c.last_step > after_step)).all():
        if first > after_step:
            conn.execute(sa.delete(curves_t).where(curves_t.c.id == cid))
            deleted += points
            continue
        s, v = unpack(s_blob, v_blob)
        k = bisect_right(s, after_step)
        deleted += len(s) - k
        s_new, v_new = pack(s[:k], v[:k])
        conn.execute(sa.update(curves_t).where(curves_t.c.id == cid).values(
            last_step=s[k - 1], points=k, steps=s_new, vals=v_new))
    return deleted


def read(conn: Connection, *where: Any) -> Iterable[Chunk]:
    """The chunks matching ``where`` (conditions on ``curves_t``), in the order
    :func:`tunebook.store.chunks.assemble` reads them."""
    q = (sa.select(*_COLUMNS).where(*where)
         .order_by(curves_t.c.trial_id, curves_t.c.metric, curves_t.c.first_step, curves_t.c.id))
    # Plain tuples from the driver's cursor: none of these columns needs SQLAlchemy's row
    # processing (integers, a string, bytes).
    rows: list[Chunk] = list(conn.execute(q).cursor.fetchall())
    return rows


def _blobs(conn: Connection, ids: Sequence[int]
           ) -> dict[int, tuple[int, array[int], array[float]]]:
    out = {}
    for part in _slices(ids):
        for cid, s, v in _run(conn, _BLOBS, part):
            out[cid] = (cid, *unpack(s, v))
    return out


def _slices(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i:i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK)]


def mark(conn: Connection) -> str:
    """The driver's parameter mark (SQLite ``?``, psycopg ``%s``) for its own SQL."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _run(conn: Connection, sql: str, ids: Sequence[int]) -> list[Any]:
    """The rows of ``sql`` whose ``{marks}`` stand for ``ids``."""
    m = mark(conn)
    res = conn.exec_driver_sql(sql.format(marks=", ".join([m] * len(ids))), tuple(ids))
    return list(res.all()) if res.returns_rows else []

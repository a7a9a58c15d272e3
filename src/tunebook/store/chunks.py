"""Curves as chunks: how the store keeps measurements (schema version 2).

A curve is one metric of one trial: its steps, increasing, and a value at each. The store
keeps it as rows of the ``curves`` table, each a *chunk* of up to :data:`CHUNK_POINTS`
consecutive points: the first and last step, the number of points, the steps as little-endian
64-bit integers and the values as little-endian 64-bit floats, packed. NaN and the infinities
are stored as they are. A trial of a few hundred evaluations is then one row per metric, not
a row per point: bulk ingestion writes a few bytes per point instead of a B-tree entry, and
reading a curve decodes a blob instead of building thousands of rows (bench/bench_ingest.py).

The invariant the writer keeps (:mod:`tunebook.store.ingest`): a curve's chunks hold disjoint,
increasing ranges of steps. Readers do not rely on it: should two chunks of a curve overlap,
the later written (the higher id) wins on the steps they share, the rule of an upsert.

Nothing here touches the database: packing, unpacking and putting a curve back together.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence
from itertools import pairwise, repeat

__all__ = ["CHUNK_POINTS", "Chunk", "Curve", "assemble", "curves", "merge", "pack", "pieces",
           "unpack"]

#: The most points a chunk holds: 16 bytes a point, so at most 16 KiB a row; a worker's
#: flush appends to its curve's last chunk until it is full.
CHUNK_POINTS = 1024

_SWAP = sys.byteorder != "little"

Chunk = tuple[int, int, str, int, int, bytes, bytes]
"""A chunk as read: ``(id, trial_id, metric, first_step, last_step, steps, values)``."""


def pack(steps: Sequence[int], values: Sequence[float]) -> tuple[bytes, bytes]:
    """The two blobs of a chunk (little-endian on every machine)."""
    s, v = array("q", steps), array("d", values)
    if _SWAP:
        s.byteswap()
        v.byteswap()
    return s.tobytes(), v.tobytes()


def unpack(steps: bytes, values: bytes) -> tuple[array[int], array[float]]:
    """The steps and values of a chunk's two blobs."""
    s, v = array("q"), array("d")
    s.frombytes(steps)
    v.frombytes(values)
    if _SWAP:
        s.byteswap()
        v.byteswap()
    return s, v


def pieces(steps: Sequence[int], values: Sequence[float], size: int = CHUNK_POINTS
           ) -> list[tuple[int, int, int, bytes, bytes]]:
    """A curve's points, increasing steps, cut into chunks of at most ``size`` points:
    ``(first_step, last_step, points, steps, values)`` each."""
    out = []
    for i in range(0, len(steps), size):
        s, v = steps[i:i + size], values[i:i + size]
        out.append((int(s[0]), int(s[-1]), len(s), *pack(s, v)))
    return out


def merge(chunks: Sequence[tuple[int, Sequence[int], Sequence[float]]]
          ) -> tuple[Sequence[int], Sequence[float]]:
    """One curve from its chunks ``(id, steps, values)``: concatenated when their ranges are
    disjoint, else the later written (higher id) wins on a shared step."""
    ordered = sorted(chunks, key=lambda c: (c[1][0] if len(c[1]) else 0, c[0]))
    if len(ordered) == 1:
        return ordered[0][1], ordered[0][2]
    if all(len(a[1]) and len(b[1]) and a[1][-1] < b[1][0] for a, b in pairwise(ordered)):
        steps, values = array("q"), array("d")
        for _, s, v in ordered:
            steps.extend(s)
            values.extend(v)
        return steps, values
    points: dict[int, float] = {}
    for _, s, v in sorted(chunks, key=lambda c: c[0]):
        points.update(zip(s, v, strict=True))
    keys = sorted(points)
    return keys, [points[k] for k in keys]


Curve = tuple[int, str, Sequence[int], Sequence[float]]
"""A curve as read: ``(trial_id, metric, steps, values)``, steps increasing."""


def curves(rows: Iterable[Chunk], every: int = 1, keep: frozenset[int] = frozenset()
           ) -> list[Curve]:
    """The curves of chunks read in the order trial, metric (the order of the output too).

    ``every`` > 1 samples each curve: the steps that are multiples of ``every`` or in
    ``keep``, and the curve's last point (the final value of a trial that stopped early).
    Every NaN comes back as the one ``math.nan``, as the store always gave them: containers
    of curves then compare equal (equality of NaN holds only by identity).
    """
    out: list[Curve] = []
    group: list[tuple[int, array[int], array[float]]] = []
    key: tuple[int, str] | None = None

    def flush() -> None:
        if key is None or not group:
            return
        steps, values = merge(group)
        if every > 1 and len(steps):
            last = len(steps) - 1
            at = [i for i, s in enumerate(steps) if s % every == 0 or s in keep or i == last]
            steps, values = [steps[i] for i in at], [values[i] for i in at]
        if any(map(math.isnan, values)):
            values = [math.nan if x != x else x for x in values]
        out.append((key[0], key[1], steps, values))

    for cid, tid, metric, _first, _last, s, v in rows:
        if (tid, metric) != key:
            flush()
            key, group = (tid, metric), []
        group.append((cid, *unpack(s, v)))
    flush()
    return out


def assemble(rows: Iterable[Chunk]) -> list[tuple[int, int, str, float]]:
    """``(trial_id, step, metric, value)`` rows from chunks read in the order trial, metric
    (the order of the output too), steps increasing within each curve."""
    out: list[tuple[int, int, str, float]] = []
    for tid, metric, steps, values in curves(rows):
        n = len(steps)
        out.extend(zip(repeat(tid, n), steps, repeat(metric, n), values, strict=True))
    return out

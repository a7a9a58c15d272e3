"""Bringing a store of an older schema version to this one, on opening, in one transaction.

Version 1 kept a row per point in ``measurements`` (and each trial's metric names in
``trial_metrics``); version 2 keeps curves as chunks (:mod:`tunebook.store.chunks`). The
migration copies every point into ``curves``, drops the two tables and records version 2, all
in the transaction of :func:`tunebook.store.schema.ensure_schema`: a process stopped midway
leaves the store as it was, and a process opening it meanwhile waits, then finds version 2.
An older tunebook refuses the migrated store (it understands version 1 only): upgrade every
worker of a store together.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tunebook.store import ingest
from tunebook.store.schema import SCHEMA_VERSION, curves_t, meta_t

__all__ = ["migrate_v1"]

# Trials copied per read: a few hundred thousand points in memory at a time.
_TRIALS_PER_READ = 500


def migrate_v1(conn: Connection) -> bool:
    """Migrate a version 1 store in the transaction of ``conn``; False if another process
    did it first."""
    # The version row first: it opens SQLite's write transaction (so that the DDL below is
    # part of it) and, on PostgreSQL, makes a second process wait here until this commits.
    claimed = conn.execute(sa.update(meta_t).where(
        meta_t.c.key == "schema_version", meta_t.c.value == "1").values(
        value=str(SCHEMA_VERSION))).rowcount
    if claimed != 1:
        return False
    curves_t.create(conn, checkfirst=True)
    trial_ids = [r[0] for r in conn.execute(sa.text(
        "SELECT DISTINCT trial_id FROM measurements ORDER BY trial_id"))]
    select = sa.text("SELECT trial_id, metric, step, value FROM measurements "
                     "WHERE trial_id IN :ids ORDER BY trial_id, metric, step").bindparams(
        sa.bindparam("ids", expanding=True))
    for i in range(0, len(trial_ids), _TRIALS_PER_READ):
        curves: dict[tuple[int, str], tuple[list[Any], list[Any]]] = {}
        for tid, metric, step, value in conn.execute(
                select, {"ids": trial_ids[i:i + _TRIALS_PER_READ]}):
            steps, values = curves.setdefault((tid, metric), ([], []))
            steps.append(step)
            # Version 1 stored NaN as NULL.
            values.append(math.nan if value is None else value)
        ingest.insert(conn, dict(curves))
    conn.execute(sa.text("DROP TABLE measurements"))
    conn.execute(sa.text("DROP TABLE IF EXISTS trial_metrics"))
    conn.execute(sa.delete(meta_t).where(meta_t.c.key == "trial_metrics_filled"))
    return True

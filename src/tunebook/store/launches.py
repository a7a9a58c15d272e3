"""The launch history: which result became the baseline, when, on what evidence.

``tunebook launch REF --note ...`` records a row here; the project page and ``tunebook
launches`` read them back, oldest first. A table of its own beside the schema-1 tables (a new
table needs no version bump: ``create_all`` adds it to an existing store, and an older tunebook
ignores it); a part of :class:`tunebook.store.sql.Store`, which inherits :class:`Launches`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tunebook.store.api import LaunchRow
from tunebook.store.checks import check_text
from tunebook.store.schema import metadata
from tunebook.store.tx import Transactions

__all__ = ["Launches", "launches_t"]

launches_t = sa.Table(
    "launches", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The reference as the user gave it (EXPERIMENT[/STUDY[#INDEX]]): launches outlive a
    # renamed or deleted experiment, so no foreign key.
    sa.Column("ref", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    # The configuration, the replicates' statistics and the comparison with the previous
    # baseline, as JSON.
    sa.Column("payload", sa.Text, nullable=False),
)


class Launches(Transactions):
    """Launch records, on the store's transactions."""

    def add_launch(self, ref: str, note: str, payload: Mapping[str, Any]) -> int:
        """Record that ``ref`` became the baseline, with ``note`` and the evidence
        ``payload`` (strict JSON); returns its id.

        Recorded once across outages: the same launch twice would read as two decisions.
        """
        check_text("reference", ref, None)
        check_text("note", note, None)
        values = {"ref": ref, "created_at": time.time(), "note": note,
                  "payload": json.dumps(payload, allow_nan=False)}
        return self._insert_once(launches_t, values, identity=("ref", "created_at"))

    def launches(self) -> list[LaunchRow]:
        """Every launch of the store, oldest first."""
        rows = self._read(lambda conn: conn.execute(
            sa.select(launches_t).order_by(launches_t.c.id)).all())
        return [LaunchRow(r.id, r.ref, r.created_at, r.note, json.loads(r.payload))
                for r in rows]

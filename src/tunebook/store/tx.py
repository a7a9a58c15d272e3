"""The one way the SQL store talks to its database: a transaction that rides out outages,
is safe to redo, and fails as a one-line :class:`~tunebook.errors.StoreError`.

Every method of :class:`tunebook.store.Store` is a short body on :meth:`Transactions._read`,
:meth:`Transactions._write` or :meth:`Transactions._insert_once`; which errors are transient and
how long to wait is :mod:`tunebook.store_retry`'s business, called from here only. Outage
handling to come (a queue of writes kept while the store is away, say) plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tunebook.core.interrupts import protected
from tunebook.errors import StoreError
from tunebook.store.retry import one_line, retry

__all__ = ["Transactions", "new_id"]

T = TypeVar("T")


def new_id(result: Any) -> int:
    """The primary key an INSERT just created."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not return the new row's id")
    return int(key[0])


class Transactions:
    """Retries and error mapping for a store; subclasses set the attributes below.

    ``outage_seconds`` and ``on_outage`` are read at every call: the runner and the workers
    change them while a store is open (a shorter bound once a run is stopping, a progress
    display's notice).
    """

    engine: Engine
    display_url: str
    outage_seconds: float
    on_outage: Callable[[float, str], None] | None
    _password: str | None

    def _retry(self, attempt: Callable[[bool], T], *,
              races: Callable[[BaseException], bool] | None = None,
              fail_fast: bool = False) -> T:
        """``attempt(retrying)`` under :func:`tunebook.store_retry.retry` for this store."""
        return retry(attempt, where=self.display_url, outage_seconds=self.outage_seconds,
                     on_outage=self.on_outage, races=races, fail_fast=fail_fast,
                     secret=self._password)

    def _read(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in one transaction that only reads, retried across outages.

        A :meth:`_write` without ``verify`` (a read is always safe to redo); a name of its own
        so that a backend routing reads elsewhere (a replica, a cache) has one place to do it.
        """
        return self._write(work)

    def _write(self, work: Callable[[Connection], T], *,
              verify: Callable[[Connection], T | None] | None = None,
              races: Callable[[BaseException], bool] | None = None,
              fail_fast: bool = False) -> T:
        """``work(conn)`` in one transaction, retried across store outages.

        A retry may follow a commit whose reply was lost, so ``work`` must be safe to redo;
        where it is not, ``verify(conn)`` runs first in each retry and returns the earlier
        attempt's result if it finds its effect (None if not). ``races`` recognises errors of
        concurrent creators, retried a few times; ``fail_fast`` gives up at once on an
        unreachable server. Errors that are not transient become one-line StoreErrors.
        """
        def attempt(retrying: bool) -> T:
            # A stop (SIGTERM, a timeout) waits for the transaction's end: raised inside it,
            # it would leave the connection, and SQLite's write lock, held (interrupts.py).
            with protected(), self.engine.begin() as conn:
                if retrying and verify is not None:
                    found = verify(conn)
                    if found is not None:
                        return found
                return work(conn)

        try:
            return self._retry(attempt, races=races, fail_fast=fail_fast)
        except sa.exc.DBAPIError as exc:
            cause = one_line(str(exc.orig))
            if self._password:
                cause = cause.replace(self._password, "***")
            raise StoreError(f"store {self.display_url}: {cause}") from exc

    def _insert_once(self, table: sa.Table, values: Mapping[str, Any],
                    identity: tuple[str, ...]) -> int:
        """Insert one row and return its id, exactly once across retries.

        A retry first looks for a row matching ``values`` on the ``identity`` columns (which
        must hold something taken once for every attempt, a timestamp say): for rows whose
        duplicate would mislead (a run that never ends, a note twice), not a rare nuisance.
        """
        def insert(conn: Connection) -> int:
            return new_id(conn.execute(sa.insert(table).values(**values)))

        def inserted(conn: Connection) -> int | None:
            found = conn.execute(sa.select(table.c.id).where(
                *(table.c[name] == values[name] for name in identity))).scalar()
            return None if found is None else int(found)

        return self._write(insert, verify=inserted)

"""Riding out store outages: which database errors are transient, and the retry loop.

A tuning run lasts hours; a PostgreSQL restart or a SQLite lock held past the busy timeout must
not end it. :func:`retry` re-runs a whole transaction after a transient failure, with
exponential backoff and jitter, for at most ``outage_seconds`` from the first failure; anything
else (integrity and programming errors, schema mismatches, the caller's own exceptions) goes
through at once. The store (:mod:`tunebook.store.sql`) is the only user.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import sqlalchemy as sa

from tunebook.errors import StoreError

__all__ = ["DEFAULT_OUTAGE_SECONDS", "OUTAGE_ENV", "Transient", "classify", "one_line",
           "resolve_outage_seconds", "retry"]

T = TypeVar("T")

DEFAULT_OUTAGE_SECONDS = 600.0
OUTAGE_ENV = "TUNEBOOK_STORE_OUTAGE_SECONDS"
FIRST_DELAY = 0.1
MAX_DELAY = 5.0
# Creation races resolve on the next attempt; a "race" that persists is a real error.
MAX_RACES = 10

# An OperationalError whose message says this is a configuration error, not an outage:
# waiting does not create a database, a role or a password.
_PERMANENT = ("does not exist", "authentication failed", "password", "pg_hba.conf",
              "permission denied")
# PostgreSQL SQLSTATEs worth another try: connection exceptions (class 08), the server
# shutting down or starting up (57P0x), too many connections, serialization failures.
_TRANSIENT_STATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying: ``kind`` says how, ``cause`` is one short line for people.

    ``connection``: the server is unreachable or dropped the connection; ``busy``: a lock or
    a serialization conflict (SQLite's busy timeout ran out); ``race``: a concurrent creator
    won (a table already exists), resolved on the next attempt.
    """

    kind: Literal["connection", "busy", "race"]
    cause: str


def one_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def classify(exc: BaseException, races: Callable[[BaseException], bool] | None = None
             ) -> Transient | None:
    """Whether ``exc`` is transient (a :class:`Transient`) or must be raised (None).

    Accepts SQLAlchemy's wrapped errors and the drivers' own (``sqlite3``, ``psycopg``).
    ``races`` recognises the errors of a creation race, which only the caller can tell.
    """
    orig: BaseException = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig else exc
    cause = one_line(str(orig)) or type(orig).__name__
    lowered = cause.lower()
    if races is not None and races(exc):
        return Transient("race", cause)
    if isinstance(exc, sa.exc.TimeoutError):  # every pooled connection is busy
        return Transient("busy", cause)
    if type(orig).__module__.startswith("sqlite3"):
        # SQLITE_BUSY / SQLITE_LOCKED: another process holds the lock past the busy timeout,
        # or a read transaction could not be upgraded once another writer committed.
        if "locked" in lowered or "busy" in lowered:
            return Transient("busy", cause)
        return None
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state.startswith(_TRANSIENT_STATES):
        return Transient("busy" if state.startswith("40") else "connection", cause)
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return Transient("connection", cause)
    operational = isinstance(exc, sa.exc.OperationalError) or (
        type(orig).__name__ == "OperationalError" and state is None)
    if operational and state is None and not any(p in lowered for p in _PERMANENT):
        # psycopg reports refused, reset and closed connections without a SQLSTATE.
        return Transient("connection", cause)
    return None


def resolve_outage_seconds(value: float | None) -> float:
    """The outage bound: ``value`` if given, else ``$TUNEBOOK_STORE_OUTAGE_SECONDS``, else 600."""
    if value is None:
        text = os.environ.get(OUTAGE_ENV, "").strip()
        if not text:
            return DEFAULT_OUTAGE_SECONDS
        try:
            value = float(text)
        except ValueError:
            raise StoreError(f"{OUTAGE_ENV} must be a number of seconds, got {text!r}") from None
    if not value >= 0:  # also refuses NaN
        raise StoreError(f"the store outage bound must be >= 0 seconds, got {value}")
    return float(value)


def retry(
    attempt: Callable[[bool], T],
    *,
    where: str,
    outage_seconds: float,
    on_outage: Callable[[float, str], None] | None = None,
    races: Callable[[BaseException], bool] | None = None,
    fail_fast: bool = False,
    secret: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``attempt(retrying)`` until it returns, retrying transient failures.

    ``retrying`` is True on every call after a failure: the failed attempt may have committed
    (the reply was lost), so an attempt that is not idempotent looks for its own earlier effect
    first. Backoff starts at 0.1 s and doubles to at most 5 s, each pause drawn between half and
    all of it (jitter, so workers cut off together do not come back together). ``on_outage``
    is called with the seconds since the first failure and the cause before each pause
    (creation races excepted); once ``outage_seconds`` have passed, :class:`StoreError` says
    ``store <where> unreachable for N s: <cause>``. With ``fail_fast`` a connection failure
    raises at once (nothing was reached yet: most likely a wrong address, not an outage).
    ``secret`` (the URL's password) is masked in causes, should a driver ever quote it.
    """
    first: float | None = None
    delay = FIRST_DELAY
    races_seen = 0
    retrying = False
    while True:
        try:
            return attempt(retrying)
        except Exception as exc:
            transient = classify(exc, races)
            if transient is None:
                raise
            cause = transient.cause.replace(secret, "***") if secret else transient.cause
            now = clock()
            first = now if first is None else first
            elapsed = now - first
            if transient.kind == "race":
                races_seen += 1
                if races_seen >= MAX_RACES:
                    raise
                pause = 0.05 * races_seen
            else:
                if transient.kind == "connection" and fail_fast:
                    raise StoreError(f"store {where} unreachable: {cause}") from None
                if elapsed >= outage_seconds:
                    raise StoreError(f"store {where} unreachable for {elapsed:.0f} s: "
                                     f"{cause}") from None
                if on_outage is not None:
                    on_outage(elapsed, cause)
                pause = min(delay * random.uniform(0.5, 1.0), outage_seconds - elapsed)
                delay = min(delay * 2, MAX_DELAY)
            retrying = True
            sleep(max(pause, 0.0))

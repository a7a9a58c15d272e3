"""Asynchronous stops (SIGTERM, SIGINT, SIGALRM) that never land inside a store transaction.

Python runs a signal handler in the main thread between any two bytecodes. An exception raised
there in the middle of a database write leaves the connection with an open transaction, and on
SQLite its write lock, held by a process that then tries to write its trial's final status and
waits on itself. Handlers call :func:`deliver` instead of raising: outside a store transaction
it raises at once; inside one it is kept and raised the moment the transaction ends.

The same holds around a fork (``subprocess.Popen`` with a ``preexec_fn``): raised in an at-fork
hook such as logging's, a stop is printed as "Exception ignored", lost, and leaves logging's
lock held; forks are protected regions too.

Blocking the signals (``pthread_sigmask``) would not do: another thread may receive them, and
CPython still runs the Python-level handler in the main thread at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["deliver", "protected", "stops_on"]

_depth = 0
_pending: BaseException | None = None


@contextlib.contextmanager
def protected() -> Iterator[None]:
    """A region (a store transaction, a fork) that asynchronous stops wait for; re-entrant."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            exc, _pending = _pending, None
            raise exc


def deliver(exc: BaseException) -> None:
    """Raise ``exc`` now, or at the end of the current protected region (from a handler)."""
    global _pending
    if _depth > 0:
        if _pending is None:  # the first stop wins; a second one says nothing new
            _pending = exc
        return
    raise exc


@contextlib.contextmanager
def stops_on(signals: Sequence[signal.Signals],
             exception: Callable[[signal.Signals], BaseException]) -> Iterator[None]:
    """While inside, each of ``signals`` raises ``exception(signal)`` in the main thread through
    :func:`deliver` (never inside a store transaction); the previous handlers come back after.
    Outside the main thread (where Python installs no handler) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        deliver(exception(signal.Signals(signum)))

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

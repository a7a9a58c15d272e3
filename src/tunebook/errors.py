"""Exceptions raised by tunebook.

Everything tunebook raises on purpose derives from :class:`TunebookError`::

    TunebookError
    ├── ConfigError        an experiment description is wrong (names file, key and value)
    ├── WorkloadError      a workload cannot be loaded or run (bad import, missing command,
    │                      an objective metric it never reports)
    ├── StoreError         the store cannot be opened, is not a tunebook store, holds
    │                      something incompatible, cannot hold a value (too long, NUL,
    │                      out of range) or stayed unreachable past the outage bound
    └── Infeasible         raised inside a trial: the trial diverged or is otherwise
                           infeasible; recorded as a state, never a crash

The CLI turns ``ConfigError``, ``WorkloadError`` and ``StoreError`` into one line on stderr and
exit code 2.
"""

from __future__ import annotations

__all__ = ["ConfigError", "Infeasible", "StoreError", "TunebookError", "WorkloadError"]


class TunebookError(Exception):
    """Base class of every error tunebook raises on purpose."""


class ConfigError(TunebookError):
    """An experiment description is invalid.

    Args:
        source: where the description came from (a file name, or ``<python>``).
        key: dotted path of the offending key, e.g. ``nuisance.learning_rate.low``;
            empty when the problem is with the document as a whole.
        message: what is wrong, including the bad value.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + message)


class WorkloadError(TunebookError):
    """A workload cannot be imported, started, or does not report what the experiment needs."""


class StoreError(TunebookError):
    """The store cannot be opened or reached, or it holds data incompatible with the request."""


class Infeasible(TunebookError):
    """Raised by or inside a workload to mark the running trial infeasible (e.g. diverged).

    Args:
        reason: a short human explanation, recorded in the store.
        step: the training step at which the trial became infeasible, if known.
    """

    def __init__(self, reason: str, step: int | None = None) -> None:
        self.reason = reason
        self.step = step
        super().__init__(reason if step is None else f"{reason} (step {step})")

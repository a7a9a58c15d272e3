"""The store's column limits, checked before anything is written.

SQLite does not enforce column sizes and PostgreSQL does: the experiment file, the trial API and
the store all refuse values beyond these, with the same numbers, so bad input is refused the
same way on every backend and before any write.
"""

from __future__ import annotations

__all__ = ["MAX_METRIC_LENGTH", "MAX_NAME_LENGTH", "MAX_SEED", "MAX_STEP", "MAX_WORKER_LENGTH"]

MAX_NAME_LENGTH = 255  # experiment, study and hyperparameter names: String(255)
MAX_METRIC_LENGTH = 128  # metric names: String(128)
MAX_WORKER_LENGTH = 128  # worker names: String(128)
MAX_STEP = 2**31 - 1  # steps, trial indices, budgets: Integer, 32-bit on PostgreSQL
MAX_SEED = 2**63 - 1  # seeds: BigInteger, 64-bit signed

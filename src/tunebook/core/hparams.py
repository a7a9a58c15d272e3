"""Well-known hyperparameter names that more than one layer needs, defined once.

Kept apart from :mod:`tunebook.procedures` so that the command line can name them (in its
help texts and defaults) without importing the procedures, which load NumPy and the store.
"""

from __future__ import annotations

__all__ = ["REGULARIZERS"]

#: Hyperparameters that regularise or augment, set to 0 for the max_train_steps sweep (the
#: built-in workloads' names; ``Steps(regularizers=...)`` or ``tunebook steps --regularizers``
#: maps others).
REGULARIZERS = ("weight_decay", "dropout", "label_smoothing")

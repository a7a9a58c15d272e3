"""tunebook: the Deep Learning Tuning Playbook as software.

An experiment is one round of the playbook's incremental strategy: a goal, scientific
hyperparameters (compared), nuisance hyperparameters (optimised away by quasi-random search, one
study per scientific value) and fixed ones. ``tunebook.run`` executes it in parallel worker
processes against a durable store; every metric at every evaluation step is kept, so the
objective can be chosen after the fact.

``import tunebook`` is light: the store (SQLAlchemy), NumPy and the runner load on first use,
and torch is only imported by :mod:`tunebook.workloads` and the optional PyTorch helpers. Plug-in
authors find the seams here too: :class:`Designer` with ``@designer("name")`` for a search
algorithm, :class:`StoreAPI` for a store backend (``docs/architecture.md`` has the others).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunebook.errors import ConfigError, Infeasible, StoreError, TunebookError, WorkloadError
from tunebook.execution.trial import Trial
from tunebook.experiment import Experiment, Objective, Search
from tunebook.search.space import Categorical, Discrete, Float, Int, SearchSpace

if TYPE_CHECKING:
    from tunebook.analysis.results import TrialRecord, trial_records
    from tunebook.analysis.selection import best_checkpoint
    from tunebook.execution.runner import RunResult, run
    from tunebook.report.view import ExperimentView, load
    from tunebook.search.designers import Designer, Observation, designer
    from tunebook.store.api import StoreAPI
    from tunebook.store.sql import Store

    __version__: str

__all__ = [
    "Categorical",
    "ConfigError",
    "Designer",
    "Discrete",
    "Experiment",
    "ExperimentView",
    "Float",
    "Infeasible",
    "Int",
    "Objective",
    "Observation",
    "RunResult",
    "Search",
    "SearchSpace",
    "Store",
    "StoreAPI",
    "StoreError",
    "Trial",
    "TrialRecord",
    "TunebookError",
    "WorkloadError",
    "__version__",
    "best_checkpoint",
    "designer",
    "load",
    "run",
    "trial_records",
]

_LAZY = {
    "Designer": "tunebook.search.designers",
    "Observation": "tunebook.search.designers",
    "designer": "tunebook.search.designers",
    "StoreAPI": "tunebook.store.api",
    "run": "tunebook.execution.runner",
    "RunResult": "tunebook.execution.runner",
    "Store": "tunebook.store.sql",
    "TrialRecord": "tunebook.analysis.results",
    "trial_records": "tunebook.analysis.results",
    "best_checkpoint": "tunebook.analysis.selection",
    "load": "tunebook.report.view",
    "ExperimentView": "tunebook.report.view",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the package metadata, read on first use
        from tunebook.core.version import installed_version

        return installed_version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunebook' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

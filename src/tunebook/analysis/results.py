"""Trial records for the command line and the Python API, for any objective chosen after the
fact.

The playbook's first advantage of non-adaptive search: the objective (which metric, best over
training or final value) can change in post-hoc analysis without rerunning anything. The records
are the analysis's (:class:`tunebook.analysis.data.TrialData`, read by its one loader); what is
here is only what the tables of ``tunebook best`` and ``tunebook trials`` add.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunebook.analysis.data import TrialData, load
from tunebook.objective import Objective
from tunebook.store.api import StoreAPI

__all__ = ["TrialRecord", "best_per_study", "csv_cell", "trial_records"]

TrialRecord = TrialData
"""One trial with its summary under a chosen objective (the analysis's record)."""


def csv_cell(value: Any) -> Any:
    """A value for a CSV cell that a spreadsheet shows as text: a string starting with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (otherwise it would be
    run as a formula). Numbers are kept as they are; None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def trial_records(store: StoreAPI, name: str, metric: str | None = None,
                  goal: str | None = None) -> list[TrialRecord]:
    """Every trial of experiment ``name`` within each study's current budget, in store order,
    summarised under the objective :func:`tunebook.objective.resolve` gives: the experiment's,
    or ``metric`` with ``goal`` (guessed from the name when left out).

    Only the objective's curve is read (``TrialRecord.curves`` holds it alone).
    """
    return list(load(store, name, metric, goal, current=True, curves=False).trials)


def best_per_study(records: Iterable[TrialRecord],
                   objective: Objective) -> dict[str, list[TrialRecord]]:
    """Each study's completed trials with a finite value, best first (studies in record order,
    a study without such a trial maps to an empty list)."""
    by_study: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_study.setdefault(r.study, []).append(r)
    return {s: objective.ranked(rs) for s, rs in by_study.items()}

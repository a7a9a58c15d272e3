"""The rows of ``tunebook trials --format json`` and the findings of ``tunebook findings``, for
the command line and the notebook view alike.

The command line prints these and :class:`tunebook.report.view.ExperimentView` turns them into
pandas frames: both call the functions here, so a frame and the command's JSON cannot drift
apart (the tests compare them row for row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunebook.analysis.data import load
from tunebook.analysis.findings import Finding
from tunebook.analysis.results import trial_records
from tunebook.objective import Objective
from tunebook.store.api import StoreAPI

__all__ = ["experiment_findings", "trial_rows"]


def trial_rows(store: StoreAPI, name: str, objective: Objective,
               root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every trial of experiment ``name`` within each study's current budget, in store order,
    as :meth:`tunebook.analysis.data.TrialData.as_dict` writes it, summarised under
    ``objective`` (best and final value and step).

    With ``root`` (the tunebook root folder the trials ran under) each row also has
    ``checkpoint``: the absolute path of the trial's best checkpoint folder, or None when none is
    kept (one directory listing per trial, so only asked for where it is shown). Numbers are
    left as they are (NaN stays NaN); the command line writes them as strict JSON.
    """
    rows = [r.as_dict() for r in trial_records(store, name, objective.metric, objective.goal)]
    if root is not None:
        from tunebook.core.paths import trial_dir
        from tunebook.execution.final_eval import best_checkpoint

        for r in rows:
            found = best_checkpoint(trial_dir(root, name, r["study"], r["index"]),
                                    r["best_step"], objective)
            r["checkpoint"] = str(found[1].resolve()) if found else None
    return rows


def experiment_findings(store: StoreAPI, name: str, metric: str | None = None,
                        goal: str | None = None, final: bool = False) -> list[Finding]:
    """The playbook's checks on experiment ``name`` (its trials within the current budget, and
    with ``search.seeds`` the primary seed's studies, as :func:`run_checks` reads them) under
    the objective resolved from the experiment's and ``metric``/``goal``/``final``: what
    ``tunebook findings`` prints and the report lists."""
    from tunebook.analysis.checks import run_checks

    return run_checks(load(store, name, metric=metric, goal=goal, final=final, current=True))

"""Trial records as plain data, for any objective chosen after the fact.

The playbook's first advantage of non-adaptive search: the objective (which metric, best over
training or final value) can change in post-hoc analysis without rerunning anything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tunebook.store_api import StoreAPI, TrialRow
from tunebook.summary import CurveSummary, summarize

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData

__all__ = [
    "TrialRecord",
    "best_per_study",
    "csv_cell",
    "current_trials",
    "summaries_for",
    "trial_records",
    "within_budget",
]

def csv_cell(value: Any) -> Any:
    """A value for a CSV cell that a spreadsheet shows as text: a string starting with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (otherwise it would be
    run as a formula). Numbers are kept as they are; None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def current_trials(store: StoreAPI, experiment_id: int) -> list[TrialRow]:
    """The trials of an experiment within each study's current budget, in store order.

    Lowering ``search.trials`` between runs leaves the trials past the new budget in the store,
    dormant (they come back if the budget grows): what is shown counts only the others, like
    the runner does.
    """
    budgets = {st.name: st.budget for st in store.studies(experiment_id)}
    return [t for t in store.trials(experiment_id) if t.index < budgets.get(t.study, 0)]


def within_budget(store: StoreAPI, data: ExperimentData) -> ExperimentData:
    """``data`` restricted to the trials within each study's current budget (see
    :func:`current_trials`)."""
    exp = store.require_experiment(data.name)
    budgets = {st.name: st.budget for st in store.studies(exp.id)}
    trials = tuple(t for t in data.trials if t.index < budgets.get(t.study, 0))
    return dataclasses.replace(data, trials=trials)


@dataclass(frozen=True)
class TrialRecord:
    """One trial with its summary under a chosen objective."""

    trial_id: int
    study: str
    index: int
    status: str
    params: dict[str, Any]
    seed: int
    attempts: int
    best_step: int | None
    best_value: float | None
    final_step: int | None
    final_value: float | None
    run_seconds: float
    error: str | None
    infeasible_reason: str | None
    infeasible_step: int | None

    def value(self, final: bool = False) -> float | None:
        """The objective value: final value when ``final`` else the best over training."""
        return self.final_value if final else self.best_value

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the ``tunebook trials --format json`` schema)."""
        return {
            "study": self.study, "index": self.index, "status": self.status,
            "params": self.params, "seed": self.seed, "attempts": self.attempts,
            "best_step": self.best_step, "best_value": self.best_value,
            "final_step": self.final_step, "final_value": self.final_value,
            "run_seconds": round(self.run_seconds, 3), "trial_id": self.trial_id,
            "error": self.error, "infeasible_reason": self.infeasible_reason,
            "infeasible_step": self.infeasible_step,
        }


def trial_records(store: StoreAPI, name: str, metric: str | None = None,
                  goal: Literal["minimize", "maximize"] | None = None) -> list[TrialRecord]:
    """Every trial of experiment ``name`` summarised under ``metric``/``goal``.

    Both default to the experiment's objective, whose summaries are already in the store;
    any other choice is computed from the stored measurements.
    """
    exp = store.require_experiment(name)
    objective = exp.config["objective"]
    metric = metric or objective["metric"]
    goal = goal or objective["goal"]
    rows = current_trials(store, exp.id)
    summaries: dict[int, dict[str, Any]] = {}
    if metric != objective["metric"] or goal != objective["goal"]:
        summaries = {tid: s.as_dict() for tid, s in
                     summaries_for(store, exp.id, [t.id for t in rows], metric, goal).items()}
    out = []
    for t in rows:
        s = summaries.get(t.id) or {"best_step": t.best_step, "best_value": t.best_value,
                                    "final_step": t.final_step, "final_value": t.final_value}
        out.append(TrialRecord(
            trial_id=t.id, study=t.study, index=t.index, status=t.status, params=t.params,
            seed=t.seed, attempts=t.attempts, run_seconds=t.run_seconds, error=t.error,
            infeasible_reason=t.infeasible_reason, infeasible_step=t.infeasible_step, **s))
    return out


def summaries_for(store: StoreAPI, experiment_id: int, trial_ids: list[int], metric: str,
                  goal: Literal["minimize", "maximize"]) -> dict[int, CurveSummary]:
    """Best and final values of ``metric`` for each of ``trial_ids``, from the stored curves
    (one query for the whole experiment)."""
    points: dict[int, list[tuple[int, float]]] = {}
    for tid, step, _, value in store.measurements(experiment_id=experiment_id, metric=metric):
        points.setdefault(tid, []).append((step, value))
    return {tid: summarize(points.get(tid, []), goal) for tid in trial_ids}


def best_per_study(records: list[TrialRecord], goal: Literal["minimize", "maximize"],
                   final: bool = False, top: int = 1) -> dict[str, list[TrialRecord]]:
    """The ``top`` completed trials of each study, best first (studies in record order)."""
    by_study: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_study.setdefault(r.study, [])
        v = r.value(final)
        if r.status == "completed" and v is not None and math.isfinite(v):
            by_study[r.study].append(r)
    sign = 1.0 if goal == "minimize" else -1.0
    return {s: sorted(rs, key=lambda r: (sign * (r.value(final) or 0.0), r.index))[:top]
            for s, rs in by_study.items()}

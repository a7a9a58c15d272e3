"""Experiment data for analysis: trials with their curves, under a chosen objective."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tunebook.experiment import Experiment
from tunebook.space import Hyperparameter
from tunebook.store_api import RunRow, StoreAPI
from tunebook.summary import guess_goal, summarize

__all__ = ["Curve", "ExperimentData", "TrialData", "load"]

Goal = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Curve:
    """One metric of one trial: parallel lists of steps (increasing) and values."""

    steps: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def finite(self) -> Curve:
        """The same curve without NaN or infinite points."""
        pairs = [(s, v) for s, v in zip(self.steps, self.values, strict=True) if math.isfinite(v)]
        return Curve(tuple(s for s, _ in pairs), tuple(v for _, v in pairs))


@dataclass(frozen=True)
class TrialData:
    """A trial with its summary under the chosen objective and every metric's curve."""

    id: int
    study: str
    index: int
    status: str
    params: dict[str, Any]
    seed: int
    best_step: int | None
    best_value: float | None
    final_step: int | None
    final_value: float | None
    curves: Mapping[str, Curve] = field(default_factory=dict)
    error: str | None = None
    infeasible_reason: str | None = None
    infeasible_step: int | None = None
    attempts: int = 0
    run_seconds: float = 0.0

    @property
    def label(self) -> str:
        """``study #index``, how trials are named in findings and plots."""
        return f"{self.study} #{self.index}"

    def value(self, final: bool = False) -> float | None:
        """The objective value: final when ``final`` else best over training."""
        return self.final_value if final else self.best_value

    @property
    def feasible(self) -> bool:
        """Completed (not infeasible, failed or unfinished)."""
        return self.status == "completed"


@dataclass(frozen=True)
class ExperimentData:
    """Everything the report needs, as plain data.

    Attributes:
        experiment: the experiment as configured (roles, search space, lengths).
        metric, goal, final: the objective used for every summary in ``trials``.
        studies: study names in order.
        trials: every trial, ordered by study then index.
        notes: ``(created_at, study, text)``.
        runs: run records of the experiment, oldest first.
    """

    experiment: Experiment
    metric: str
    goal: Goal
    final: bool
    studies: tuple[str, ...]
    trials: tuple[TrialData, ...]
    notes: tuple[tuple[float, str | None, str], ...] = ()
    runs: tuple[RunRow, ...] = ()

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment.name

    def value(self, trial: TrialData) -> float | None:
        """``trial``'s objective value (best or final as chosen)."""
        return trial.value(self.final)

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b``."""
        return a < b if self.goal == "minimize" else a > b

    def sort_key(self, trial: TrialData) -> tuple[float, int, int]:
        """Sort key putting the best feasible trials first, unusable ones last."""
        v = self.value(trial)
        if not trial.feasible or v is None or not math.isfinite(v):
            return (math.inf, 0, trial.id)
        return (v if self.goal == "minimize" else -v, trial.index, trial.id)

    def ranked(self, study: str | None = None) -> list[TrialData]:
        """Completed trials with a finite objective, best first (optionally one study)."""
        pool = [t for t in self.trials if study is None or t.study == study]
        return [t for t in sorted(pool, key=self.sort_key) if math.isfinite(self.sort_key(t)[0])]

    def varied(self) -> dict[str, Hyperparameter]:
        """The nuisance hyperparameters (the ones the search varied)."""
        return dict(self.experiment.nuisance.items())


def load(store: StoreAPI, name: str, metric: str | None = None, goal: Goal | None = None,
         final: bool = False, metrics: Sequence[str] | None = None) -> ExperimentData:
    """Read experiment ``name`` from ``store`` with every curve (or only ``metrics``)."""
    exp_row = store.require_experiment(name)
    experiment = Experiment.from_dict(exp_row.config, source=f"store:{name}")
    metric = metric or experiment.objective.metric
    if goal is None:
        goal = (experiment.objective.goal if metric == experiment.objective.metric
                else guess_goal(metric))
    rows = store.trials(exp_row.id)
    curves: dict[int, dict[str, tuple[list[int], list[float]]]] = {}
    wanted = None if metrics is None else set(metrics) | {metric}
    for tid, step, m, v in store.measurements(experiment_id=exp_row.id):
        if wanted is not None and m not in wanted:
            continue
        steps, values = curves.setdefault(tid, {}).setdefault(m, ([], []))
        steps.append(step)
        values.append(v)
    trials = []
    for t in rows:
        tc = {m: Curve(tuple(s), tuple(v)) for m, (s, v) in curves.get(t.id, {}).items()}
        objective = tc.get(metric)
        s = summarize(zip(objective.steps, objective.values, strict=True) if objective else [],
                      goal)
        trials.append(TrialData(
            id=t.id, study=t.study, index=t.index, status=t.status, params=t.params,
            seed=t.seed, best_step=s.best_step, best_value=s.best_value,
            final_step=s.final_step, final_value=s.final_value, curves=tc, error=t.error,
            infeasible_reason=t.infeasible_reason, infeasible_step=t.infeasible_step,
            attempts=t.attempts, run_seconds=t.run_seconds))
    runs = tuple(store.runs(exp_row.id))
    return ExperimentData(
        experiment=experiment, metric=metric, goal=goal, final=final,
        studies=tuple(s.name for s in store.studies(exp_row.id)), trials=tuple(trials),
        notes=tuple(store.notes(exp_row.id)), runs=runs)

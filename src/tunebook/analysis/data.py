"""Experiment data: trials with their summaries and curves, under a chosen objective.

:class:`TrialData` is the one trial record above the store (the store's own row type is
:class:`tunebook.store.sql.TrialRow`), and :func:`load` the one loader: the command line's ``best``
and ``trials``, :func:`tunebook.trial_records`, the analysis and the report all read trials
through it, so they summarise and rank them by the same :class:`~tunebook.objective.Objective`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from tunebook.experiment import Experiment
from tunebook.objective import CurveSummary, Goal, Objective, resolve
from tunebook.search.space import Hyperparameter
from tunebook.store.api import RunRow, StoreAPI, TrialRow

__all__ = ["Curve", "ExperimentData", "TrialData", "load"]

T = TypeVar("T")


@dataclass(frozen=True)
class Curve:
    """One metric of one trial: parallel lists of steps (increasing) and values."""

    steps: tuple[int, ...]
    values: tuple[float, ...]
    #: 1 when the curve has every stored point; k > 1 when :func:`load` read a sample of a
    #: long curve (the steps that are multiples of k, the first evaluation, max_train_steps).
    every: int = 1

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def sampled(self) -> bool:
        """Only a sample of the stored points (a large experiment's report, :func:`load`)."""
        return self.every > 1

    def finite(self) -> Curve:
        """The same curve without NaN or infinite points."""
        if len(self.steps) == len(self.values) and all(map(math.isfinite, self.values)):
            return self
        pairs = [(s, v) for s, v in zip(self.steps, self.values, strict=True) if math.isfinite(v)]
        return Curve(tuple(s for s, _ in pairs), tuple(v for _, v in pairs), self.every)


@dataclass(frozen=True)
class TrialData:
    """A trial with its summary under the chosen objective and its curves (every metric's, or
    those the loader was asked for)."""

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
    def trial_id(self) -> int:
        """The store's id of the trial (the name :func:`tunebook.trial_records` users know)."""
        return self.id

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

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict without the curves (the ``tunebook trials --format json``
        and ``best --format json`` schema)."""
        return {
            "study": self.study, "index": self.index, "status": self.status,
            "params": self.params, "seed": self.seed, "attempts": self.attempts,
            "best_step": self.best_step, "best_value": self.best_value,
            "final_step": self.final_step, "final_value": self.final_value,
            "run_seconds": round(self.run_seconds, 3), "trial_id": self.id,
            "error": self.error, "infeasible_reason": self.infeasible_reason,
            "infeasible_step": self.infeasible_step,
        }


@dataclass(frozen=True)
class ExperimentData:
    """Everything the report needs, as plain data.

    Attributes:
        experiment: the experiment as configured (roles, search space, lengths).
        metric, goal, final: the objective used for every summary in ``trials``
            (:attr:`objective` as one value).
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
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()``, computed once per data and key: analyses derived from the whole
        experiment (the resolution of a metric, the comparison of the studies) are shared by
        every check and plot that needs them instead of being recomputed, and can never
        differ between two parts of one report."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    @cached_property
    def objective(self) -> Objective:
        """The objective every summary and ranking of this data follows."""
        return Objective(self.metric, self.goal, "final" if self.final else "best")

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment.name

    def value(self, trial: TrialData) -> float | None:
        """``trial``'s objective value (best or final as chosen)."""
        return self.objective.value(trial)

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b``."""
        return self.objective.better(a, b)

    def sort_key(self, trial: TrialData) -> tuple[float, int, int]:
        """Sort key putting the best feasible trials first, unusable ones last."""
        return self.objective.rank_key(trial)

    def ranked(self, study: str | None = None) -> list[TrialData]:
        """Completed trials with a finite objective, best first (optionally one study)."""
        # Every check and plot ranks; sorting 10,000 trials each time cost seconds.
        return list(self.memo(("ranked", study), lambda: self.objective.ranked(
            t for t in self.trials if study is None or t.study == study)))

    def varied(self) -> dict[str, Hyperparameter]:
        """The nuisance hyperparameters (the ones the search varied): the shared ones and the
        conditional ones (``nuisance_for``), which only some studies' trials have in their
        ``params``."""
        return dict(self.experiment.searched.items())


# Statuses whose best/final values the store keeps under the experiment's own objective: the
# worker writes them when the attempt ends and the runner rewrites them when the objective
# changes. Other trials (running, pending, or failed by the runner after a lost worker) are
# summarised from their curves.
_SUMMARISED = ("completed", "infeasible")
#: The fewest points per curve :func:`load` samples (enough for the shape of a curve and a
#: trend over its last fifth).
SAMPLE_MIN_POINTS = 10
# Above this many trials to read, one query for the experiment beats an IN list of ids.
_IN_LIST_LIMIT = 500


def load(store: StoreAPI, name: str, metric: str | None = None, goal: str | None = None,
         final: bool = False, metrics: Sequence[str] | None = None,
         current: bool = False, curves: bool = True, budget: int | None = None,
         full_top: int = 0) -> ExperimentData:
    """Read experiment ``name`` from ``store`` with every curve (or only ``metrics``, plus the
    objective's), each trial summarised under the objective resolved by
    :func:`tunebook.objective.resolve` from the experiment's and ``metric``/``goal``/``final``.

    ``current`` keeps only the trials within each study's current budget: lowering
    ``search.trials`` between runs leaves the trials past the new budget in the store, dormant
    (they come back if the budget grows), and what is shown counts only the others, like the
    runner does.

    ``curves=False`` returns no curves (``tunebook best`` and ``trials`` need only the values):
    under the experiment's own objective, finished trials then take the best and final values
    the store already holds, so only the curves of trials still running are read.

    ``budget`` bounds what a large experiment's curves cost: about that many points of each
    metric over all trials, at least :data:`SAMPLE_MIN_POINTS` per curve. When a curve has
    more evaluations than ``points = max(SAMPLE_MIN_POINTS, budget // trials)``
    (``max_train_steps / eval_every`` of them), the curves of finished trials beyond each
    study's ``full_top`` best are read as a sample taken by the database (:attr:`Curve.every`:
    the steps that are multiples of ``k × eval_every``, ``k = ceil(evaluations / points)``,
    plus the first evaluation, ``max_train_steps`` and each curve's last point, where a trial
    that stopped early ended). The best ``full_top`` trials of each
    study, trials the store has not summarised, and every trial under another objective than
    the experiment's, keep every point; summaries always come from the store or from full
    curves, never from a sample. ``budget=None`` reads every point.
    """
    exp_row = store.require_experiment(name)
    experiment = Experiment.from_dict(exp_row.config, source=f"store:{name}")
    objective = resolve(experiment.objective, metric, goal, final)
    studies = store.studies(exp_row.id)
    rows = store.trials(exp_row.id)
    if current:
        budgets = {st.name: st.budget for st in studies}
        rows = [t for t in rows if t.index < budgets.get(t.study, 0)]
    stored = not curves and (objective.metric, objective.goal) == (
        experiment.objective.metric, experiment.objective.goal)
    every = _sample_every(experiment, budget, len(rows)) if curves else 1
    if every > 1 and (objective.metric, objective.goal) == (experiment.objective.metric,
                                                           experiment.objective.goal):
        full = _full_curves(objective, rows, full_top)
        measured = store.curves(
            exp_row.id, every=every, keep=(experiment.eval_every, experiment.max_train_steps),
            metrics=None if metrics is None else [*metrics, objective.metric],
            skip=sorted(full))
        measured += _curves(store, exp_row.id, objective.metric, metrics, False,
                            sorted(full), every_metric=True)
    else:
        every, full = 1, set()
        measured = _curves(store, exp_row.id, objective.metric, metrics, curves,
                           [t.id for t in rows if not (stored and t.status in _SUMMARISED)])
    by_trial: dict[int, dict[str, tuple[Sequence[int], Sequence[float]]]] = {}
    for tid, m, steps, values in measured:  # each curve once
        by_trial.setdefault(tid, {})[m] = (steps, values)
    trials = []
    for t in rows:
        k = 1 if t.id in full else every
        tc = {m: Curve(tuple(s), tuple(v), k)
              for m, (s, v) in sorted(by_trial.get(t.id, {}).items())}
        c = tc.get(objective.metric)
        if (stored or k > 1) and t.status in _SUMMARISED:
            s = CurveSummary(t.best_step, t.best_value, t.final_step, t.final_value)
        else:
            s = objective.summarize(zip(c.steps, c.values, strict=True) if c else [])
        trials.append(TrialData(
            id=t.id, study=t.study, index=t.index, status=t.status, params=t.params,
            seed=t.seed, best_step=s.best_step, best_value=s.best_value,
            final_step=s.final_step, final_value=s.final_value, curves=tc if curves else {},
            error=t.error, infeasible_reason=t.infeasible_reason,
            infeasible_step=t.infeasible_step, attempts=t.attempts, run_seconds=t.run_seconds))
    return ExperimentData(
        experiment=experiment, metric=objective.metric, goal=objective.goal,
        final=objective.final, studies=tuple(st.name for st in studies), trials=tuple(trials),
        notes=tuple(store.notes(exp_row.id)), runs=tuple(store.runs(exp_row.id)))


def _sample_every(experiment: Experiment, budget: int | None, trials: int) -> int:
    """Steps between two sampled points of a curve (1: every point) for :func:`load`."""
    if budget is None or experiment.eval_every <= 0:
        return 1
    points = max(SAMPLE_MIN_POINTS, budget // max(1, trials))
    evaluations = experiment.max_train_steps // experiment.eval_every
    return 1 if evaluations <= points else experiment.eval_every * -(-evaluations // points)


def _full_curves(objective: Objective, rows: Sequence[TrialRow], top: int) -> set[int]:
    """Trials whose every point :func:`load` reads when it samples the others: each study's
    ``top`` best by the summaries the store holds, and every trial it has not summarised."""
    full = {t.id for t in rows if t.status not in _SUMMARISED}
    by_study: dict[str, list[TrialRow]] = {}
    for t in rows:
        by_study.setdefault(t.study, []).append(t)
    for trials in by_study.values():
        full.update(t.id for t in objective.ranked(trials)[:top])
    return full


def _curves(store: StoreAPI, experiment_id: int, objective: str,
            metrics: Sequence[str] | None, curves: bool,
            unsummarised: Sequence[int], every_metric: bool = False
            ) -> list[tuple[int, str, Sequence[int], Sequence[float]]]:
    """The curves :func:`load` needs, in one query as narrow as it can be (``every_metric``:
    all the curves of the ``unsummarised`` trials, not only the objective's)."""
    wanted = None if metrics is None else list(dict.fromkeys([objective, *metrics]))
    if curves:
        return store.curves(experiment_id, metrics=wanted)
    if not unsummarised:
        return []
    if not every_metric:
        wanted = [objective]
    if len(unsummarised) <= _IN_LIST_LIMIT:
        return store.curves(experiment_id, trial_ids=unsummarised, metrics=wanted)
    keep = set(unsummarised)
    return [c for c in store.curves(experiment_id, metrics=wanted) if c[0] in keep]

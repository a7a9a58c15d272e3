"""The objective: which metric, which direction, best over training or final value.

One place for the rules every part of tunebook ranks trials by — the command line's ``best`` and
``trials``, the stored summaries the runner keeps, the analysis and the report. Copies of these
rules drifted apart before (a maximised metric named on the command line was minimised there and
maximised in the report), so nothing else compares objective values by hand.

The playbook's first advantage of non-adaptive search is that the objective can change after the
fact: :func:`resolve` builds one from the experiment's and the command line's choices, and every
summary is recomputed from the stored curves under it. This module imports nothing of tunebook:
every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from tunebook.core.numeric import finite

__all__ = ["CurveSummary", "Goal", "Mode", "Objective", "Ranked", "guess_goal", "parse_goal",
           "resolve", "summarize"]

Goal = Literal["minimize", "maximize"]
Mode = Literal["best", "final"]

_GOALS: dict[str, Goal] = {"minimize": "minimize", "maximize": "maximize",
                           "min": "minimize", "max": "maximize"}

_HIGHER_IS_BETTER = ("acc", "accuracy", "auc", "f1", "precision", "recall", "bleu", "rouge",
                     "map", "ndcg", "iou", "dice", "r2", "reward", "return", "score")


def guess_goal(metric: str) -> Goal:
    """The likely direction of a metric named without a goal (the command line's ``--metric``).

    Accuracies, AUC, F1, BLEU, rewards and scores are maximised; losses, errors, perplexity
    and anything unknown are minimised.
    """
    words = [w for w in metric.lower().replace("-", "_").split("_") if w]
    return "maximize" if any(w in _HIGHER_IS_BETTER for w in words) else "minimize"


def parse_goal(text: object) -> Goal | None:
    """``minimize``/``maximize`` (or ``min``/``max``) as a :data:`Goal`; None for anything else,
    for the caller to report where the value came from."""
    return _GOALS.get(text) if isinstance(text, str) else None


class Ranked(Protocol):
    """What ranking needs of a trial: the store's rows and the analysis records both have it."""

    @property
    def id(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def best_value(self) -> float | None: ...
    @property
    def final_value(self) -> float | None: ...


R = TypeVar("R", bound=Ranked)


@dataclass(frozen=True)
class CurveSummary:
    """Best (retrospective) and final points of one metric's curve; None when absent."""

    best_step: int | None
    best_value: float | None
    final_step: int | None
    final_value: float | None

    def value(self, final: bool = False) -> float | None:
        """The final value when ``final`` else the best value."""
        return self.final_value if final else self.best_value

    def as_dict(self) -> dict[str, int | float | None]:
        """Plain dict with best_step, best_value, final_step, final_value."""
        return {"best_step": self.best_step, "best_value": self.best_value,
                "final_step": self.final_step, "final_value": self.final_value}


@dataclass(frozen=True)
class Objective:
    """The metric trials are ranked by, its direction, and which point of a curve counts.

    Attributes:
        metric: the reported metric's name.
        goal: ``"minimize"`` or ``"maximize"``.
        mode: ``"best"`` (the best evaluation over training, the playbook's retrospective
            checkpoint) or ``"final"`` (the last evaluation).

    An experiment's objective can be changed after trials have run: every metric is stored at
    every evaluation.
    """

    metric: str
    goal: Goal = "minimize"
    mode: Mode = "best"

    @property
    def final(self) -> bool:
        """True when trials are ranked by their final value."""
        return self.mode == "final"

    @property
    def sign(self) -> float:
        """+1 for a minimised objective, -1 for a maximised one: ``value * sign``, lower is
        better."""
        return 1.0 if self.goal == "minimize" else -1.0

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` under this objective."""
        return a < b if self.goal == "minimize" else a > b

    def value(self, trial: Ranked | CurveSummary) -> float | None:
        """The value a trial is ranked by: its final value or its best over training."""
        return trial.final_value if self.final else trial.best_value

    def usable(self, trial: Ranked) -> bool:
        """Completed with a finite value: the trials a ranking shows."""
        v = self.value(trial)
        return trial.status == "completed" and finite(v) is not None

    def rank_key(self, trial: Ranked) -> tuple[float, int, int]:
        """Sort key: usable trials best first (ties by index, then id: the earlier trial), then
        infeasible, failed, unfinished or value-less ones by id."""
        v = self.value(trial)
        if v is None or not self.usable(trial):
            return (math.inf, 0, trial.id)
        return (v * self.sign, trial.index, trial.id)

    def ranked(self, trials: Iterable[R]) -> list[R]:
        """The usable trials, best first (see :meth:`rank_key`)."""
        return sorted((t for t in trials if self.usable(t)), key=self.rank_key)

    def best_of(self, values: Iterable[float | None]) -> float | None:
        """The best finite value, or None when there is none."""
        best: float | None = None
        for v in values:
            if v is not None and finite(v) is not None and (best is None or self.better(v, best)):
                best = v
        return best

    def best_point(self, points: Iterable[tuple[int, float]]) -> tuple[int, float] | None:
        """The best finite ``(step, value)`` of a curve; ties keep the earliest step (the
        cheaper checkpoint). None when no value is finite."""
        return self._best_of_sorted(sorted(points))

    def _best_of_sorted(self, pts: Sequence[tuple[int, float]]) -> tuple[int, float] | None:
        """:meth:`best_point` of points already in step order."""
        values = [v for _, v in pts]
        if values and all(type(v) is float for v in values) and all(map(math.isfinite, values)):
            # Every value a finite float (most curves): the first best, found in C.
            pick = min if self.goal == "minimize" else max
            i = pick(range(len(values)), key=values.__getitem__)
            return pts[i][0], values[i]
        best: tuple[int, float] | None = None
        for step, v in pts:
            if finite(v) is not None and (best is None or self.better(v, best[1])):
                best = (step, v)
        return best

    def best_step(self, points: Iterable[tuple[int, float]]) -> int | None:
        """The step of the best finite point of a curve (see :meth:`best_point`)."""
        best = self.best_point(points)
        return None if best is None else best[0]

    def summarize(self, points: Iterable[tuple[int, float]]) -> CurveSummary:
        """Best and final points of a curve; non-finite values are never best.

        The final point is the last step whatever its value; a non-finite final value is
        stored as None (the trial's status says it diverged).
        """
        pts: Sequence[tuple[int, float]] = sorted(points)
        if not pts:
            return CurveSummary(None, None, None, None)
        best = self._best_of_sorted(pts)
        final_step, final_value = pts[-1]
        return CurveSummary(best[0] if best else None, best[1] if best else None,
                            final_step, finite(final_value))

    def summaries(self, measurements: Iterable[tuple[int, int, str, float]],
                  trial_ids: Iterable[int]) -> dict[int, CurveSummary]:
        """Summaries of this objective's curve for each of ``trial_ids`` from the store's
        ``(trial_id, step, metric, value)`` rows (other metrics are skipped)."""
        points: dict[int, list[tuple[int, float]]] = {}
        for tid, step, metric, value in measurements:
            if metric == self.metric:
                points.setdefault(tid, []).append((step, value))
        return {tid: self.summarize(points.get(tid, [])) for tid in trial_ids}


def summarize(points: Iterable[tuple[int, float]], goal: Goal = "minimize") -> CurveSummary:
    """Best and final points of a curve under ``goal`` (see :meth:`Objective.summarize`)."""
    return Objective("", goal).summarize(points)


def resolve(default: Objective | Mapping[str, Any], metric: str | None = None,
            goal: str | None = None, final: bool | None = None) -> Objective:
    """The objective to rank by: the experiment's (``default``, an :class:`Objective` or its
    stored ``{"metric", "goal"}``) with the caller's choices on top.

    A ``goal`` left out is the experiment's for its own metric, and guessed from the name
    (:func:`guess_goal`) for any other metric. ``final`` chooses the final value over the best
    over training; None keeps the default's mode.

    Raises:
        ValueError: ``goal`` is not minimize, maximize, min or max.
    """
    base = default if isinstance(default, Objective) else Objective(
        str(default["metric"]), parse_goal(default.get("goal", "minimize")) or "minimize")
    metric = metric or base.metric
    if goal is not None:
        chosen = parse_goal(goal)
        if chosen is None:
            raise ValueError(f"goal must be minimize or maximize (or min, max), got {goal!r}")
    else:
        chosen = base.goal if metric == base.metric else guess_goal(metric)
    mode: Mode = base.mode if final is None else ("final" if final else "best")
    return Objective(metric, chosen, mode)

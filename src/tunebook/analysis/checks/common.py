"""Helpers shared by the check families: curves as arrays, rankings, message formatting.

Curves are always read "loss-like": for a maximised objective the values are negated (``sign``
is -1), so lower is better inside every check and each rule reads the same in both directions.
Evidence reports values in the objective's own sign.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.core.numeric import finite
from tunebook.search.space import Hyperparameter, position

Array = npt.NDArray[np.float64]

#: Tiny relative tolerance (0.1% of the value) so that exactly flat or noise-free synthetic
#: curves do not turn float rounding into "changes". (Numerical, not a judgement: not a
#: threshold a user tunes.)
REL_TOL = 1e-3
#: Absolute floor for every tolerance, for objectives whose best value is exactly 0.
ABS_EPS = 1e-9

SEC_INSIGHT = "Extracting insight from experimental results"
SEC_BOUNDARY = "Identifying bad search space boundaries"
SEC_SAMPLING = "Not sampling enough points in the search space"
SEC_CURVES = "Examining the training curves"
SEC_HOW_LONG = "Deciding how long to train when training is not compute-bound"
SEC_PERIODIC = "Setting up periodic evaluations"


def studies(data: ExperimentData) -> list[str]:
    """Study names in order, including any that only appear on trials."""
    out = list(data.studies)
    for t in data.trials:
        if t.study not in out:
            out.append(t.study)
    return out


def sign(data: ExperimentData) -> float:
    """+1 for a minimised objective, -1 for a maximised one (values * sign: lower is better)."""
    return data.objective.sign


def points(trial: TrialData, metric: str, factor: float = 1.0) -> tuple[Array, Array]:
    """Finite points of ``metric``'s curve as float arrays (values multiplied by ``factor``)."""
    curve = trial.curves.get(metric)
    if curve is None:
        return np.zeros(0), np.zeros(0)
    try:
        c = curve.finite()
    except (TypeError, ValueError):
        return np.zeros(0), np.zeros(0)
    steps = np.asarray(c.steps, dtype=np.float64)
    values = np.asarray(c.values, dtype=np.float64) * factor
    return steps, values


def best_curves(data: ExperimentData, factor: float
                ) -> Iterator[tuple[str, TrialData, Array, Array]]:
    """Each study's best trial with its objective curve (sign-adjusted, >= 3 finite points)."""
    for study in studies(data):
        ranked = data.ranked(study)
        if not ranked:
            continue
        steps, y = points(ranked[0], data.metric, factor)
        if len(y) >= 3:
            yield study, ranked[0], steps, y


def objective(data: ExperimentData, trial: TrialData) -> float | None:
    """The trial's objective value when finite."""
    return finite(data.value(trial))


def study_bests(data: ExperimentData) -> list[tuple[str, TrialData, float]]:
    """(study, best trial, its objective) for every study with a ranked trial, best first."""
    out = []
    for study in studies(data):
        ranked = data.ranked(study)
        if ranked and (v := objective(data, ranked[0])) is not None:
            out.append((study, ranked[0], v))
    out.sort(key=lambda e: e[2] * sign(data))
    return out


def fit(x: Array, y: Array) -> tuple[float, float]:
    """Least-squares slope and intercept of ``y`` on ``x`` (slope 0 for a single x)."""
    xm, ym = float(np.mean(x)), float(np.mean(y))
    var = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym))) / var if var > 0 else 0.0
    return slope, ym - slope * xm


def tol(level: float) -> float:
    """The smallest change that is not rounding: REL_TOL of ``level``, at least ABS_EPS."""
    return max(REL_TOL * abs(level), ABS_EPS)


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans and strings are not numbers here)."""
    return finite(value)


def unit(hp: Hyperparameter, value: Any) -> float | None:
    """Position of ``value`` in ``hp``'s scaled space, or None when it has none
    (:func:`tunebook.search.space.position`)."""
    return position(hp, value)


def jsonable(value: Any) -> Any:
    """A parameter value as plain JSON (numbers, strings, booleans, None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def fmt(x: float) -> str:
    """Compact number formatting for messages."""
    return f"{x:.4g}"


def pct(x: float) -> str:
    """A fraction as a whole percentage."""
    return f"{100 * x:.0f}%"


def labels(trials: Iterable[TrialData]) -> list[str]:
    """The trials' labels, in order."""
    return [t.label for t in trials]


def trial_ref(t: TrialData) -> dict[str, Any]:
    """How evidence names a trial."""
    return {"id": t.id, "label": t.label}

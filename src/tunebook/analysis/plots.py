"""The data behind the playbook's plots: axis plots, isolation plots, curves, best-of-k.

Each function returns plain dataclasses; :mod:`tunebook.report` draws them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunebook.analysis import stats
from tunebook.analysis.comparison import Comparison, compare
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.resolution import is_meta_metric
from tunebook.analysis.stats import BOOTSTRAP_DRAWS, BOOTSTRAP_SEED
from tunebook.core.numeric import finite

__all__ = [
    "AxisPlot",
    "BootstrapBox",
    "CurvePlot",
    "IsolationPlot",
    "axis_plots",
    "best_of_k",
    "bucketed_isolation",
    "curve_plots",
    "downsample",
    "isolation",
]


@dataclass(frozen=True)
class AxisPlot:
    """Objective against one varied hyperparameter, every trial of every study.

    ``points`` are ``(x, y, study, label, feasible)``; ``y`` is None for infeasible trials, which
    are drawn at the plot's edge. ``scale`` is ``linear``, ``log``, ``one_minus_log`` or
    ``categorical`` (then ``categories`` lists the values in order).

    ``buckets`` is the playbook's approximate isolation plot for a continuous hyperparameter
    searched jointly: the range is cut into equal slices of its scaled space and each slice keeps
    its best trial, ``(x_low, x_high, value, label)``.
    """

    hyperparameter: str
    scale: str
    low: float | None
    high: float | None
    categories: tuple[Any, ...] | None
    points: tuple[tuple[Any, float | None, str, str, bool], ...]
    buckets: tuple[tuple[float, float, float, str], ...] = ()


@dataclass(frozen=True)
class IsolationPlot:
    """The best trial per scientific value (nuisance optimised away), all trials behind it.

    ``groups`` holds, per study: ``study``, ``label`` (its scientific values), ``best``
    (``{"trial", "value", "step"}`` or None), ``values`` (``[label, value]`` of every completed
    trial), ``infeasible`` and ``failed`` counts. ``summary`` says in plain words what the
    comparison shows, including when the difference is within the spread.
    """

    scientific: tuple[str, ...]
    groups: tuple[dict[str, Any], ...]
    summary: str
    spread: float | None
    verdict: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CurvePlot:
    """One metric's curves for a set of trials: ``series`` of ``(label, steps, values)``."""

    metric: str
    series: tuple[tuple[str, tuple[int, ...], tuple[float | None, ...]], ...]


@dataclass(frozen=True)
class BootstrapBox:
    """Best-of-k over resampled trials of one study (the playbook's Figure 3).

    ``stats`` are ``(k, p5, q1, median, q3, p95)``; infeasible trials count as failures.
    """

    study: str
    n: int
    stats: tuple[tuple[int, float, float, float, float, float], ...]
    seed: int = BOOTSTRAP_SEED
    draws: int = BOOTSTRAP_DRAWS
    notes: tuple[str, ...] = field(default_factory=tuple)


def axis_plots(data: ExperimentData) -> list[AxisPlot]:
    """One axis plot per varied (nuisance) hyperparameter, all studies together."""
    plots = []
    for name, hp in data.varied().items():
        points = []
        for t in data.trials:
            if t.status not in ("completed", "infeasible") or name not in t.params:
                continue
            v = data.value(t)
            ok = t.feasible and finite(v) is not None
            points.append((t.params[name], v if ok else None, t.study, t.label, ok))
        low, high = hp.bounds or (None, None)
        buckets = bucketed_isolation(data, name)
        plots.append(AxisPlot(name, hp.axis_scale, low, high, hp.choices, tuple(points), buckets))
    return plots


def bucketed_isolation(data: ExperimentData, name: str, buckets: int = 8
                       ) -> tuple[tuple[float, float, float, str], ...]:
    """Best trial per slice of a continuous hyperparameter's range (scaled space).

    The playbook's approximation of an isolation plot from (quasi-)random search data: "bucketing
    the x-axis values of the basic hyperparameter axis plot and taking the best trial in each
    vertical slice". Empty slices are left out.
    """
    hp = data.varied().get(name)
    if hp is None or hp.bounds is None:
        return ()
    best: dict[int, TrialData] = {}
    for t in data.ranked():
        if name not in t.params:
            continue
        k = min(buckets - 1, max(0, int(hp.to_unit(float(t.params[name])) * buckets)))
        if k not in best:  # ranked: the first seen is the best
            best[k] = t
    out = []
    for k in sorted(best):
        t = best[k]
        v = data.value(t)
        if v is None:
            continue
        edges = [hp.from_unit(min(k / buckets, 1 - 1e-12)),
                 hp.from_unit(min((k + 1) / buckets, 1 - 1e-12))]
        out.append((float(edges[0]), float(edges[1]), v, t.label))
    return tuple(out)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def isolation(data: ExperimentData, boxes: list[BootstrapBox] | None = None) -> IsolationPlot:
    """Best trial per study, with the comparison's verdict in plain language.

    The verdict, the spread and every number in the summary are
    :func:`~tunebook.analysis.comparison.compare`'s (the ``isolation`` finding's). ``boxes``
    is not needed (the comparison bootstraps the same pools, with the same seed) and is
    accepted so that a caller holding the report's :func:`best_of_k` can pass it.
    """
    del boxes
    groups = []
    for study in data.studies:
        trials = [t for t in data.trials if t.study == study]
        ranked = data.ranked(study)
        best = ranked[0] if ranked else None
        scientific = {k: v for k, v in (trials[0].params.items() if trials else ())
                      if k in data.experiment.scientific_values}
        groups.append({
            "study": study,
            "label": ", ".join(f"{k}={v}" for k, v in scientific.items()) or study,
            "best": None if best is None else {"trial": best.label, "value": data.value(best),
                                               "step": best.best_step if not data.final
                                               else best.final_step},
            "values": [[t.label, data.value(t)] for t in ranked],
            "infeasible": sum(t.status == "infeasible" for t in trials),
            "failed": sum(t.status == "failed" for t in trials),
            "unfinished": sum(t.status not in ("completed", "infeasible", "failed")
                              for t in trials),
        })
    cmp = compare(data)
    return IsolationPlot(tuple(data.experiment.scientific_values), tuple(groups),
                         _summary(data, groups, cmp), _spread(cmp),
                         None if cmp is None else cmp.verdict,
                         {} if cmp is None else cmp.as_dict())


def _spread(cmp: Comparison | None) -> float | None:
    """The comparison's spread: the largest of the step noise of the best trials, the median
    best-of-n bootstrap IQR and the metric's resolution (None without a comparison)."""
    return None if cmp is None else cmp.spread


def _summary(data: ExperimentData, groups: list[dict[str, Any]], cmp: Comparison | None
             ) -> str:
    metric = data.metric + (" (final)" if data.final else "")
    scored = [g for g in groups if g["best"] is not None]
    if not groups:
        return "The experiment has no studies."
    if not scored:
        return f"No study has a completed trial with a finite {metric} yet: nothing to compare."
    missing = [g["label"] for g in groups if g["best"] is None]
    tail = (f" ({', '.join(missing)} has no completed trial.)" if missing else "")
    if cmp is None:
        g = scored[0]
        if len(groups) == 1:
            return (f"One study: best {metric} {_fmt(g['best']['value'])} "
                    f"({g['best']['trial']}).")
        return (f"Only {g['label']} has a completed trial (best {metric} "
                f"{_fmt(g['best']['value'])}): nothing to compare yet.{tail}")
    return cmp.summary() + tail


def downsample(steps: tuple[int, ...], values: tuple[float, ...], limit: int = 200
               ) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """At most ``limit`` points of a curve, keeping the first, the last and the best-known
    shape (each bucket keeps its min and max); NaN and inf become None (gaps)."""
    if len(steps) <= limit:
        return tuple(steps), tuple(map(finite, values))
    keep = {0, len(steps) - 1}
    buckets = max(1, limit // 2 - 1)
    edges = np.linspace(0, len(steps), buckets + 1).astype(int)
    arr = np.asarray(values, dtype=float)
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        seg = arr[a:b]
        if np.isfinite(seg).any():
            keep.add(a + int(np.nanargmin(np.where(np.isfinite(seg), seg, np.nan))))
            keep.add(a + int(np.nanargmax(np.where(np.isfinite(seg), seg, np.nan))))
        else:
            keep.add(a)
    idx = sorted(keep)
    return tuple(steps[i] for i in idx), tuple(finite(values[i]) for i in idx)


def curve_plots(data: ExperimentData, trials: list[TrialData], limit: int = 200
                ) -> list[CurvePlot]:
    """One plot per metric recorded by any of ``trials``, a series per trial."""
    metrics = sorted({m for t in trials for m in t.curves if not is_meta_metric(m)})
    # The objective first, then validation, then training metrics, then the rest.
    def order(m: str) -> tuple[int, str]:
        if m == data.metric:
            return (0, m)
        if m.startswith(("val", "valid", "eval", "test")):
            return (1, m)
        if m.startswith("train"):
            return (2, m)
        return (3, m)

    plots = []
    for m in sorted(metrics, key=order):
        series = []
        for t in trials:
            c = t.curves.get(m)
            if c is not None and len(c):
                steps, values = downsample(c.steps, c.values, limit)
                series.append((t.label, steps, values))
        plots.append(CurvePlot(m, tuple(series)))
    return plots


def _ks(n: int) -> list[int]:
    ks = [k for k in (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
          if k < n]
    return [*ks, n]


def best_of_k(data: ExperimentData) -> list[BootstrapBox]:
    """Per study: the distribution of the best value among k trials drawn with replacement.

    The pool is :func:`stats.study_pool <tunebook.analysis.stats.study_pool>` (infeasible
    trials stay in it as failures, never best, so a study that often diverges needs more trials
    to be equally sure; failed and unfinished trials are left out) and each ``k`` is
    :func:`stats.best_of_k_quantiles <tunebook.analysis.stats.best_of_k_quantiles>` (seeded per
    call: a study's boxes do not depend on the other studies). A ``k`` whose draws mostly hold no
    feasible trial is left out.
    """
    boxes = []
    for study in data.studies:
        pool = stats.study_pool(data, study)
        if not np.isfinite(pool).any():
            boxes.append(BootstrapBox(study, len(pool), (), notes=("no completed trial",)))
            continue
        rows = []
        for k in _ks(len(pool)):
            qs = stats.best_of_k_quantiles(pool, k, (5, 25, 50, 75, 95))
            if qs is None:
                continue
            if data.objective.sign < 0:
                qs = tuple(-q for q in reversed(qs))
            p5, q1, med, q3, p95 = qs
            rows.append((k, p5, q1, med, q3, p95))
        boxes.append(BootstrapBox(study, len(pool), tuple(rows)))
    return boxes

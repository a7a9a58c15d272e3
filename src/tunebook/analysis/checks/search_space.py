"""Search-space checks: is the best region at an edge of the space, and does a hyperparameter
matter at all?

Both read the model of the whole space in :mod:`tunebook.analysis.surrogate` (how the
objective depends on each nuisance hyperparameter after accounting for the others, with a
permutation p-value), fitted once per experiment, instead of where the best few trials sit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding, Severity
from tunebook.analysis.resolution import resolution
from tunebook.analysis.surrogate import Effect, Side, Surrogate, surrogate
from tunebook.search.space import Float, Int

__all__ = ["SearchSpaceThresholds", "check_boundary", "check_no_effect"]


@dataclass(frozen=True)
class SearchSpaceThresholds:
    """Thresholds of the search-space checks (``checks: {search_space: {...}}``)."""

    family: ClassVar[str] = "search_space"

    #: "At the edge": the outer 10% of the range in the scaled (e.g. log) space, roughly the
    #: width of one bucket of an axis plot with 5 columns per side.
    edge_fraction: float = 0.1
    #: The improvement toward an edge is measured over the outer quarter of the range: a
    #: curve that has levelled off before the edge is not a trend into it ...
    trend_fraction: float = 0.25
    #: ... by a line through the trials in the outer half of the range on that side (with the
    #: other hyperparameters accounted for) ...
    trend_window: float = 0.5
    #: ... which must fall toward the edge by at least 2.5 standard errors of that line (the
    #: one-sided 2.5% t quantile for the 6-10 trials such a window usually holds; the side
    #: is chosen where the data look best, so a plain 2 fires on noise too often): a
    #: significant hyperparameter whose trend into this edge is noise (a weight decay that is
    #: flat at small values and hurts at large ones) is not a boundary.
    trend_se_mult: float = 2.5
    #: p-value grades of the permutation test: below 0.01 strong evidence (problem, with the
    #: trial conditions below), below 0.05 a warning, below 0.1 a hint (info).
    p_problem: float = 0.01
    p_warning: float = 0.05
    p_info: float = 0.1
    #: A problem also needs this many distinct nuisance points (two studies' trials at one
    #: shared point count once) in the outer slab at that edge (one or two lucky points are
    #: not strong evidence) ...
    problem_min_trials: int = 3
    #: ... and one of the best 10% of all trials among them (the best trial itself with up to
    #: 10 trials): with many trials and several hyperparameters, which single trial is best
    #: is decided by the other hyperparameters as much as by this one.
    problem_top_fraction: float = 0.1
    #: Widen a bad side by half the current scaled range ...
    widen_fraction: float = 0.5
    #: ... but a log scale by at most one decade per side: beyond that the model extrapolates
    #: (and a weight decay of 3e-8 is no different from 1e-7).
    max_log_ratio: float = 10.0
    #: ``no_effect`` needs this many feasible trials in the model ...
    no_effect_min_trials: int = 10
    #: ... and this many more distinct nuisance points (studies share them) than the model
    #: has effect coefficients, less one: with fewer, the permutation test has little power
    #: and "no effect found" says nothing (12 points over 3 hyperparameters, 6 coefficients,
    #: is not enough) ...
    no_effect_min_dof: int = 10
    #: ... a permutation p-value at least this large (the fit is as good as with shuffled
    #: values half the time or more) ...
    no_effect_p: float = 0.5
    #: ... and a fitted effect no larger than the metric's resolution or this many residual
    #: standard deviations of the model: about the spread two trials at the same point could
    #: show. (With the degrees of freedom above, a real effect of that size would usually give
    #: a small p-value.)
    no_effect_noise_mult: float = 2.0


DEFAULTS = SearchSpaceThresholds()

#: Trials a local slope needs (fewer: the model's curve is used instead). Numerical, not a
#: judgement: a line through 3 points has 1 degree of freedom left.
MIN_LOCAL = 4


def _widened(hp: Float | Int, side: str, fraction: float = DEFAULTS.widen_fraction,
             max_ratio: float = DEFAULTS.max_log_ratio) -> tuple[float | int, bool]:
    """The bound on ``side`` moved out by fraction of the scaled range.

    Returns the suggested bound and whether it was clamped at a natural limit. Log scales
    multiply/divide (so never reach 0), by at most ``max_ratio``; ``one_minus_log`` works on
    ``1 - value`` (also at most ``max_ratio``); integers round outward. A linear or
    ``one_minus_log`` range that starts at or above 0 is not extended below 0, an integer
    range starting at or above 1 not below 1, and a linear float range inside ``[0, 1]`` (a
    fraction: dropout, label smoothing) not above 1.
    """
    low, high = hp.low, hp.high
    if hp.integer:
        if hp.scale == "log":
            r = min(((high + 1) / low) ** fraction, max_ratio)
            if side == "low":
                new_i = max(1, math.floor(low / r))
                return new_i, new_i == low
            return max(high + 1, math.ceil((high + 1) * r) - 1), False
        half = (high + 1 - low) * fraction
        if side == "high":
            return math.ceil(high + half), False
        new_i = math.floor(low - half)
        floor_i = 1 if low >= 1 else 0 if low >= 0 else None
        if floor_i is not None and new_i < floor_i:
            return floor_i, True
        return new_i, False
    if hp.scale == "log":
        r = min((high / low) ** fraction, max_ratio)
        return (low / r, False) if side == "low" else (high * r, False)
    if hp.scale == "one_minus_log":
        q_low, q_high = 1.0 - low, 1.0 - high  # q_low > q_high > 0
        r = min((q_low / q_high) ** fraction, max_ratio)
        if side == "high":
            return 1.0 - q_high / r, False
        new = 1.0 - q_low * r
        if low >= 0 and new < 0:
            return 0.0, True
        return new, False
    width = (high - low) * fraction
    if side == "high":
        new = high + width
        if low >= 0 and high <= 1 and new > 1:
            return 1.0, True
        return new, False
    new = low - width
    if low >= 0 and new < 0:
        return 0.0, True
    return new, False


def _ranges(data: ExperimentData) -> dict[str, Float | Int]:
    return {n: r for n, hp in data.varied().items() if (r := hp.as_range()) is not None}


def _gain(model: Surrogate, e: Effect, side: Side, th: SearchSpaceThresholds
          ) -> tuple[float, float]:
    """The improvement toward the edge over the last ``trend_fraction`` of the range, and its
    standard error.

    The least-squares line through the partial residuals (the objective with the study
    intercepts and the other hyperparameters' effects removed) of the trials in the outer
    ``trend_window`` of the range on that side; its drop over ``trend_fraction`` toward the
    edge. A local line follows a curve that is steep at one end and still falling at the other
    (which a polynomial over the whole range flattens), and its standard error says whether the
    trial noise could make the drop. With fewer than ``MIN_LOCAL`` trials in the window: the
    fitted curve's own drop over the last ``trend_fraction``, standard error 0.
    """
    f = th.trend_fraction
    window = [i for i, u in enumerate(e.units)
              if (u <= th.trend_window if side == "low" else u >= 1.0 - th.trend_window)]
    x = np.asarray([e.units[i] for i in window])
    if len(window) < MIN_LOCAL or float(np.ptp(x)) <= 0:
        return (e.at(f) - e.at(0.0) if side == "low" else e.at(1.0 - f) - e.at(1.0)), 0.0
    partial = model.partial_residuals(e.name)
    y = np.asarray([partial[i] for i in window])
    slope, intercept = c.fit(x, y)
    resid = y - (slope * x + intercept)
    se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(np.sum((x - x.mean()) ** 2)))
    return (slope if side == "low" else -slope) * f, se * f


def _level(data: ExperimentData, ranked: list[TrialData]) -> float:
    """The size of the best value (where the metric's resolution is judged)."""
    v = c.objective(data, ranked[0]) if ranked else None
    return abs(v) if v is not None else 0.0


def _edge(e: Effect, th: SearchSpaceThresholds) -> Side | None:
    """The side whose outer slab holds the fitted optimum, if any."""
    if e.minimiser <= th.edge_fraction:
        return "low"
    if e.minimiser >= 1.0 - th.edge_fraction:
        return "high"
    return None


def _trial_entry(data: ExperimentData, t: TrialData, name: str, u: float) -> dict[str, Any]:
    return {**c.trial_ref(t), "value": c.jsonable(t.params.get(name)), "unit": u,
            "objective": c.objective(data, t)}


def _near_edge(model: Surrogate, e: Effect, side: Side, fraction: float) -> list[int]:
    """The trials in the outer slab, or else the one trial closest to that edge."""
    slab = e.in_slab(side, fraction)
    if slab or not e.units:
        return slab
    key = (lambda i: e.units[i]) if side == "low" else (lambda i: -e.units[i])
    return [min(range(len(e.units)), key=key)]


@check("boundary", playbook_section=c.SEC_BOUNDARY, thresholds=SearchSpaceThresholds)
def check_boundary(data: ExperimentData, th: SearchSpaceThresholds = DEFAULTS) -> list[Finding]:
    """The best region of a continuous hyperparameter lies at an edge of its range ("Is the
    search space large enough?"), judged from a model of the whole space.

    The model (:mod:`tunebook.analysis.surrogate`: every feasible trial, an intercept per
    study, a polynomial effect of degree 1-3 per hyperparameter in its scaled coordinate, a
    permutation p-value per hyperparameter) gives each Float or Int hyperparameter's effect
    with the others accounted for. A side (``low``/``high``) is flagged when all of:

    * the fitted effect is best within the outer ``edge_fraction`` (10%) of the range there;
    * it still improves toward the edge (:func:`_gain`): a line through the partial residuals
      of the trials in the outer ``trend_window`` (50%) of the range falls, over the last
      ``trend_fraction`` (25%), by more than the metric's resolution
      (:meth:`~tunebook.analysis.resolution.Resolution.min_change` at the best value) and by
      at least ``trend_se_mult`` (2.5) of its standard errors;
    * the hyperparameter's effect is significant: ``p < p_info`` (0.1).

    So a monotone trend into an edge fires even when few trials landed near it, and an edge
    whose trials are mediocre does not (the model does not put the optimum there).

    Severity grows with evidence: ``problem`` when ``p < p_problem`` (0.01), at least
    ``problem_min_trials`` (3) distinct nuisance points (studies share them) lie in the outer
    slab and one of their trials is among the best ``problem_top_fraction`` (10%, at least
    the best trial) of all trials; else ``warning`` when ``p < p_warning`` (0.05); else
    ``info``. A single trial at an edge is therefore at most a warning. The finding suggests
    the widened bound (half the scaled range, at most one decade per side on a log scale,
    natural limits kept: see :func:`_widened`), lists the trials in the slab (or the one
    closest to the edge) and advises ``{"range:NAME": "widen_low" | "widen_high"}``. Discrete
    and categorical hyperparameters have no "outside" to widen into and are not flagged.
    """
    ranges = _ranges(data)
    if not ranges:
        return []
    model = surrogate(data)
    res = resolution(data)
    ranked = data.ranked()
    level = _level(data, ranked)
    findings = []
    for name, hp in ranges.items():
        e = model.effects.get(name)
        if e is None or not e.ordered:
            continue
        side = _edge(e, th)
        if side is None or e.p_value >= th.p_info:
            continue
        gain, gain_se = _gain(model, e, side, th)
        need = max(res.min_change(level), c.tol(level))
        if gain <= need or gain < th.trend_se_mult * gain_se:
            continue
        near = _near_edge(model, e, side, th.edge_fraction)
        slab = e.in_slab(side, th.edge_fraction)
        # Studies share their points: two studies' trials at one point are one point.
        names = list(data.varied())
        points = len({tuple(repr(model.trials[i].params.get(k)) for k in names) for i in slab})
        n_top = max(1, math.ceil(th.problem_top_fraction * len(ranked)))
        top = {t.id for t in ranked[:n_top]}
        best_at = any(model.trials[i].id in top for i in slab)
        severity: Severity = (
            "problem" if (e.p_value < th.p_problem and points >= th.problem_min_trials
                          and best_at)
            else "warning" if e.p_value < th.p_warning else "info")
        findings.append(_boundary_finding(data, th, model, hp, e, side, severity,
                                          (gain, gain_se, need), near, (len(slab), points),
                                          (best_at, n_top)))
    return findings


def _boundary_finding(data: ExperimentData, th: SearchSpaceThresholds, model: Surrogate,
                      hp: Float | Int, e: Effect, side: Side, severity: Severity,
                      trend: tuple[float, float, float], near: list[int],
                      slab: tuple[int, int], best: tuple[bool, int]) -> Finding:
    name = e.name
    gain, gain_se, need = trend
    suggested, clamped = _widened(hp, side, th.widen_fraction, th.max_log_ratio)
    bound = hp.low if side == "low" else hp.high
    stuck = clamped and suggested == bound
    widen = (f"the {side} bound {c.fmt(bound)} looks like a natural limit"
             if stuck else f"widen the {side} bound from {c.fmt(bound)} to {c.fmt(suggested)}")
    if stuck:
        action = (f"The best region of {name} is at its {side} limit: if values beyond "
                  f"{c.fmt(bound)} are valid, run another study with that bound expanded; if "
                  "not, the optimum may be at the limit (consider reparameterising).")
    else:
        action = ("The search space is probably not wide enough: run another study with "
                  f"the {side} bound of {name} expanded (e.g. to {c.fmt(suggested)}) until the "
                  "best observed point is no longer close to the boundary.")
        if side == "low" and hp.scale == "log":
            action += (f" If values of {name} below {c.fmt(bound)} all act like 0 (the feature "
                       "off), try it off instead.")
    examples = resolution(data).examples_text(gain)
    trials = [model.trials[i] for i in near]
    where = "bottom" if side == "low" else "top"
    best_at, top = best
    best_text = ("the best trial overall" if top == 1
                 else f"one of the best {top} trials overall")
    n_slab, n_points = slab
    at_points = f" at {n_points} point{'s' if n_points != 1 else ''}" if n_points < n_slab else ""
    slab_text = (f"{n_slab} trial{'s' if n_slab != 1 else ''}{at_points} in the {where} "
                 f"{c.pct(th.edge_fraction)}" + (f", including {best_text}" if best_at else ""))
    message = (f"{name}: a model of all {len(model.trials)} feasible trials puts its best "
               f"region at the {side} edge of its {hp.scale} range [{c.fmt(hp.low)}, "
               f"{c.fmt(hp.high)}] (the objective improves by {c.fmt(gain)}"
               f"{f' ({examples})' if examples else ''} over the last "
               f"{c.pct(th.trend_fraction)} toward it; p = {e.p_value:.3g}; {slab_text}); "
               f"{widen}.")
    grid = [i / 10 for i in range(11)]
    sign = c.sign(data)
    evidence: dict[str, Any] = {
        "side": side, "scale": hp.scale, "low": hp.low, "high": hp.high,
        "edge_fraction": th.edge_fraction, "trend_fraction": th.trend_fraction,
        "fitted_best_unit": e.minimiser, "fitted_best_value": hp.from_unit(min(e.minimiser,
                                                                                1 - 1e-12)),
        "gain": gain, "gain_se": gain_se, "min_change": need, "p_value": e.p_value,
        "permutations": model.permutations, "n_trials": len(model.trials),
        "n_at_edge": n_slab, "points_at_edge": n_points, "best_at_edge": best_at,
        "top_trials": top, "effect_size": e.size,
        "effect_curve": [[hp.from_unit(min(u, 1 - 1e-12)), sign * e.at(u)] for u in grid],
        "widen_fraction": th.widen_fraction, "max_log_ratio": th.max_log_ratio,
        "clamped": clamped, f"suggested_{side}": suggested,
        "trials": [_trial_entry(data, model.trials[i], name, e.units[i]) for i in near],
    }
    return finding(
        check="boundary", severity=severity, message=message, evidence=evidence, action=action,
        hyperparameter=name, trials=[c.trial_ref(t) for t in trials],
        advice={f"range:{name}": f"widen_{side}"})


@check("no_effect", playbook_section=c.SEC_BOUNDARY, thresholds=SearchSpaceThresholds)
def check_no_effect(data: ExperimentData, th: SearchSpaceThresholds = DEFAULTS
                    ) -> list[Finding]:
    """A continuous hyperparameter with no measurable effect over its whole range.

    From the same model as :func:`check_boundary`, one ``info`` per Float or Int
    hyperparameter when all of:

    * the model has at least ``no_effect_min_trials`` (10) feasible trials, and at least
      ``no_effect_min_dof`` (10) more trials than coefficients and more distinct nuisance
      points than effect coefficients plus one (studies share their points);
    * the permutation p-value is at least ``no_effect_p`` (0.5) (and at least ``p_info``, so
      that this never fires with ``boundary`` on the same hyperparameter);
    * the fitted effect over the whole range (max minus min of the curve) is no larger than
      the metric's resolution at the best value, or ``no_effect_noise_mult`` (2) residual
      standard deviations of the model, whichever is larger.

    Tuning such a hyperparameter spends trials on a dimension that does not move the
    objective: the finding suggests fixing it (at the best trial's value) and advises
    ``{"range:NAME": "fix"}``. The trials listed are those the model was fitted to.
    """
    ranges = _ranges(data)
    if not ranges:
        return []
    model = surrogate(data)
    n = len(model.trials)
    ranked = data.ranked()
    effect_columns = model.columns - model.intercepts
    if (n < th.no_effect_min_trials
            or min(n - model.columns, model.points - 1 - effect_columns) < th.no_effect_min_dof):
        return []
    res = resolution(data)
    level = _level(data, ranked)
    best = ranked[0]
    findings = []
    for name, hp in ranges.items():
        e = model.effects.get(name)
        if e is None or not e.ordered or e.p_value < max(th.no_effect_p, th.p_info):
            continue
        resolution_limit = res.min_change(level)
        noise_limit = th.no_effect_noise_mult * model.sigma
        allowed = max(resolution_limit, noise_limit)
        if not e.size <= allowed:
            continue
        within = ("the metric's resolution" if resolution_limit >= noise_limit
                  else f"{c.fmt(th.no_effect_noise_mult)}× the trials' residual spread")
        value = best.params.get(name)
        shown = c.fmt(value) if isinstance(value, int | float) else str(value)
        examples = res.examples_text(e.size)
        message = (f"{name} has no measurable effect between {c.fmt(hp.low)} and "
                   f"{c.fmt(hp.high)} (fitted effect ≤ {c.fmt(e.size)}"
                   f"{f' ({examples})' if examples else ''}, within {within} "
                   f"{c.fmt(allowed)}; p = {e.p_value:.2g}; {n} trials): consider fixing it.")
        findings.append(finding(
            check="no_effect", severity="info", message=message,
            evidence={"low": hp.low, "high": hp.high, "scale": hp.scale,
                      "effect_size": e.size, "allowed": allowed,
                      "resolution_limit": resolution_limit, "noise_limit": noise_limit,
                      "residual_sd": model.sigma,
                      "p_value": e.p_value, "columns": model.columns,
                      "points": model.points,
                      "permutations": model.permutations, "n_trials": n,
                      "suggested_value": c.jsonable(value)},
            action=(f"Fix {name} (e.g. at {shown}, "
                    "the best trial's value) and spend the trials on the hyperparameters that "
                    "matter; if it should matter, check that the training code uses it."),
            hyperparameter=name, trials=[c.trial_ref(t) for t in model.trials],
            advice={f"range:{name}": "fix"}))
    return findings

"""The playbook's checklist for a finished experiment, as pure functions returning findings.

Each ``check_xxx(data)`` looks at an :class:`ExperimentData` and returns a (possibly empty) list
of :class:`Finding`; nothing is drawn, printed or written. :func:`run_checks` runs them all and
:data:`CHECKS` maps each check's name to its function. Every check copes with missing or partial
data (no completed trial, one-point curves, NaN values, empty studies, an unrecorded metric) by
returning nothing rather than raising.

Checks and the playbook section each one comes from (the deep learning tuning playbook):

- ``boundary``: "Identifying bad search space boundaries" (is the search space large enough?).
- ``overfitting``: "Examining the training curves" (problematic overfitting).
- ``late_variance``: "Examining the training curves" (high step-to-step variance late in
  training).
- ``still_improving``: "Examining the training curves" (are the trials still improving at the
  end of training?), acted on with "Deciding how long to train when training is not
  compute-bound".
- ``saturated_early``: "Examining the training curves" (has performance saturated long before
  the final training step?).
- ``best_step_position``: "Deciding how long to train when training is not compute-bound"
  (where retrospective checkpoint selection finds the best step).
- ``train_loss_increases``: "Examining the training curves" (training loss increasing during
  training usually indicates a bug in the training pipeline).
- ``infeasible``: "Extracting insight from experimental results" (what fraction of the trials
  are infeasible, and where in the space they are).
- ``eval_steps``: "Setting up periodic evaluations" (evaluate at regular step intervals).
- ``failed_trials``: "Extracting insight from experimental results" (trials that fail to run).
- ``enough_trials``: "Not sampling enough points in the search space" (with the bootstrap of
  "How many trials are needed to get good results with quasi-random search?").

Curves are always read "loss-like": for a maximised objective the values are negated, so lower
is better everywhere inside this module and every rule reads the same in both directions.
Evidence reports values in the objective's own sign.

Noise is estimated robustly from a curve's step-to-step differences: the interquartile range
of the first differences (a spread, so a steady trend does not count as noise, and a few jumps
do not dominate it) divided by ``sqrt(2) * 1.349`` (:data:`DIFF_IQR_TO_STD`), which is the
standard deviation of independent evaluation noise. Late-training variance uses the residual
standard deviation of a straight-line fit instead, since a single spike late in training is
exactly what that check is about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import SEVERITIES, Finding, Severity
from tunebook.space import Categorical, Discrete, Float, Hyperparameter, Int
from tunebook.summary import error_line

__all__ = [
    "ABS_EPS",
    "BEST_STEP_EARLY_FRACTION",
    "BEST_STEP_LATE_FRACTION",
    "BEST_STEP_LATE_SHARE",
    "BEST_STEP_MIN_TRIALS",
    "BOOTSTRAP_DRAWS",
    "BOOTSTRAP_SEED",
    "CHECKS",
    "DIFF_IQR_TO_STD",
    "EDGE_FRACTION",
    "INFEASIBLE_FRACTION",
    "LATE_FRACTION",
    "LATE_MIN_POINTS",
    "LATE_NOISE_TO_GAP",
    "LATE_TOP_K",
    "OVERFIT_NOISE_MULT",
    "OVERFIT_REL_RISE",
    "OVERFIT_TOP_K",
    "REL_TOL",
    "SATURATED_BY",
    "STILL_IMPROVING_BEST_AFTER",
    "STILL_IMPROVING_NOISE_MULT",
    "STILL_IMPROVING_TAIL",
    "TOP_AT_EDGE",
    "TOP_K",
    "TRAIN_LOSS_METRIC",
    "TRAIN_LOSS_NOISE_MULT",
    "TRAIN_LOSS_REL_RISE",
    "TRAIN_LOSS_TRIAL_SHARE",
    "WIDEN_FRACTION",
    "check_best_step_position",
    "check_boundary",
    "check_enough_trials",
    "check_eval_steps",
    "check_failed_trials",
    "check_infeasible",
    "check_late_variance",
    "check_overfitting",
    "check_saturated_early",
    "check_still_improving",
    "check_train_loss_increases",
    "run_checks",
]

Array = npt.NDArray[np.float64]

# ----------------------------------------------------------------------------- thresholds
#: Standard deviation of independent noise from the interquartile range of its first
#: differences: a difference of two independent N(0, s^2) draws has standard deviation
#: s*sqrt(2), and a normal IQR is 1.349 std. (The IQR rather than the MAD: the MAD is 0 for
#: alternating noise with an odd number of differences, the IQR is not.)
DIFF_IQR_TO_STD = math.sqrt(2.0) * 1.349
#: Tiny relative tolerance (0.1% of the value) so that exactly flat or noise-free synthetic
#: curves do not turn float rounding into "changes".
REL_TOL = 1e-3
#: Absolute floor for every tolerance, for objectives whose best value is exactly 0.
ABS_EPS = 1e-9

#: "Near the boundary": the outer 10% of the range in the scaled (e.g. log) space, roughly the
#: width of one bucket of an axis plot with 5 columns per side.
EDGE_FRACTION = 0.1
#: How many of the best trials of a study are looked at ("the best points cluster...").
TOP_K = 5
#: How many of those ``TOP_K`` at one edge make a cluster, even if the very best is inside.
TOP_AT_EDGE = 2
#: Widen a bad side by half the current scaled range: enough to move the best point well
#: inside the new range without throwing away the trials already run.
WIDEN_FRACTION = 0.5

#: The playbook checks overfitting in "at least each of the best trials": the best 3 per study.
OVERFIT_TOP_K = 3
#: A rise must exceed 3 noise standard deviations to be a trend, not an unlucky last step.
OVERFIT_NOISE_MULT = 3.0
#: ... and 2% of the best value, so that a statistically clear but negligible drift is ignored.
OVERFIT_REL_RISE = 0.02

#: Late variance is measured on the best 3 trials of each study (the ones being compared).
LATE_TOP_K = 3
#: "Late in training": the last 20% of the evaluations ...
LATE_FRACTION = 0.2
#: ... but never fewer than 3 points (a line fit needs one residual degree of freedom).
LATE_MIN_POINTS = 3
#: Late noise matters once it is half the gap being decided: a lucky or unlucky last step can
#: then reorder the studies.
LATE_NOISE_TO_GAP = 0.5

#: Best step in the last 10% of training ...
STILL_IMPROVING_BEST_AFTER = 0.9
#: ... and a downward trend over the last 25% of the evaluations ...
STILL_IMPROVING_TAIL = 0.25
#: ... whose total drop over that span exceeds two noise standard deviations. (Not one: the
#: fitted drop over 5 points has a standard error of about 1.3 noise, and conditioning on a
#: late best step selects lucky last steps, so a flat noisy curve would fire too often.)
STILL_IMPROVING_NOISE_MULT = 2.0

#: Saturated "long before the final training step": best value (within noise) reached in the
#: first half of training.
SATURATED_BY = 0.5

#: "If the best step is always during the first 10% of training, then the maximum number of
#: steps is way too high" (median over completed trials).
BEST_STEP_EARLY_FRACTION = 0.1
#: "If the best step is consistently in the last 25% of training" ...
BEST_STEP_LATE_FRACTION = 0.75
#: ... where "consistently" means at least 80% of the completed trials.
BEST_STEP_LATE_SHARE = 0.8
#: A median or a share over fewer trials than this says little.
BEST_STEP_MIN_TRIALS = 5

#: The metric name the workloads use for the training loss.
TRAIN_LOSS_METRIC = "train_loss"
#: Training loss at the end above its early minimum by 3 noise standard deviations ...
TRAIN_LOSS_NOISE_MULT = 3.0
#: ... and by 5% of that minimum: a clear, not a marginal, increase.
TRAIN_LOSS_REL_RISE = 0.05
#: Fire when the best trial of a study shows it or at least this share of the trials do.
TRAIN_LOSS_TRIAL_SHARE = 0.25

#: More than 20% infeasible is "a very large fraction" worth acting on (a few divergent points
#: at the edge of a wide learning rate range are expected and harmless).
INFEASIBLE_FRACTION = 0.2

#: Bootstrap of the best-of-n value per study: draws and the fixed seed (reproducible reports).
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 0

# ----------------------------------------------------------------------------- sections
SEC_INSIGHT = "Extracting insight from experimental results"
SEC_BOUNDARY = "Identifying bad search space boundaries"
SEC_SAMPLING = "Not sampling enough points in the search space"
SEC_CURVES = "Examining the training curves"
SEC_HOW_LONG = "Deciding how long to train when training is not compute-bound"
SEC_PERIODIC = "Setting up periodic evaluations"

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

Check = Callable[[ExperimentData], list[Finding]]


# ----------------------------------------------------------------------------- helpers
def _studies(data: ExperimentData) -> list[str]:
    """Study names in order, including any that only appear on trials."""
    out = list(data.studies)
    for t in data.trials:
        if t.study not in out:
            out.append(t.study)
    return out


def _sign(data: ExperimentData) -> float:
    """+1 for a minimised objective, -1 for a maximised one (values * sign: lower is better)."""
    return 1.0 if data.goal == "minimize" else -1.0


def _points(trial: TrialData, metric: str, sign: float = 1.0) -> tuple[Array, Array]:
    """Finite points of ``metric``'s curve as float arrays (values multiplied by ``sign``)."""
    curve = trial.curves.get(metric)
    if curve is None:
        return np.zeros(0), np.zeros(0)
    try:
        c = curve.finite()
    except (TypeError, ValueError):
        return np.zeros(0), np.zeros(0)
    steps = np.asarray(c.steps, dtype=np.float64)
    values = np.asarray(c.values, dtype=np.float64) * sign
    return steps, values


def _best_curves(data: ExperimentData, sign: float
                 ) -> Iterator[tuple[str, TrialData, Array, Array]]:
    """Each study's best trial with its objective curve (sign-adjusted, >= 3 finite points)."""
    for study in _studies(data):
        ranked = data.ranked(study)
        if not ranked:
            continue
        steps, y = _points(ranked[0], data.metric, sign)
        if len(y) >= 3:
            yield study, ranked[0], steps, y

def _diff_noise(y: Array) -> float | None:
    """Noise standard deviation from the IQR of first differences; None under 3 points."""
    if len(y) < 3:
        return None
    q25, q75 = np.percentile(np.diff(y), [25, 75])
    return float(q75 - q25) / DIFF_IQR_TO_STD


def _fit(x: Array, y: Array) -> tuple[float, float]:
    """Least-squares slope and intercept of ``y`` on ``x`` (slope 0 for a single x)."""
    xm, ym = float(np.mean(x)), float(np.mean(y))
    var = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym))) / var if var > 0 else 0.0
    return slope, ym - slope * xm


def _fit_noise(x: Array, y: Array) -> float | None:
    """Residual standard deviation around a straight line (2 dof used); None under 3 points."""
    if len(y) < 3:
        return None
    slope, intercept = _fit(x, y)
    resid = y - (slope * x + intercept)
    return float(math.sqrt(float(np.sum(resid**2)) / (len(y) - 2)))


def _tail(n: int, fraction: float, minimum: int) -> int:
    """How many trailing points make the last ``fraction`` of ``n`` (at least ``minimum``)."""
    return min(n, max(minimum, math.ceil(fraction * n)))


def _tol(level: float) -> float:
    """The smallest change that is not rounding: REL_TOL of ``level``, at least ABS_EPS."""
    return max(REL_TOL * abs(level), ABS_EPS)


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans and strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _unit(hp: Hyperparameter, value: Any) -> float | None:
    """Position of ``value`` in ``hp``'s scaled space, or None when it has none."""
    if isinstance(hp, Categorical):
        return None
    v = _num(value)
    if v is None:
        return None
    try:
        u = hp.to_unit(v)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return u if math.isfinite(u) else None


def _jsonable(value: Any) -> Any:
    """A parameter value as plain JSON (numbers, strings, booleans, None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _objective(data: ExperimentData, trial: TrialData) -> float | None:
    """The trial's objective value when finite."""
    v = data.value(trial)
    return v if v is not None and math.isfinite(v) else None


def _f(x: float) -> str:
    """Compact number formatting for messages."""
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _labels(trials: Iterable[TrialData]) -> list[str]:
    return [t.label for t in trials]


def _trial_ref(t: TrialData) -> dict[str, Any]:
    return {"id": t.id, "label": t.label}


# ----------------------------------------------------------------------------- 1. boundary
def _widened(hp: Float | Int, side: str) -> tuple[float | int, bool]:
    """The bound on ``side`` moved out by WIDEN_FRACTION of the scaled range.

    Returns the suggested bound and whether it was clamped at a natural limit. Log scales
    multiply/divide (so never reach 0); ``one_minus_log`` works on ``1 - value``; integers round
    outward. A linear or ``one_minus_log`` range that starts at or above 0 is not extended below
    0, an integer range starting at or above 1 not below 1, and a linear float range inside
    ``[0, 1]`` (a fraction: dropout, label smoothing) not above 1.
    """
    low, high = hp.low, hp.high
    if isinstance(hp, Int):
        if hp.scale == "log":
            r = ((high + 1) / low) ** WIDEN_FRACTION
            if side == "low":
                new_i = max(1, math.floor(low / r))
                return new_i, new_i == low
            return max(high + 1, math.ceil((high + 1) * r) - 1), False
        half = (high + 1 - low) * WIDEN_FRACTION
        if side == "high":
            return math.ceil(high + half), False
        new_i = math.floor(low - half)
        floor_i = 1 if low >= 1 else 0 if low >= 0 else None
        if floor_i is not None and new_i < floor_i:
            return floor_i, True
        return new_i, False
    if hp.scale == "log":
        r = (high / low) ** WIDEN_FRACTION
        return (low / r, False) if side == "low" else (high * r, False)
    if hp.scale == "one_minus_log":
        q_low, q_high = 1.0 - low, 1.0 - high  # q_low > q_high > 0
        r = (q_low / q_high) ** WIDEN_FRACTION
        if side == "high":
            return 1.0 - q_high / r, False
        new = 1.0 - q_low * r
        if low >= 0 and new < 0:
            return 0.0, True
        return new, False
    width = (high - low) * WIDEN_FRACTION
    if side == "high":
        new = high + width
        if low >= 0 and high <= 1 and new > 1:
            return 1.0, True
        return new, False
    new = low - width
    if low >= 0 and new < 0:
        return 0.0, True
    return new, False


def check_boundary(data: ExperimentData) -> list[Finding]:
    """Best points at the edge of the search space ("Is the search space large enough?").

    For every study and every continuous nuisance hyperparameter (Float or Int), look at the
    study's ``TOP_K`` (5) best completed trials. A side (``low``: ``to_unit(value) <
    EDGE_FRACTION``; ``high``: ``> 1 - EDGE_FRACTION``) is flagged for the study when the study's
    best trial is there, or when at least ``TOP_AT_EDGE`` (2) of its top 5 are there. One
    finding per (hyperparameter, side) lists the studies and trials concerned and suggests the
    widened bound (``suggested_low`` / ``suggested_high``, see :func:`_widened`).

    Severity: ``problem`` when the single best trial of the whole experiment is at that edge
    (the headline result is probably not the best the space offers, and the playbook says to
    run another study with an expanded space); ``warning`` when the best trial of some study
    is (that study may be under-tuned relative to the others); ``info`` when only clusters
    (2 of the top 5, the best inside) are: with no real effect, 2 of 5 points land in a given
    10% slab about 8% of the time, so across studies, hyperparameters and sides a lone
    cluster is often chance.
    Discrete and categorical hyperparameters have no "outside" to widen into and are skipped.
    """
    space = {n: hp for n, hp in data.varied().items() if isinstance(hp, Float | Int)}
    if not space:
        return []
    ranked_all = data.ranked()
    overall_best = ranked_all[0] if ranked_all else None
    studies = _studies(data)
    hits: dict[tuple[str, str], list[dict[str, Any]]] = {}
    overall_hit: dict[tuple[str, str], bool] = {}
    for study in studies:
        top = data.ranked(study)[:TOP_K]
        if not top:
            continue
        for name, hp in space.items():
            units = [_unit(hp, t.params.get(name)) for t in top]
            for side in ("low", "high"):
                at = [(t, u) for t, u in zip(top, units, strict=True) if u is not None and (
                    u < EDGE_FRACTION if side == "low" else u > 1 - EDGE_FRACTION)]
                best_at = any(t.id == top[0].id for t, _ in at)
                if not best_at and len(at) < TOP_AT_EDGE:
                    continue
                hits.setdefault((name, side), []).append({
                    "study": study,
                    "best_at_edge": best_at,
                    "n_top": len(top),
                    "n_at_edge": len(at),
                    "trials": [{**_trial_ref(t), "value": _jsonable(t.params.get(name)),
                                "unit": u, "objective": _objective(data, t)} for t, u in at],
                })
                if overall_best is not None and any(t.id == overall_best.id for t, _ in at):
                    overall_hit[(name, side)] = True
    findings = []
    n_studies = sum(1 for s in studies if data.ranked(s))
    for (name, side), entries in sorted(hits.items()):
        hp = space[name]
        suggested, clamped = _widened(hp, side)
        bound = hp.low if side == "low" else hp.high
        where = "bottom" if side == "low" else "top"
        parts = []
        for e in entries:
            best = " incl. its best" if e["best_at_edge"] else ""
            parts.append(f"{e['study']}: {e['n_at_edge']} of top {e['n_top']}{best}")
        is_problem = overall_hit.get((name, side), False)
        any_best = any(e["best_at_edge"] for e in entries)
        severity: Severity = "problem" if is_problem else "warning" if any_best else "info"
        stuck = clamped and suggested == bound
        widen = (f"the {side} bound {_f(bound)} looks like a natural limit"
                 if stuck else f"widen the {side} bound from {_f(bound)} to {_f(suggested)}")
        if stuck:
            action = (f"The best points sit at the {side} limit of {name}: if values beyond "
                      f"{_f(bound)} are valid, run another study with that bound expanded; if "
                      "not, the optimum may be at the limit (consider reparameterising).")
        else:
            action = ("The search space is probably not wide enough: run another study with "
                      f"the {side} bound of {name} expanded (e.g. to {_f(suggested)}) until the "
                      "best observed point is no longer close to the boundary.")
        message = (f"{name}: the best trials sit in the {where} {_pct(EDGE_FRACTION)} of its "
                   f"{hp.scale} range [{_f(hp.low)}, {_f(hp.high)}] in {len(entries)} of "
                   f"{n_studies} studies ({'; '.join(parts)})"
                   f"{', including the best trial overall' if is_problem else ''}; {widen}.")
        evidence: dict[str, Any] = {
            "side": side, "scale": hp.scale, "low": hp.low, "high": hp.high,
            "edge_fraction": EDGE_FRACTION, "top_k": TOP_K, "min_top_at_edge": TOP_AT_EDGE,
            "widen_fraction": WIDEN_FRACTION, "overall_best_at_edge": is_problem,
            "clamped": clamped, "studies": entries,
            f"suggested_{side}": suggested,
        }
        findings.append(Finding(
            check="boundary", severity=severity, message=message, evidence=evidence,
            section=SEC_BOUNDARY, action=action, hyperparameter=name,
            study=entries[0]["study"] if len(entries) == 1 else None))
    return findings


# ----------------------------------------------------------------------------- 2. overfitting
def _overfit(data: ExperimentData, trial: TrialData) -> dict[str, Any] | None:
    """Evidence of problematic overfitting in ``trial``'s objective curve, or None."""
    sign = _sign(data)
    steps, y = _points(trial, data.metric, sign)
    if len(y) < 3:
        return None
    i = int(np.argmin(y))  # first occurrence: the earliest best step, like summarize()
    if i == len(y) - 1:
        return None
    best, last = float(y[i]), float(y[-1])
    rise = last - best
    after = y[i:]
    noise = _diff_noise(after) if len(after) >= 4 else _diff_noise(y)
    noise = noise or 0.0
    threshold = max(OVERFIT_NOISE_MULT * noise, OVERFIT_REL_RISE * abs(best), ABS_EPS)
    if rise <= threshold:
        return None
    return {**_trial_ref(trial), "best_step": int(steps[i]), "best_value": best * sign,
            "last_step": int(steps[-1]), "last_value": last * sign, "rise": rise,
            "noise": noise, "threshold": threshold}


def check_overfitting(data: ExperimentData) -> list[Finding]:
    """Problematic overfitting: the validation objective gets worse after its best step.

    For the ``OVERFIT_TOP_K`` (3) best trials of each study, on the objective's curve
    (``data.metric``, mirrored when maximised): ``rise`` = last value - best value. It counts
    when the best is not the last evaluation and ``rise > max(OVERFIT_NOISE_MULT (3) * noise,
    OVERFIT_REL_RISE (2%) * |best|, ABS_EPS)``, ``noise`` being the first-difference IQR estimate
    over the curve from the best step on (the whole curve when fewer than 4 points follow).
    A study gets a finding when its best trial overfits (``problem``: the playbook re-runs with
    more regularization before comparing) or, failing that, when at least 2 of its top 3 do
    (``warning``).
    """
    findings = []
    for study in _studies(data):
        top = data.ranked(study)[:OVERFIT_TOP_K]
        flagged = [(t, ev) for t in top if (ev := _overfit(data, t)) is not None]
        if not flagged:
            continue
        best_flagged = flagged[0][0].id == top[0].id
        if not best_flagged and len(flagged) < 2:
            continue
        first = flagged[0][1]
        others = len(flagged) - (1 if best_flagged else 0)
        if best_flagged and others:
            which = f"its best trial and {others} more of its top {len(top)}"
        elif best_flagged:
            which = "its best trial"
        else:
            which = f"{others} of its top {len(top)} trials"
        message = (f"Study {study}: {which} show problematic overfitting — e.g. {first['label']}'s "
                   f"{data.metric} is best ({_f(first['best_value'])}) at step "
                   f"{first['best_step']} and worsens by {_f(first['rise'])} to "
                   f"{_f(first['last_value'])} at step {first['last_step']} (noise "
                   f"{_f(first['noise'])}).")
        findings.append(Finding(
            check="overfitting", severity="problem" if best_flagged else "warning",
            message=message,
            evidence={"metric": data.metric, "goal": data.goal, "top_k": OVERFIT_TOP_K,
                      "best_trial_overfits": best_flagged, "noise_mult": OVERFIT_NOISE_MULT,
                      "rel_rise": OVERFIT_REL_RISE, "trials": [ev for _, ev in flagged]},
            section=SEC_CURVES,
            action=("Re-run with additional regularization (dropout, label smoothing, weight "
                    "decay) or better-tuned regularization parameters before comparing the "
                    "scientific values, rather than preferring a less-overfitting (possibly "
                    "under-trained) configuration; this may not apply when the scientific "
                    "hyperparameters are themselves regularization parameters. Retrospective "
                    "checkpoint selection already protects the reported value, but the trend "
                    "means the configuration is under-regularized."),
            study=study))
    return findings


# ----------------------------------------------------------------------------- 3. late variance
def _study_bests(data: ExperimentData) -> list[tuple[str, TrialData, float]]:
    """(study, best trial, its objective) for every study with a ranked trial, best first."""
    out = []
    for study in _studies(data):
        ranked = data.ranked(study)
        if ranked and (v := _objective(data, ranked[0])) is not None:
            out.append((study, ranked[0], v))
    out.sort(key=lambda e: e[2] * _sign(data))
    return out


def check_late_variance(data: ExperimentData) -> list[Finding]:
    """High step-to-step variance late in training, compared with the gap being decided.

    For the ``LATE_TOP_K`` (3) best trials of each study, the late noise is the residual
    standard deviation of a straight-line fit to the last ``LATE_FRACTION`` (20%) of the
    objective's evaluations (at least ``LATE_MIN_POINTS`` = 3; shorter curves are skipped).
    The gap is the difference between the best values of the two best studies or, with a single
    study, between its best and 3rd best trials. One ``warning`` when the median late noise exceeds
    ``LATE_NOISE_TO_GAP`` (0.5) times a positive gap: which trial or study "wins" may then
    depend on a lucky last step.
    """
    noises: list[dict[str, Any]] = []
    for study in _studies(data):
        for t in data.ranked(study)[:LATE_TOP_K]:
            steps, y = _points(t, data.metric)
            if len(y) < LATE_MIN_POINTS:
                continue
            k = _tail(len(y), LATE_FRACTION, LATE_MIN_POINTS)
            noise = _fit_noise(steps[-k:], y[-k:])
            if noise is not None:
                noises.append({**_trial_ref(t), "study": study, "noise": noise,
                               "from_step": int(steps[-k]), "points": k})
    if not noises:
        return []
    bests = _study_bests(data)
    if len(bests) >= 2:
        gap = abs(bests[0][2] - bests[1][2])
        between = f"the best two studies ({bests[0][0]}, {bests[1][0]})"
        gap_ev: dict[str, Any] = {"kind": "studies", "studies": [bests[0][0], bests[1][0]],
                                  "values": [bests[0][2], bests[1][2]]}
    else:
        ranked = data.ranked(bests[0][0]) if bests else []
        if len(ranked) < 3:
            return []
        v1, v3 = _objective(data, ranked[0]), _objective(data, ranked[2])
        if v1 is None or v3 is None:
            return []
        gap = abs(v1 - v3)
        between = f"the best and 3rd best trials ({ranked[0].label}, {ranked[2].label})"
        gap_ev = {"kind": "trials", "trials": [ranked[0].id, ranked[2].id], "values": [v1, v3]}
    median = float(np.median([n["noise"] for n in noises]))
    if not gap > 0 or median <= LATE_NOISE_TO_GAP * gap:
        return []
    return [Finding(
        check="late_variance", severity="warning",
        message=(f"Late in training the {data.metric} of the best trials varies from step to step "
                 f"by {_f(median)} (median std over the last {_pct(LATE_FRACTION)} of "
                 f"{len(noises)} trials), more than {LATE_NOISE_TO_GAP:g} × the gap {_f(gap)} "
                 f"between {between}."),
        evidence={"metric": data.metric, "median_noise": median, "gap": gap, "gap_between": gap_ev,
                  "ratio": LATE_NOISE_TO_GAP, "late_fraction": LATE_FRACTION, "trials": noises},
        section=SEC_CURVES,
        action=("Step-to-step variance (batch variance, a small validation set, a learning rate "
                "too high late in training) can decide the comparison by a lucky or unlucky "
                "step: increase the batch size, obtain more validation data, use learning rate "
                "decay, or use Polyak averaging."))]


# ----------------------------------------------------------------------------- 4. still improving
def check_still_improving(data: ExperimentData) -> list[Finding]:
    """The best trial of a study is still improving at the end of training.

    For each study's best trial (with at least 3 finite evaluations): its best step is at or
    after ``STILL_IMPROVING_BEST_AFTER`` (0.9) × ``max_train_steps``, and over the last
    ``STILL_IMPROVING_TAIL`` (25%, at least 3) of its evaluations the least-squares trend
    improves by more than ``max(STILL_IMPROVING_NOISE_MULT (2) × noise, REL_TOL × |best|)``
    (improvement = -slope × span of those steps, in the improving direction). ``noise`` is the
    first-difference IQR estimate over the second half of the evaluations (at least 3 points),
    which is steadier than one from the few tail points. One ``warning`` per study.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = _sign(data)
    for study, t, steps, y in _best_curves(data, sign):
        i = int(np.argmin(y))
        best_step = int(steps[i])
        if best_step < STILL_IMPROVING_BEST_AFTER * max_steps:
            continue
        k = _tail(len(y), STILL_IMPROVING_TAIL, 3)
        xs, ys = steps[-k:], y[-k:]
        slope, _ = _fit(xs, ys)
        span = float(xs[-1] - xs[0])
        drop = -slope * span
        half = _tail(len(y), 0.5, 3)
        noise = _diff_noise(y[-half:]) or 0.0
        threshold = max(STILL_IMPROVING_NOISE_MULT * noise, _tol(float(y[i])))
        if drop <= threshold:
            continue
        findings.append(Finding(
            check="still_improving", severity="warning",
            message=(f"Study {study}: the best trial {t.label} is still improving at the end of "
                     f"training — best {data.metric} {_f(float(y[i]) * sign)} at step {best_step} "
                     f"of {max_steps}, improving by {_f(drop)} over its last {k} evaluations "
                     f"(noise {_f(noise)})."),
            evidence={**_trial_ref(t), "metric": data.metric, "best_step": best_step,
                      "best_value": float(y[i]) * sign, "max_train_steps": max_steps,
                      "best_after": STILL_IMPROVING_BEST_AFTER, "tail_points": k,
                      "tail_from_step": int(xs[0]), "slope": slope * sign,
                      "improvement": drop, "noise": noise, "threshold": threshold},
            section=SEC_CURVES,
            action=("Train longer (see 'Deciding how long to train when training is not "
                    "compute-bound': when in doubt, err on the side of training longer, and "
                    "re-tune the decay schedule with it); if the workload is compute-bound, "
                    "keep in mind that conclusions at this budget may not hold for longer runs."),
            study=study))
    return findings


# ----------------------------------------------------------------------------- 5. saturated early
def check_saturated_early(data: ExperimentData) -> list[Finding]:
    """Performance of a study's best trial saturated long before the final step.

    For each study's best trial (at least 3 finite evaluations): the first step at which the
    objective came within ``tol = max(noise, REL_TOL × |best|)`` of its best value is before
    ``SATURATED_BY`` (0.5) × ``max_train_steps``. ``noise`` is the first-difference IQR estimate
    over the second half of training (the whole curve when that has fewer than 3 points).
    ``info``, one per study.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = _sign(data)
    for study, t, steps, y in _best_curves(data, sign):
        best = float(np.min(y))
        late = y[steps >= SATURATED_BY * max_steps]
        noise = (_diff_noise(late) if len(late) >= 3 else _diff_noise(y)) or 0.0
        tol = max(noise, _tol(best))
        first = int(np.argmax(y <= best + tol))
        first_step = int(steps[first])
        if first_step >= SATURATED_BY * max_steps:
            continue
        findings.append(Finding(
            check="saturated_early", severity="info",
            message=(f"Study {study}: the best trial {t.label} reached its best {data.metric} "
                     f"({_f(best * sign)}, within {_f(tol)}) by step {first_step}, before "
                     f"{_pct(SATURATED_BY)} of the {max_steps} training steps."),
            evidence={**_trial_ref(t), "metric": data.metric, "best_value": best * sign,
                      "first_within_tol_step": first_step, "tolerance": tol, "noise": noise,
                      "max_train_steps": max_steps, "saturated_by": SATURATED_BY},
            section=SEC_CURVES,
            action=("Performance saturated long before the final step: max_train_steps can "
                    "probably be reduced (check the best-step positions of all trials first), "
                    "saving compute for more trials."),
            study=study))
    return findings


# ----------------------------------------------------------------------------- 6. best step
def check_best_step_position(data: ExperimentData) -> list[Finding]:
    """Where retrospective checkpoint selection finds the best step, over all completed trials.

    Needs ``BEST_STEP_MIN_TRIALS`` (5) completed trials with a best step. ``warning`` when the
    median of ``best_step / max_train_steps`` is ``<= BEST_STEP_EARLY_FRACTION`` (0.1): the
    maximum number of steps is way too high. Otherwise ``info`` when at least
    ``BEST_STEP_LATE_SHARE`` (80%) have ``best_step >= BEST_STEP_LATE_FRACTION`` (0.75) ×
    ``max_train_steps``: training longer and re-tuning the decay schedule may help.
    """
    max_steps = data.experiment.max_train_steps
    trials = [t for t in data.ranked() if t.best_step is not None]
    if len(trials) < BEST_STEP_MIN_TRIALS:
        return []
    fracs = [int(t.best_step or 0) / max_steps for t in trials]
    median = float(np.median(fracs))
    late = [t for t, f in zip(trials, fracs, strict=True) if f >= BEST_STEP_LATE_FRACTION]
    share_late = len(late) / len(trials)
    evidence: dict[str, Any] = {
        "n_trials": len(trials), "max_train_steps": max_steps, "median_fraction": median,
        "share_late": share_late, "early_fraction": BEST_STEP_EARLY_FRACTION,
        "late_fraction": BEST_STEP_LATE_FRACTION, "late_share": BEST_STEP_LATE_SHARE,
        "trials": [{**_trial_ref(t), "best_step": t.best_step, "fraction": f}
                   for t, f in zip(trials, fracs, strict=True)],
    }
    if median <= BEST_STEP_EARLY_FRACTION:
        return [Finding(
            check="best_step_position", severity="warning",
            message=(f"The median best step is at {_pct(median)} of max_train_steps "
                     f"({_f(median * max_steps)} of {max_steps}) over {len(trials)} completed "
                     f"trials: training is much longer than needed."),
            evidence={**evidence, "verdict": "too_many_steps"}, section=SEC_HOW_LONG,
            action=("If the best step is always during the first 10% of training, the maximum "
                    "number of steps is way too high: reduce max_train_steps (or the learning "
                    "rate decay may be too aggressive), keeping one value for all trials."))]
    if share_late >= BEST_STEP_LATE_SHARE:
        return [Finding(
            check="best_step_position", severity="info",
            message=(f"{len(late)} of {len(trials)} completed trials ({_pct(share_late)}) have "
                     f"their best step in the last {_pct(1 - BEST_STEP_LATE_FRACTION)} of "
                     f"training (median at {_pct(median)} of {max_steps} steps)."),
            evidence={**evidence, "verdict": "train_longer"}, section=SEC_HOW_LONG,
            action=("The best step is consistently in the last 25% of training: we might "
                    "benefit from training longer and re-tuning the learning rate decay "
                    "schedule (never tune max_train_steps within a study)."))]
    return []


# ----------------------------------------------------------------------------- 7. train loss
def check_train_loss_increases(data: ExperimentData) -> list[Finding]:
    """Training loss going up during training, which usually means a pipeline bug.

    On ``TRAIN_LOSS_METRIC`` (``train_loss``) of each completed trial with at least 3 finite
    evaluations: ``start`` = minimum over the first 20% of evaluations (at least one), ``end`` =
    mean over the last 20% (at least one). The trial counts when ``end - start >
    TRAIN_LOSS_NOISE_MULT (3) × noise`` (first-difference IQR over the whole curve) and
    ``> TRAIN_LOSS_REL_RISE (5%) × |start|``. One ``problem`` when that happens in the best
    trial of any study or in at least ``TRAIN_LOSS_TRIAL_SHARE`` (25%) of the completed trials
    with a training loss curve. Nothing when the metric is not recorded.
    """
    study_best = {b[1].id for b in _study_bests(data)}
    checked: list[TrialData] = []
    flagged: list[dict[str, Any]] = []
    for t in data.trials:
        if not t.feasible:
            continue
        steps, y = _points(t, TRAIN_LOSS_METRIC)
        if len(y) < 3:
            continue
        checked.append(t)
        k = _tail(len(y), LATE_FRACTION, 1)
        start = float(np.min(y[:k]))
        end = float(np.mean(y[-k:]))
        rise = end - start
        noise = _diff_noise(y) or 0.0
        threshold = max(TRAIN_LOSS_NOISE_MULT * noise, TRAIN_LOSS_REL_RISE * abs(start), ABS_EPS)
        if rise > threshold:
            flagged.append({**_trial_ref(t), "study": t.study, "start": start, "end": end,
                            "rise": rise, "noise": noise, "threshold": threshold,
                            "study_best": t.id in study_best, "last_step": int(steps[-1])})
    if not flagged:
        return []
    bests = [f for f in flagged if f["study_best"]]
    share = len(flagged) / len(checked)
    if not bests and share < TRAIN_LOSS_TRIAL_SHARE:
        return []
    labels = [f["label"] for f in flagged]
    shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    first = flagged[0]
    which = f" (including the best trial of {len(bests)} studies)" if bests else ""
    return [Finding(
        check="train_loss_increases", severity="problem",
        message=(f"{TRAIN_LOSS_METRIC} increases during training in {len(flagged)} of "
                 f"{len(checked)} completed trials{which}: {shown} — e.g. {first['label']} from "
                 f"{_f(first['start'])} to {_f(first['end'])}; likely a pipeline bug."),
        evidence={"metric": TRAIN_LOSS_METRIC, "n_checked": len(checked),
                  "n_increasing": len(flagged), "share": share, "noise_mult":
                  TRAIN_LOSS_NOISE_MULT, "rel_rise": TRAIN_LOSS_REL_RISE,
                  "trial_share": TRAIN_LOSS_TRIAL_SHARE, "trials": flagged},
        section=SEC_CURVES,
        action=("Training loss increasing during training usually indicates a bug in the "
                "training pipeline: check the data, the loss, the optimizer and the learning "
                "rate schedule before drawing conclusions; if it only happens at large learning "
                "rates it is training instability (see 'Identifying unstable workloads')."))]


# ----------------------------------------------------------------------------- 8. infeasible
def _best_split(inf: Sequence[float], feas: Sequence[float]) -> tuple[float, str, float]:
    """The one-sided threshold best separating infeasible from feasible unit positions.

    Returns ``(separation, side, threshold)``: ``separation`` = share of infeasible beyond the
    threshold minus share of feasible beyond it (a one-sided Kolmogorov-Smirnov statistic),
    ``side`` is ``high`` (``>= threshold``) or ``low`` (``<= threshold``).
    """
    best = (-1.0, "high", 0.0)
    fa = np.asarray(feas, dtype=np.float64)
    ia = np.asarray(inf, dtype=np.float64)
    for t in sorted(set(inf)):
        for side in ("high", "low"):
            if side == "high":
                s = float(np.mean(ia >= t)) - (float(np.mean(fa >= t)) if len(fa) else 0.0)
            else:
                s = float(np.mean(ia <= t)) - (float(np.mean(fa <= t)) if len(fa) else 0.0)
            if s > best[0] + 1e-12:
                best = (s, side, t)
    return best


def _locate(data: ExperimentData, infeasible: list[TrialData],
            feasible: list[TrialData]) -> dict[str, Any] | None:
    """Where the infeasible trials are: the hyperparameter separating them best, or None."""
    results: list[dict[str, Any]] = []
    for name, hp in data.varied().items():
        if isinstance(hp, Categorical):
            inf_v = [_jsonable(t.params.get(name)) for t in infeasible if name in t.params]
            feas_v = [_jsonable(t.params.get(name)) for t in feasible if name in t.params]
            if not inf_v or not feas_v:
                continue
            best_sep, best_val = -1.0, None
            rates: dict[str, Any] = {}
            for value in hp.values:
                v = _jsonable(value)
                ni, nf = inf_v.count(v), feas_v.count(v)
                rates[str(v)] = {"infeasible": ni, "feasible": nf,
                                 "rate": ni / (ni + nf) if ni + nf else None}
                sep = ni / len(inf_v) - nf / len(feas_v)
                if sep > best_sep + 1e-12:
                    best_sep, best_val = sep, v
            ni = inf_v.count(best_val)
            nf = feas_v.count(best_val)
            text = (f"{ni} of {len(inf_v)} infeasible trials have {name} = {best_val}; "
                    f"{nf} of {len(feas_v)} feasible do")
            results.append({"hyperparameter": name, "kind": "categorical",
                            "separation": best_sep, "value": best_val, "rates": rates,
                            "n_infeasible_in": ni, "n_feasible_in": nf, "text": text})
            continue
        inf_p = [(u, t.params[name]) for t in infeasible
                 if (u := _unit(hp, t.params.get(name))) is not None]
        feas_p = [(u, t.params[name]) for t in feasible
                  if (u := _unit(hp, t.params.get(name))) is not None]
        if not inf_p or not feas_p:
            continue
        iu = [u for u, _ in inf_p]
        fu = [u for u, _ in feas_p]
        sep, side, thr = _best_split(iu, fu)
        thr_value = next(v for u, v in inf_p if u == thr)
        op = ">=" if side == "high" else "<="
        ni = sum(1 for u in iu if (u >= thr if side == "high" else u <= thr))
        nf = sum(1 for u in fu if (u >= thr if side == "high" else u <= thr))
        share = 1 - thr if side == "high" else thr
        where = ""
        if isinstance(hp, Float | Int):
            where = (f" ({'top' if side == 'high' else 'bottom'} {_pct(min(max(share, 0), 1))} "
                     f"of its {hp.scale} range)")
        text = (f"{ni} of {len(iu)} infeasible trials have {name} {op} "
                f"{_f(float(thr_value))}{where}; {nf} of {len(fu)} feasible do")
        inf_vals = [float(v) for _, v in inf_p]
        results.append({
            "hyperparameter": name, "kind": "discrete" if isinstance(hp, Discrete) else
            "continuous", "separation": sep, "side": side, "threshold": _jsonable(thr_value),
            "threshold_unit": thr, "n_infeasible_in": ni, "n_feasible_in": nf,
            "median_unit_infeasible": float(np.median(iu)),
            "median_unit_feasible": float(np.median(fu)),
            "infeasible_range": [min(inf_vals), max(inf_vals)], "text": text})
    if not results:
        return None
    results.sort(key=lambda r: (-r["separation"], r["hyperparameter"]))
    return {"best": results[0], "all": [{"hyperparameter": r["hyperparameter"],
                                         "separation": r["separation"]} for r in results]}


def check_infeasible(data: ExperimentData) -> list[Finding]:
    """Too many infeasible trials, and where in the search space they are.

    Fires when more than ``INFEASIBLE_FRACTION`` (20%; exactly 20% does not fire) of the
    finished trials (completed + infeasible; failed ones are counted apart in the evidence) are
    infeasible. For each varied hyperparameter the infeasible trials' positions are compared
    with the completed ones': for ordered ones (Float, Int, Discrete, in the scaled space) the
    one-sided threshold maximising (share of infeasible beyond it - share of feasible beyond it);
    for categorical ones the value maximising the same difference (with the infeasible rate per
    value). The hyperparameter with the largest separation is reported. ``warning``, or
    ``problem`` when every finished trial is infeasible (nothing can be compared).
    """
    infeasible = [t for t in data.trials if t.status == "infeasible"]
    feasible = [t for t in data.trials if t.status == "completed"]
    failed = [t for t in data.trials if t.status == "failed"]
    finished = len(infeasible) + len(feasible)
    if not finished or len(infeasible) / finished <= INFEASIBLE_FRACTION:
        return []
    fraction = len(infeasible) / finished
    per_study = {}
    for study in _studies(data):
        ni = sum(1 for t in infeasible if t.study == study)
        nf = sum(1 for t in feasible if t.study == study)
        if ni + nf:
            per_study[study] = {"infeasible": ni, "completed": nf, "fraction": ni / (ni + nf)}
    reasons: dict[str, int] = {}
    for t in infeasible:
        r = (t.infeasible_reason or "(no reason recorded)").strip().splitlines()
        key = r[0][:200] if r else "(no reason recorded)"
        reasons[key] = reasons.get(key, 0) + 1
    inf_steps = [t.infeasible_step for t in infeasible if t.infeasible_step is not None]
    located = _locate(data, infeasible, feasible) if feasible else None
    head = (f"{len(infeasible)} of {finished} finished trials ({_pct(fraction)}) are "
            "infeasible")
    if located is not None:
        message = f"{head}; {located['best']['text']}."
    elif not feasible:
        message = f"{head}: no trial completed, so nothing can be compared."
    else:
        message = f"{head}."
    evidence: dict[str, Any] = {
        "n_infeasible": len(infeasible), "n_completed": len(feasible), "n_failed": len(failed),
        "fraction": fraction, "threshold": INFEASIBLE_FRACTION, "per_study": per_study,
        "reasons": reasons, "trials": [t.id for t in infeasible],
        "median_infeasible_step": float(np.median(inf_steps)) if inf_steps else None,
        "where": located["best"] if located else None,
        "separations": located["all"] if located else [],
    }
    return [Finding(
        check="infeasible", severity="warning" if feasible else "problem", message=message,
        evidence=evidence, section=SEC_INSIGHT,
        action=("When a very large fraction of points are infeasible, adjust the search space "
                "to avoid sampling them (narrow or reparameterize it); if they diverge at large "
                "learning rates, fixing the instability (learning rate warmup, gradient "
                "clipping) may give better results than avoiding it. A large number of "
                "infeasible points can also indicate a bug in the training code."),
        hyperparameter=located["best"]["hyperparameter"] if located else None,
        study=next(iter(per_study)) if len(per_study) == 1 else None)]


# ----------------------------------------------------------------------------- 9. eval steps
def check_eval_steps(data: ExperimentData) -> list[Finding]:
    """The objective was not evaluated at regular step intervals.

    For each completed trial with an objective curve: ``unexpected`` steps are those that are
    neither a multiple of ``eval_every`` (step 0, an initial evaluation, counts as one) nor
    ``max_train_steps``, or are repeated; ``missing`` are the multiples of ``eval_every`` up to
    ``max_train_steps`` (and ``max_train_steps`` itself) that were not reported. One
    ``warning`` listing up to 5 trials with up to 5 steps each. Trials without any objective
    curve are skipped (the metric may simply not be recorded).
    """
    exp = data.experiment
    every, max_steps = exp.eval_every, exp.max_train_steps
    expected = np.arange(every, max_steps + 1, every, dtype=np.int64)
    if len(expected) == 0 or int(expected[-1]) != max_steps:
        expected = np.append(expected, np.int64(max_steps))
    examples: list[dict[str, Any]] = []
    n_checked = 0
    n_bad = 0
    for t in data.trials:
        curve = t.curves.get(data.metric)
        if not t.feasible or curve is None or len(curve) == 0:
            continue
        n_checked += 1
        steps = np.asarray(curve.steps, dtype=np.int64)
        values, counts = np.unique(steps, return_counts=True)
        repeated = [int(v) for v in values[counts > 1]]
        odd = [int(v) for v in values
               if not (0 <= v <= max_steps and v % every == 0) and v != max_steps]
        unexpected = sorted(set(odd) | set(repeated))
        missing_mask = ~np.isin(expected, steps)
        if not unexpected and not missing_mask.any():
            continue
        n_bad += 1
        if len(examples) < 5:
            missing = expected[missing_mask]
            examples.append({**_trial_ref(t), "unexpected": unexpected[:5],
                             "n_unexpected": len(unexpected),
                             "missing": [int(s) for s in missing[:5]],
                             "n_missing": int(missing_mask.sum())})
    if not n_bad:
        return []
    e = examples[0]
    detail = []
    if e["n_unexpected"]:
        detail.append(f"at steps {e['unexpected']}")
    if e["n_missing"]:
        detail.append(f"not at {e['n_missing']} expected steps (e.g. {e['missing']})")
    return [Finding(
        check="eval_steps", severity="warning",
        message=(f"{n_bad} of {n_checked} completed trials did not report {data.metric} every "
                 f"{every} steps up to {max_steps}: e.g. {e['label']} reported "
                 f"{' and '.join(detail)}."),
        evidence={"metric": data.metric, "eval_every": every, "max_train_steps": max_steps,
                  "n_checked": n_checked, "n_irregular": n_bad, "examples": examples},
        section=SEC_PERIODIC,
        action=("Periodic evaluations should be done at regular step intervals, not time "
                "intervals: report the objective at every multiple of eval_every and at "
                "max_train_steps, so that curves are comparable and retrospective checkpoint "
                "selection sees every evaluation."))]


# ----------------------------------------------------------------------------- 10. failed
def check_failed_trials(data: ExperimentData) -> list[Finding]:
    """Trials that failed (crashed, as opposed to infeasible): one ``warning`` with the errors.

    The errors are grouped by the last non-empty line of their traceback; evidence lists each
    distinct error with its count and trial labels, most frequent first.
    """
    failed = [t for t in data.trials if t.status == "failed"]
    if not failed:
        return []
    groups: dict[str, list[TrialData]] = {}
    for t in failed:
        groups.setdefault(error_line(t.error), []).append(t)
    errors = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    top_error, top_trials = errors[0]
    return [Finding(
        check="failed_trials", severity="warning",
        message=(f"{len(failed)} of {len(data.trials)} trials failed with {len(errors)} distinct "
                 f"error{'s' if len(errors) > 1 else ''}; most common ({len(top_trials)}): "
                 f"{top_error}"),
        evidence={"n_failed": len(failed), "n_trials": len(data.trials),
                  "errors": [{"error": err, "count": len(ts), "trials": _labels(ts),
                              "ids": [t.id for t in ts]} for err, ts in errors]},
        section=SEC_INSIGHT,
        action=("Fix the cause, then re-run the failed trials with `tunebook run FILE "
                "--retry-failed`: until then each study samples its search space less densely "
                "than planned. If they fail because the point "
                "violates some implicit constraint, treat the region as infeasible and adjust "
                "the search space."),
        study=failed[0].study if len({t.study for t in failed}) == 1 else None)]


# ----------------------------------------------------------------------------- 11. enough trials
def check_enough_trials(data: ExperimentData) -> list[Finding]:
    """Not enough trials to tell the studies apart (bootstrapped best-of-n).

    Needs at least 2 studies with completed trials. For each such study with ``n >= 2``
    completed trials, ``BOOTSTRAP_DRAWS`` (1000) resamples of ``n`` objective values with
    replacement (``numpy.random.default_rng(BOOTSTRAP_SEED)``, reseeded per study so that the
    result does not depend on study order) give the distribution of the best-of-n value. One
    ``info`` when the interquartile range of that distribution exceeds the gap between the best
    values of the two best studies in any study.
    """
    bests = _study_bests(data)
    if len(bests) < 2:
        return []
    gap = abs(bests[0][2] - bests[1][2])
    sign = _sign(data)
    rows: list[dict[str, Any]] = []
    for study, _, best in bests:
        values = np.asarray([v for t in data.ranked(study)
                             if (v := _objective(data, t)) is not None], dtype=np.float64) * sign
        n = len(values)
        if n < 2:
            continue
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        draws = values[rng.integers(0, n, size=(BOOTSTRAP_DRAWS, n))].min(axis=1)
        q25, q75 = (float(q) for q in np.percentile(draws, [25, 75]))
        rows.append({"study": study, "n_trials": n, "best": best, "iqr": q75 - q25,
                     "q25": (q25 if sign > 0 else -q75), "q75": (q75 if sign > 0 else -q25)})
    wide = [r for r in rows if r["iqr"] > gap]
    if not wide:
        return []
    worst = max(wide, key=lambda r: r["iqr"])
    return [Finding(
        check="enough_trials", severity="info",
        message=(f"Not enough trials to separate the studies: the best-of-n value of "
                 f"{len(wide)} of {len(rows)} studies varies by {_f(worst['iqr'])} (bootstrap "
                 f"IQR, study {worst['study']} with {worst['n_trials']} trials), more than the "
                 f"gap {_f(gap)} between {bests[0][0]} and {bests[1][0]}."),
        evidence={"gap": gap, "gap_between": [bests[0][0], bests[1][0]],
                  "draws": BOOTSTRAP_DRAWS, "seed": BOOTSTRAP_SEED, "studies": rows},
        section=SEC_SAMPLING,
        action=("Run more trials per study (or be less ambitious in the tuning goals) before "
                "concluding that the studies differ: with this many trials, a luckier or "
                "unluckier sample of the nuisance space could reorder them."),
        study=worst["study"] if len(wide) == 1 else None)]


# ----------------------------------------------------------------------------- registry
CHECKS: Mapping[str, Check] = {
    "boundary": check_boundary,
    "overfitting": check_overfitting,
    "late_variance": check_late_variance,
    "still_improving": check_still_improving,
    "saturated_early": check_saturated_early,
    "best_step_position": check_best_step_position,
    "train_loss_increases": check_train_loss_increases,
    "infeasible": check_infeasible,
    "eval_steps": check_eval_steps,
    "failed_trials": check_failed_trials,
    "enough_trials": check_enough_trials,
}
"""Every check by name, in the playbook's order (``run_checks`` sorts its output)."""


def _severity_rank(severity: Severity) -> int:
    return _SEVERITY_RANK.get(severity, len(_SEVERITY_RANK))


def run_checks(data: ExperimentData, only: Iterable[str] | None = None) -> list[Finding]:
    """Run every check (or those named in ``only``) and sort the findings.

    Order: severity (problem, warning, info), then check name; findings of one check keep the
    order the check gave them.

    Raises:
        KeyError: when ``only`` names an unknown check.
    """
    names = list(CHECKS) if only is None else list(only)
    for name in names:
        if name not in CHECKS:
            raise KeyError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    findings = [f for name in names for f in CHECKS[name](data)]
    return sorted(findings, key=lambda f: (_severity_rank(f.severity), f.check))

"""Failure checks: infeasible trials (and where they are), crashed trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding
from tunebook.core.formatting import error_line

__all__ = ["FailureThresholds", "check_failed_trials", "check_infeasible"]


@dataclass(frozen=True)
class FailureThresholds:
    """Thresholds of the failure checks (``checks: {failures: {...}}``)."""

    family: ClassVar[str] = "failures"

    #: More than 20% infeasible is "a very large fraction" worth acting on (a few divergent
    #: points at the edge of a wide learning rate range are expected and harmless).
    infeasible_fraction: float = 0.2


DEFAULTS = FailureThresholds()


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
        if not hp.ordered:
            inf_v = [c.jsonable(t.params.get(name)) for t in infeasible if name in t.params]
            feas_v = [c.jsonable(t.params.get(name)) for t in feasible if name in t.params]
            if not inf_v or not feas_v:
                continue
            best_sep, best_val = -1.0, None
            rates: dict[str, Any] = {}
            for value in hp.choices or ():
                v = c.jsonable(value)
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
                 if (u := c.unit(hp, t.params.get(name))) is not None]
        feas_p = [(u, t.params[name]) for t in feasible
                  if (u := c.unit(hp, t.params.get(name))) is not None]
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
        if hp.bounds is not None:
            where = (f" ({'top' if side == 'high' else 'bottom'} {c.pct(min(max(share, 0), 1))} "
                     f"of its {hp.axis_scale} range)")
        text = (f"{ni} of {len(iu)} infeasible trials have {name} {op} "
                f"{c.fmt(float(thr_value))}{where}; {nf} of {len(fu)} feasible do")
        inf_vals = [float(v) for _, v in inf_p]
        results.append({
            "hyperparameter": name, "kind": "continuous" if hp.bounds else
            "discrete", "separation": sep, "side": side, "threshold": c.jsonable(thr_value),
            "threshold_unit": thr, "n_infeasible_in": ni, "n_feasible_in": nf,
            "median_unit_infeasible": float(np.median(iu)),
            "median_unit_feasible": float(np.median(fu)),
            "infeasible_range": [min(inf_vals), max(inf_vals)], "text": text})
    if not results:
        return None
    results.sort(key=lambda r: (-r["separation"], r["hyperparameter"]))
    return {"best": results[0], "all": [{"hyperparameter": r["hyperparameter"],
                                         "separation": r["separation"]} for r in results]}


@check("infeasible", playbook_section=c.SEC_INSIGHT, thresholds=FailureThresholds)
def check_infeasible(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> list[Finding]:
    """Too many infeasible trials, and where in the search space they are.

    Fires when more than ``infeasible_fraction`` (20%; exactly 20% does not fire) of the
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
    if not finished or len(infeasible) / finished <= th.infeasible_fraction:
        return []
    fraction = len(infeasible) / finished
    per_study = {}
    for study in c.studies(data):
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
    head = (f"{len(infeasible)} of {finished} finished trials ({c.pct(fraction)}) are "
            "infeasible")
    if located is not None:
        message = f"{head}; {located['best']['text']}."
    elif not feasible:
        message = f"{head}: no trial completed, so nothing can be compared."
    else:
        message = f"{head}."
    evidence: dict[str, Any] = {
        "n_infeasible": len(infeasible), "n_completed": len(feasible), "n_failed": len(failed),
        "fraction": fraction, "threshold": th.infeasible_fraction, "per_study": per_study,
        "reasons": reasons, "trials": [t.id for t in infeasible],
        "median_infeasible_step": float(np.median(inf_steps)) if inf_steps else None,
        "where": located["best"] if located else None,
        "separations": located["all"] if located else [],
    }
    return [finding(
        check="infeasible", severity="warning" if feasible else "problem", message=message,
        evidence=evidence,
        action=("When a very large fraction of points are infeasible, adjust the search space "
                "to avoid sampling them (narrow or reparameterize it); if they diverge at large "
                "learning rates, fixing the instability (learning rate warmup, gradient "
                "clipping) may give better results than avoiding it. A large number of "
                "infeasible points can also indicate a bug in the training code."),
        hyperparameter=located["best"]["hyperparameter"] if located else None,
        study=next(iter(per_study)) if len(per_study) == 1 else None)]


@check("failed_trials", playbook_section=c.SEC_INSIGHT, thresholds=FailureThresholds)
def check_failed_trials(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> list[Finding]:
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
    return [finding(
        check="failed_trials", severity="warning",
        message=(f"{len(failed)} of {len(data.trials)} trials failed with {len(errors)} distinct "
                 f"error{'s' if len(errors) > 1 else ''}; most common ({len(top_trials)}): "
                 f"{top_error}"),
        evidence={"n_failed": len(failed), "n_trials": len(data.trials),
                  "errors": [{"error": err, "count": len(ts), "trials": c.labels(ts),
                              "ids": [t.id for t in ts]} for err, ts in errors]},
        action=("Fix the cause, then re-run the failed trials with `tunebook run FILE "
                "--retry-failed`: until then each study samples its search space less densely "
                "than planned. If they fail because the point "
                "violates some implicit constraint, treat the region as infeasible and adjust "
                "the search space."),
        study=failed[0].study if len({t.study for t in failed}) == 1 else None)]


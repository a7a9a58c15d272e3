"""Failure checks: infeasible trials (and where they are), trials at chance, crashed trials.

The playbook calls a trial infeasible when it "either produces NaNs or uncharacteristically high
values of the loss" (Figure 7a). Trials the workload stopped as infeasible (status
``infeasible``) are the first kind; completed trials whose objective is no better than chance
(:func:`outcomes`) are the second. Both checks use the same split, so a trial is never feasible
for one finding and infeasible for another: ``infeasible`` counts both kinds (its fraction and
where they are), ``at_chance`` names the completed ones, which every other analysis would
otherwise take for ordinary results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding, resolves
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding
from tunebook.analysis.resolution import resolution
from tunebook.core.formatting import error_line

__all__ = ["FailureThresholds", "Outcomes", "check_at_chance", "check_failed_trials",
           "check_infeasible", "infeasible_at_the_best_edge", "locate", "outcomes"]


@dataclass(frozen=True)
class FailureThresholds:
    """Thresholds of the failure checks (``checks: {failures: {...}}``)."""

    family: ClassVar[str] = "failures"

    #: More than 20% infeasible is "a very large fraction" worth acting on (a few divergent
    #: points at the edge of a wide learning rate range are expected and harmless).
    infeasible_fraction: float = 0.2
    #: A completed trial is at chance when it closed less than 10% of the gap between chance
    #: and the experiment's best trial (and always within the metric's resolution of chance):
    #: 0.88 error on 10 classes (chance 0.9) when the best reaches 0.1 learned essentially
    #: nothing, which is what the playbook's "uncharacteristically high loss" means.
    chance_share: float = 0.1
    #: The infeasible finding advises narrowing a range only when the separation (share of
    #: infeasible beyond the threshold minus share of feasible) is at least 0.5: a weaker
    #: split does not say where to cut.
    narrow_separation: float = 0.5
    #: ``near_divergence``: at least 2 bad (infeasible or at chance) trials beyond the best
    #: make a region (one divergent trial may be an accident of the other hyperparameters).
    near_min_bad: int = 2
    #: ... at least 2/3 of the trials beyond the best on that side are bad, and at least 2/3 of
    #: the study's bad trials are on that side (the bad trials form a region there, with at
    #: most one good trial in three among them: other hyperparameters vary too).
    near_bad_share: float = 0.67
    #: ... and results improve towards that side: Spearman rank correlation between the
    #: position (towards the bad side) and the objective of the feasible trials at least 0.3
    #: in the improving direction, so that the best sits at the edge because results get
    #: better there (Figure 7a), not by the luck of the noise.
    near_trend: float = 0.3


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


@dataclass(frozen=True)
class Outcomes:
    """The finished trials split by what they say about their region of the search space.

    Attributes:
        diverged: trials the workload stopped as infeasible (NaN, divergence).
        at_chance: completed trials whose objective is no better than chance.
        feasible: the other completed trials (every completed one when chance is unknown).
        chance: the objective's value at chance, or None when unknown.
        margin: how much better than ``chance`` a trial must be not to count as at chance.
        best: the best objective among completed trials (None when there is none).
    """

    diverged: tuple[TrialData, ...]
    at_chance: tuple[TrialData, ...]
    feasible: tuple[TrialData, ...]
    chance: float | None
    margin: float
    best: float | None

    @property
    def bad(self) -> tuple[TrialData, ...]:
        """Infeasible in the playbook's sense: diverged or at chance."""
        return self.diverged + self.at_chance


def outcomes(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> Outcomes:
    """The split of :class:`Outcomes`, computed once per data and thresholds.

    Chance is :func:`~tunebook.analysis.resolution.resolution`'s (``METRIC_chance`` reported by
    the workload, or the ``checks: {resolution: {chance_level: ...}}`` threshold). In loss-like
    terms (value times the objective's sign: lower is better), a completed trial with value
    ``y`` is at chance when ``chance - y <= margin``, ``margin = max(min_change(chance),
    chance_share * (chance - best))``, ``best`` the best completed value (so a trial worse than
    chance is at chance too; when the best itself is at chance, every completed trial is).
    """
    return data.memo(("failures.outcomes", th), lambda: _outcomes(data, th))


def _outcomes(data: ExperimentData, th: FailureThresholds) -> Outcomes:
    diverged = tuple(t for t in data.trials if t.status == "infeasible")
    completed = [t for t in data.trials if t.status == "completed"]
    chance = resolution(data).chance
    values = {t.id: v for t in completed if (v := c.objective(data, t)) is not None}
    sgn = c.sign(data)
    best = min((sgn * v for v in values.values()), default=None)
    if chance is None or best is None:
        return Outcomes(diverged, (), tuple(completed), chance, 0.0,
                        None if best is None else sgn * best)
    yc = sgn * chance
    margin = max(resolution(data).min_change(chance), th.chance_share * max(0.0, yc - best))
    low = tuple(t for t in completed if t.id in values and yc - sgn * values[t.id] <= margin)
    ids = {t.id for t in low}
    return Outcomes(diverged, low, tuple(t for t in completed if t.id not in ids), chance,
                    margin, sgn * best)


def locate(data: ExperimentData, infeasible: Sequence[TrialData],
           feasible: Sequence[TrialData], word: str = "infeasible") -> dict[str, Any] | None:
    """Where the ``infeasible`` trials are compared with the ``feasible`` ones: the varied
    hyperparameter separating them best (``{"best": {...}, "all": [...]}``), or None.

    For an ordered hyperparameter, the one-sided threshold in the scaled space maximising
    (share of infeasible beyond it - share of feasible beyond it); for a categorical one the
    value maximising the same difference, with the rate per value. ``best["text"]`` says it in
    words, naming the located trials ``word``: "7 of 8 infeasible trials have lr >= 0.1 (top
    25% of its log range); 0 of 12 feasible do".
    """
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
            text = (f"{ni} of {len(inf_v)} {word} trials have {name} = {best_val}; "
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
        text = (f"{ni} of {len(iu)} {word} trials have {name} {op} "
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


def _narrowing(located: dict[str, Any] | None, th: FailureThresholds) -> dict[str, str]:
    """The range advice for an ordered hyperparameter that separates the bad trials well."""
    if located is None:
        return {}
    where = located["best"]
    if where.get("side") is None or where["separation"] < th.narrow_separation:
        return {}
    return {f"range:{where['hyperparameter']}": f"narrow_{where['side']}"}


@check("infeasible", playbook_section=c.SEC_INSIGHT, thresholds=FailureThresholds)
def check_infeasible(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> list[Finding]:
    """Too many infeasible trials, and where in the search space they are.

    Infeasible is the playbook's definition (:func:`outcomes`): stopped as infeasible by the
    workload, or completed no better than chance (the ``at_chance`` check names those; here
    they only count). Fires when more than ``infeasible_fraction`` (20%; exactly 20% does not
    fire) of the finished trials (completed + infeasible; failed ones are counted apart in the
    evidence) are infeasible. For each varied hyperparameter the infeasible trials' positions
    are compared with the feasible ones' (:func:`locate`) and the hyperparameter with the
    largest separation is reported. ``warning``, or ``problem`` when no finished trial is
    feasible (nothing can be compared). Advice: ``search_space: adjust``, plus
    ``range:NAME: narrow_low|narrow_high`` when an ordered hyperparameter separates them by at
    least ``narrow_separation`` (0.5).
    """
    out = outcomes(data, th)
    infeasible, feasible = list(out.bad), list(out.feasible)
    failed = [t for t in data.trials if t.status == "failed"]
    finished = len(infeasible) + len(feasible)
    if not finished or len(infeasible) / finished <= th.infeasible_fraction:
        return []
    fraction = len(infeasible) / finished
    bad_ids = {t.id for t in infeasible}
    per_study = {}
    for study in c.studies(data):
        ni = sum(1 for t in infeasible if t.study == study)
        nf = sum(1 for t in feasible if t.study == study)
        if ni + nf:
            per_study[study] = {"infeasible": ni, "completed": nf, "fraction": ni / (ni + nf)}
    reasons: dict[str, int] = {}
    for t in out.diverged:
        r = (t.infeasible_reason or "(no reason recorded)").strip().splitlines()
        key = r[0][:200] if r else "(no reason recorded)"
        reasons[key] = reasons.get(key, 0) + 1
    if out.at_chance:
        reasons["completed at chance level"] = len(out.at_chance)
    inf_steps = [t.infeasible_step for t in out.diverged if t.infeasible_step is not None]
    located = locate(data, infeasible, feasible) if feasible else None
    head = (f"{len(infeasible)} of {finished} finished trials ({c.pct(fraction)}) are "
            "infeasible")
    if out.at_chance:
        head += f" ({len(out.at_chance)} of them completed no better than chance)"
    if located is not None:
        message = f"{head}; {located['best']['text']}."
    elif not feasible:
        message = f"{head}: no trial is feasible, so nothing can be compared."
    else:
        message = f"{head}."
    evidence: dict[str, Any] = {
        "n_infeasible": len(infeasible), "n_diverged": len(out.diverged),
        "n_at_chance": len(out.at_chance), "n_completed": len(feasible) + len(out.at_chance),
        "n_feasible": len(feasible), "n_failed": len(failed),
        "fraction": fraction, "threshold": th.infeasible_fraction, "per_study": per_study,
        "reasons": reasons, "trials": [t.id for t in data.trials if t.id in bad_ids],
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
        study=next(iter(per_study)) if len(per_study) == 1 else None,
        trials=[c.trial_ref(t) for t in data.trials if t.id in bad_ids],
        advice={"search_space": "adjust", **_narrowing(located, th)})]


@resolves("infeasible", "boundary")
def infeasible_at_the_best_edge(infeasible: Finding, boundary: Finding,
                                data: ExperimentData) -> list[Finding]:
    """The best trials sit at the edge of the range where the infeasible trials are too
    (boundary: widen it; infeasible: narrow it): the best region is at the edge of
    instability. Keep the boundary finding; the infeasible finding advises fixing the
    instability instead of narrowing (the playbook: it "may give better results than
    avoiding it")."""
    advice = {k: v for k, v in infeasible.advice.items() if not k.startswith("range:")}
    name = (infeasible.hyperparameter or "this hyperparameter")
    message = (f"{infeasible.message} The best trials lie at the same edge of {name} "
               "(boundary finding): the best region is at the edge of instability, so "
               "narrowing the range would cut it off.")
    return [boundary, dataclasses.replace(
        infeasible, message=message, advice={**advice, "stability": "improve"},
        evidence={**infeasible.evidence, "resolved_with": "boundary"},
        action=("Try learning rate warmup or gradient clipping to make the edge stable, then "
                "widen the range as the boundary finding suggests."))]


@check("at_chance", playbook_section=c.SEC_INSIGHT, thresholds=FailureThresholds)
def check_at_chance(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> list[Finding]:
    """Completed trials whose objective is no better than chance (the playbook's
    "uncharacteristically high loss"): infeasible in all but status.

    Silent when chance is unknown (the workload reports no ``METRIC_chance`` and the
    ``checks: {resolution: {chance_level: ...}}`` threshold is 0). A completed trial is at
    chance when its value is within ``margin`` of chance or worse (:func:`outcomes`:
    ``margin = max(min_change(chance), chance_share * (chance - best))``, ``chance_share``
    10%). One finding listing them, with where they are (:func:`locate`, against the feasible
    trials). ``problem`` when a study's best trial is at chance (nothing in that study learned),
    else ``warning`` (they count as ordinary results in every other analysis). Advice:
    ``search_space: adjust``.
    """
    out = outcomes(data, th)
    if not out.at_chance or out.chance is None:
        return []
    low = list(out.at_chance)
    low_ids = {t.id for t in low}
    hopeless = [s for s in c.studies(data) if (r := data.ranked(s)) and r[0].id in low_ids]
    res = resolution(data)
    located = locate(data, low, out.feasible, word="at-chance") if out.feasible else None
    completed = len(low) + len(out.feasible)
    values = [c.objective(data, t) for t in low]
    shown = ", ".join(f"{t.label} {c.fmt(v)}" for t, v in zip(low, values, strict=True)
                      if v is not None)
    threshold = out.chance - c.sign(data) * out.margin
    word = "at least" if c.sign(data) > 0 else "at most"
    margin_text = res.examples_text(out.margin)
    message = (f"{len(low)} of {completed} completed trials are no better than chance "
               f"({data.metric} {c.fmt(out.chance)} at chance; {word} {c.fmt(threshold)} "
               f"counts{f', within {margin_text}' if margin_text else ''}): {shown}")
    if hopeless:
        message += (f". The best trial of {', '.join(hopeless)} is at chance: "
                    "nothing in that study learned")
    elif located is not None:
        message += f"; {located['best']['text']}"
    action = ("The playbook treats trials with uncharacteristically high loss as infeasible: "
              "they say nothing about their region except that it is bad, yet every other "
              "analysis (rankings, axis plots, boundaries) counts them as ordinary results. "
              "Adjust the search space to avoid that region; at high learning rates, learning "
              "rate warmup or gradient clipping may make it trainable.")
    if hopeless:
        action = ("Check the training pipeline (labels, data loading, loss, learning rate "
                  "scale) before tuning further: a study whose best trial is at chance learned "
                  "nothing. " + action)
    studies = {t.study for t in low}
    return [finding(
        check="at_chance", severity="problem" if hopeless else "warning",
        message=message + ".", action=action,
        evidence={"chance": out.chance, "margin": out.margin, "threshold": threshold,
                  "best": out.best, "chance_share": th.chance_share,
                  "resolution": res.as_dict(), "n_at_chance": len(low),
                  "n_completed": completed, "trials": [t.id for t in low],
                  "values": values, "studies_at_chance": hopeless,
                  "where": located["best"] if located else None},
        hyperparameter=located["best"]["hyperparameter"] if located and not hopeless else None,
        study=next(iter(studies)) if len(studies) == 1 else None,
        trials=[c.trial_ref(t) for t in low], advice={"search_space": "adjust"})]


@check("failed_trials", playbook_section=c.SEC_INSIGHT, thresholds=FailureThresholds)
def check_failed_trials(data: ExperimentData, th: FailureThresholds = DEFAULTS) -> list[Finding]:
    """Trials that failed (crashed, as opposed to infeasible): one ``warning`` with the errors.

    The errors are grouped by the last non-empty line of their traceback; evidence lists each
    distinct error with its count and trial labels, most frequent first. Advice:
    ``failed_trials: retry`` (fix the cause, re-run them).
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
        study=failed[0].study if len({t.study for t in failed}) == 1 else None,
        trials=[c.trial_ref(t) for t in failed], advice={"failed_trials": "retry"})]

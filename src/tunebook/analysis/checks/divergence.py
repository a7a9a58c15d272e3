"""The best trial next to the divergent region (the playbook's Figure 7a): a failures check.

"Any workload will become unstable if the learning rate is too large. Instability is only an
issue when it forces us to use a learning rate that's too small": when a study's best trial is
the last feasible one before the infeasible trials on an ordered hyperparameter, and results
get better towards them, the workload is likely limited by instability, and warmup or gradient
clipping may reach better results beyond. Infeasible is the playbook's sense
(:func:`~tunebook.analysis.checks.failures.outcomes`: diverged, or completed at chance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.failures import DEFAULTS, FailureThresholds, outcomes
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding
from tunebook.search.space import Hyperparameter

__all__ = ["check_near_divergence", "spearman"]

SEC_UNSTABLE = "How can optimization failures be debugged and mitigated?"


def _ranks(x: Sequence[float]) -> c.Array:
    """Ranks of ``x`` from 0, ties sharing their mean rank."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.arange(len(a), dtype=np.float64)
    for v in np.unique(a):
        tie = a == v
        ranks[tie] = float(np.mean(ranks[tie]))
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y`` (None with fewer than 3 points or a
    constant side)."""
    if len(x) < 3 or len(x) != len(y):
        return None
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = float(np.std(rx)), float(np.std(ry))
    if sx == 0 or sy == 0:
        return None
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def _edge(data: ExperimentData, name: str, hp: Hyperparameter, best: TrialData,
          good: list[TrialData], bad: list[TrialData], th: FailureThresholds
          ) -> dict[str, Any] | None:
    """The side of ``best`` on ``name`` where the bad trials start right after it, or None."""
    ub = c.unit(hp, best.params.get(name))
    if ub is None:
        return None
    pos_good = [(u, t) for t in good if t.id != best.id
                and (u := c.unit(hp, t.params.get(name))) is not None]
    pos_bad = [(u, t) for t in bad if (u := c.unit(hp, t.params.get(name))) is not None]
    if not pos_bad:
        return None
    sgn = c.sign(data)
    for side, d in (("high", 1.0), ("low", -1.0)):
        beyond_bad = sorted(((d * (u - ub), t) for u, t in pos_bad if d * (u - ub) > 0),
                            key=lambda e: (e[0], e[1].id))
        beyond_good = [(d * (u - ub), t) for u, t in pos_good if d * (u - ub) > 0]
        if len(beyond_bad) < th.near_min_bad:
            continue
        nearest_good = min((e for e, _ in beyond_good), default=np.inf)
        if beyond_bad[0][0] >= nearest_good:
            continue  # a feasible trial lies between the best and the bad region
        n_beyond = len(beyond_bad) + len(beyond_good)
        if (len(beyond_bad) / n_beyond < th.near_bad_share
                or len(beyond_bad) / len(pos_bad) < th.near_bad_share):
            continue
        feas = [(d * u, sgn * v) for u, t in [(ub, best), *pos_good]
                if (v := c.objective(data, t)) is not None]
        rho = spearman([p for p, _ in feas], [y for _, y in feas])
        if rho is None or -rho < th.near_trend:
            continue
        return {"hyperparameter": name, "side": side, "best_value": c.jsonable(
            best.params.get(name)), "best_unit": ub,
            "bad_beyond": [c.jsonable(t.params.get(name)) for _, t in beyond_bad],
            "bad_trials": [t.id for _, t in beyond_bad], "n_bad_beyond": len(beyond_bad),
            "n_good_beyond": len(beyond_good), "n_bad": len(pos_bad),
            "gap_unit": float(beyond_bad[0][0]), "trend": -rho,
            "_trials": [t for _, t in beyond_bad]}
    return None


@check("near_divergence", playbook_section=SEC_UNSTABLE, thresholds=FailureThresholds)
def check_near_divergence(data: ExperimentData,
                          th: FailureThresholds = DEFAULTS) -> list[Finding]:
    """A study's best trial sits right next to the divergent region (playbook Figure 7a).

    For each study whose best trial is feasible (not at chance), and each varied ordered
    hyperparameter, on one side of the best trial (in the scaled space) with the study's bad
    trials (infeasible or at chance, :func:`~tunebook.analysis.checks.failures.outcomes`):
    the nearest trial beyond the best on that side is bad; at least ``near_min_bad`` (2) bad
    trials lie beyond it; at least ``near_bad_share`` (2/3) of the trials beyond it are bad and
    at least 2/3 of the study's bad trials are beyond it; and results improve towards that
    side (Spearman correlation between the position towards it and the objective of the
    feasible trials at least ``near_trend``, 0.3, in the improving direction). One ``warning``
    per study, on the hyperparameter with the most bad trials beyond the best (ties: the
    strongest trend). Advice: ``stability: improve`` (warmup, clipping): no range advice, so it
    never contradicts a boundary finding.
    """
    out = outcomes(data, th)
    bad_ids = {t.id for t in out.bad}
    good_ids = {t.id for t in out.feasible}
    findings = []
    for study in c.studies(data):
        ranked = [t for t in data.ranked(study) if t.id in good_ids]
        bad = [t for t in data.trials if t.study == study and t.id in bad_ids]
        if len(ranked) < 3 or len(bad) < th.near_min_bad:
            continue
        best = ranked[0]
        if data.ranked(study)[0].id != best.id:
            continue  # the study's best is at chance: at_chance says it
        edges = [e for name, hp in data.varied().items() if hp.ordered
                 if (e := _edge(data, name, hp, best, ranked[1:], bad, th)) is not None]
        if not edges:
            continue
        e = max(edges, key=lambda e: (e["n_bad_beyond"], e["trend"]))
        name, trials = e["hyperparameter"], e.pop("_trials")
        values = ", ".join(c.fmt(float(v)) if c.num(v) is not None else str(v)
                           for v in e["bad_beyond"][:5])
        more = f" and {len(e['bad_beyond']) - 5} more" if len(e["bad_beyond"]) > 5 else ""
        best_v = e["best_value"]
        shown = c.fmt(float(best_v)) if c.num(best_v) is not None else str(best_v)
        word = "above" if e["side"] == "high" else "below"
        n_beyond = e["n_bad_beyond"] + e["n_good_beyond"]
        chance_ids = {t.id for t in out.at_chance}
        kind = ("infeasible (diverged or at chance)" if any(t.id in chance_ids for t in trials)
                else "infeasible")
        findings.append(finding(
            check="near_divergence", severity="warning",
            message=(f"The best trial of {study} ({best.label}, {name} = {shown}) is the last "
                     f"feasible one before the infeasible region: the nearest trial {word} it is "
                     f"{kind}, and {e['n_bad_beyond']} of the {n_beyond} trials {word} it are "
                     f"({name} = {values}{more}), while "
                     f"results improve towards them (rank correlation {e['trend']:.2f})."),
            evidence={**e, "study": study, "best_trial": best.id},
            action=(f"The workload is likely limited by training instability (playbook Figure "
                    f"7a): check the training loss of the trials just {word} the best one for a "
                    "sudden rise after a steady decline (Figure 7b), then try learning rate "
                    "warmup or gradient clipping: a stable workload may reach a better result "
                    f"{word} {name} = {shown}."),
            hyperparameter=name, study=study,
            trials=[c.trial_ref(best)] + [c.trial_ref(t) for t in trials],
            advice={"stability": "improve"}))
    return findings

"""Search-space checks: are the best points at the edge of the space?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding, Severity
from tunebook.search.space import Float, Int

__all__ = ["SearchSpaceThresholds", "check_boundary"]


@dataclass(frozen=True)
class SearchSpaceThresholds:
    """Thresholds of the search-space checks (``checks: {search_space: {...}}``)."""

    family: ClassVar[str] = "search_space"

    #: "Near the boundary": the outer 10% of the range in the scaled (e.g. log) space, roughly
    #: the width of one bucket of an axis plot with 5 columns per side.
    edge_fraction: float = 0.1
    #: How many of the best trials of a study are looked at ("the best points cluster...").
    top_k: int = 5
    #: How many of those ``top_k`` at one edge make a cluster, even if the very best is inside.
    top_at_edge: int = 2
    #: Widen a bad side by half the current scaled range: enough to move the best point well
    #: inside the new range without throwing away the trials already run.
    widen_fraction: float = 0.5


DEFAULTS = SearchSpaceThresholds()


def _widened(hp: Float | Int, side: str, fraction: float = DEFAULTS.widen_fraction
             ) -> tuple[float | int, bool]:
    """The bound on ``side`` moved out by fraction of the scaled range.

    Returns the suggested bound and whether it was clamped at a natural limit. Log scales
    multiply/divide (so never reach 0); ``one_minus_log`` works on ``1 - value``; integers round
    outward. A linear or ``one_minus_log`` range that starts at or above 0 is not extended below
    0, an integer range starting at or above 1 not below 1, and a linear float range inside
    ``[0, 1]`` (a fraction: dropout, label smoothing) not above 1.
    """
    low, high = hp.low, hp.high
    if hp.integer:
        if hp.scale == "log":
            r = ((high + 1) / low) ** fraction
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
        r = (high / low) ** fraction
        return (low / r, False) if side == "low" else (high * r, False)
    if hp.scale == "one_minus_log":
        q_low, q_high = 1.0 - low, 1.0 - high  # q_low > q_high > 0
        r = (q_low / q_high) ** fraction
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


def _edge_hits(data: ExperimentData, space: dict[str, Float | Int], th: SearchSpaceThresholds
               ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], set[tuple[str, str]]]:
    """Per (hyperparameter, side): the studies whose top trials sit at that edge (evidence
    entries), and the (hyperparameter, side) pairs where the best trial overall does."""
    ranked_all = data.ranked()
    overall_best = ranked_all[0] if ranked_all else None
    hits: dict[tuple[str, str], list[dict[str, Any]]] = {}
    overall_hit: set[tuple[str, str]] = set()
    for study in c.studies(data):
        top = data.ranked(study)[:th.top_k]
        if not top:
            continue
        for name, hp in space.items():
            units = [c.unit(hp, t.params.get(name)) for t in top]
            for side in ("low", "high"):
                at = [(t, u) for t, u in zip(top, units, strict=True) if u is not None and (
                    u < th.edge_fraction if side == "low" else u > 1 - th.edge_fraction)]
                best_at = any(t.id == top[0].id for t, _ in at)
                if not best_at and len(at) < th.top_at_edge:
                    continue
                hits.setdefault((name, side), []).append({
                    "study": study,
                    "best_at_edge": best_at,
                    "n_top": len(top),
                    "n_at_edge": len(at),
                    "trials": [{**c.trial_ref(t), "value": c.jsonable(t.params.get(name)),
                                "unit": u, "objective": c.objective(data, t)} for t, u in at],
                })
                if overall_best is not None and any(t.id == overall_best.id for t, _ in at):
                    overall_hit.add((name, side))
    return hits, overall_hit


@check("boundary", playbook_section=c.SEC_BOUNDARY, thresholds=SearchSpaceThresholds)
def check_boundary(data: ExperimentData, th: SearchSpaceThresholds = DEFAULTS) -> list[Finding]:
    """Best points at the edge of the search space ("Is the search space large enough?").

    For every study and every continuous nuisance hyperparameter (Float or Int), look at the
    study's ``top_k`` (5) best completed trials. A side (``low``: ``to_unit(value) <
    edge_fraction``; ``high``: ``> 1 - edge_fraction``) is flagged for the study when the study's
    best trial is there, or when at least ``top_at_edge`` (2) of its top 5 are there. One
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
    space = {n: r for n, hp in data.varied().items() if (r := hp.as_range()) is not None}
    if not space:
        return []
    hits, overall_hit = _edge_hits(data, space, th)
    studies = c.studies(data)
    findings = []
    n_studies = sum(1 for s in studies if data.ranked(s))
    for (name, side), entries in sorted(hits.items()):
        hp = space[name]
        suggested, clamped = _widened(hp, side, th.widen_fraction)
        bound = hp.low if side == "low" else hp.high
        where = "bottom" if side == "low" else "top"
        parts = []
        for e in entries:
            best = " incl. its best" if e["best_at_edge"] else ""
            parts.append(f"{e['study']}: {e['n_at_edge']} of top {e['n_top']}{best}")
        is_problem = (name, side) in overall_hit
        any_best = any(e["best_at_edge"] for e in entries)
        severity: Severity = "problem" if is_problem else "warning" if any_best else "info"
        stuck = clamped and suggested == bound
        widen = (f"the {side} bound {c.fmt(bound)} looks like a natural limit"
                 if stuck else f"widen the {side} bound from {c.fmt(bound)} to {c.fmt(suggested)}")
        if stuck:
            action = (f"The best points sit at the {side} limit of {name}: if values beyond "
                      f"{c.fmt(bound)} are valid, run another study with that bound expanded; if "
                      "not, the optimum may be at the limit (consider reparameterising).")
        else:
            action = ("The search space is probably not wide enough: run another study with "
                      f"the {side} bound of {name} expanded (e.g. to {c.fmt(suggested)}) until the "
                      "best observed point is no longer close to the boundary.")
        message = (f"{name}: the best trials sit in the {where} {c.pct(th.edge_fraction)} of its "
                   f"{hp.scale} range [{c.fmt(hp.low)}, {c.fmt(hp.high)}] in {len(entries)} of "
                   f"{n_studies} studies ({'; '.join(parts)})"
                   f"{', including the best trial overall' if is_problem else ''}; {widen}.")
        evidence: dict[str, Any] = {
            "side": side, "scale": hp.scale, "low": hp.low, "high": hp.high,
            "edge_fraction": th.edge_fraction, "top_k": th.top_k,
            "min_top_at_edge": th.top_at_edge,
            "widen_fraction": th.widen_fraction, "overall_best_at_edge": is_problem,
            "clamped": clamped, "studies": entries,
            f"suggested_{side}": suggested,
        }
        findings.append(finding(
            check="boundary", severity=severity, message=message, evidence=evidence, action=action,
            hyperparameter=name,
            study=entries[0]["study"] if len(entries) == 1 else None))
    return findings


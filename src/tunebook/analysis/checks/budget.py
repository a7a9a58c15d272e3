"""Budget checks: enough trials to tell the studies apart?

The spread is :func:`tunebook.analysis.stats.best_of_n_iqr` and the verdict
:func:`tunebook.analysis.stats.separated`, the same as the report's isolation verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding

__all__ = ["BudgetThresholds", "check_enough_trials"]


@dataclass(frozen=True)
class BudgetThresholds:
    """Thresholds of the budget checks (``checks: {budget: {...}}``).

    None yet: whether the trials are enough is judged against the gap the data shows, with the
    bootstrap of :mod:`tunebook.analysis.stats` (1,000 draws, seed 0).
    """

    family: ClassVar[str] = "budget"


DEFAULTS = BudgetThresholds()


@check("enough_trials", playbook_section=c.SEC_SAMPLING, thresholds=BudgetThresholds)
def check_enough_trials(data: ExperimentData, th: BudgetThresholds = DEFAULTS) -> list[Finding]:
    """Not enough trials to tell the studies apart (bootstrapped best-of-n).

    Needs at least 2 studies with completed trials. For each study with ``n >= 2`` finished
    trials (:func:`~tunebook.analysis.stats.study_pool`: infeasible ones count as failures),
    :func:`~tunebook.analysis.stats.best_of_k_quantiles` with ``k = n`` (1,000 seeded draws,
    reseeded per study so that the result does not depend on study order) gives the quartiles
    of the best-of-n value. One ``info`` when, in any study, the interquartile range is not
    :func:`~tunebook.analysis.stats.separated` from the gap between the best values of the two
    best studies (the isolation verdict's rule).
    """
    bests = c.study_bests(data)
    if len(bests) < 2:
        return []
    gap = abs(bests[0][2] - bests[1][2])
    sign = c.sign(data)
    rows: list[dict[str, Any]] = []
    for study, _, best in bests:
        pool = stats.study_pool(data, study)
        if len(pool) < 2:
            continue
        quartiles = stats.best_of_k_quantiles(pool, len(pool), (25, 75))
        if quartiles is None:
            continue
        q25, q75 = quartiles
        rows.append({"study": study, "n_trials": len(pool), "best": best, "iqr": q75 - q25,
                     "q25": (q25 if sign > 0 else -q75), "q75": (q75 if sign > 0 else -q25)})
    wide = [r for r in rows if not stats.separated(gap, r["iqr"])]
    if not wide:
        return []
    worst = max(wide, key=lambda r: r["iqr"])
    return [finding(
        check="enough_trials", severity="info",
        message=(f"Not enough trials to separate the studies: the best-of-n value of "
                 f"{len(wide)} of {len(rows)} studies varies by {c.fmt(worst['iqr'])} (bootstrap "
                 f"IQR, study {worst['study']} with {worst['n_trials']} trials), more than the "
                 f"gap {c.fmt(gap)} between {bests[0][0]} and {bests[1][0]}."),
        evidence={"gap": gap, "gap_between": [bests[0][0], bests[1][0]],
                  "draws": stats.BOOTSTRAP_DRAWS, "seed": stats.BOOTSTRAP_SEED, "studies": rows},
        action=("Run more trials per study (or be less ambitious in the tuning goals) before "
                "concluding that the studies differ: with this many trials, a luckier or "
                "unluckier sample of the nuisance space could reorder them."),
        study=worst["study"] if len(wide) == 1 else None)]


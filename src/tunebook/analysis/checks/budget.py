"""Budget checks: enough trials to tell the studies apart?

Judged by the one comparison of the studies, :func:`tunebook.analysis.comparison.compare`
(the isolation verdict): this check says "more trials" exactly when that comparison is
inconclusive and limited by the sampling of the nuisance space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.comparison import compare
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding

__all__ = ["BudgetThresholds", "check_enough_trials"]


@dataclass(frozen=True)
class BudgetThresholds:
    """Thresholds of the budget checks (``checks: {budget: {...}}``).

    None yet: whether the trials are enough is the comparison's (``checks: {comparison:
    ...}``), with the bootstrap of :mod:`tunebook.analysis.stats` (1,000 draws, seed 0).
    """

    family: ClassVar[str] = "budget"


DEFAULTS = BudgetThresholds()


@check("enough_trials", playbook_section=c.SEC_SAMPLING, thresholds=BudgetThresholds)
def check_enough_trials(data: ExperimentData, th: BudgetThresholds = DEFAULTS) -> list[Finding]:
    """Not enough trials to tell the studies apart.

    Reads :func:`~tunebook.analysis.comparison.compare` (needs 2 studies with a ranked trial).
    Silent when its verdict is ``differ``. Otherwise one ``info`` when what limits the
    comparison is the sampling of the nuisance space (``limit == "sampling"``: the median
    best-of-n bootstrap IQR of the studies, 1,000 seeded draws per study, infeasible trials
    counting as failures, is the largest part of the spread); when step noise or the metric's
    resolution limits it, more trials would not help and this check stays silent.
    """
    cmp = compare(data)
    if cmp is None or cmp.verdict == "differ" or cmp.limit != "sampling":
        return []
    sign = c.sign(data)
    rows: list[dict[str, Any]] = []
    for study in c.studies(data):
        pool = stats.study_pool(data, study)
        if len(pool) < 2:
            continue
        quartiles = stats.best_of_k_quantiles(pool, len(pool), (25, 75))
        if quartiles is None:
            continue
        q25, q75 = quartiles
        ranked = data.ranked(study)
        rows.append({"study": study, "n_trials": len(pool),
                     "best": data.value(ranked[0]) if ranked else None, "iqr": q75 - q25,
                     "q25": (q25 if sign > 0 else -q75), "q75": (q75 if sign > 0 else -q25)})
    if cmp.sampling is None or not rows:
        return []  # a sampling limit without a bootstrap: only the pairs disagree
    worst = max(rows, key=lambda x: x["iqr"])
    r = cmp.runner_up
    return [finding(
        check="enough_trials", severity="info",
        message=(f"Not enough trials to separate {cmp.best_label} from {r.label}, "
                 f"{cmp.gap_text()} apart: {cmp.reason()}. A study's best-of-n value varies by "
                 + (f"{c.fmt(cmp.sampling)} (median bootstrap IQR over {len(rows)} studies, "
                    f"largest {c.fmt(worst['iqr'])} for {worst['study']} with "
                    f"{worst['n_trials']} trials).")),
        evidence={"gap": cmp.gap, "gap_between": [cmp.best, r.study], "verdict": cmp.verdict,
                  "sampling": cmp.sampling, "spread": cmp.spread, "limit": cmp.limit,
                  "draws": stats.BOOTSTRAP_DRAWS, "seed": stats.BOOTSTRAP_SEED, "studies": rows},
        action=("Run more trials per study (or be less ambitious in the tuning goals) before "
                "concluding that the studies differ: with this many trials, a luckier or "
                "unluckier " + ("set of seeds" if cmp.replicates else
                                "sample of the nuisance space") + " could reorder them."),
        trials=[c.trial_ref(t) for t in cmp.trials],
        advice={"trials": "more", "studies": "within_spread"})]

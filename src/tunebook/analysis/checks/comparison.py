"""The isolation verdict as a finding: do the studies differ, by how much, and what limits it.

The numbers are :func:`tunebook.analysis.comparison.compare`'s, shared with the isolation plot,
``enough_trials`` and ``late_variance``: the verdict is stated once, here.
"""

from __future__ import annotations

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.comparison import DEFAULTS, Comparison, ComparisonThresholds, compare
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding

__all__ = ["check_isolation"]


def _action(cmp: Comparison) -> str:
    if cmp.verdict == "differ" and cmp.replicates:
        return ("Treat the difference as real for this experiment's conclusions: the studies "
                "are already replicates (one configuration, several seeds each); compare their "
                "means over the seeds, not their best seed, before a launch decision.")
    if cmp.verdict == "differ":
        return ("Treat the difference as real for this experiment's conclusions; before a "
                "launch decision, retrain the best trials of both studies with several seeds "
                "to confirm it.")
    res = cmp.metric_resolution
    if cmp.limit == "resolution":
        size = f" ({res.examples} examples)" if res.examples else ""
        return ("The gap is below what the evaluation set" + size + " can resolve: treat the "
                "studies as equivalent, or evaluate on more data to tell them apart.")
    if cmp.limit == "step_noise":
        return ("Step-to-step noise late in training decides the comparison: reduce it "
                "(bigger batch, more validation data, learning rate decay, Polyak averaging) or "
                "retrain the best trials with several seeds before concluding.")
    if cmp.limit == "sampling":
        if cmp.replicates:
            return ("Run more seeds per study before concluding: other seeds could reorder "
                    "the studies.")
        return ("Run more trials per study before concluding: another sample of the nuisance "
                "space could reorder the studies.")
    return ("Too little data to judge the spread: run more trials and retrain the best ones "
            "with several seeds before concluding.")


@check("isolation", playbook_section=c.SEC_INSIGHT, thresholds=ComparisonThresholds)
def check_isolation(data: ExperimentData, th: ComparisonThresholds = DEFAULTS) -> list[Finding]:
    """The isolation verdict: do the two best studies differ? One ``info`` per experiment.

    Needs at least 2 studies with a ranked trial. The verdict is
    :func:`~tunebook.analysis.comparison.compare`'s: ``differ`` when, over at least
    ``min_pairs`` (6) shared nuisance points, a one-sided sign test of the best study being
    better (all feasible pairs, or the top-half pairs; differences within the step noise or the
    resolution are ties) gives p <= ``sign_alpha`` (0.025), and the gap exceeds the step noise
    and the metric's resolution; with fewer pairs, when the gap exceeds the spread (the largest of
    step noise, best-of-n sampling IQR and resolution); else ``within_spread``. ``evidence``
    holds every number and ``verdict``; ``advice`` is ``{"studies": verdict}``.
    """
    cmp = compare(data, th)
    if cmp is None:
        return []
    return [finding(
        check="isolation", severity="info", message=cmp.summary(),
        evidence=cmp.as_dict(), action=_action(cmp),
        trials=[c.trial_ref(t) for t in cmp.trials], advice={"studies": cmp.verdict})]

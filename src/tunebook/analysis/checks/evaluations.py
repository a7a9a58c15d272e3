"""Evaluation checks: was the objective evaluated at regular step intervals?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding

__all__ = ["EvaluationThresholds", "check_eval_steps"]


@dataclass(frozen=True)
class EvaluationThresholds:
    """Thresholds of the evaluation checks (``checks: {evaluations: {...}}``).

    None yet: the expected steps come from the experiment (``eval_every``,
    ``max_train_steps``). A new evaluation check puts its thresholds here.
    """

    family: ClassVar[str] = "evaluations"


DEFAULTS = EvaluationThresholds()


@check("eval_steps", playbook_section=c.SEC_PERIODIC, thresholds=EvaluationThresholds)
def check_eval_steps(data: ExperimentData, th: EvaluationThresholds = DEFAULTS) -> list[Finding]:
    """The objective was not evaluated at regular step intervals.

    For each completed trial with an objective curve: ``unexpected`` steps are those that are
    neither a multiple of ``eval_every`` (step 0, an initial evaluation, counts as one) nor
    ``max_train_steps``, or are repeated; ``missing`` are the multiples of ``eval_every`` up to
    ``max_train_steps`` (and ``max_train_steps`` itself) that were not reported. One
    ``warning`` listing up to 5 trials with up to 5 steps each (its ``trials``: every irregular
    trial). Trials without any objective curve are skipped (the metric may simply not be
    recorded). No tuning knob (empty ``advice``): the remedy is in how the workload reports.

    At scale (a report that read a sample of the curves, :attr:`~tunebook.analysis.data.Curve.
    sampled`), only the trials whose every point was read are checked: each study's best
    ones, as the playbook looks at first.
    """
    exp = data.experiment
    every, max_steps = exp.eval_every, exp.max_train_steps
    expected = np.arange(every, max_steps + 1, every, dtype=np.int64)
    if len(expected) == 0 or int(expected[-1]) != max_steps:
        expected = np.append(expected, np.int64(max_steps))
    examples: list[dict[str, Any]] = []
    n_checked = 0
    irregular: list[dict[str, Any]] = []
    for t in data.trials:
        curve = t.curves.get(data.metric)
        if not t.feasible or curve is None or len(curve) == 0 or curve.sampled:
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
        irregular.append(c.trial_ref(t))
        if len(examples) < 5:
            missing = expected[missing_mask]
            examples.append({**c.trial_ref(t), "unexpected": unexpected[:5],
                             "n_unexpected": len(unexpected),
                             "missing": [int(s) for s in missing[:5]],
                             "n_missing": int(missing_mask.sum())})
    n_bad = len(irregular)
    if not n_bad:
        return []
    e = examples[0]
    detail = []
    if e["n_unexpected"]:
        detail.append(f"at steps {e['unexpected']}")
    if e["n_missing"]:
        detail.append(f"not at {e['n_missing']} expected steps (e.g. {e['missing']})")
    return [finding(
        check="eval_steps", severity="warning",
        message=(f"{n_bad} of {n_checked} completed trials did not report {data.metric} every "
                 f"{every} steps up to {max_steps}: e.g. {e['label']} reported "
                 f"{' and '.join(detail)}."),
        evidence={"metric": data.metric, "eval_every": every, "max_train_steps": max_steps,
                  "n_checked": n_checked, "n_irregular": n_bad, "examples": examples},
        action=("Periodic evaluations should be done at regular step intervals, not time "
                "intervals: report the objective at every multiple of eval_every and at "
                "max_train_steps, so that curves are comparable and retrospective checkpoint "
                "selection sees every evaluation."),
        trials=irregular, advice={})]


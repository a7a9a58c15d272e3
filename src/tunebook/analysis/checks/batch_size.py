"""Checks of the batch-size probe's evidence (procedure ``batch-size``).

They read only the evidence of :class:`tunebook.procedures.batch_size.BatchSize` (its
recommendation's ``evidence``), never an experiment:

- ``batch_size_input_bound``: the input pipeline's share of the step time at the recommended
  size is above the pipeline family's ``input_bound_share`` (the same threshold as the
  experiment check ``input_bound``: one concept, one place).
- ``batch_size_retune``: the playbook's two warnings, whenever a size is recommended.
- ``batch_size_target_not_reached``: with steps to a result, some size never reached the target.
- ``batch_size_no_step_reduction``: with steps to a result, a larger size probed no longer
  reduces the steps needed.

The playbook's section "Choosing the batch size" and its subsections.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis.checks.pipeline import PipelineThresholds
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.findings import Finding

__all__ = ["BatchSizeThresholds", "check_input_bound_at_size", "check_no_step_reduction",
           "check_retune", "check_target_not_reached", "scaling"]

SEC_BATCH = "Choosing the batch size"
SEC_TIME = "Choosing the batch size to minimize training time"
SEC_RETUNE = "Changing the batch size requires re-tuning most hyperparameters"
PROCEDURE = "batch-size"


@dataclass(frozen=True)
class BatchSizeThresholds:
    """Thresholds of the batch-size procedure (``checks: {batch_size: {...}}``)."""

    family: ClassVar[str] = "batch_size"

    #: Steps to the result scale perfectly from one size to the next when they fall per
    #: doubling by at least ``2 / (1 + scaling_tolerance)`` (0.25: to at most 62.5% instead of
    #: 50%; the steps are only known to one evaluation interval, and the short search finds a
    #: slightly different learning rate per size) ...
    scaling_tolerance: float = 0.25
    #: ... and they no longer fall when they fall per doubling by less than
    #: ``1 + no_reduction`` (0.1: under 10%, within what the resolution of the evaluations and
    #: the search's noise can produce).
    no_reduction: float = 0.1


DEFAULTS = BatchSizeThresholds()
PIPELINE = PipelineThresholds()


def scaling(rows: list[dict[str, Any]], th: BatchSizeThresholds = DEFAULTS) -> dict[str, Any]:
    """The scaling of the steps to the result over the sizes that reached it.

    ``rows``: ``[{"batch_size": B, "steps": S or None}, ...]``. Returns ``{"fall_per_doubling":
    {B: fall}, "perfect_up_to": B or None, "diminishing_returns_at": B or None,
    "no_reduction_at": B or None, "tolerance": ...}``: the perfect-scaling region runs from the
    smallest size that reached the target through every next size whose fall is perfect (see
    :class:`BatchSizeThresholds`); diminishing returns start at the first size after it; no
    reduction from the first size B such that no size from B on needs fewer steps than the
    size below B by ``1 + no_reduction`` per doubling.
    """
    reached = sorted((r for r in rows if r.get("steps")), key=lambda r: r["batch_size"])
    out: dict[str, Any] = {"tolerance": th.scaling_tolerance, "fall_per_doubling": {},
                           "perfect_up_to": reached[0]["batch_size"] if reached else None,
                           "diminishing_returns_at": None, "no_reduction_at": None}
    for prev, cur in itertools.pairwise(reached):
        doublings = math.log2(cur["batch_size"] / prev["batch_size"])
        fall = (prev["steps"] / cur["steps"]) ** (1 / doublings)
        out["fall_per_doubling"][str(cur["batch_size"])] = fall
        if out["diminishing_returns_at"] is None:
            if fall >= 2 / (1 + th.scaling_tolerance):
                out["perfect_up_to"] = cur["batch_size"]
            else:
                out["diminishing_returns_at"] = cur["batch_size"]
    # No reduction from B on: no larger size reached the target in fewer steps than the size
    # below B by ``no_reduction`` per doubling (a noisy plateau followed by a fall is not one).
    for i in range(1, len(reached)):
        prev = reached[i - 1]
        if all((prev["steps"] / r["steps"]) ** (1 / math.log2(r["batch_size"]
                                                                / prev["batch_size"]))
               < 1 + th.no_reduction for r in reached[i:]):
            out["no_reduction_at"] = reached[i]["batch_size"]
            break
    return out


def _size(evidence: Mapping[str, Any], b: int) -> Mapping[str, Any]:
    return next((s for s in evidence.get("sizes", ()) if s.get("batch_size") == b), {})


@check("batch_size_input_bound", playbook_section=SEC_BATCH, thresholds=PipelineThresholds,
       procedure=PROCEDURE)
def check_input_bound_at_size(evidence: Mapping[str, Any],
                              th: PipelineThresholds = PIPELINE) -> list[Finding]:
    """The input pipeline is the bottleneck at the recommended batch size.

    Fires (``warning``) when ``evidence["data_share"]`` (``data_seconds / step_seconds`` at the
    recommended size) exceeds the pipeline family's ``input_bound_share`` (0.5: the step waits
    longer for its batch than it computes), the threshold of the experiment check
    ``input_bound``. ``trials``: the probe's trials at that size. Advice
    ``input_pipeline: speed_up``.
    """
    b, share = evidence.get("recommended"), evidence.get("data_share")
    if b is None or share is None or share <= th.input_bound_share:
        return []
    return [finding(
        "batch_size_input_bound", "warning",
        f"the input pipeline takes {100 * share:.0f}% of the step time at batch size {b} "
        f"(above {100 * th.input_bound_share:.0f}%): the workload is input-bound",
        evidence={"data_share": share, "batch_size": b, "threshold": th.input_bound_share},
        action="speed up the input pipeline before choosing a larger batch size: a larger "
               "batch only helps if the pipeline keeps up",
        trials=list(_size(evidence, b).get("trials", [])),
        advice={"input_pipeline": "speed_up"})]


@check("batch_size_retune", playbook_section=SEC_RETUNE, thresholds=BatchSizeThresholds,
       procedure=PROCEDURE)
def check_retune(evidence: Mapping[str, Any],
                 th: BatchSizeThresholds = DEFAULTS) -> list[Finding]:
    """The playbook's two warnings, whenever a batch size is recommended (``info``).

    The batch size is chosen for training speed or cost, never tuned for validation
    performance; changing it requires re-tuning most hyperparameters (the optimizer's and the
    regularisation). No threshold. ``trials``: the probe's trials at the recommended size.
    Advice ``choose:batch_size: by_cost``.
    """
    b = evidence.get("recommended")
    if b is None:
        return []
    return [finding(
        "batch_size_retune", "info",
        "changing the batch size requires re-tuning most hyperparameters; do not tune it for "
        "validation performance", evidence={"batch_size": b},
        action="re-tune the learning rate, momentum and regularisation at the new size",
        trials=list(_size(evidence, b).get("trials", [])),
        advice={"choose:batch_size": "by_cost"})]


@check("batch_size_target_not_reached", playbook_section=SEC_TIME,
       thresholds=BatchSizeThresholds, procedure=PROCEDURE)
def check_target_not_reached(evidence: Mapping[str, Any],
                             th: BatchSizeThresholds = DEFAULTS) -> list[Finding]:
    """With steps to a result: some size's short search never reached the target.

    Reads ``evidence["steps_to_result"]``; fires when some size has ``steps`` None:
    ``warning`` when no size reached it (nothing can be compared: a target too ambitious for
    ``max_train_steps``, or too few trials to find a good learning rate), ``info`` when only
    some did (those are left out of the comparison). No threshold. ``trials``: the best trial
    of each such size. Advice ``training_length: longer``, ``trials: more``.
    """
    rows = list(evidence.get("steps_to_result", ()))
    missed = [r for r in rows if r.get("steps") is None]
    if not missed:
        return []
    sizes = [r["batch_size"] for r in missed]
    none_reached = len(missed) == len(rows)
    target = missed[0].get("target")
    return [finding(
        "batch_size_target_not_reached", "warning" if none_reached else "info",
        (f"no batch size reached the target {target:g}" if none_reached else
         f"batch sizes {', '.join(map(str, sizes))} never reached the target {target:g}"),
        evidence={"batch_sizes": sizes, "target": target,
                  "best_values": {str(r["batch_size"]): r.get("best_value") for r in missed}},
        action=("train longer (max_train_steps) or search more trials per size, or choose a "
                "reachable target" if none_reached else
                "those sizes are left out of the comparison of training times"),
        trials=[r["trial"] for r in missed if r.get("trial")],
        advice={"training_length": "longer", "trials": "more"})]


@check("batch_size_no_step_reduction", playbook_section=SEC_TIME,
       thresholds=BatchSizeThresholds, procedure=PROCEDURE)
def check_no_step_reduction(evidence: Mapping[str, Any],
                            th: BatchSizeThresholds = DEFAULTS) -> list[Finding]:
    """With steps to a result: a larger batch size no longer reduces the steps needed.

    Fires (``info``) when, among the sizes that reached the target, from some size on no size
    needs fewer steps than the size below it by ``1 + no_reduction`` (0.1) per doubling
    (:func:`scaling`): the playbook's "no point in using a larger batch size" beyond it.
    ``trials``: the best trials from that size on. Advice ``choose:batch_size: by_cost``.
    """
    rows = list(evidence.get("steps_to_result", ()))
    at = scaling(rows, th)["no_reduction_at"]
    if at is None:
        return []
    return [finding(
        "batch_size_no_step_reduction", "info",
        f"from batch size {at} on, a larger batch no longer reduces the steps to the target "
        f"(by under {100 * th.no_reduction:.0f}% per doubling)",
        evidence={"batch_size": at, "no_reduction": th.no_reduction},
        action="larger sizes only cost more per step: do not go beyond the recommended size",
        trials=[r["trial"] for r in rows
                if r.get("trial") and r.get("steps") and r["batch_size"] >= at],
        advice={"choose:batch_size": "by_cost"})]

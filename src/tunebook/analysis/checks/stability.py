"""Procedure checks of ``tunebook stability`` and ``tunebook clip``: what their evidence means.

The playbook's "How can optimization failures be debugged and mitigated?" as judgements of
what the two procedures measured (:mod:`tunebook.procedures.stability`,
:mod:`tunebook.procedures.clip`). Each check reads the procedure's evidence only (the
``evidence`` of its recommendation: a JSON-like mapping) and never the store.

Which trial is *unstable* is decided by the procedure, not here: its verdict (``"unstable"``:
the reason, or None) is in every evidence row, because the same verdict decides which
experiments the procedure runs next (the warmup study only after an unstable sweep trial).
Its spike factor is therefore a procedure option (``--spike-factor``), not a threshold.

Evidence the stability checks read: ``sweep`` (rows with ``learning_rate``, ``best_value``,
``unstable`` and ``trial``: ``{"id", "label"}``), ``goal``, ``unstable_base_learning_rate``,
``early_run``, ``warmup_study`` (rows with ``warmup_steps``), ``base_max_train_steps`` and
``clipping``. The clip checks read ``fraction_clipped``, ``clip_threshold``, ``quantile``,
``trial_refs`` and ``clipped_trials`` (rows with ``unstable`` and ``trial``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis.checks.clipping import DEFAULTS as CLIP_DEFAULTS
from tunebook.analysis.checks.clipping import SEC_OPTIMIZATION, ClippingThresholds
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.findings import Finding

__all__ = [
    "StabilityThresholds",
    "check_aggressive_clipping",
    "check_clipped_run_unstable",
    "check_clipping_did_not_help",
    "check_early_instability",
    "check_long_warmup",
    "check_unstable_learning_rate",
    "check_warmup_did_not_help",
]


@dataclass(frozen=True)
class StabilityThresholds:
    """Thresholds of the stability procedure's checks (``checks: {stability: {...}}``).

    The clip procedure's checks use the ``clipping`` family
    (:class:`~tunebook.analysis.checks.clipping.ClippingThresholds`: ``aggressive_fraction``).
    """

    family: ClassVar[str] = "stability"
    #: The playbook: "If long warmup_steps are required for stable training (>5% of
    #: max_train_steps), max_train_steps may need to be increased to account for this."
    long_warmup_share: float = 0.05


DEFAULTS = StabilityThresholds()


def _rows(evidence: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """``evidence[key]`` as a list of mappings (empty when absent or malformed)."""
    value = evidence.get(key)
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [r for r in value if isinstance(r, Mapping)]


def _refs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``trial`` references of ``rows`` (those that carry one)."""
    return [dict(r["trial"]) for r in rows if isinstance(r.get("trial"), Mapping)]


@check("unstable_learning_rate", playbook_section=SEC_OPTIMIZATION,
       thresholds=StabilityThresholds, procedure="stability")
def check_unstable_learning_rate(evidence: Mapping[str, Any],
                                 th: StabilityThresholds = DEFAULTS) -> list[Finding]:
    """The learning-rate sweep became unstable.

    Fires when ``unstable_base_learning_rate`` is set (some sweep trial was unstable: diverged,
    a non-finite or a spiking training loss). ``warning`` when the best stable rate of the sweep
    (by ``best_value`` and ``goal``) is the largest stable rate below the unstable one: the
    playbook's Figure 7a, the best rate at the edge of instability, where "fixing the
    instability will result in better training"; else ``info`` ("instability is only an issue
    when it forces us to use a learning rate that's too small"). No threshold.
    """
    bad = evidence.get("unstable_base_learning_rate")
    sweep = _rows(evidence, "sweep")
    if bad is None or not sweep:
        return []
    unstable = [r for r in sweep if r.get("unstable")]
    stable = [r for r in sweep if not r.get("unstable") and r.get("best_value") is not None
              and float(r["learning_rate"]) < float(bad)]
    sign = -1.0 if evidence.get("goal") == "maximize" else 1.0
    best = min(stable, key=lambda r: sign * float(r["best_value"])) if stable else None
    edge = best is not None and float(best["learning_rate"]) == max(
        float(r["learning_rate"]) for r in stable)
    # The reason of the unstable rate itself (the smallest unstable rate of the sweep).
    at_bad = [r for r in unstable if r.get("learning_rate") == bad] or unstable
    reason = at_bad[0]["unstable"] if at_bad else "unstable"
    where = (f"; the best stable rate, {float(best['learning_rate']):g}, is the largest "
             "stable one: the best rate is at the edge of instability" if best and edge else
             f"; the best stable rate is {float(best['learning_rate']):g}, well below it"
             if best else "")
    return [finding(
        "unstable_learning_rate", "warning" if edge else "info",
        f"training becomes unstable at learning rate {float(bad):g} ({reason}){where}",
        evidence={"unstable_base_learning_rate": bad, "reason": reason,
                  "best_stable_learning_rate": best["learning_rate"] if best else None,
                  "unstable_rates": [r["learning_rate"] for r in unstable]},
        action=("warm up to a rate 10x the unstable one (the warmup study), clip the "
                "gradient, or keep the learning rate below it"),
        hyperparameter="learning_rate", trials=_refs(unstable), advice={"stability": "improve"})]


@check("early_instability", playbook_section=SEC_OPTIMIZATION,
       thresholds=StabilityThresholds, procedure="stability")
def check_early_instability(evidence: Mapping[str, Any],
                            th: StabilityThresholds = DEFAULTS) -> list[Finding]:
    """Training breaks early at the unstable rate.

    ``info`` when the short run at ``unstable_base_learning_rate`` evaluated at every step
    (``early_run``) is unstable: the instability at initialisation that warmup is for (the
    playbook: "Best for early training instability"). No threshold.
    """
    run = evidence.get("early_run")
    if not isinstance(run, Mapping) or not run.get("unstable"):
        return []
    return [finding(
        "early_instability", "info",
        f"at learning rate {float(run['learning_rate']):g} training breaks early "
        f"({run['unstable']}, in a {run.get('steps')}-step run evaluated at every step): the "
        "instability warmup is meant for",
        evidence={"reason": run["unstable"], "steps": run.get("steps"),
                  "learning_rate": run["learning_rate"]},
        action="apply learning-rate warmup (best for early training instability)",
        trials=_refs([run]), advice={"stability": "improve"})]


def _shortest_stable(evidence: Mapping[str, Any]) -> Mapping[str, Any] | None:
    stable = [r for r in _rows(evidence, "warmup_study")
              if not r.get("unstable") and r.get("warmup_steps") is not None]
    return min(stable, key=lambda r: int(r["warmup_steps"])) if stable else None


@check("long_warmup", playbook_section=SEC_OPTIMIZATION,
       thresholds=StabilityThresholds, procedure="stability")
def check_long_warmup(evidence: Mapping[str, Any],
                      th: StabilityThresholds = DEFAULTS) -> list[Finding]:
    """The shortest stable warmup is long.

    ``warning`` when the shortest stable ``warmup_steps`` of ``warmup_study`` is more than
    ``long_warmup_share`` (5%) of the base's ``max_train_steps`` (``base_max_train_steps``):
    the playbook says ``max_train_steps`` may need to be increased.
    """
    row = _shortest_stable(evidence)
    steps = evidence.get("base_max_train_steps")
    if row is None or not steps:
        return []
    w = int(row["warmup_steps"])
    if w <= th.long_warmup_share * int(steps):
        return []
    return [finding(
        "long_warmup", "warning",
        f"the shortest stable warmup ({w} steps) is more than {th.long_warmup_share:.0%} of "
        f"max_train_steps ({steps})",
        evidence={"warmup_steps": w, "max_train_steps": steps,
                  "share": w / int(steps), "long_warmup_share": th.long_warmup_share},
        action="consider increasing max_train_steps to account for the warmup",
        trials=_refs([row]), advice={"training_length": "longer"})]


@check("warmup_did_not_help", playbook_section=SEC_OPTIMIZATION,
       thresholds=StabilityThresholds, procedure="stability")
def check_warmup_did_not_help(evidence: Mapping[str, Any],
                              th: StabilityThresholds = DEFAULTS) -> list[Finding]:
    """No warmup of the study made 10x the unstable rate stable.

    ``problem`` when ``warmup_study`` has rows and every one is unstable. No threshold.
    """
    rows = _rows(evidence, "warmup_study")
    if not rows or any(not r.get("unstable") for r in rows):
        return []
    warmups = [r.get("warmup_steps") for r in rows]
    lr = rows[0].get("learning_rate")
    return [finding(
        "warmup_did_not_help", "problem",
        f"no warmup of {warmups} made learning rate {lr:g} stable" if lr is not None else
        f"no warmup of {warmups} was stable",
        evidence={"warmup_list": warmups, "learning_rate": lr},
        action="try gradient clipping (it may fix bad initialisations that warmup cannot), "
               "or a longer warmup",
        trials=_refs(rows), advice={"stability": "improve"})]


@check("clipping_did_not_help", playbook_section=SEC_OPTIMIZATION,
       thresholds=StabilityThresholds, procedure="stability")
def check_clipping_did_not_help(evidence: Mapping[str, Any],
                                th: StabilityThresholds = DEFAULTS) -> list[Finding]:
    """Clipping at the 90th percentile did not make 10x the unstable rate stable either.

    ``problem`` when the ``clipping`` run is unstable. No threshold.
    """
    row = evidence.get("clipping")
    if not isinstance(row, Mapping) or not row.get("unstable"):
        return []
    return [finding(
        "clipping_did_not_help", "problem",
        f"gradient clipping at {float(row['grad_clip']):.4g} did not make learning rate "
        f"{float(row['learning_rate']):g} stable ({row['unstable']})",
        evidence={"grad_clip": row["grad_clip"], "reason": row["unstable"]},
        action=("clip harder (a smaller threshold), but not more than half of the updates; "
                "else keep the learning rate below the unstable one, or look for the cause "
                "(normalisation, residual connections, the optimizer)"),
        trials=_refs([row]), advice={"stability": "improve", "grad_clip": "lower"})]


@check("aggressive_clipping", playbook_section=SEC_OPTIMIZATION,
       thresholds=ClippingThresholds, procedure="clip")
def check_aggressive_clipping(evidence: Mapping[str, Any],
                              th: ClippingThresholds = CLIP_DEFAULTS) -> list[Finding]:
    """The threshold would clip an unusual share of the recorded steps.

    ``warning`` when ``fraction_clipped`` is above ``aggressive_fraction`` (0.5, the clipping
    family's: the playbook's "extremely aggressive", in essence a smaller learning rate);
    ``info`` when it is 0 (the threshold is at the largest norm: clipping would change
    nothing).
    """
    fraction = evidence.get("fraction_clipped")
    t = evidence.get("clip_threshold")
    if fraction is None or t is None:
        return []
    trials = [dict(r) for r in evidence.get("trial_refs", ()) if isinstance(r, Mapping)]
    facts = {"fraction_clipped": fraction, "clip_threshold": t,
             "quantile": evidence.get("quantile")}
    if fraction > th.aggressive_fraction:
        return [finding(
            "aggressive_clipping", "warning",
            f"clipping at {float(t):.4g} would clip {fraction:.0%} of the recorded steps, more "
            f"than {th.aggressive_fraction:.0%}: extremely aggressive clipping",
            evidence={**facts, "aggressive_fraction": th.aggressive_fraction},
            action="reduce the learning rate instead of clipping this hard",
            hyperparameter="grad_clip", trials=trials, advice={"grad_clip": "higher"})]
    if fraction == 0:
        return [finding(
            "aggressive_clipping", "info",
            f"clipping at {float(t):.4g} would clip none of the recorded steps: the norms "
            "have no outliers above it, so clipping changes nothing",
            evidence=facts, action="clipping is not what this workload needs; tune the "
            "threshold lower only if instability remains", hyperparameter="grad_clip",
            trials=trials)]
    return []


@check("clipped_run_unstable", playbook_section=SEC_OPTIMIZATION,
       thresholds=ClippingThresholds, procedure="clip")
def check_clipped_run_unstable(evidence: Mapping[str, Any],
                               th: ClippingThresholds = CLIP_DEFAULTS) -> list[Finding]:
    """The run with the threshold is still unstable.

    ``warning`` when some trial of ``clipped_trials`` is unstable (diverged, a non-finite or a
    spiking training loss): the playbook, "If we try gradient clipping and the instability
    issues remain, we can try it harder (i.e. make the threshold smaller)". No threshold.
    """
    bad = [r for r in _rows(evidence, "clipped_trials") if r.get("unstable")]
    if not bad:
        return []
    t = evidence.get("clip_threshold")
    return [finding(
        "clipped_run_unstable", "warning",
        f"with clipping at {float(t or 0):.4g}, {len(bad)} trial(s) are still unstable "
        f"({bad[0]['unstable']})",
        evidence={"clip_threshold": t, "reasons": [r["unstable"] for r in bad]},
        action=("clip harder (a smaller threshold, below the 90th percentile), or warm up "
                "(longer warmups can fix what clipping does not)"),
        hyperparameter="grad_clip", trials=_refs(bad),
        advice={"grad_clip": "lower", "stability": "improve"})]

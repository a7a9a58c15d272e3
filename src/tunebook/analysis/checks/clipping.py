"""Gradient clipping, as the playbook's "How can optimization failures be debugged and mitigated?"
describes it: a threshold at the 90th percentile of the unclipped gradient norms, and more than
half of the updates clipped counts as "extremely aggressive".

Two things live here:

* :func:`study_thresholds`, the playbook's threshold **per study**: the 90th percentile
  (:func:`tunebook.analysis.stats.quantile`, the same definition as
  :func:`tunebook.torch.clip_threshold`) of the unclipped norms over the **whole training** of
  the study's best trials (:attr:`ClippingThresholds.best_trials`, 3 by default: the completed
  trials that reported ``grad_norm``, ranked by the objective). Studies are never pooled: a
  linear model and an MLP have unrelated norms. The report's clipping section shows it.
* the ``clipping`` check: trials that clipped more than half of their updates.

``grad_norm`` is a per-step metric for the built-in workloads (one unclipped norm per update,
see :mod:`tunebook.workloads.common`). A workload that reports it only at evaluations still gets
a threshold, computed from those values and marked ``per_step=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding

__all__ = [
    "SEC_OPTIMIZATION",
    "ClipFraction",
    "ClippingThresholds",
    "StudyThreshold",
    "check_clipping",
    "clip_fraction",
    "study_thresholds",
]

SEC_OPTIMIZATION = "How can optimization failures be debugged and mitigated?"


@dataclass(frozen=True)
class ClippingThresholds:
    """Thresholds of the clipping check and of the per-study threshold
    (``checks: {clipping: {...}}``)."""

    family: ClassVar[str] = "clipping"
    #: The playbook: "having >50% of the updates getting clipped" is "extremely aggressive".
    aggressive_fraction: float = 0.5
    #: The playbook's starting point for the threshold: the 90th percentile of the norms.
    threshold_quantile: float = 0.9
    #: The threshold pools this many best trials of a study: the norms of the trials worth
    #: keeping, and enough steps for a stable percentile, the same 3 the curves section shows.
    best_trials: int = 3


DEFAULTS = ClippingThresholds()


@dataclass(frozen=True)
class StudyThreshold:
    """The playbook's clipping threshold of one study.

    Attributes:
        study: the study.
        trials: the best trials whose norms it pools, best first.
        n_norms: how many finite norms it pools.
        per_step: True when the norms are per update (the curve has more points than the
            objective's), False when the workload reported them only at evaluations.
        quantile: the quantile taken (0.9).
        threshold: the quantile of the pooled norms.
        median: their median (the "typical" norm, for comparison).
        grad_clip: the ``grad_clip`` values those trials used (None: no clipping).
    """

    study: str
    trials: tuple[TrialData, ...]
    n_norms: int
    per_step: bool
    quantile: float
    threshold: float
    median: float
    grad_clip: tuple[float | None, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (the report's payload, a finding's evidence)."""
        return {"study": self.study, "trials": [c.trial_ref(t) for t in self.trials],
                "n_norms": self.n_norms, "per_step": self.per_step, "quantile": self.quantile,
                "threshold": self.threshold, "median": self.median,
                "grad_clip": list(self.grad_clip)}


def _grad_clip(t: TrialData) -> float | None:
    value = c.num(t.params.get("grad_clip"))
    return value if value is not None and value > 0 and math.isfinite(value) else None


def _norms(data: ExperimentData, t: TrialData) -> tuple[list[float], bool]:
    curve = t.curves.get("grad_norm")
    if curve is None:
        return [], False
    values = [v for v in curve.values if math.isfinite(v)]
    objective = t.curves.get(data.metric)
    return values, len(curve) > (len(objective) if objective is not None else 0)


def study_thresholds(data: ExperimentData, th: ClippingThresholds = DEFAULTS
                     ) -> list[StudyThreshold]:
    """The playbook's threshold per study (studies without any ``grad_norm`` are left out).

    Rule: take the study's completed trials that reported at least one finite ``grad_norm``,
    ranked by the objective, keep the best ``th.best_trials``, pool every finite norm of their
    whole training and take ``stats.quantile(norms, th.threshold_quantile)``. Computed once per
    data (the report and the check show the same numbers).
    """
    q = min(th.threshold_quantile, 1.0)  # a configured value above 1 means "the largest"

    def compute() -> list[StudyThreshold]:
        out = []
        for study in data.studies:
            best = [t for t in data.ranked(study) if _norms(data, t)[0]][:th.best_trials]
            if not best:
                continue
            pooled: list[float] = []
            per_step = True
            for t in best:
                values, each = _norms(data, t)
                pooled += values
                per_step = per_step and each
            out.append(StudyThreshold(
                study, tuple(best), len(pooled), per_step, q,
                stats.quantile(pooled, q), stats.quantile(pooled, 0.5),
                tuple(_grad_clip(t) for t in best)))
        return out

    return data.memo(("clipping.study_thresholds", th), compute)


@dataclass(frozen=True)
class ClipFraction:
    """The share of a trial's updates that were clipped, and where it comes from.

    ``source`` is ``"clip_fraction"`` (the workload's own count at its last evaluation, every
    update included) or ``"grad_norm"`` (the per-step norms above the trial's ``grad_clip``).
    """

    fraction: float
    source: str
    grad_clip: float | None


def clip_fraction(data: ExperimentData, t: TrialData) -> ClipFraction | None:
    """How much of ``t``'s training was clipped; None when it cannot be told.

    The last finite ``clip_fraction`` reported, else, for a trial with a numeric ``grad_clip``
    hyperparameter and per-step ``grad_norm``, the share of its finite norms above
    ``grad_clip`` (interval values cannot tell: an interval mean hides the steps).

    At scale (a report that read a sample of the curves beyond each study's best trials,
    :attr:`~tunebook.analysis.data.Curve.sampled`), both come from that sample: the last
    sampled ``clip_fraction`` (``max_train_steps`` is always in it), the share of the sampled
    norms.
    """
    grad_clip = _grad_clip(t)
    curve = t.curves.get("clip_fraction")
    if curve is not None:
        finite = curve.finite()
        if len(finite):
            return ClipFraction(float(finite.values[-1]), "clip_fraction", grad_clip)
    values, per_step = _norms(data, t)
    if grad_clip is None or not per_step or not values:
        return None
    return ClipFraction(sum(v > grad_clip for v in values) / len(values), "grad_norm", grad_clip)


@check("clipping", playbook_section=SEC_OPTIMIZATION, thresholds=ClippingThresholds)
def check_clipping(data: ExperimentData, th: ClippingThresholds = DEFAULTS) -> list[Finding]:
    """More than ``aggressive_fraction`` (50%) of a trial's updates were clipped.

    For every trial that is not failed and whose clipped share is known (:func:`clip_fraction`:
    the last reported ``clip_fraction``, or the per-step ``grad_norm`` above its ``grad_clip``),
    the trial is flagged when that share is strictly greater than ``th.aggressive_fraction``
    (exactly one half is not "more than 50%"). One ``warning`` per study with a flagged trial,
    listing them (``trials``), with each trial's share in ``evidence`` and the study's
    :func:`study_thresholds` value when known. Advice: ``{"grad_clip": "higher"}``.
    """
    thresholds = {s.study: s for s in study_thresholds(data, th)}
    out = []
    for study in data.studies:
        flagged: list[tuple[TrialData, ClipFraction]] = []
        n_known = 0
        for t in data.trials:
            if t.study != study or t.status == "failed":
                continue
            cf = clip_fraction(data, t)
            if cf is None:
                continue
            n_known += 1
            if cf.fraction > th.aggressive_fraction:
                flagged.append((t, cf))
        if flagged:
            out.append(_finding(data, study, flagged, n_known, thresholds.get(study), th))
    return out


def _finding(data: ExperimentData, study: str, flagged: list[tuple[TrialData, ClipFraction]],
             n_known: int, st: StudyThreshold | None, th: ClippingThresholds) -> Finding:
    flagged.sort(key=lambda p: -p[1].fraction)
    ranked = data.ranked(study)
    best = ranked[0] if ranked else None
    best_flagged = best is not None and any(t.id == best.id for t, _ in flagged)

    def one(t: TrialData, cf: ClipFraction) -> str:
        at = "" if cf.grad_clip is None else f" at grad_clip={c.fmt(cf.grad_clip)}"
        return f"{t.label} {c.pct(cf.fraction)}{at}"

    shown = ", ".join(one(t, cf) for t, cf in flagged[:5])
    more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
    which = ("including the study's best trial" if best_flagged
             else "not the study's best trial" if best is not None else "")
    message = (f"{len(flagged)} of {n_known} trials of {study} clipped more than "
               f"{c.pct(th.aggressive_fraction)} of their updates ({shown}{more})"
               f"{', ' + which if which else ''}: the playbook calls this extremely aggressive "
               f"clipping, in essence a strange way of reducing the learning rate.")
    if st is not None:
        typical = (f" The study's threshold is {c.fmt(st.threshold)} (the "
                   f"{100 * st.quantile:.0f}th percentile of the unclipped norms of its best "
                   f"{len(st.trials)} trials' whole training).")
    else:
        typical = ""
    action = ("Raise grad_clip to just above the typical unclipped gradient norm." + typical
              + " If training is only stable when clipping this hard, lower the learning rate "
                "instead and keep clipping for the occasional outlier gradient.")
    evidence: dict[str, Any] = {
        "aggressive_fraction": th.aggressive_fraction, "n_with_clipping": n_known,
        "n_aggressive": len(flagged), "best_trial_aggressive": best_flagged,
        "trials": [{**c.trial_ref(t), "clip_fraction": cf.fraction, "grad_clip": cf.grad_clip,
                    "source": cf.source} for t, cf in flagged],
        "study_threshold": None if st is None else st.as_dict()}
    return finding(check="clipping", severity="warning", message=message, evidence=evidence,
                   action=action, study=study, trials=[c.trial_ref(t) for t, _ in flagged],
                   advice={"grad_clip": "higher"})

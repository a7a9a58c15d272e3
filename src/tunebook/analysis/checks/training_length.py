"""Training-length checks: still improving, saturated early, where the best step lies.

The three read a trial's objective curve the same way (:func:`reach`): its best value, and the
step by which it *reached* that best — the first evaluation within ``margin`` of it, where
``margin = max(reach_noise_mult × noise, REL_TOL × |best|, min_change(best))``, ``noise`` being
the first-difference IQR estimate over the second half of the evaluations and ``min_change``
the smallest change the metric resolves (:meth:`~tunebook.analysis.resolution.Resolution.
min_change`: a few examples or one binomial standard error when the evaluation set's size is
known). An "improvement" smaller than the margin is not one, so the noise of a flat tail, which
puts the arg-min anywhere, does not move the step by which a trial reached its best.

Advice (:attr:`~tunebook.analysis.findings.Finding.advice`): ``still_improving`` and a late
``best_step_position`` say ``training_length: longer``; ``saturated_early`` and an early
``best_step_position`` say ``shorter``. ``saturated_early`` never fires on a trial that
``still_improving`` flags or that overfits (:func:`~tunebook.analysis.checks.curves.
overfit_evidence`; the ``overfitting`` finding already says where it peaked), and the
combinations that remain (a study's best trial one way, most trials the other) are explained
by one finding each (:mod:`tunebook.analysis.checks.resolutions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.curves import CurveThresholds, overfit_evidence
from tunebook.analysis.checks.registry import check, finding, thresholds_from_config
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding, trials_text
from tunebook.analysis.resolution import resolution

__all__ = ["Reach", "TrainingLengthThresholds", "check_best_step_position",
           "check_saturated_early", "check_still_improving", "reach"]


@dataclass(frozen=True)
class TrainingLengthThresholds:
    """Thresholds of the training-length checks (``checks: {training_length: {...}}``)."""

    family: ClassVar[str] = "training_length"

    #: Best value reached (beating every earlier one by more than the margin) in the last 10%
    #: of training ...
    still_improving_best_after: float = 0.9
    #: ... and a downward trend over the last 25% of the evaluations ...
    still_improving_tail: float = 0.25
    #: ... whose total drop over that span exceeds three noise standard deviations. (The fitted
    #: drop over 5 points has a standard error of about 1.3 noise, and conditioning on a late
    #: best step selects lucky last steps: at 2 noise, 5% of flat noisy curves that level off
    #: at 40% of training fired (100 seeded experiments of 12 trials), at 3 noise ~1%.)
    still_improving_noise_mult: float = 3.0
    #: Saturated "long before the final training step": best value (within the margin)
    #: reached in the first half of training.
    saturated_by: float = 0.5
    #: A trial reached its best at the first evaluation within this many noise standard
    #: deviations of it (and within the metric's resolution). One: on a flat noisy tail the
    #: best of the late evaluations beats the best of the earlier ones by more than one
    #: standard deviation in only about 5% of trials, while a real late improvement is larger.
    reach_noise_mult: float = 1.0
    #: "If the best step is always during the first 10% of training, then the maximum number
    #: of steps is way too high" (median over completed trials of the step each reached its
    #: best by).
    best_step_early_fraction: float = 0.1
    #: "If the best step is consistently in the last 25% of training" (reached only then) ...
    best_step_late_fraction: float = 0.75
    #: ... where "consistently" means at least 80% of the completed trials.
    best_step_late_share: float = 0.8
    #: A median or a share over fewer trials than this says little.
    best_step_min_trials: int = 5


DEFAULTS = TrainingLengthThresholds()

Array = c.Array


@dataclass(frozen=True)
class Reach:
    """How one trial's objective curve reached its best (values loss-like: lower is better).

    Attributes:
        trial: the trial.
        steps, y: the finite points of the objective's curve, ``y`` multiplied by the sign.
        best_index: index of the (first) best value.
        noise: first-difference IQR noise over the second half of the evaluations.
        min_change: the metric's resolution at the best value.
        margin: ``max(reach_noise_mult × noise, REL_TOL × |best|, min_change)``.
        reached_index: the first index whose value is within ``margin`` of the best.
    """

    trial: TrialData
    steps: Array
    y: Array
    best_index: int
    noise: float
    min_change: float
    margin: float
    reached_index: int

    @property
    def best(self) -> float:
        """The best value (loss-like)."""
        return float(self.y[self.best_index])

    @property
    def best_step(self) -> int:
        """The step of the best value (the arg-min, as retrospective selection picks it)."""
        return int(self.steps[self.best_index])

    @property
    def reached_step(self) -> int:
        """The step by which the trial reached its best, to within :attr:`margin`."""
        return int(self.steps[self.reached_index])


def reach(data: ExperimentData, trial: TrialData, th: TrainingLengthThresholds = DEFAULTS
          ) -> Reach | None:
    """``trial``'s :class:`Reach` (None under 3 finite evaluations); computed once per data."""
    return data.memo(("training_length.reach", trial.id, th), lambda: _reach(data, trial, th))


def _reach(data: ExperimentData, trial: TrialData, th: TrainingLengthThresholds) -> Reach | None:
    sign = c.sign(data)
    steps, y = c.points(trial, data.metric, sign)
    if len(y) < 3:
        return None
    i = int(np.argmin(y))
    half = stats.tail_length(len(y), 0.5, 3)
    noise = stats.noise(y[-half:]) or 0.0
    best = float(y[i])
    min_change = resolution(data).min_change(best * sign)
    margin = max(th.reach_noise_mult * noise, c.tol(best), min_change)
    first = int(np.argmax(y <= best + margin))
    return Reach(trial, steps, y, i, noise, min_change, margin, first)


def _improving(r: Reach, max_steps: int, th: TrainingLengthThresholds) -> dict[str, Any] | None:
    """still_improving's rule on one trial: its evidence, or None."""
    if r.reached_step < th.still_improving_best_after * max_steps:
        return None
    k = stats.tail_length(len(r.y), th.still_improving_tail, 3)
    xs, ys = r.steps[-k:], r.y[-k:]
    slope, _ = c.fit(xs, ys)
    drop = -slope * float(xs[-1] - xs[0])
    threshold = max(th.still_improving_noise_mult * r.noise, c.tol(r.best), r.min_change)
    if drop <= threshold:
        return None
    return {"tail_points": k, "tail_from_step": int(xs[0]), "slope": slope, "improvement": drop,
            "threshold": threshold}


def _examples(data: ExperimentData, change: float) -> str:
    text = resolution(data).examples_text(change)
    return f" ({text})" if text else ""


@check("still_improving", playbook_section=c.SEC_CURVES, thresholds=TrainingLengthThresholds)
def check_still_improving(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                          ) -> list[Finding]:
    """The best trial of a study is still improving at the end of training.

    For each study's best trial (with at least 3 finite evaluations): the step by which it
    reached its best (:func:`reach`: its best beats every earlier evaluation by more than the
    margin) is at or after ``still_improving_best_after`` (0.9) × ``max_train_steps``, and over
    the last
    ``still_improving_tail`` (25%, at least 3) of its evaluations the least-squares trend
    improves by more than ``max(still_improving_noise_mult (3) × noise, REL_TOL × |best|,
    min_change(best))`` (improvement = -slope × span of those steps, in the improving
    direction; ``min_change`` is the metric's resolution). ``noise`` is the first-difference
    IQR estimate over the second half of the evaluations (at least 3 points), which is steadier
    than one from the few tail points. One ``warning`` per study; advice
    ``training_length: longer``.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = c.sign(data)
    for study, t, _steps, _y in c.best_curves(data, sign):
        r = reach(data, t, th)
        if r is None or (ev := _improving(r, max_steps, th)) is None:
            continue
        drop = ev["improvement"]
        findings.append(finding(
            check="still_improving", severity="warning",
            message=(f"Study {study}: the best trial {t.label} is still improving at the end of "
                     f"training — best {data.metric} {c.fmt(r.best * sign)} at step "
                     f"{r.best_step} of {max_steps}, improving by {c.fmt(drop)}"
                     f"{_examples(data, drop)} over its last {ev['tail_points']} evaluations "
                     f"(more than {c.fmt(ev['threshold'])}: "
                     f"{th.still_improving_noise_mult:g} × the noise {c.fmt(r.noise)} "
                     f"and the metric's resolution)."),
            evidence={**c.trial_ref(t), **ev, "metric": data.metric, "best_step": r.best_step,
                      "best_value": r.best * sign, "max_train_steps": max_steps,
                      "best_after": th.still_improving_best_after, "slope": ev["slope"] * sign,
                      "noise": r.noise, "min_change": r.min_change,
                      "examples": resolution(data).examples_text(drop)},
            action=("Train longer (see 'Deciding how long to train when training is not "
                    "compute-bound': when in doubt, err on the side of training longer, and "
                    "re-tune the decay schedule with it); if the workload is compute-bound, "
                    "keep in mind that conclusions at this budget may not hold for longer runs."),
            study=study, trials=[c.trial_ref(t)], advice={"training_length": "longer"}))
    return findings


def _curve_thresholds(data: ExperimentData) -> CurveThresholds:
    """The ``curves`` family as the experiment configures it (overfitting's thresholds)."""
    def load() -> CurveThresholds:
        found = thresholds_from_config(data.experiment.checks, data.experiment.source)
        th = found.get(CurveThresholds.family)
        return th if isinstance(th, CurveThresholds) else CurveThresholds()

    return data.memo(("training_length.curve_thresholds",), load)


@check("saturated_early", playbook_section=c.SEC_CURVES, thresholds=TrainingLengthThresholds)
def check_saturated_early(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                          ) -> list[Finding]:
    """Performance of a study's best trial saturated long before the final step.

    For each study's best trial (at least 3 finite evaluations): the step by which it reached
    its best (:func:`reach`: the first evaluation within ``margin = max(reach_noise_mult (1) ×
    noise, REL_TOL × |best|, min_change(best))`` of its best value) is before ``saturated_by``
    (0.5) × ``max_train_steps``. Not when that trial is still improving (``still_improving``'s
    rule) or overfits (``overfitting``'s rule with the experiment's ``curves`` thresholds: that
    finding says where it peaked and what to do). ``info``, one per study; advice
    ``training_length: shorter``.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = c.sign(data)
    for study, t, _steps, _y in c.best_curves(data, sign):
        r = reach(data, t, th)
        if r is None or r.reached_step >= th.saturated_by * max_steps:
            continue
        if (_improving(r, max_steps, th) is not None
                or overfit_evidence(data, t, _curve_thresholds(data)) is not None):
            continue
        findings.append(finding(
            check="saturated_early", severity="info",
            message=(f"Study {study}: the best trial {t.label} reached its best {data.metric} "
                     f"({c.fmt(r.best * sign)}, to within {c.fmt(r.margin)}: the noise and the "
                     f"metric's resolution) by step {r.reached_step}, before "
                     f"{c.pct(th.saturated_by)} of the {max_steps} training steps."),
            evidence={**c.trial_ref(t), "metric": data.metric, "best_value": r.best * sign,
                      "best_step": r.best_step, "first_within_tol_step": r.reached_step,
                      "tolerance": r.margin, "noise": r.noise, "min_change": r.min_change,
                      "max_train_steps": max_steps, "saturated_by": th.saturated_by},
            action=("Performance saturated long before the final step: max_train_steps can "
                    "probably be reduced (check the best-step positions of all trials first), "
                    "saving compute for more trials."),
            study=study, trials=[c.trial_ref(t)], advice={"training_length": "shorter"}))
    return findings


@check("best_step_position", playbook_section=c.SEC_HOW_LONG, thresholds=TrainingLengthThresholds)
def check_best_step_position(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                             ) -> list[Finding]:
    """Where retrospective checkpoint selection finds the best step, over all completed trials.

    Each completed trial's position is the step by which it reached its best (:func:`reach`:
    the first evaluation within ``margin`` of its best value — the arg-min of a flat noisy tail
    lands anywhere, the step it got there does not), over ``max_train_steps``; a trial with
    fewer than 3 finite evaluations uses its recorded best step. Needs
    ``best_step_min_trials`` (5) such trials. ``warning`` when the median position is
    ``<= best_step_early_fraction`` (0.1): the maximum number of steps is way too high (advice
    ``training_length: shorter``). Otherwise ``info`` when at least ``best_step_late_share``
    (80%) have a position ``>= best_step_late_fraction`` (0.75) — their best beats every value
    before 75% of training by more than the margin: training longer and re-tuning the decay
    schedule may help (advice ``training_length: longer``). The finding's trials are the early
    (resp. late) ones. At scale (a report that read a sample of the curves beyond each
    study's best trials, :attr:`~tunebook.analysis.data.Curve.sampled`), those trials' positions
    come from their sampled points.
    """
    max_steps = data.experiment.max_train_steps
    rows: list[dict[str, Any]] = []
    for t in data.ranked():
        r = reach(data, t, th)
        if r is not None:
            rows.append({**c.trial_ref(t), "best_step": r.best_step,
                         "reached_step": r.reached_step, "margin": r.margin,
                         "fraction": r.reached_step / max_steps})
        elif t.best_step is not None:
            rows.append({**c.trial_ref(t), "best_step": int(t.best_step),
                         "reached_step": int(t.best_step), "margin": 0.0,
                         "fraction": int(t.best_step) / max_steps})
    if len(rows) < th.best_step_min_trials:
        return []
    fracs = [row["fraction"] for row in rows]
    median = float(np.median(fracs))
    late = [row for row in rows if row["fraction"] >= th.best_step_late_fraction]
    early = [row for row in rows if row["fraction"] <= th.best_step_early_fraction]
    share_late = len(late) / len(rows)
    evidence: dict[str, Any] = {
        "n_trials": len(rows), "max_train_steps": max_steps, "median_fraction": median,
        "share_late": share_late, "early_fraction": th.best_step_early_fraction,
        "late_fraction": th.best_step_late_fraction, "late_share": th.best_step_late_share,
        "reach_noise_mult": th.reach_noise_mult, "resolution": resolution(data).as_dict(),
        "trials": rows,
    }
    if median <= th.best_step_early_fraction:
        refs = [{"id": row["id"], "label": row["label"]} for row in early]
        return [finding(
            check="best_step_position", severity="warning",
            message=(f"{len(rows)} completed trials reach their best {data.metric} (to within "
                     f"the noise and the metric's resolution) at a median {c.pct(median)} of "
                     f"max_train_steps ({c.fmt(median * max_steps)} of {max_steps}); "
                     f"{len(early)} by {c.pct(th.best_step_early_fraction)}: "
                     f"{trials_text(refs)}. Training is much longer than needed."),
            evidence={**evidence, "verdict": "too_many_steps", "flagged": refs},
            action=("If the best step is always during the first 10% of training, the maximum "
                    "number of steps is way too high: reduce max_train_steps (or the learning "
                    "rate decay may be too aggressive), keeping one value for all trials."),
            trials=refs, advice={"training_length": "shorter"})]
    if share_late >= th.best_step_late_share:
        refs = [{"id": row["id"], "label": row["label"]} for row in late]
        return [finding(
            check="best_step_position", severity="info",
            message=(f"{len(late)} of {len(rows)} completed trials ({c.pct(share_late)}) reach "
                     f"their best {data.metric} only in the last "
                     f"{c.pct(1 - th.best_step_late_fraction)} of training, beating everything "
                     f"before by more than the noise and the metric's resolution (median at "
                     f"{c.pct(median)} of {max_steps} steps): {trials_text(refs)}."),
            evidence={**evidence, "verdict": "train_longer", "flagged": refs},
            action=("The best step is consistently in the last 25% of training: we might "
                    "benefit from training longer and re-tuning the learning rate decay "
                    "schedule (never tune max_train_steps within a study)."),
            trials=refs, advice={"training_length": "longer"})]
    return []

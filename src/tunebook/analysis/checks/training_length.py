"""Training-length checks: still improving, saturated early, where the best step lies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding

__all__ = ["TrainingLengthThresholds", "check_best_step_position", "check_saturated_early",
           "check_still_improving"]


@dataclass(frozen=True)
class TrainingLengthThresholds:
    """Thresholds of the training-length checks (``checks: {training_length: {...}}``)."""

    family: ClassVar[str] = "training_length"

    #: Best step in the last 10% of training ...
    still_improving_best_after: float = 0.9
    #: ... and a downward trend over the last 25% of the evaluations ...
    still_improving_tail: float = 0.25
    #: ... whose total drop over that span exceeds two noise standard deviations. (Not one: the
    #: fitted drop over 5 points has a standard error of about 1.3 noise, and conditioning on a
    #: late best step selects lucky last steps, so a flat noisy curve would fire too often.)
    still_improving_noise_mult: float = 2.0
    #: Saturated "long before the final training step": best value (within noise) reached in
    #: the first half of training.
    saturated_by: float = 0.5
    #: "If the best step is always during the first 10% of training, then the maximum number
    #: of steps is way too high" (median over completed trials).
    best_step_early_fraction: float = 0.1
    #: "If the best step is consistently in the last 25% of training" ...
    best_step_late_fraction: float = 0.75
    #: ... where "consistently" means at least 80% of the completed trials.
    best_step_late_share: float = 0.8
    #: A median or a share over fewer trials than this says little.
    best_step_min_trials: int = 5


DEFAULTS = TrainingLengthThresholds()


@check("still_improving", playbook_section=c.SEC_CURVES, thresholds=TrainingLengthThresholds)
def check_still_improving(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                          ) -> list[Finding]:
    """The best trial of a study is still improving at the end of training.

    For each study's best trial (with at least 3 finite evaluations): its best step is at or
    after ``still_improving_best_after`` (0.9) × ``max_train_steps``, and over the last
    ``still_improving_tail`` (25%, at least 3) of its evaluations the least-squares trend
    improves by more than ``max(still_improving_noise_mult (2) × noise, REL_TOL × |best|)``
    (improvement = -slope × span of those steps, in the improving direction). ``noise`` is the
    first-difference IQR estimate over the second half of the evaluations (at least 3 points),
    which is steadier than one from the few tail points. One ``warning`` per study.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = c.sign(data)
    for study, t, steps, y in c.best_curves(data, sign):
        i = int(np.argmin(y))
        best_step = int(steps[i])
        if best_step < th.still_improving_best_after * max_steps:
            continue
        k = stats.tail_length(len(y), th.still_improving_tail, 3)
        xs, ys = steps[-k:], y[-k:]
        slope, _ = c.fit(xs, ys)
        span = float(xs[-1] - xs[0])
        drop = -slope * span
        half = stats.tail_length(len(y), 0.5, 3)
        noise = stats.noise(y[-half:]) or 0.0
        threshold = max(th.still_improving_noise_mult * noise, c.tol(float(y[i])))
        if drop <= threshold:
            continue
        findings.append(finding(
            check="still_improving", severity="warning",
            message=(f"Study {study}: the best trial {t.label} is still improving at the end of "
                     f"training — best {data.metric} {c.fmt(float(y[i]) * sign)} at step "
                     f"{best_step} of {max_steps}, improving by {c.fmt(drop)} over its last {k} "
                     f"evaluations "
                     f"(noise {c.fmt(noise)})."),
            evidence={**c.trial_ref(t), "metric": data.metric, "best_step": best_step,
                      "best_value": float(y[i]) * sign, "max_train_steps": max_steps,
                      "best_after": th.still_improving_best_after, "tail_points": k,
                      "tail_from_step": int(xs[0]), "slope": slope * sign,
                      "improvement": drop, "noise": noise, "threshold": threshold},
            action=("Train longer (see 'Deciding how long to train when training is not "
                    "compute-bound': when in doubt, err on the side of training longer, and "
                    "re-tune the decay schedule with it); if the workload is compute-bound, "
                    "keep in mind that conclusions at this budget may not hold for longer runs."),
            study=study))
    return findings


@check("saturated_early", playbook_section=c.SEC_CURVES, thresholds=TrainingLengthThresholds)
def check_saturated_early(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                          ) -> list[Finding]:
    """Performance of a study's best trial saturated long before the final step.

    For each study's best trial (at least 3 finite evaluations): the first step at which the
    objective came within ``tol = max(noise, REL_TOL × |best|)`` of its best value is before
    ``saturated_by`` (0.5) × ``max_train_steps``. ``noise`` is the first-difference IQR estimate
    over the second half of training (the whole curve when that has fewer than 3 points).
    ``info``, one per study.
    """
    findings = []
    max_steps = data.experiment.max_train_steps
    sign = c.sign(data)
    for study, t, steps, y in c.best_curves(data, sign):
        best = float(np.min(y))
        late = y[steps >= th.saturated_by * max_steps]
        noise = (stats.noise(late) if len(late) >= 3 else stats.noise(y)) or 0.0
        tol = max(noise, c.tol(best))
        first = int(np.argmax(y <= best + tol))
        first_step = int(steps[first])
        if first_step >= th.saturated_by * max_steps:
            continue
        findings.append(finding(
            check="saturated_early", severity="info",
            message=(f"Study {study}: the best trial {t.label} reached its best {data.metric} "
                     f"({c.fmt(best * sign)}, within {c.fmt(tol)}) by step {first_step}, before "
                     f"{c.pct(th.saturated_by)} of the {max_steps} training steps."),
            evidence={**c.trial_ref(t), "metric": data.metric, "best_value": best * sign,
                      "first_within_tol_step": first_step, "tolerance": tol, "noise": noise,
                      "max_train_steps": max_steps, "saturated_by": th.saturated_by},
            action=("Performance saturated long before the final step: max_train_steps can "
                    "probably be reduced (check the best-step positions of all trials first), "
                    "saving compute for more trials."),
            study=study))
    return findings


@check("best_step_position", playbook_section=c.SEC_HOW_LONG, thresholds=TrainingLengthThresholds)
def check_best_step_position(data: ExperimentData, th: TrainingLengthThresholds = DEFAULTS
                             ) -> list[Finding]:
    """Where retrospective checkpoint selection finds the best step, over all completed trials.

    Needs ``best_step_min_trials`` (5) completed trials with a best step. ``warning`` when the
    median of ``best_step / max_train_steps`` is ``<= best_step_early_fraction`` (0.1): the
    maximum number of steps is way too high. Otherwise ``info`` when at least
    ``best_step_late_share`` (80%) have ``best_step >= best_step_late_fraction`` (0.75) ×
    ``max_train_steps``: training longer and re-tuning the decay schedule may help.
    """
    max_steps = data.experiment.max_train_steps
    trials = [t for t in data.ranked() if t.best_step is not None]
    if len(trials) < th.best_step_min_trials:
        return []
    fracs = [int(t.best_step or 0) / max_steps for t in trials]
    median = float(np.median(fracs))
    late = [t for t, f in zip(trials, fracs, strict=True) if f >= th.best_step_late_fraction]
    share_late = len(late) / len(trials)
    evidence: dict[str, Any] = {
        "n_trials": len(trials), "max_train_steps": max_steps, "median_fraction": median,
        "share_late": share_late, "early_fraction": th.best_step_early_fraction,
        "late_fraction": th.best_step_late_fraction, "late_share": th.best_step_late_share,
        "trials": [{**c.trial_ref(t), "best_step": t.best_step, "fraction": f}
                   for t, f in zip(trials, fracs, strict=True)],
    }
    if median <= th.best_step_early_fraction:
        return [finding(
            check="best_step_position", severity="warning",
            message=(f"The median best step is at {c.pct(median)} of max_train_steps "
                     f"({c.fmt(median * max_steps)} of {max_steps}) over {len(trials)} completed "
                     f"trials: training is much longer than needed."),
            evidence={**evidence, "verdict": "too_many_steps"},
            action=("If the best step is always during the first 10% of training, the maximum "
                    "number of steps is way too high: reduce max_train_steps (or the learning "
                    "rate decay may be too aggressive), keeping one value for all trials."))]
    if share_late >= th.best_step_late_share:
        return [finding(
            check="best_step_position", severity="info",
            message=(f"{len(late)} of {len(trials)} completed trials ({c.pct(share_late)}) have "
                     f"their best step in the last {c.pct(1 - th.best_step_late_fraction)} of "
                     f"training (median at {c.pct(median)} of {max_steps} steps)."),
            evidence={**evidence, "verdict": "train_longer"},
            action=("The best step is consistently in the last 25% of training: we might "
                    "benefit from training longer and re-tuning the learning rate decay "
                    "schedule (never tune max_train_steps within a study)."))]
    return []


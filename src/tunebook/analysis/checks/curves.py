"""Training-curve checks: overfitting, late-training variance, a rising training loss.

Noise is :func:`tunebook.analysis.stats.noise` everywhere (the first-difference IQR estimate);
late-training variance is :func:`tunebook.analysis.stats.late_noise`, the same estimator on the
last part of the curve. A rise is never smaller than what the metric resolves
(:meth:`tunebook.analysis.resolution.Resolution.min_change`: a few examples, or one binomial
standard error, when the evaluation set's size is reported or can be inferred), so a curve that
moves by one or two validation examples is not called overfitting however quiet it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis import stats
from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.comparison import compare
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding, trials_text
from tunebook.analysis.resolution import Resolution, resolution

__all__ = ["CurveThresholds", "check_late_variance", "check_overfitting",
           "check_train_loss_increases", "overfit_evidence"]


@dataclass(frozen=True)
class CurveThresholds:
    """Thresholds of the training-curve checks (``checks: {curves: {...}}``)."""

    family: ClassVar[str] = "curves"

    #: The playbook checks overfitting in "at least each of the best trials": the best 3 per
    #: study.
    overfit_top_k: int = 3
    #: A rise must exceed 3 noise standard deviations to be a trend, not an unlucky last step.
    overfit_noise_mult: float = 3.0
    #: ... and 2% of the best value, so that a statistically clear but negligible drift is
    #: ignored.
    overfit_rel_rise: float = 0.02
    #: The rise is measured from the mean of the best evaluation and its two neighbours to the
    #: mean of the last 20% of the evaluations after the best (at least one), not from the best
    #: to the last value: the best of a flat noisy tail is ~1.7 std below it, and one unlucky
    #: last step on top of that passed 3 std in ~20% of healthy curves (measured: 2,000 seeded
    #: ``healthy_curve`` at level 0.1; 3% with the means, while a rise of 6 std still fires in
    #: 87% of curves, 10 std in all).
    overfit_tail_fraction: float = 0.2
    #: Late variance is measured on the best 3 trials of each study (the ones being compared).
    late_top_k: int = 3
    #: "Late in training": the last 20% of the evaluations ...
    late_fraction: float = 0.2
    #: ... but never fewer than 3 points (two differences, the least an IQR is taken of).
    late_min_points: int = 3
    #: Late noise matters once it is half the gap being decided: a lucky or unlucky last step
    #: can then reorder the studies.
    late_noise_to_gap: float = 0.5
    #: The metric name the workloads use for the training loss.
    train_loss_metric: str = "train_loss"
    #: Training loss at the end above its early minimum by 3 noise standard deviations ...
    train_loss_noise_mult: float = 3.0
    #: ... and by 5% of that minimum: a clear, not a marginal, increase.
    train_loss_rel_rise: float = 0.05
    #: Fire when the best trial of a study shows it or at least this share of the trials do.
    train_loss_trial_share: float = 0.25


DEFAULTS = CurveThresholds()


def _examples(res: Resolution, change: float) -> str:
    """`` (N of M examples)`` for a change of a metric whose evaluation set's size is known."""
    text = res.examples_text(change)
    return f" ({text})" if text else ""


def _train_trend(trial: TrialData, metric: str, from_step: float, to_step: float
                 ) -> dict[str, Any] | None:
    """The training loss at ``from_step`` (the last evaluation at or before it) and at
    ``to_step``, and whether it fell in between: the playbook's picture of overfitting is a
    validation error going up *while the training error keeps going down*."""
    steps, y = c.points(trial, metric)
    before = np.nonzero(steps <= from_step)[0]
    until = np.nonzero(steps <= to_step)[0]
    if len(before) == 0 or len(until) == 0 or until[-1] <= before[-1]:
        return None
    start, end = float(y[before[-1]]), float(y[until[-1]])
    return {"metric": metric, "at_best_step": start, "at_last_step": end,
            "falling": end < start - c.tol(start)}


def overfit_evidence(data: ExperimentData, trial: TrialData, th: CurveThresholds = DEFAULTS
                     ) -> dict[str, Any] | None:
    """Evidence of problematic overfitting in ``trial``'s objective curve, or None.

    ``rise`` = mean of the last ``overfit_tail_fraction`` of the evaluations (at least one, all
    after the best) - mean of the best evaluation and its neighbours (in the improving
    direction), counted when the best is not the last evaluation and ``rise >
    max(overfit_noise_mult × noise, overfit_rel_rise × |best|, min_change(best), ABS_EPS)``;
    ``noise`` is the first-difference IQR estimate over the curve from the best step on (the
    whole curve when fewer than 4 points follow) and ``min_change`` the smallest change the
    objective's metric resolves.
    """
    sign = c.sign(data)
    steps, y = c.points(trial, data.metric, sign)
    if len(y) < 3:
        return None
    i = int(np.argmin(y))  # first occurrence: the earliest best step, like summarize()
    if i == len(y) - 1:
        return None
    k = min(stats.tail_length(len(y), th.overfit_tail_fraction, 1), len(y) - 1 - i)
    best, last, tail = float(y[i]), float(y[-1]), float(np.mean(y[-k:]))
    around = float(np.mean(y[max(i - 1, 0):i + 2]))
    rise = tail - around
    after = y[i:]
    noise = stats.noise(after) if len(after) >= 4 else stats.noise(y)
    noise = noise or 0.0
    res = resolution(data)
    min_change = res.min_change(best * sign)
    threshold = max(th.overfit_noise_mult * noise, th.overfit_rel_rise * abs(best), min_change,
                    c.ABS_EPS)
    if rise <= threshold:
        return None
    return {**c.trial_ref(trial), "best_step": int(steps[i]), "best_value": best * sign,
            "around_best": around * sign, "last_step": int(steps[-1]),
            "last_value": last * sign, "tail_points": k,
            "tail_from_step": int(steps[-k]), "tail_mean": tail * sign, "rise": rise,
            "noise": noise, "min_change": min_change, "threshold": threshold,
            "examples": res.examples_text(rise),
            "train": _train_trend(trial, th.train_loss_metric, steps[i], steps[-1])}


@check("overfitting", playbook_section=c.SEC_CURVES, thresholds=CurveThresholds)
def check_overfitting(data: ExperimentData, th: CurveThresholds = DEFAULTS) -> list[Finding]:
    """Problematic overfitting: the validation objective gets worse after its best step.

    For the ``overfit_top_k`` (3) best trials of each study, on the objective's curve
    (``data.metric``, mirrored when maximised): ``rise`` = mean of the last
    ``overfit_tail_fraction`` (20%, at least one, all after the best) of the evaluations - mean
    of the best evaluation and its two neighbours. It counts when the best is not the last
    evaluation and ``rise > max(overfit_noise_mult (3) * noise, overfit_rel_rise (2%) * |best|,
    min_change, ABS_EPS)``, ``noise`` being the first-difference IQR estimate over the curve
    from the best step on (the whole curve when fewer than 4 points follow) and ``min_change``
    the metric's resolution at the best value
    (:meth:`~tunebook.analysis.resolution.Resolution.min_change`: 3 examples or one binomial
    standard error for a rate over a known evaluation set, 0 for a continuous metric).
    A study gets a finding when its best trial overfits (``problem``: the playbook re-runs with
    more regularization before comparing) or, failing that, when at least 2 of its top 3 do
    (``warning``). Advice: ``regularization: more``, ``training_length: shorter`` (stop at the
    best step); the finding's trials are the overfitting ones.
    """
    findings = []
    for study in c.studies(data):
        top = data.ranked(study)[:th.overfit_top_k]
        flagged = [(t, ev) for t in top if (ev := overfit_evidence(data, t, th)) is not None]
        if not flagged:
            continue
        best_flagged = flagged[0][0].id == top[0].id
        if not best_flagged and len(flagged) < 2:
            continue
        first = flagged[0][1]
        others = len(flagged) - (1 if best_flagged else 0)
        if best_flagged and others:
            which = f"its best trial and {others} more of its top {len(top)}"
        elif best_flagged:
            which = "its best trial"
        else:
            which = f"{others} of its top {len(top)} trials"
        refs = [c.trial_ref(t) for t, _ in flagged]
        train = first["train"]
        falling = (f" while its {train['metric']} keeps falling "
                   f"({c.fmt(train['at_best_step'])} → {c.fmt(train['at_last_step'])})"
                   if train and train["falling"] else "")
        resolved = (f"; the smallest change {data.metric} resolves is "
                    f"{c.fmt(first['min_change'])}" if first["min_change"] > 0 else "")
        examples = f" ({first['examples']})" if first["examples"] else ""
        message = (f"Study {study}: {which} ({trials_text(refs)}) show problematic overfitting "
                   f"— e.g. {first['label']}'s {data.metric} is best "
                   f"({c.fmt(first['best_value'])}) at step {first['best_step']} and its last "
                   f"{first['tail_points']} evaluations (steps {first['tail_from_step']}–"
                   f"{first['last_step']}, mean {c.fmt(first['tail_mean'])}) are worse by "
                   f"{c.fmt(first['rise'])}{examples} than around its best"
                   f"{falling} (noise {c.fmt(first['noise'])}{resolved}).")
        findings.append(finding(
            check="overfitting", severity="problem" if best_flagged else "warning",
            message=message,
            evidence={"metric": data.metric, "goal": data.goal, "top_k": th.overfit_top_k,
                      "best_trial_overfits": best_flagged, "noise_mult": th.overfit_noise_mult,
                      "rel_rise": th.overfit_rel_rise,
                      "resolution": resolution(data).as_dict(),
                      "trials": [ev for _, ev in flagged]},
            action=("Re-run with additional regularization (dropout, label smoothing, weight "
                    "decay) or better-tuned regularization parameters before comparing the "
                    "scientific values, rather than preferring a less-overfitting (possibly "
                    "under-trained) configuration; this may not apply when the scientific "
                    "hyperparameters are themselves regularization parameters. Retrospective "
                    "checkpoint selection already protects the reported value, but the trend "
                    "means the configuration is under-regularized (and trains past its best "
                    "step)."),
            study=study, trials=refs,
            advice={"regularization": "more", "training_length": "shorter"}))
    return findings


@check("late_variance", playbook_section=c.SEC_CURVES, thresholds=CurveThresholds)
def check_late_variance(data: ExperimentData, th: CurveThresholds = DEFAULTS) -> list[Finding]:
    """High step-to-step variance late in training, when it is what decides the comparison.

    With 2 or more studies, judged by :func:`~tunebook.analysis.comparison.compare` (the
    isolation verdict): one ``warning`` when the verdict is ``within_spread``, the step noise
    (median :func:`~tunebook.analysis.stats.late_noise` of each study's 3 best trials) is the
    largest part of the spread (``limit == "step_noise"``: not the sampling of the nuisance
    space, where ``enough_trials`` asks for more trials, nor the metric's resolution), the gap
    between the two best studies is positive and not below the resolution, and the step noise
    exceeds ``late_noise_to_gap`` (0.5) times the gap.

    With a single study: the late noise of its ``late_top_k`` (3) best trials (last
    ``late_fraction`` = 20% of the evaluations, at least ``late_min_points`` = 3) against the
    gap between its best and 3rd best trials; one ``warning`` when the median exceeds
    ``late_noise_to_gap`` (0.5) times that gap and the gap is positive and not below the
    metric's resolution (:meth:`~tunebook.analysis.resolution.Resolution.min_change`).
    """
    action = ("Step-to-step variance (batch variance, a small validation set, a learning rate "
              "too high late in training) can decide the comparison by a lucky or unlucky "
              "step: increase the batch size, obtain more validation data, use learning rate "
              "decay, or use Polyak averaging.")
    cmp = compare(data)
    if cmp is not None:
        noise = cmp.step_noise
        if (noise is None or cmp.verdict == "differ" or cmp.limit != "step_noise"
                or not cmp.gap > 0 or cmp.gap < cmp.resolution
                or noise <= th.late_noise_to_gap * cmp.gap):
            return []
        others = ", ".join(f"{name} {c.fmt(v)}" for name, v in (
            ("best-of-n sampling IQR", cmp.sampling),
            ("resolution", cmp.resolution or None)) if v is not None)
        return [finding(
            check="late_variance", severity="warning",
            message=(f"Late in training the {data.metric} of the best trials varies from step "
                     f"to step by {c.fmt(noise)} (median std over the last "
                     f"{c.pct(stats.LATE_FRACTION)} of {len(cmp.noises)} trials), more than "
                     f"{th.late_noise_to_gap:g} × the gap {cmp.gap_text()} between "
                     f"{cmp.best_label} and {cmp.runner_up.label}: it is what limits the "
                     f"comparison" + (f" ({others})" if others else "") + "."),
            evidence={"metric": data.metric, "median_noise": noise, "gap": cmp.gap,
                      "gap_between": {"kind": "studies", "studies": [cmp.best,
                                      cmp.runner_up.study],
                                      "values": [cmp.best_value, cmp.runner_up.value]},
                      "ratio": th.late_noise_to_gap, "limit": cmp.limit,
                      "sampling": cmp.sampling, "resolution": cmp.resolution,
                      "verdict": cmp.verdict, "trials": list(cmp.noises)},
            action=action, trials=[{"id": n["id"], "label": n["label"]} for n in cmp.noises],
            advice={"step_noise": "reduce"})]
    noises: list[dict[str, Any]] = []
    for study in c.studies(data):
        for t in data.ranked(study)[:th.late_top_k]:
            steps, y = c.points(t, data.metric)
            if len(y) < th.late_min_points:
                continue
            k = stats.tail_length(len(y), th.late_fraction, th.late_min_points)
            late = stats.late_noise(y, th.late_fraction, th.late_min_points)
            if late is not None:
                noises.append({**c.trial_ref(t), "study": study, "noise": late,
                               "from_step": int(steps[-k]), "points": k})
    bests = c.study_bests(data)
    ranked = data.ranked(bests[0][0]) if bests else []
    if not noises or len(ranked) < 3:
        return []
    v1, v3 = c.objective(data, ranked[0]), c.objective(data, ranked[2])
    if v1 is None or v3 is None:
        return []
    gap = abs(v1 - v3)
    res = resolution(data)
    median = float(np.median([n["noise"] for n in noises]))
    if not gap > 0 or gap < res.min_change(v1) or median <= th.late_noise_to_gap * gap:
        return []
    examples = res.examples_text(gap)
    return [finding(
        check="late_variance", severity="warning",
        message=(f"Late in training the {data.metric} of the best trials varies from step to step "
                 f"by {c.fmt(median)} (median std over the last {c.pct(th.late_fraction)} of "
                 f"{len(noises)} trials), more than {th.late_noise_to_gap:g} × the gap "
                 f"{c.fmt(gap)}" + (f" ({examples})" if examples else "") + " between the best "
                 f"and 3rd best trials ({ranked[0].label}, {ranked[2].label})."),
        evidence={"metric": data.metric, "median_noise": median, "gap": gap,
                  "gap_between": {"kind": "trials", "trials": [ranked[0].id, ranked[2].id],
                                  "values": [v1, v3]},
                  "ratio": th.late_noise_to_gap, "late_fraction": th.late_fraction,
                  "resolution": res.min_change(v1), "trials": noises},
        action=action, trials=[c.trial_ref(t) for t in ranked[:th.late_top_k]],
        advice={"step_noise": "reduce"})]


@check("train_loss_increases", playbook_section=c.SEC_CURVES, thresholds=CurveThresholds)
def check_train_loss_increases(data: ExperimentData, th: CurveThresholds = DEFAULTS
                               ) -> list[Finding]:
    """Training loss going up during training, which usually means a pipeline bug.

    On ``train_loss_metric`` (``train_loss``) of each completed trial with at least 3 finite
    evaluations: ``start`` = minimum over the first 20% of evaluations (at least one), ``end`` =
    mean over the last 20% (at least one). The trial counts when ``end - start >
    train_loss_noise_mult (3) × noise`` (first-difference IQR over the whole curve),
    ``> train_loss_rel_rise (5%) × |start|`` and ``> min_change(start)`` (the training metric's
    resolution, when its evaluation set's size is known). One ``problem`` when that happens in
    the best trial of any study or in at least ``train_loss_trial_share`` (25%) of the completed
    trials with a training loss curve. Nothing when the metric is not recorded. No tuning knob
    (empty ``advice``): the remedy is to debug the pipeline. At scale (a report that read a
    sample of the curves beyond each study's best trials, :attr:`~tunebook.analysis.data.Curve.
    sampled`), those trials are judged on their sampled points.
    """
    study_best = {b[1].id for b in c.study_bests(data)}
    res = resolution(data, th.train_loss_metric)
    checked: list[TrialData] = []
    flagged: list[dict[str, Any]] = []
    for t in data.trials:
        if not t.feasible:
            continue
        steps, y = c.points(t, th.train_loss_metric)
        if len(y) < 3:
            continue
        checked.append(t)
        k = stats.tail_length(len(y), th.late_fraction, 1)
        start = float(np.min(y[:k]))
        end = float(np.mean(y[-k:]))
        rise = end - start
        noise = stats.noise(y) or 0.0
        min_change = res.min_change(start)
        threshold = max(th.train_loss_noise_mult * noise, th.train_loss_rel_rise * abs(start),
                        min_change, c.ABS_EPS)
        if rise > threshold:
            flagged.append({**c.trial_ref(t), "study": t.study, "start": start, "end": end,
                            "rise": rise, "noise": noise, "min_change": min_change,
                            "threshold": threshold, "study_best": t.id in study_best,
                            "last_step": int(steps[-1])})
    if not flagged:
        return []
    bests = [f for f in flagged if f["study_best"]]
    share = len(flagged) / len(checked)
    if not bests and share < th.train_loss_trial_share:
        return []
    refs = [{"id": f["id"], "label": f["label"]} for f in flagged]
    first = flagged[0]
    which = f" (including the best trial of {len(bests)} studies)" if bests else ""
    return [finding(
        check="train_loss_increases", severity="problem",
        message=(f"{th.train_loss_metric} increases during training in {len(flagged)} of "
                 f"{len(checked)} completed trials{which}: {trials_text(refs, 5)} — e.g. "
                 f"{first['label']} from {c.fmt(first['start'])} to {c.fmt(first['end'])}"
                 f"{_examples(res, first['rise'])}; likely a pipeline bug."),
        evidence={"metric": th.train_loss_metric, "n_checked": len(checked),
                  "n_increasing": len(flagged), "share": share, "noise_mult":
                  th.train_loss_noise_mult, "rel_rise": th.train_loss_rel_rise,
                  "trial_share": th.train_loss_trial_share, "resolution": res.as_dict(),
                  "trials": flagged},
        action=("Training loss increasing during training usually indicates a bug in the "
                "training pipeline: check the data, the loss, the optimizer and the learning "
                "rate schedule before drawing conclusions; if it only happens at large learning "
                "rates it is training instability (see 'Identifying unstable workloads')."),
        trials=refs, advice={})]

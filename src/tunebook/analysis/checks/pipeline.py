"""Pipeline checks: the health of the training pipeline around the model.

- ``class_imbalance``: per-class counts of the evaluation set (``PREFIXclassK_correct`` and
  ``PREFIXclassK_examples``, recorded by :func:`tunebook.torch.evaluate` with ``per_class``)
  show a class that is rarely right, or an imbalanced evaluation set.
- ``periodic_validation``: the best trials' validation curves oscillate with a period: a sign
  of unshuffled training data or of overlap between training and evaluation data.
- ``eval_subset``: the periodic evaluation on a subset disagrees with the full evaluation set
  (``PREFIX_full_*``), or the subset is too small to tell the best trials apart.
- ``input_bound``: the trials spent most of each training step waiting for data
  (``data_share``, recorded by the training helpers).

The playbook's sections, under "Additional guidance for the training pipeline": "Choosing a
sample for periodic evaluation" (class counts), "Setting up periodic evaluations" (periodicity)
and "Optimizing the input pipeline".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding
from tunebook.analysis.data import ExperimentData, TrialData
from tunebook.analysis.findings import Finding

__all__ = ["PipelineThresholds", "check_class_imbalance", "check_eval_subset",
           "check_input_bound", "check_periodic_validation", "class_counts", "full_metric"]

SEC_SAMPLE = "Choosing a sample for periodic evaluation"
SEC_INPUT = "Optimizing the input pipeline"
_CLASS = re.compile(r"^(?P<prefix>.*)class(?P<k>\d+)_(?P<kind>correct|examples)$")


@dataclass(frozen=True)
class PipelineThresholds:
    """Thresholds of the pipeline checks (``checks: {pipeline: {...}}``)."""

    family: ClassVar[str] = "pipeline"

    #: A class is rarely right when its accuracy is below this fraction of the median class
    #: accuracy: half as often right as a typical class is far beyond a random wobble ...
    rare_class_ratio: float = 0.5
    #: ... and it has at least this many examples (fewer: one mistake moves its accuracy by
    #: over 5%, too coarse to single it out).
    min_class_examples: int = 20
    #: The evaluation set is imbalanced when its largest class has this many times the
    #: examples of its smallest: an order of magnitude makes the mean error mostly about the
    #: large classes.
    imbalance_ratio: float = 10.0
    #: Periodicity needs at least this many evaluations on evenly spaced steps ...
    periodic_min_points: int = 24
    #: ... an autocorrelation of the detrended differences at some lag of at least this (on
    #: 300 simulated healthy curves of 24-40 points with independent noise, the largest was
    #: 0.51 and the 99th percentile 0.31; a ripple of 5 times the noise reaches 0.34-0.55,
    #: of 10 times 0.67) ...
    periodic_autocorrelation: float = 0.5
    #: ... at a lag with at least this many full periods in the curve (a slow wobble left by
    #: the detrending is not a period).
    periodic_min_cycles: int = 3
    #: The periodic subset is skewed when subset minus full, averaged over the trials,
    #: exceeds this many of the subset's standard errors (3: rarely by chance).
    subset_skew_se: float = 3.0
    #: The subset is too small when this many standard errors of a difference between two
    #: trials on it exceed the whole spread of the 5 best trials (1: the best trials are
    #: within one standard error of each other, in no order the subset can see).
    subset_spread_se: float = 1.0
    #: The workload is input-bound when the median data share of the trials exceeds this: the
    #: step waits longer for its batch than it computes.
    input_bound_share: float = 0.5


DEFAULTS = PipelineThresholds()


def class_counts(trial: TrialData) -> dict[str, dict[int, tuple[float, float]]]:
    """The trial's per-class counts at its last evaluation that has them: ``{prefix: {class:
    (examples, correct)}}`` (e.g. prefix ``val_``), from the ``PREFIXclassK_*`` curves."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    for name, curve in trial.curves.items():
        m = _CLASS.match(name)
        if m is None or not len(curve):
            continue
        finite = [v for v in curve.values if np.isfinite(v)]
        if finite:
            found.setdefault(m["prefix"], {}).setdefault(int(m["k"]), {})[m["kind"]] = finite[-1]
    return {p: {k: (v["examples"], v["correct"]) for k, v in sorted(cls.items())
                if "examples" in v and "correct" in v and v["examples"] > 0}
            for p, cls in found.items()}


def _best_trials(data: ExperimentData) -> list[TrialData]:
    return [t for _, t, _ in c.study_bests(data)]


@check("class_imbalance", playbook_section=SEC_SAMPLE, thresholds=PipelineThresholds)
def check_class_imbalance(data: ExperimentData,
                          th: PipelineThresholds = DEFAULTS) -> list[Finding]:
    """A class is rarely right, or the evaluation set is imbalanced, in the best trials.

    Reads each study's best trial's per-class counts (:func:`class_counts`, the last evaluation
    that has them; at least 2 classes). Fires per prefix (``val_``...), judged on the best
    trial of the first study that has counts:

    - ``warning``: some class with at least ``min_class_examples`` (20) examples has an
      accuracy below ``rare_class_ratio`` (0.5) times the median class accuracy (classes
      named, worst first). Advice ``eval_data: per_class``.
    - ``info``: the largest class has at least ``imbalance_ratio`` (10) times the examples of
      the smallest: the mean error is mostly about the large classes; report per-class
      counts. Advice ``eval_data: per_class``.

    ``trials``: the best trials with counts.
    """
    out = []
    bests = [(t, class_counts(t)) for t in _best_trials(data)]
    prefixes = sorted({p for _, counts in bests for p in counts})
    for prefix in prefixes:
        with_counts = [(t, cnt[prefix]) for t, cnt in bests if len(cnt.get(prefix, {})) >= 2]
        if not with_counts:
            continue
        trial, counts = with_counts[0]
        refs = [c.trial_ref(t) for t, _ in with_counts]
        acc = {k: ok / ex for k, (ex, ok) in counts.items()}
        median = float(np.median(list(acc.values())))
        rare = sorted((k for k, (ex, _) in counts.items()
                       if ex >= th.min_class_examples and acc[k] < th.rare_class_ratio * median),
                      key=lambda k: acc[k])
        evidence: dict[str, Any] = {
            "prefix": prefix, "trial": c.trial_ref(trial), "median_accuracy": median,
            "classes": {str(k): {"examples": ex, "correct": ok, "accuracy": acc[k]}
                        for k, (ex, ok) in counts.items()}}
        if rare:
            shown = ", ".join(f"class {k} ({c.pct(acc[k])} of {counts[k][0]:.0f})"
                              for k in rare[:5])
            out.append(finding(
                check="class_imbalance", severity="warning",
                message=(f"In {trial.label}, {len(rare)} of {len(counts)} classes of {prefix}"
                         f" are rarely right: {shown}, against a median class accuracy of "
                         f"{c.pct(median)}."),
                action=("Look at the examples of these classes (saved predictions): are their "
                        "labels right, are they represented in the training data, is the "
                        "objective blind to them? Report per-class counts and consider a "
                        "metric that weighs classes equally."),
                evidence={**evidence, "rare": rare}, trials=refs,
                advice={"eval_data": "per_class"}))
        sizes = [ex for ex, _ in counts.values()]
        ratio = max(sizes) / min(sizes)
        if ratio >= th.imbalance_ratio:
            big = max(counts, key=lambda k: counts[k][0])
            small = min(counts, key=lambda k: counts[k][0])
            out.append(finding(
                check="class_imbalance", severity="info",
                message=(f"The evaluation set of {prefix} is imbalanced: class {big} has "
                         f"{max(sizes):.0f} examples, class {small} {min(sizes):.0f} "
                         f"({ratio:.0f} times fewer); the mean error is mostly about the "
                         "large classes."),
                action=("On imbalanced data log counts per class, not only rates (the "
                        "playbook), and check the rare classes' accuracy before trusting a "
                        "small difference of the mean."),
                evidence={**evidence, "imbalance_ratio": ratio}, trials=refs,
                advice={"eval_data": "per_class"}))
    return out


def _autocorrelation(y: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
    """Autocorrelation of ``y`` at lags 0..len-1 (biased estimator, lag 0 is 1)."""
    z = y - y.mean()
    denom = float(np.dot(z, z))
    if denom <= 0:
        return np.zeros(len(y))
    full = np.correlate(z, z, mode="full")[len(y) - 1:]
    return np.asarray(full / denom, dtype=np.float64)


def _period(steps: c.Array, y: c.Array, th: PipelineThresholds) -> dict[str, Any] | None:
    """The period of ``y`` (evenly spaced ``steps``) when its detrended autocorrelation says
    so, with the numbers behind it; else None."""
    n = len(y)
    if n < th.periodic_min_points:
        return None
    gaps = np.diff(steps)
    if gaps.min() <= 0 or gaps.max() != gaps.min():
        return None
    # Differences remove the level; a cubic through them removes the learning trend (the
    # descent and its flattening); a period survives both.
    diffs = np.diff(y)
    x = np.linspace(-1.0, 1.0, len(diffs))
    residual = diffs - np.polyval(np.polyfit(x, diffs, 3), x)
    acf = _autocorrelation(residual)
    max_lag = len(residual) // th.periodic_min_cycles
    if max_lag < 2:
        return None
    lags = np.arange(2, max_lag + 1)
    lag = int(lags[np.argmax(acf[2:max_lag + 1])])
    # A period shows a trough (anti-correlation) before its peak; a smooth drift does not.
    if acf[lag] < th.periodic_autocorrelation or float(np.min(acf[1:lag])) > 0:
        return None
    return {"period_steps": int(lag * gaps[0]), "lag": lag,
            "autocorrelation": float(acf[lag]), "points": n}


@check("periodic_validation", playbook_section=c.SEC_PERIODIC, thresholds=PipelineThresholds)
def check_periodic_validation(data: ExperimentData,
                              th: PipelineThresholds = DEFAULTS) -> list[Finding]:
    """The best trials' objective curves oscillate with a period.

    For each study's best trial whose objective curve has at least ``periodic_min_points``
    (24) finite evaluations on evenly spaced steps: take the differences between successive
    evaluations and remove a cubic trend (in the step index) from them; fire when the
    residual's autocorrelation at some lag L (2 <= L <= len(residual) /
    ``periodic_min_cycles``, 3 cycles) is at least ``periodic_autocorrelation`` (0.5) and is
    preceded by a negative autocorrelation at a shorter lag (a trough: an oscillation, not a
    drift). One ``warning`` for the experiment naming the period in steps. Advice
    ``data_order: shuffle``.
    """
    hits = []
    for _, trial, steps, y in c.best_curves(data, c.sign(data)):
        found = _period(steps, y, th)
        if found is not None:
            hits.append((trial, found))
    if not hits:
        return []
    trial, first = hits[0]
    periods = sorted({h["period_steps"] for _, h in hits})
    return [finding(
        check="periodic_validation", severity="warning",
        message=(f"The {data.metric} curves of {len(hits)} best trial(s) oscillate with a "
                 f"period of about {', '.join(map(str, periods))} steps (e.g. {trial.label}: "
                 f"autocorrelation {first['autocorrelation']:.2f} at that lag after removing "
                 "the trend): a sign of training data that is not shuffled, or of overlap "
                 "between training and evaluation data."),
        action=("Check that the training data is shuffled (and re-shuffled between epochs) "
                "and that no evaluation example is also a training example; a period equal to "
                "an epoch's steps points at the data order."),
        evidence={"metric": data.metric,
                  "trials": [{**c.trial_ref(t), **h} for t, h in hits]},
        trials=[c.trial_ref(t) for t, _ in hits], advice={"data_order": "shuffle"})]


@check("input_bound", playbook_section=SEC_INPUT, thresholds=PipelineThresholds)
def check_input_bound(data: ExperimentData, th: PipelineThresholds = DEFAULTS) -> list[Finding]:
    """The training steps wait mostly for data.

    Each completed or infeasible trial with a ``data_share`` curve (the share of its training
    steps' time spent fetching batches, per evaluation interval) contributes its median; fires
    (``warning``) when the median over those trials exceeds ``input_bound_share`` (0.5).
    ``trials``: the trials above it. Advice ``input_pipeline: speed_up``. At scale (a report
    that read a sample of the curves beyond each study's best trials,
    :attr:`~tunebook.analysis.data.Curve.sampled`), those trials' medians are of their samples.
    """
    shares = []
    for t in data.trials:
        if t.status not in ("completed", "infeasible"):
            continue
        _, v = c.points(t, "data_share")
        if len(v):
            shares.append((t, float(np.median(v))))
    if not shares:
        return []
    median = float(np.median([s for _, s in shares]))
    if median <= th.input_bound_share:
        return []
    above = [t for t, s in shares if s > th.input_bound_share]
    return [finding(
        check="input_bound", severity="warning",
        message=(f"The training steps spent a median {c.pct(median)} of their time waiting for "
                 f"data ({len(above)} of {len(shares)} trials above "
                 f"{c.pct(th.input_bound_share)}): the workload is input-bound."),
        action=("Speed up the input pipeline before tuning: prefetch and load in parallel "
                "(DataLoader workers, pinned memory), cache decoded data, move augmentation to "
                "the device. A faster pipeline buys more steps in the same time; a larger "
                "batch only helps if the pipeline keeps up."),
        evidence={"median_share": median, "threshold": th.input_bound_share,
                  "n_trials": len(shares),
                  "shares": {t.label: s for t, s in shares[:20]}},
        trials=[c.trial_ref(t) for t in above], advice={"input_pipeline": "speed_up"})]


def full_metric(metric: str) -> str | None:
    """The name of ``metric`` on the full evaluation set when it is periodically evaluated on
    a subset: ``val_error`` -> ``val_full_error`` (None without a ``PREFIX_``)."""
    head, sep, rest = metric.partition("_")
    return f"{head}_full_{rest}" if sep and rest else None


def _last_examples(trial: TrialData, name: str) -> float | None:
    _, v = c.points(trial, name)
    return float(v[-1]) if len(v) and v[-1] > 0 else None


@check("eval_subset", playbook_section=SEC_SAMPLE, thresholds=PipelineThresholds)
def check_eval_subset(data: ExperimentData, th: PipelineThresholds = DEFAULTS) -> list[Finding]:
    """The periodic evaluation subset differs from the full evaluation set, or is too small.

    Reads the completed trials that report the objective ``PREFIX_REST`` and the same metric on
    the full set, ``PREFIX_full_REST`` (:func:`full_metric`), at a common step (the last one),
    with the sizes ``PREFIX_examples`` (the subset) and ``PREFIX_full_examples``. Only for a
    rate (every value in [0, 1]), whose sampling error is known: the standard error of the
    subset at the trials' mean value p is ``sqrt(p (1 - p) / n (1 - n / N))``.

    - ``warning`` (skew): the mean over the trials of subset minus full exceeds
      ``subset_skew_se`` (3) standard errors: the subset is not a fair sample of the set.
    - ``info`` (too small, needs 3 trials): ``subset_spread_se`` (1) standard error of a
      difference between two trials on the subset (``sqrt(2) se``) exceeds the spread of the
      (up to) 5 best trials on the full set: the subset cannot tell them apart.

    Advice ``eval_data: resample`` (skew) / ``eval_data: enlarge`` (too small). At scale (a
    report that read a sample of the curves beyond each study's best trials,
    :attr:`~tunebook.analysis.data.Curve.sampled`), the common step is the last one sampled
    (``max_train_steps`` is always in the sample).
    """
    full = full_metric(data.metric)
    if full is None:
        return []
    head = data.metric.partition("_")[0]
    pairs = []
    for t in data.trials:
        if t.status != "completed":
            continue
        s_steps, s_vals = c.points(t, data.metric)
        f_steps, f_vals = c.points(t, full)
        common = sorted(set(s_steps.tolist()) & set(f_steps.tolist()))
        n = _last_examples(t, f"{head}_examples")
        big = _last_examples(t, f"{head}_full_examples")
        if not common or n is None or big is None or n > big:
            continue
        step = common[-1]
        sub = float(s_vals[s_steps.tolist().index(step)])
        whole = float(f_vals[f_steps.tolist().index(step)])
        pairs.append((t, sub, whole, n, big))
    if not pairs or not all(0 <= v <= 1 for _, s, w, _, _ in pairs for v in (s, w)):
        return []
    n, big = pairs[0][3], pairs[0][4]
    p = float(np.mean([w for _, _, w, _, _ in pairs]))
    se = float(np.sqrt(max(p * (1 - p), 0.0) / n * max(1 - n / big, 0.0)))
    skew = float(np.mean([s - w for _, s, w, _, _ in pairs]))
    evidence: dict[str, Any] = {
        "metric": data.metric, "full_metric": full, "subset_examples": n,
        "full_examples": big, "n_trials": len(pairs), "mean_full": p, "mean_skew": skew,
        "standard_error": se}
    refs = [c.trial_ref(t) for t, *_ in pairs]
    out = []
    if se > 0 and abs(skew) > th.subset_skew_se * se:
        out.append(finding(
            check="eval_subset", severity="warning",
            message=(f"{data.metric} on the {n:.0f}-example periodic subset differs from "
                     f"{full} on all {big:.0f} examples by {c.fmt(skew)} on average over "
                     f"{len(pairs)} trials, {abs(skew) / se:.1f} standard errors: the subset is "
                     "not a fair sample of the evaluation set."),
            action=("Draw the periodic subset at random (or stratified by class) from the "
                    "whole evaluation set, and check again that the two agree; until then "
                    "compare trials on the full set."),
            evidence=evidence, trials=refs, advice={"eval_data": "resample"}))
    ranked = sorted(w * c.sign(data) for _, _, w, _, _ in pairs)[:5]
    spread = ranked[-1] - ranked[0] if len(ranked) >= 3 else None
    if spread is not None and th.subset_spread_se * np.sqrt(2) * se > spread:
        out.append(finding(
            check="eval_subset", severity="info",
            message=(f"The {n:.0f}-example periodic subset is too small to tell the best trials "
                     f"apart: a difference between two trials on it has a standard error of "
                     f"{c.fmt(np.sqrt(2) * se)}, while the {len(ranked)} best trials span "
                     f"{c.fmt(spread)} on the full set."),
            action=("Evaluate periodically on more examples (the playbook: large enough that "
                    "improvements can be accurately measured), or select among the best "
                    "trials on the full set."),
            evidence={**evidence, "top_spread": spread}, trials=refs,
            advice={"eval_data": "enlarge"}))
    return out

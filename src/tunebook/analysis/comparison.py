"""The comparison of the studies: one verdict, its spread, and the paired evidence behind it.

Every part of a report that talks about separating the studies (the ``isolation`` finding, the
isolation plot's summary, ``enough_trials``, ``late_variance``) reads :func:`compare`, computed
once per data (:meth:`ExperimentData.memo <tunebook.analysis.data.ExperimentData.memo>`), so
two parts of one report cannot reach two verdicts.

**The spread** between equally good runs has three parts, each a way the best value of a study
could have come out differently without any real difference:

* ``step_noise``: the median :func:`~tunebook.analysis.stats.late_noise` of the ``top_k`` (3)
  best trials of every study (a lucky or unlucky last evaluation);
* ``sampling``: the median over the studies of :func:`~tunebook.analysis.stats.best_of_n_iqr`
  of :func:`~tunebook.analysis.stats.study_pool` (another sample of the nuisance space);
* ``resolution``: :meth:`Resolution.min_change <tunebook.analysis.resolution.Resolution.
  min_change>` at the better value (a few examples of the evaluation set; 0 for a continuous
  metric).

``spread`` is the largest. ``limit`` names what stands between the gap and a ``differ``
verdict, i.e. what would have to shrink to tell the two best studies apart: ``resolution``
when the gap is not larger than it (no number of trials resolves that), else the largest part
not smaller than the gap (of the step noise only when the pairs agree: pairing has then
accounted for the sampling), else ``sampling`` (the paired evidence is not conclusive: the
studies trade places from one nuisance point to the next). So ``sampling`` asks for more
trials; ``step_noise`` for a bigger batch, more validation data, learning rate decay or
averaging; ``resolution`` for a larger evaluation
set. (With a ``differ`` verdict it is simply the largest part.)

**Paired evidence.** The studies of an experiment search the same nuisance points, so trial
``i`` of study A and trial ``i`` of study B (the same :attr:`TrialData.index
<tunebook.analysis.data.TrialData.index>`) are a pair: they differ only by the scientific
hyperparameters. Over the pairs finished in both (completed or infeasible; infeasible counts as
``inf``), :func:`~tunebook.analysis.stats.paired_best_of_k` with ``k`` = the number of pairs
gives the share of resamples in which A's best beats B's, and a sign count says on how many of
the pairs feasible in both A is better (over all of them and over the top half: pairs whose
better member ranks in its study's top half).

**The verdict** for A (the study with the best value) against B (the runner-up, and likewise
every other study against A): ``differ`` when, with at least ``min_pairs`` (6) pairs, the
one-sided sign test (:func:`~tunebook.analysis.pairing.sign_test`) of A being better rejects
chance at ``sign_alpha`` (2.5%) over all the pairs feasible in both or over the top-half pairs
(pairs closer than the step noise or the resolution are ties), and the gap exceeds both the
step noise and the resolution (sampling is what pairing accounts for); without enough pairs,
when the gap exceeds the whole spread (unpaired, :func:`~tunebook.analysis.stats.separated`).
Otherwise ``within_spread``. The paired bootstrap share is evidence shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from tunebook.analysis import stats
from tunebook.analysis.pairing import Pairing, pairing, pools_by_index
from tunebook.analysis.resolution import Resolution, resolution

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData, TrialData

__all__ = ["Comparison", "ComparisonThresholds", "Pairing", "Verdict", "Versus", "compare",
           "pairing", "study_label"]

Verdict = Literal["differ", "within_spread"]
Limit = Literal["step_noise", "sampling", "resolution"]


@dataclass(frozen=True)
class ComparisonThresholds:
    """How the studies are compared (``checks: {comparison: {...}}``)."""

    family: ClassVar[str] = "comparison"

    #: The sign test (over all feasible pairs, or over the top-half pairs) must reject "no
    #: difference" at 2.5% one-sided: A is the study that came out best, so the direction was
    #: chosen by the data, and 2.5% one-sided is the usual 5% two-sided level. Two tests: at most
    #: about 5% of experiments whose studies do not differ are called "differ". (The paired
    #: best-of-n bootstrap share is reported beside it but decides nothing: under no
    #: difference it reaches 95% whenever the three best points of all happen to fall in one
    #: study, a quarter of the time with 12 trials per study.)
    sign_alpha: float = 0.025
    #: Fewer shared nuisance points than this cannot pass the sign test (6 wins out of 6 is
    #: p = 1.6%): judge unpaired, the gap against the whole spread.
    min_pairs: int = 6
    #: Step noise is measured on the best 3 trials of each study: the ones being compared.
    top_k: int = 3


DEFAULTS = ComparisonThresholds()



@dataclass(frozen=True)
class Versus:
    """One study against the best study: its best value, the gap, the pairs and the verdict."""

    study: str
    label: str
    trial: TrialData
    value: float
    gap: float
    pairing: Pairing
    paired: bool
    verdict: Verdict
    pairs_agree: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The evidence form."""
        return {"study": self.study, "label": self.label, "trial": self.trial.label,
                "value": self.value, "gap": self.gap, "paired": self.paired,
                "pairs_agree": self.pairs_agree, "verdict": self.verdict, **self.pairing.as_dict()}


@dataclass(frozen=True)
class Comparison:
    """The comparison of the studies of one experiment (see the module docstring).

    Attributes:
        metric: the objective's metric.
        best, best_label, best_trial, best_value: the study with the best value (its
            scientific values as ``label``), its best trial and value (the objective's sign).
        runner_up: the second best study against the best (:class:`Versus`).
        others: every further study against the best, best first.
        step_noise, sampling, resolution: the parts of the spread (None when unknown;
            ``resolution`` is 0 for a continuous metric).
        spread: the largest part (None when none is known).
        limit: what keeps the two best studies from being told apart (module docstring).
        noises: the per-trial late noise behind ``step_noise``.
        metric_resolution: the :class:`~tunebook.analysis.resolution.Resolution` used.
        thresholds: the thresholds used.
        replicates: the studies search no nuisance hyperparameter (``nuisance: {}``): trial
            ``i`` of two studies is a pair of seeds, not a shared nuisance point, and the
            spread between trials is seed-to-seed variance (the words say so).
    """

    metric: str
    best: str
    best_label: str
    best_trial: TrialData
    best_value: float
    runner_up: Versus
    others: tuple[Versus, ...]
    step_noise: float | None
    sampling: float | None
    resolution: float
    spread: float | None
    limit: Limit | None
    noises: tuple[dict[str, Any], ...]
    metric_resolution: Resolution
    thresholds: ComparisonThresholds = DEFAULTS
    replicates: bool = False

    @property
    def points(self) -> str:
        """What the pairs are, in words: shared nuisance points, or pairs of seeds."""
        return "seed pairs" if self.replicates else "shared nuisance points"

    @property
    def sampled(self) -> str:
        """What another run of the studies would sample anew, in words."""
        return ("the seed-to-seed variance" if self.replicates
                else "the sampling of the nuisance space")

    @property
    def gap(self) -> float:
        """The difference between the best values of the two best studies (>= 0)."""
        return self.runner_up.gap

    @property
    def verdict(self) -> Verdict:
        """``differ`` or ``within_spread`` for the two best studies."""
        return self.runner_up.verdict

    @property
    def pairing(self) -> Pairing:
        """The paired evidence of the best study against the runner-up."""
        return self.runner_up.pairing

    @property
    def trials(self) -> tuple[TrialData, TrialData]:
        """The best trials of the two best studies."""
        return self.best_trial, self.runner_up.trial

    def as_dict(self) -> dict[str, Any]:
        """The evidence form: every number behind the verdict."""
        res = self.metric_resolution
        return {"verdict": self.verdict, "metric": self.metric, "best": self.best,
                "best_trial": self.best_trial.label, "best_value": self.best_value,
                "runner_up": self.runner_up.study, "runner_up_trial": self.runner_up.trial.label,
                "runner_up_value": self.runner_up.value, "gap": self.gap,
                "gap_examples": res.examples_text(self.gap) or None,
                "paired": self.runner_up.paired, "pairs_agree": self.runner_up.pairs_agree,
                **self.pairing.as_dict(),
                "step_noise": self.step_noise, "sampling": self.sampling,
                "resolution": self.resolution, "spread": self.spread, "limit": self.limit,
                "resolution_source": res.source, "examples": res.examples,
                "sign_alpha": self.thresholds.sign_alpha,
                "min_pairs": self.thresholds.min_pairs,
                "draws": stats.BOOTSTRAP_DRAWS, "seed": stats.BOOTSTRAP_SEED,
                "replicates": self.replicates,
                "others": [v.as_dict() for v in self.others]}

    def gap_text(self, gap: float | None = None) -> str:
        """A gap as a number, with the examples it amounts to when the size is known."""
        g = self.gap if gap is None else gap
        examples = self.metric_resolution.examples_text(g)
        return _fmt(g) + (f" ({examples})" if examples else "")

    def pairs_text(self, versus: Versus | None = None) -> str:
        """How many shared nuisance points agree, in words."""
        v = versus or self.runner_up
        p = v.pairing
        if p.n_feasible == 0:
            return (f"{self.best_label} and {v.label} share no "
                    f"{self.points.removesuffix('s')} feasible in both")
        text = (f"{self.best_label} beats {v.label} on {p.wins} of {p.n_feasible} "
                f"{self.points} ({p.losses} worse, {p.ties} tied")
        if p.top:
            text += f"; {p.top_wins} of {p.top} in the top half"
        text += ")"
        if p.only_a or p.only_b:
            text += (f"; on {p.only_a + p.only_b} more only one is feasible ({self.best_label} "
                     f"on {p.only_a}, {v.label} on {p.only_b})")
        if p.share is not None:
            text += (f", and its best is the better one in {p.share:.0%} of paired "
                     f"best-of-{p.n_pairs} resamples")
        return text

    def parts_text(self) -> str:
        """The spread's parts, in words."""
        parts = [f"{name} {_fmt(v)}" for name, v in (
            ("step noise", self.step_noise), ("best-of-n sampling IQR", self.sampling),
            ("resolution", self.resolution if self.resolution > 0 else None)) if v is not None]
        if not parts:
            return "the spread between equally good runs is unknown (too few evaluations)"
        return f"spread {_fmt(self.spread or 0.0)} ({', '.join(parts)})"

    def reason(self) -> str:
        """Why the verdict is what it is, in words (what limits the comparison)."""
        r, th = self.runner_up, self.thresholds
        if r.verdict == "differ":
            if r.paired:
                p = r.pairing
                return (f"{self.best_label} is better on too many {self.points} for "
                        f"chance (sign test p = {min(p.sign_p, p.top_sign_p):.2g}, "
                        f"{th.sign_alpha:g} needed), and the gap exceeds the step noise and the "
                        "resolution")
            return (f"the gap exceeds the spread (fewer than {th.min_pairs} {self.points}: "
                    "judged unpaired)")
        if self.limit is None:
            return "the spread is unknown: nothing tells a difference from chance"
        if self.limit == "resolution":
            examples = self.metric_resolution.examples_text(self.resolution)
            return (f"the gap is not larger than the metric's resolution "
                    f"({_fmt(self.resolution)}" + (f", {examples}: a few examples or one "
                                                   "binomial standard error" if examples
                                                   else "") + ")")
        if self.limit == "step_noise":
            return (f"the gap is not larger than the step-to-step noise late in training "
                    f"({_fmt(self.step_noise or 0.0)})")
        if r.paired and not any(x >= self.gap for x in
                                _parts(self.step_noise, self.sampling, self.resolution).values()):
            p = r.pairing
            why = (f" (sign test p = {min(p.sign_p, p.top_sign_p):.2g}, {th.sign_alpha:g} "
                   "needed)")
            what = "seed" if self.replicates else "nuisance point"
            return (f"the paired evidence is not conclusive{why}: which study is better "
                    f"depends on the {what}, so it is limited by {self.sampled}")
        return (f"the gap is not larger than the best-of-n sampling IQR "
                f"({_fmt(self.sampling or 0.0)}): limited by {self.sampled}")

    def summary(self) -> str:
        """The verdict once, with its numbers: the isolation finding's message and the isolation
        plot's summary."""
        r = self.runner_up
        verdict = ("the studies differ" if r.verdict == "differ" else
                   "this experiment does not show a difference (within_spread)")
        text = (f"{self.best_label} reached the best {self.metric}, {_fmt(self.best_value)} "
                f"({self.best_trial.label}), against {_fmt(r.value)} for {r.label} "
                f"({r.trial.label}): a gap of {self.gap_text()}. Paired: {self.pairs_text()}. "
                f"{_capital(self.parts_text())}. Verdict: {verdict} — {self.reason()}.")
        for v in self.others:
            text += (f" {v.label}: {_fmt(v.value)}, {self.gap_text(v.gap)} behind, "
                     f"{'differs' if v.verdict == 'differ' else 'no difference shown'}.")
        return text


def _parts(step_noise: float | None, sampling: float | None, res: float) -> dict[Limit, float]:
    """The known parts of the spread (the resolution only for a metric that has one)."""
    parts: dict[Limit, float] = {}
    if step_noise is not None:
        parts["step_noise"] = step_noise
    if sampling is not None:
        parts["sampling"] = sampling
    if res > 0:
        parts["resolution"] = res
    return parts


def _limit(v: Versus, parts: dict[Limit, float]) -> Limit | None:
    """What keeps the gap from being a difference (see the module docstring)."""
    if not parts:
        return None
    if v.verdict == "differ":
        largest: Limit = max(parts, key=parts.__getitem__)
        return largest
    # A gap within the resolution stays unresolved with any number of trials or any noise.
    if parts.get("resolution", 0.0) >= v.gap > 0 or ("resolution" in parts and v.gap == 0):
        return "resolution"
    # Otherwise the largest part the gap does not exceed dominates (pairs that agree have
    # accounted for the sampling: only the noise is left).
    blocking = {k: x for k, x in parts.items() if x >= v.gap
                and not (v.pairs_agree and k == "sampling")}
    if not blocking:
        return "sampling"
    dominant: Limit = max(blocking, key=blocking.__getitem__)
    return dominant


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def compare(data: ExperimentData, th: ComparisonThresholds | None = None) -> Comparison | None:
    """The :class:`Comparison` of ``data``'s studies, or None when fewer than 2 studies have a
    ranked trial. ``th`` defaults to the experiment's ``checks: {comparison: ...}`` over the
    defaults; each set of thresholds is computed once per data."""
    if th is None:
        from tunebook.analysis.checks.registry import thresholds_from_config

        found = thresholds_from_config(data.experiment.checks, data.experiment.source)
        th = found.get(ComparisonThresholds.family, DEFAULTS)
    used = th
    return data.memo(("comparison", used), lambda: _compare(data, used))


def study_label(data: ExperimentData, study: str) -> str:
    """A study named by its scientific values (``num_layers=2``), else by its name."""
    for t in data.trials:
        if t.study == study:
            sci = [f"{k}={v}" for k, v in t.params.items()
                   if k in data.experiment.scientific_values]
            return ", ".join(sci) or study
    return study


def _step_noise(data: ExperimentData, studies: list[str], top_k: int
                ) -> tuple[float | None, tuple[dict[str, Any], ...]]:
    noises = []
    for study in studies:
        for t in data.ranked(study)[:top_k]:
            curve = t.curves.get(data.metric)
            if curve is None:
                continue
            n = stats.late_noise(curve.finite().values)
            if n is not None:
                noises.append({"id": t.id, "label": t.label, "study": study, "noise": n})
    if not noises:
        return None, ()
    return float(np.median([n["noise"] for n in noises])), tuple(noises)


def _compare(data: ExperimentData, th: ComparisonThresholds) -> Comparison | None:
    sign = data.objective.sign
    studies = list(dict.fromkeys([*data.studies, *(t.study for t in data.trials)]))
    bests: list[tuple[str, TrialData, float]] = []
    for study in studies:
        ranked = data.ranked(study)
        if ranked and (v := data.value(ranked[0])) is not None and math.isfinite(v):
            bests.append((study, ranked[0], v))
    if len(bests) < 2:
        return None
    bests.sort(key=lambda e: sign * e[2])
    step_noise, noises = _step_noise(data, studies, th.top_k)
    iqrs = [iqr for s in studies if (iqr := stats.best_of_n_iqr(stats.study_pool(data, s)))
            is not None]
    sampling = float(np.median(iqrs)) if iqrs else None
    res = resolution(data)
    best_study, best_trial, best_value = bests[0]
    res_part = res.min_change(best_value)
    parts = _parts(step_noise, sampling, res_part)
    spread = max(parts.values()) if parts else None
    floor = max(step_noise or 0.0, res_part)
    pool_a = pools_by_index(data, best_study)
    versus = []
    for study, trial, value in bests[1:]:
        p = pairing(pool_a, pools_by_index(data, study), tie=floor)
        gap = abs(best_value - value)
        paired = p.n_pairs >= th.min_pairs and p.share is not None
        agree = paired and min(p.sign_p, p.top_sign_p) <= th.sign_alpha
        differ = agree and gap > floor if paired else stats.separated(gap, spread)
        versus.append(Versus(study, study_label(data, study), trial, value, gap, p, paired,
                             "differ" if differ else "within_spread", agree))
    limit = _limit(versus[0], parts)
    return Comparison(
        metric=data.metric + (" (final)" if data.final else ""), best=best_study,
        best_label=study_label(data, best_study), best_trial=best_trial, best_value=best_value,
        runner_up=versus[0], others=tuple(versus[1:]), step_noise=step_noise,
        sampling=sampling, resolution=res_part, spread=spread, limit=limit, noises=noises,
        metric_resolution=res, thresholds=th, replicates=data.experiment.replicates)

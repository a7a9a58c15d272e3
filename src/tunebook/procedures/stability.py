"""``stability``: where training becomes unstable, and whether warmup or clipping fixes it.

The playbook's "How can optimization failures be debugged and mitigated?", as one procedure:

1. **Sweep** (:meth:`Stability.plan`): one trial per learning rate, constant schedule, no
   warmup, every other searched hyperparameter at the workload's default and every scientific
   one at its first value. The rates are log-spaced (``per_decade`` a decade) from the bottom of
   the base's learning-rate range to its top times ``extend`` (default 100): past the best
   rate, to find where training breaks. A trial is **unstable** (:func:`unstable`) when it is
   infeasible (diverged), reports a non-finite training loss, or spikes: some evaluation of
   the training loss exceeds ``spike_factor`` (default 2) times the smallest value before it.
   ``unstable_base_learning_rate`` is the smallest unstable rate of the sweep. The sweep
   evaluates at least 10 times a trial (every ``min(eval_every, steps // 10)`` steps).
2. **Early-instability run, then the warmup study** (only when the sweep found instability).
   A short run (50 steps at most) at ``unstable_base_learning_rate``, evaluated at every step,
   shows whether training breaks at once (the instability warmup is for) or later, and where.
   The warmup study, as the playbook writes it: ``learning_rate = 10 x
   unstable_base_learning_rate``; ``warmup_steps`` at the powers of ten from 1 up to 10% of
   ``max_train_steps`` (the largest four of them); each run ramps up over ``warmup_steps`` then
   holds the rate for ``post_warmup_steps = 2 x warmup_steps`` (the playbook's "usually
   fine"), but at least twice the step where the instability showed at the unstable rate
   (:meth:`Stability.onset`): a shorter run cannot show it and would pass. The recommendation
   is the shortest stable warmup. Besides a spike, a run above the best stable rate that made
   no progress is unstable (:func:`no_progress`: a collapse to chance is flat).
3. **Clipping** (only when no warmup is stable): the same rate and length as the longest
   warmup run, no warmup, ``grad_clip`` at the 90th percentile (``stats.quantile``, the clipping
   check's rule) of the unclipped per-step ``grad_norm`` of the best stable sweep trials.

The findings come from the procedure checks of :mod:`tunebook.analysis.checks.stability`
(``procedure="stability"``), which read the evidence only; the base's ``checks: {stability:
...}`` sets their thresholds (``long_warmup_share``, the playbook's 5%). The spike factor is an
option here, not a threshold, because the same verdict decides which experiments run next.

The procedure reads the training curves from the store each outcome ran in
(``Outcome.store``): ``run_procedure("stability", base)`` runs it with the default options,
:func:`run_stability` with others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook.analysis import stats
from tunebook.analysis.checks.clipping import DEFAULTS as CLIP_DEFAULTS
from tunebook.analysis.checks.registry import procedure_findings
from tunebook.errors import TunebookError
from tunebook.experiment import Experiment
from tunebook.procedures.base import Outcome, Procedure, Recommendation, procedure, run_procedure
from tunebook.store.api import StoreAPI, TrialRow
from tunebook.store.sql import Store

__all__ = ["SPIKE_FACTOR", "SPIKE_RISE", "STALL_SHARE", "Names", "Stability", "StabilityOptions",
           "best_trials", "derived", "learning_rate_range", "no_progress", "norms_of", "progress",
           "run_stability", "sweep_rates", "trial_ref", "unstable", "unstable_at",
           "warmup_candidates"]

#: A training loss above this times its running minimum is a spike (the default of both
#: procedures' ``spike_factor`` option and of ``--spike-factor``): loss going up, not down.
SPIKE_FACTOR = 2.0
#: ... and by at least this share of the loss's fall so far (from its first evaluation to its
#: running minimum): see :func:`unstable_at`.
SPIKE_RISE = 0.1


@dataclass(frozen=True)
class Names:
    """The hyperparameter names the procedures set (the built-in workloads' by default)."""

    learning_rate: str = "learning_rate"
    warmup_steps: str = "warmup_steps"
    grad_clip: str = "grad_clip"
    schedule: str = "schedule"
    constant: str = "constant"  # the schedule value with a constant rate after warmup
    loss: str = "train_loss"  # the training-loss metric the spike rule reads
    grad_norm: str = "grad_norm"  # the unclipped per-step norm metric


@dataclass(frozen=True)
class StabilityOptions:
    """Options of :class:`Stability` (see the module docstring for their meaning)."""

    steps: int | None = None  # the sweep's max_train_steps (default: the base's)
    extend: float = 100.0
    per_decade: int = 2
    spike_factor: float = SPIKE_FACTOR
    warmups: tuple[int, ...] = ()  # override the warmup list
    names: Names = field(default_factory=Names)


def derived(base: Experiment, procedure_name: str, label: str, *, fixed: dict[str, Any],
            configs: list[dict[str, Any]] | None = None, steps: int | None = None,
            eval_every: int | None = None, drop: Sequence[str] = ()) -> Experiment:
    """``base`` as one study per ``configs`` entry (one trial each; or the base's own studies
    and search without ``configs``), ``fixed`` added to its fixed values; the hyperparameters
    in ``drop`` or set here are taken out of the searched space (they have one role).
    Named ``<base>.<procedure>.<label>``."""
    doc = base.to_dict()
    set_here = set(fixed) | set(drop) | {k for c in configs or () for k in c if k != "name"}
    doc["fixed"] = {**{k: v for k, v in doc["fixed"].items() if k not in set_here}, **fixed}
    doc["nuisance"] = {k: v for k, v in doc["nuisance"].items() if k not in set_here}
    if configs is not None:
        # One trial per configuration: every nuisance value at the workload's default, the
        # scientific ones at their first value (a sweep of one hyperparameter, nothing else).
        first = {k: v[0] for k, v in doc["scientific"].items() if k not in set_here}
        doc["fixed"].update(first)
        doc.update(scientific={}, nuisance={}, configs=configs)
        doc["search"] = {"algorithm": "quasi_random", "trials": 1, "seed": base.search.seed}
        doc.pop("nuisance_for", None)
    doc["name"] = f"{base.name}.{procedure_name}.{label}"
    doc["max_train_steps"] = steps or base.max_train_steps
    doc["eval_every"] = min(eval_every or base.eval_every, doc["max_train_steps"])
    return Experiment.from_dict(doc, source=base.source, base_dir=base.base_dir)


def learning_rate_range(base: Experiment, name: str) -> tuple[float, float]:
    """The base's learning-rate range: its searched range, its scientific values' span, or its
    fixed value (both ends)."""
    if name in base.nuisance:
        spec = base.nuisance[name].to_json()
        if "low" in spec:
            return float(spec["low"]), float(spec["high"])
        values = [float(v) for v in spec.get("values", ())]
        if values:
            return min(values), max(values)
    if name in base.scientific:
        values = [float(v) for v in base.scientific[name]]
        return min(values), max(values)
    if name in base.fixed:
        value = float(base.fixed[name])
        return value, value
    raise TunebookError(f"{base.source}: the experiment has no {name!r} to sweep (searched, "
                        "scientific or fixed); name it with --lr-name")


def sweep_rates(low: float, high: float, extend: float, per_decade: int) -> list[float]:
    """Log-spaced rates from ``low`` to ``high * extend``, ``per_decade`` a decade, rounded to
    3 significant digits."""
    if not 0 < low <= high or extend < 1 or per_decade < 1:
        raise TunebookError(f"learning-rate sweep: needs 0 < low <= high, extend >= 1, "
                            f"per_decade >= 1, got {low}, {high}, {extend}, {per_decade}")
    top = high * extend
    n = max(1, math.ceil(math.log10(top / low) * per_decade - 1e-9))
    return sorted({float(f"{low * (top / low) ** (k / n):.3g}") for k in range(n + 1)})


def warmup_candidates(max_train_steps: int) -> list[int]:
    """The playbook's warmup list: powers of ten from 1 up to 10% of ``max_train_steps``, the
    largest four (the playbook's example tries four orders of magnitude); [1] at the least."""
    out = [10 ** k for k in range(12) if 10 ** k <= max_train_steps // 10]
    return out[-4:] or [1]


def unstable(trial: TrialRow, losses: Sequence[float], spike_factor: float,
             steps: Sequence[int] = ()) -> str | None:
    """Why ``trial`` is unstable, or None: infeasible (diverged), a non-finite training loss,
    or a spike, a loss above ``spike_factor`` times the smallest loss before it. The place is
    the step when ``steps`` (of the ``losses``) are given, else the evaluation's number."""
    return unstable_at(trial, losses, spike_factor, steps)[0]


def unstable_at(trial: TrialRow, losses: Sequence[float], spike_factor: float,
                steps: Sequence[int] = (), start: float | None = None
                ) -> tuple[str | None, int | None]:
    """:func:`unstable`'s reason and the step where it shows (None when not known).

    A spike must also rise by at least ``SPIKE_RISE`` of the way the loss has come down so far
    (``start - lowest``; ``start`` defaults to the first finite loss): near a fitted training
    set a loss of 0.004 that wobbles to 0.01 has doubled, but it is noise, not "a sudden rise
    in the loss after a steady decline" (digits with Adam at a good rate did exactly that). A
    fast rate's first evaluation is already low, so the sweep passes the highest first loss of
    its trials as ``start``: the untrained loss, near enough."""
    if trial.status == "infeasible":
        where = f" at step {trial.infeasible_step}" if trial.infeasible_step else ""
        return (f"diverged{where} ({trial.infeasible_reason or 'infeasible'})",
                trial.infeasible_step)
    lowest = math.inf
    first = start if start is not None else next((v for v in losses if math.isfinite(v)),
                                                 math.nan)
    for i, value in enumerate(losses):
        step = steps[i] if i < len(steps) else None
        where = f"step {step}" if step is not None else f"evaluation {i + 1}"
        if not math.isfinite(value):
            return f"non-finite training loss at {where}", step
        if value > spike_factor * lowest and value - lowest >= SPIKE_RISE * (first - lowest):
            return (f"loss spike at {where}: {value:.4g} > {spike_factor:g} x "
                    f"its running minimum {lowest:.4g}"), step
        lowest = min(lowest, value)
    return None, None


#: A run above the best stable rate that made less than this share of the best rate's
#: progress (``log(first / last)`` of the training loss) made no progress: on digits, two
#: rates that collapsed to chance made 2% of it; a rate that merely learns more slowly than
#: the best one makes far more than 10%.
STALL_SHARE = 0.1


def progress(losses: Sequence[float]) -> float | None:
    """``log(first / last)`` of the finite positive ``losses`` (None: fewer than two)."""
    finite = [v for v in losses if math.isfinite(v) and v > 0]
    return math.log(finite[0] / finite[-1]) if len(finite) >= 2 else None


def no_progress(losses: Sequence[float], best: Sequence[float] = ()) -> str | None:
    """Why a run at a rate above the best one counts as unstable without a spike, or None.

    With ``best`` (the best stable rate's losses): its :func:`progress` is at most
    ``STALL_SHARE`` of the best rate's and it ends no lower than the best rate's first
    evaluation (a run that converged before its first evaluation is flat too, but low).
    Without: it ended no lower than it started. Training that broke before its first
    evaluation and never recovered (a collapse to chance: flat, no spike) looks like that; a
    slow rate below the best one may too, which is why :meth:`Stability.verdicts` asks only
    above the best rate."""
    made = progress(losses)
    if made is None:
        return None
    finite = [v for v in losses if math.isfinite(v) and v > 0]
    reference = progress(best)
    share = ""
    if reference is not None and reference > 0:
        start = next(v for v in best if math.isfinite(v) and v > 0)
        if made > STALL_SHARE * reference or finite[-1] < start:
            return None
        share = f" ({100 * made / reference:.0f}% of the best rate's progress)"
    elif made > 0:
        return None
    return (f"no progress: training loss {finite[0]:.4g} at its first evaluation, "
            f"{finite[-1]:.4g} at the end{share}")


def trial_ref(trial: TrialRow) -> dict[str, Any]:
    """How evidence names a trial: ``{"id": ..., "label": "study #index"}`` (the findings'
    ``trials``)."""
    return {"id": trial.id, "label": f"{trial.study} #{trial.index}"}


def best_trials(trials: Sequence[TrialRow], goal: str, k: int) -> list[TrialRow]:
    """The ``k`` best completed trials with a best value, by ``goal``."""
    done = [t for t in trials if t.status == "completed" and t.best_value is not None]
    sign = 1.0 if goal == "minimize" else -1.0
    return sorted(done, key=lambda t: (sign * (t.best_value or 0.0), t.index))[:k]


def norms_of(store: StoreAPI, trials: Sequence[TrialRow], metric: str) -> list[float]:
    """Every finite recorded ``metric`` value of ``trials`` (all their steps), pooled."""
    if not trials:
        return []
    rows = store.measurements([t.id for t in trials], metric)
    return [v for _, _, _, v in rows if math.isfinite(v)]


@procedure("stability")
class Stability(Procedure):
    """Find the unstable learning rate; study warmup, then clipping; see the module doc."""

    def __init__(self, options: StabilityOptions | None = None,
                 store: StoreAPI | None = None) -> None:
        self.options = options or StabilityOptions()
        self.store = store

    def _store(self, outcome: Outcome) -> StoreAPI:
        """The store ``outcome`` ran in (``Outcome.store``), else the one given at build."""
        store = outcome.store or self.store
        if store is None:
            raise TunebookError("the stability procedure reads training curves: run it with "
                                "run_procedure or run_stability")
        return store

    def plan(self, base: Experiment) -> list[Experiment]:
        n, o = self.options.names, self.options
        low, high = learning_rate_range(base, n.learning_rate)
        rates = sweep_rates(low, high, o.extend, o.per_decade)
        fixed: dict[str, Any] = {n.schedule: n.constant}
        if n.warmup_steps in base.fixed or n.warmup_steps in base.nuisance:
            fixed[n.warmup_steps] = 0
        # At least 10 evaluations a trial: the spike rule reads the curve, and a short sweep
        # with the base's sparse evaluations would show a blown-up run as one flat point.
        steps = o.steps or base.max_train_steps
        return [derived(base, self.name, "sweep", fixed=fixed, steps=steps,
                        eval_every=max(1, min(base.eval_every, steps // 10)),
                        configs=[{"name": f"lr={r:g}", n.learning_rate: r} for r in rates])]

    def verdicts(self, outcome: Outcome) -> list[dict[str, Any]]:
        """One row per trial of ``outcome``: its rate, status, best value, instability (the
        reason, and ``unstable_step`` where it showed).

        Besides :func:`unstable`, a run at a rate above the sweep's best stable rate (every
        run after the sweep is) is unstable when it made no progress (:func:`no_progress`):
        a high rate that collapsed to chance before its first evaluation shows no spike."""
        n = self.options.names
        rows: list[dict[str, Any]] = []
        trials = sorted(outcome.trials, key=lambda t: float(t.params[n.learning_rate]))
        curves = {t.id: self._store(outcome).measurements([t.id], n.loss) for t in trials}
        firsts = [next((v for _, _, _, v in c if math.isfinite(v)), None)
                  for c in curves.values()]
        start = (max((v for v in firsts if v is not None), default=None)
                 if self._kind(outcome) == "sweep" else None)
        for t in trials:
            curve = curves[t.id]
            losses = [v for _, _, _, v in curve]
            steps = [s for _, s, _, _ in curve]
            why, at = (None, None) if t.status == "failed" else unstable_at(
                t, losses, self.options.spike_factor, steps, start)
            rows.append({"study": t.study, "learning_rate": float(t.params[n.learning_rate]),
                         "warmup_steps": t.params.get(n.warmup_steps),
                         "grad_clip": t.params.get(n.grad_clip), "status": t.status,
                         "best_value": t.best_value, "unstable": why, "unstable_step": at,
                         "trial": trial_ref(t), "loss_steps": steps,
                         "losses": [v if math.isfinite(v) else None for v in losses]})
        fine = [r for r in rows if not r["unstable"] and r["status"] == "completed"
                and any(v is not None for v in r["losses"])]
        if self._kind(outcome) != "sweep":
            above, reference = -math.inf, []  # every later run is at or above the unstable rate
        elif fine:
            # The best stable rate: the lowest last training loss.
            best = min(fine, key=lambda r: [v for v in r["losses"] if v is not None][-1])
            above = float(best["learning_rate"])
            reference = [v for v in best["losses"] if v is not None]
        else:
            above, reference = math.inf, []
        for r in rows:
            if r in fine and r["learning_rate"] > above:
                stalled = no_progress([v for v in r["losses"] if v is not None], reference)
                if stalled:
                    r["unstable"], r["unstable_step"] = stalled, (r["loss_steps"] or [None])[0]
        return rows

    def unstable_rate(self, sweep: Outcome) -> float | None:
        """The smallest unstable learning rate of the sweep, or None."""
        bad = [r["learning_rate"] for r in self.verdicts(sweep) if r["unstable"]]
        return min(bad) if bad else None

    def clip_threshold(self, base: Experiment, sweep: Outcome) -> float | None:
        """The 90th percentile of the best stable sweep trials' norms (None: none recorded)."""
        stable_studies = {r["study"] for r in self.verdicts(sweep) if not r["unstable"]}
        best = best_trials([t for t in sweep.trials if t.study in stable_studies],
                           base.objective.goal, CLIP_DEFAULTS.best_trials)
        norms = norms_of(self._store(sweep), best, self.options.names.grad_norm)
        return stats.quantile(norms, CLIP_DEFAULTS.threshold_quantile) if norms else None

    def onset(self, sweep: Outcome, early: Outcome) -> int:
        """The step where training at the unstable rate broke: in the early run (evaluated at
        every step), else in the sweep's trial at that rate; 1 when neither says."""
        rows = self.verdicts(early)
        bad = self.unstable_rate(sweep)
        rows += [r for r in self.verdicts(sweep) if r["learning_rate"] == bad]
        return next((int(r["unstable_step"]) for r in rows if r["unstable_step"]), 1)

    @staticmethod
    def _kind(outcome: Outcome) -> str:
        """``sweep``, ``early``, ``warmup`` or ``clip``: the stage an outcome belongs to."""
        return outcome.experiment.name.rsplit(".", 1)[-1].split("-")[0]

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        n = self.options.names
        kinds = [self._kind(o) for o in outcomes]
        bad = self.unstable_rate(outcomes[0])
        if bad is None or "clip" in kinds:
            return []
        lr = 10 * bad
        if kinds == ["sweep"]:
            # The early-instability run: the unstable rate evaluated at every step of a short
            # run, to see whether training breaks at once (what warmup is for) or later.
            sweep_steps = outcomes[0].experiment.max_train_steps
            return [derived(base, self.name, "early", steps=min(sweep_steps, 50), eval_every=1,
                            fixed={n.schedule: n.constant},
                            configs=[{"name": f"lr={bad:g}", n.learning_rate: bad,
                                      n.warmup_steps: 0}])]
        if kinds == ["sweep", "early"]:
            onset = self.onset(outcomes[0], outcomes[1])
            # 10% of the base's max_train_steps (the training the warmup is for), not the
            # sweep's shortened steps. Each run holds the rate for 2 x warmup_steps (the
            # playbook's "usually fine"), but at least twice the step where the instability
            # showed at the unstable rate: a shorter run cannot show it, and would pass.
            out = []
            for w in self.options.warmups or warmup_candidates(base.max_train_steps):
                steps = w + max(2 * w, 2 * onset)
                out.append(derived(
                    base, self.name, f"warmup-{w}", steps=steps,
                    eval_every=max(1, steps // 30), fixed={n.schedule: n.constant},
                    configs=[{"name": f"warmup={w}", n.learning_rate: lr, n.warmup_steps: w}]))
            return out
        warm = [o for o, k in zip(outcomes, kinds, strict=True) if k == "warmup"]
        if any(not self.verdicts(o)[0]["unstable"] for o in warm):
            return []
        threshold = self.clip_threshold(base, outcomes[0])
        if threshold is None:  # no per-step norms to take the percentile of
            return []
        longest = max(o.experiment.max_train_steps for o in warm)
        return [derived(base, self.name, "clip", steps=longest,
                        eval_every=max(1, longest // 6), fixed={n.schedule: n.constant},
                        configs=[{"name": f"clip={threshold:.4g}", n.learning_rate: lr,
                                  n.warmup_steps: 0, n.grad_clip: threshold}])]

    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        n = self.options.names
        sweep = self.verdicts(outcomes[0])
        names = tuple(o.experiment.name for o in outcomes)
        bad = self.unstable_rate(outcomes[0])
        evidence: dict[str, Any] = {
            "rule": f"unstable: infeasible, a non-finite training loss, a training loss above "
                    f"{self.options.spike_factor:g} x its running minimum (and up by "
                    f"{100 * SPIKE_RISE:g}% of its fall so far), or, above the best stable "
                    f"rate, no progress (under {100 * STALL_SHARE:g}% of the best rate's)",
            "sweep": sweep, "unstable_base_learning_rate": bad,
            "goal": base.objective.goal, "base_max_train_steps": base.max_train_steps}
        by_kind: dict[str, list[Outcome]] = {}
        for o in outcomes[1:]:
            by_kind.setdefault(self._kind(o), []).append(o)
        for o in by_kind.get("early", []):
            evidence["early_run"] = {"steps": o.experiment.max_train_steps, "eval_every": 1,
                                     **self.verdicts(o)[0]}
        warm = [(o.experiment, self.verdicts(o)[0]) for o in by_kind.get("warmup", [])]
        if bad is not None:
            evidence["warmup_study"] = [
                {"max_train_steps": e.max_train_steps,
                 "post_warmup_steps": e.max_train_steps - row["warmup_steps"], **row}
                for e, row in warm]
            evidence["warmup_list"] = [row["warmup_steps"] for _, row in warm]
        clip = [self.verdicts(o)[0] for o in by_kind.get("clip", [])]
        if clip:
            evidence["clipping"] = clip[0]
        # The judgement is the registered checks' (analysis/checks/stability.py), on the
        # evidence alone, with the base file's checks: thresholds.
        findings = tuple(procedure_findings(self.name, evidence, base.checks, base.source))
        if bad is None:
            top = max(r["learning_rate"] for r in sweep)
            return Recommendation(
                self.name, base.name,
                f"training stayed stable up to learning rate {top:g} ({len(sweep)} rates, "
                f"constant schedule): no instability found, so no warmup study was run and "
                f"no warmup is needed for these rates.", evidence, findings, names,
                values={"unstable_base_learning_rate": None})
        lr = 10 * bad
        stable = [row["warmup_steps"] for _, row in warm if not row["unstable"]]
        steps = base.max_train_steps
        if stable:
            w = int(min(stable))
            note = next((f" That is more than {f.evidence['long_warmup_share']:.0%} of "
                         "max_train_steps: it may need to grow." for f in findings
                         if f.check == "long_warmup"), "")
            return Recommendation(
                self.name, base.name,
                f"training becomes unstable at learning rate {bad:g} (the smallest unstable "
                f"rate of the sweep). At 10x that ({lr:g}), the shortest stable warmup of "
                f"{evidence['warmup_list']} is {w} steps: prepend it to the base's schedule "
                f"and train for {steps + w} steps in all ({steps} + {w}).{note}", evidence,
                findings, names,
                values={n.warmup_steps: w, n.learning_rate: lr, "max_train_steps": steps + w,
                        "unstable_base_learning_rate": bad})
        text = (f"training becomes unstable at learning rate {bad:g}; at {lr:g} no warmup of "
                f"{evidence['warmup_list']} (up to 10% of {steps} steps) was stable. ")
        if not clip:
            return Recommendation(
                self.name, base.name, text + f"Clipping was not tried: the stable sweep trials "
                f"recorded no {n.grad_norm!r} to take the 90th percentile of.", evidence,
                findings, names, values={"unstable_base_learning_rate": bad})
        if not clip[0]["unstable"]:
            t = clip[0]["grad_clip"]
            return Recommendation(
                self.name, base.name, text + f"Gradient clipping at {t:.4g} (the 90th "
                f"percentile of the unclipped norms) fixed it.", evidence, findings,
                names, values={n.grad_clip: t, "clip_threshold": t, n.learning_rate: lr,
                               "unstable_base_learning_rate": bad})
        return Recommendation(
            self.name, base.name, text + "Gradient clipping at the 90th percentile did not fix "
            "it either: keep learning rates below the unstable one, or look for the cause "
            "(the playbook: normalisation, residual connections, the optimizer).",
            evidence, findings, names, values={"unstable_base_learning_rate": bad})


def run_stability(base: Experiment, *, options: StabilityOptions | None = None,
                  root: str | Path = "tunebook", store: StoreAPI | str | None = None,
                  workers: int = 1, **run_options: Any) -> Recommendation | None:
    """:func:`run_procedure` with a :class:`Stability` that reads the store it runs in."""
    opened = (store if isinstance(store, Store) else Store(store) if isinstance(store, str)
              else Store.at_root(root))
    try:
        return run_procedure(Stability(options, opened), base, root=root, store=opened,
                             workers=workers, **run_options)
    finally:
        if opened is not store:
            opened.close()


"""``clip``: the playbook's gradient-clipping threshold, from the recorded norms, and a run with it.

The playbook ("How can optimization failures be debugged and mitigated?"): "choose a gradient
clipping threshold based on the 90th percentile of gradient norms". The norms are the
unclipped per-step ``grad_norm`` of the base experiment's best trials (the clipping check's
rule: the best 3 completed trials by the objective, every step of their training pooled,
``stats.quantile`` at 0.9). They come from a finished run of the base in the store; without
one (or run by name, without the store to look in before the first stage), the procedure
first runs the base itself, shortened to ``steps`` if given (stage
``norms``). It then runs the base with ``grad_clip`` fixed at the threshold (stage
``clipped``) and concludes with the threshold, the fraction of the recorded steps it would
have clipped, and the best values with and without it.

Its findings come from the procedure checks of :mod:`tunebook.analysis.checks.stability`
(``procedure="clip"``, the ``clipping`` family's thresholds): ``aggressive_clipping`` (the
threshold would clip more than half of the steps, or none) and ``clipped_run_unstable`` (a
trial of the clipped run still diverges or spikes, by the stability procedure's rule with
``spike_factor``).
"""

from __future__ import annotations

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
from tunebook.procedures.stability import (
    SPIKE_FACTOR,
    Names,
    best_trials,
    derived,
    norms_of,
    trial_ref,
    unstable,
)
from tunebook.store.api import StoreAPI, TrialRow
from tunebook.store.sql import Store

__all__ = ["Clip", "ClipOptions", "run_clip"]


@dataclass(frozen=True)
class ClipOptions:
    """Options of :class:`Clip`: the short run's steps (default: the base's), the quantile,
    and the spike factor of the instability rule the clipped run is judged by."""

    steps: int | None = None
    quantile: float = CLIP_DEFAULTS.threshold_quantile
    spike_factor: float = SPIKE_FACTOR
    names: Names = field(default_factory=Names)


@procedure("clip")
class Clip(Procedure):
    """The 90th-percentile clipping threshold and a run with it; see the module docstring."""

    def __init__(self, options: ClipOptions | None = None,
                 store: StoreAPI | None = None) -> None:
        self.options = options or ClipOptions()
        self.store = store

    def _store(self, outcomes: Sequence[Outcome] = ()) -> StoreAPI | None:
        """The store the outcomes ran in (``Outcome.store``), else the one given at build."""
        return next((o.store for o in outcomes if o.store is not None), self.store)

    def recorded(self, base: Experiment, store: StoreAPI | None
                 ) -> tuple[list[TrialRow], list[float]]:
        """The base's best trials in ``store`` that recorded norms, and their norms pooled
        (none without a store: the procedure then runs the base first)."""
        row = None if store is None else store.get_experiment(base.name)
        if store is None or row is None:
            return [], []
        trials = store.trials(row.id)
        best = best_trials(trials, base.objective.goal, len(trials))
        with_norms = [t for t in best if norms_of(store, [t], self.options.names.grad_norm)]
        chosen = with_norms[:CLIP_DEFAULTS.best_trials]
        return chosen, norms_of(store, chosen, self.options.names.grad_norm)

    def _source(self, base: Experiment,
                outcomes: Sequence[Outcome]) -> tuple[str, list[TrialRow], list[float]]:
        store = self._store(outcomes)
        if store is not None and outcomes and outcomes[0].experiment.name.endswith(".norms"):
            metric = self.options.names.grad_norm
            chosen = [t for t in best_trials(outcomes[0].trials, base.objective.goal,
                                             len(outcomes[0].trials))
                      if norms_of(store, [t], metric)][:CLIP_DEFAULTS.best_trials]
            return outcomes[0].experiment.name, chosen, norms_of(store, chosen, metric)
        trials, norms = self.recorded(base, store)
        return base.name, trials, norms

    def _clipped(self, base: Experiment, threshold: float) -> Experiment:
        n = self.options.names
        return derived(base, self.name, "clipped", steps=self.options.steps,
                       fixed={n.grad_clip: threshold})

    def plan(self, base: Experiment) -> list[Experiment]:
        _, _, norms = self._source(base, [])
        if norms:
            return [self._clipped(base, self.threshold(norms))]
        return [derived(base, self.name, "norms", steps=self.options.steps, fixed={},
                        drop=[self.options.names.grad_clip])]

    def threshold(self, norms: Sequence[float]) -> float:
        """The ``quantile`` of the pooled norms."""
        return stats.quantile(norms, self.options.quantile)

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        if len(outcomes) == 1 and outcomes[0].experiment.name.endswith(".norms"):
            _, _, norms = self._source(base, outcomes)
            if not norms:
                raise TunebookError(f"{base.name}: its trials recorded no "
                                    f"{self.options.names.grad_norm!r}: nothing to clip by")
            return [self._clipped(base, self.threshold(norms))]
        return []

    def _judged(self, outcome: Outcome) -> list[dict[str, Any]]:
        """Each trial of ``outcome`` with its instability verdict (the stability procedure's
        rule: diverged, a non-finite or a spiking training loss)."""
        store = self._store([outcome])
        rows = []
        for t in outcome.trials:
            curve = store.measurements([t.id], self.options.names.loss) if store else []
            why = None if t.status == "failed" else unstable(
                t, [v for _, _, _, v in curve], self.options.spike_factor,
                [s for _, s, _, _ in curve])
            rows.append({"trial": trial_ref(t), "status": t.status,
                         "best_value": t.best_value, "unstable": why})
        return rows

    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        source, trials, norms = self._source(base, outcomes)
        t = self.threshold(norms)
        fraction = sum(v > t for v in norms) / len(norms)
        clipped = outcomes[-1]
        ref = [x.best_value for x in trials if x.best_value is not None]
        unclipped_best = (min(ref) if base.objective.goal == "minimize" else max(ref)) if ref \
            else None
        with_clip = clipped.best.best_value if clipped.best is not None else None
        evidence: dict[str, Any] = {
            "norms_from": source, "trials": [f"{x.study}#{x.index}" for x in trials],
            "steps_pooled": len(norms), "quantile": self.options.quantile,
            "median_norm": stats.quantile(norms, 0.5), "clip_threshold": t,
            "fraction_clipped": fraction, "best_without_clipping": unclipped_best,
            "best_with_clipping": with_clip,
            "clipped_run": {k: v for k, v in clipped.result.counts.items() if v},
            "trial_refs": [trial_ref(x) for x in trials],
            "clipped_trials": self._judged(clipped)}
        if with_clip is None:
            verdict = "The clipped run reached no result"
        elif unclipped_best is None:
            verdict = f"The clipped run's best {base.objective.metric} is {with_clip:.4g}"
        else:
            better = (with_clip <= unclipped_best if base.objective.goal == "minimize"
                      else with_clip >= unclipped_best)
            verdict = (f"The clipped run's best {base.objective.metric} is {with_clip:.4g} "
                       f"against {unclipped_best:.4g} without clipping "
                       f"({'no worse' if better else 'worse'})")
        text = (f"clip the gradient norm at {t:.4g}: the {self.options.quantile:.0%} quantile "
                f"of {len(norms)} recorded unclipped norms of {len(trials)} best trial(s) of "
                f"{source}; it would have clipped {fraction:.1%} of those steps. {verdict}.")
        n = self.options.names
        findings = tuple(procedure_findings(self.name, evidence, base.checks, base.source))
        return Recommendation(self.name, base.name, text, evidence, findings,
                              experiments=tuple(o.experiment.name for o in outcomes),
                              values={n.grad_clip: t, "clip_threshold": t})


def run_clip(base: Experiment, *, options: ClipOptions | None = None,
             root: str | Path = "tunebook", store: StoreAPI | str | None = None,
             workers: int = 1, **run_options: Any) -> Recommendation | None:
    """:func:`run_procedure` with a :class:`Clip` that reads the store it runs in."""
    opened = (store if isinstance(store, Store) else Store(store) if isinstance(store, str)
              else Store.at_root(root))
    try:
        return run_procedure(Clip(options, opened), base, root=root, store=opened,
                             workers=workers, **run_options)
    finally:
        if opened is not store:
            opened.close()

"""Where a study's trials come from: its designer, up front or as results come in.

A non-adaptive designer's study is written whole when the run registers the experiment
(:func:`materialize`); an adaptive designer's study starts empty and :class:`Suggestions` adds
its trials while the run goes on, from what the designer has observed, saving the designer's
state with every change so that a resumed run carries on exactly where the last one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunebook.experiment import Experiment
from tunebook.experiment.seeds import seeded_studies
from tunebook.search.designers import (
    Designer,
    Observation,
    designer_class,
    make_designer,
    trial_seed,
)
from tunebook.search.space import SearchSpace, Value
from tunebook.store.api import StoreAPI
from tunebook.store.sql import TERMINAL, NewTrial, StudyRow, StudySpec, TrialRow

__all__ = ["Suggestions", "TrialRows", "materialize"]

TrialRows = dict[str, Sequence[NewTrial]]
SWAP_TRIES = 20  # compare-and-swaps lost to other supervisors in a row before the next poll


def materialize(experiment: Experiment) -> tuple[list[StudySpec], TrialRows]:
    """Studies and their trials ``(index, params, seed)`` for the store.

    Each study searches the same nuisance points (same seed): a paired comparison of the
    scientific values, so differences between studies are not luck of the sampling. With
    conditional hyperparameters (``nuisance_for``) each study searches its own space, whose
    shared dimensions come first: the same shared values at the same index. An adaptive
    designer's study starts empty: its trials come as the run observes results. With
    ``search.seeds`` every study is repeated per seed (:mod:`tunebook.experiment.seeds`).
    """
    studies: list[StudySpec] = []
    trials: TrialRows = {}
    # The same points for every study of one space and seed: computed once per pair.
    points: dict[tuple[int, SearchSpace], tuple[Designer, int, list[dict[str, Value]]]] = {}
    for pos, st in enumerate(seeded_studies(experiment)):
        space = experiment.study_space(st.spec)
        if (st.seed, space) not in points:
            d = _designer(experiment, st.seed, experiment.search.trials, space)
            cap = d.capacity()
            n = experiment.search.trials if cap is None else cap
            points[st.seed, space] = (d, n, d.suggest(() if d.adaptive else range(n)))
        designer, budget, suggested = points[st.seed, space]
        studies.append(StudySpec(st.name, pos, st.spec.scientific, designer.name, st.seed,
                                 budget))
        trials[st.name] = [
            NewTrial(i, {**experiment.fixed, **st.spec.scientific, **nuisance},
                     trial_seed(st.seed, st.name, i))
            for i, nuisance in enumerate(suggested)]
    return studies, trials


def _designer(experiment: Experiment, seed: int, budget: int, space: SearchSpace) -> Designer:
    return make_designer(experiment.search.algorithm, space, seed, budget,
                         experiment.objective.goal, experiment.search.options)


@dataclass
class Suggestions:
    """A run's adaptive designers: they add trials to their studies as results come in.

    The store keeps, per study, ``{"observed": [indices], "designer": designer.state()}``,
    saved after every change (new trials in the same transaction as the state that suggested
    them): a resumed run restores each designer and shows it each finished trial exactly once.
    Trials are shown as they finish (in index order within one call), so a designer whose
    suggestions must not depend on which worker was faster waits for what it needs, as
    ``refine`` waits for whole rounds.
    """

    store: StoreAPI
    experiment: Experiment
    exp_id: int
    studies: list[tuple[StudyRow, Designer, set[int]]]
    #: Each study's stored state as this supervisor last read or wrote it (JSON, by study id):
    #: the expected value of its next compare-and-swap. A poll that changes nothing reads no
    #: state; a lost swap reloads it.
    expected: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, store: StoreAPI, experiment: Experiment, exp_id: int) -> Suggestions:
        """Restore the designer of every adaptive study of the experiment."""
        studies: list[tuple[StudyRow, Designer, set[int]]] = []
        expected: dict[int, str] = {}
        if not designer_class(experiment.search.algorithm)[0].adaptive:
            return cls(store, experiment, exp_id, studies)  # every trial was written up front
        for study in store.studies(exp_id):
            saved = store.designer_state(study.id)
            designer, observed = cls._restored(experiment, study, saved)
            studies.append((study, designer, observed))
            expected[study.id] = json.dumps(saved)
        return cls(store, experiment, exp_id, studies, expected)

    @staticmethod
    def _restored(experiment: Experiment, study: StudyRow,
                  saved: dict[str, Any]) -> tuple[Designer, set[int]]:
        """A study's designer and the indices it has seen, as the store keeps them."""
        specs = {st.name: st.spec for st in seeded_studies(experiment)}
        spec = specs.get(study.name)
        space = experiment.nuisance if spec is None else experiment.study_space(spec)
        d = _designer(experiment, study.seed, study.budget, space)
        d.restore(saved.get("designer", {}))
        return d, set(saved.get("observed", []))

    def top_up(self, wanted: int) -> int:
        """Show each designer its newly finished trials, then ask it for up to ``wanted`` new
        trials (fewer while it waits for results). Returns how many trials were added.

        Several supervisors may share a study (``tunebook worker`` on several machines, a
        ``tunebook run`` beside them): each change is a compare-and-swap of the stored state
        (:meth:`~tunebook.store.sql.Store.swap_designer_state`), and a supervisor that finds
        the state changed by another restores its designer from the store and asks again. So
        the study gets each index once, from a designer that saw the stored history.
        """
        added = 0
        for k, (study, *_) in enumerate(self.studies):
            for _ in range(SWAP_TRIES):
                if study.id not in self.expected:  # built without load(): read it once
                    self._reload(k)
                done = self._top_up_study(k, wanted)
                if done is not None:
                    added += done
                    break
                # Another supervisor moved the study on: this designer is stale.
                self._reload(k)
        return added

    def _reload(self, k: int) -> None:
        """Restore study ``k``'s designer from the state the store holds now."""
        study = self.studies[k][0]
        saved = self.store.designer_state(study.id)
        designer, observed = self._restored(self.experiment, study, saved)
        self.studies[k] = (study, designer, observed)
        self.expected[study.id] = json.dumps(saved)

    @staticmethod
    def _state(designer: Designer, observed: set[int]) -> dict[str, Any]:
        return {"observed": sorted(observed), "designer": designer.state()}

    def _top_up_study(self, k: int, wanted: int) -> int | None:
        """Study ``k``'s top-up from the state it expects stored; None: another supervisor
        changed the state meanwhile (nothing written; this designer is stale)."""
        study, designer, observed = self.studies[k]
        expected = self.expected[study.id]
        trials = self.store.trials(self.exp_id, study=study.name)
        new = [t for t in trials if t.status in TERMINAL and t.index not in observed]
        if new:
            designer.observe([self._observation(t, designer.space) for t in new])
            observed.update(t.index for t in new)
        start = max((t.index + 1 for t in trials), default=0)
        indices = range(start, min(study.budget, start + wanted))
        try:
            points = designer.suggest(indices) if len(indices) else []
        except ValueError:
            # The trials were read after the state: another supervisor's swap in between
            # gives indices this state never handed out (refine and bayesian refuse them).
            if json.dumps(self.store.designer_state(study.id)) != expected:
                return None
            raise
        if not points and not new:
            return 0
        seed, fixed = study.seed, {**self.experiment.fixed, **study.scientific}
        rows = [NewTrial(i, {**fixed, **p}, trial_seed(seed, study.name, i))
                for i, p in zip(indices, points, strict=False)]
        state = self._state(designer, observed)
        added = self.store.swap_designer_state(study.id, json.loads(expected), state, rows)
        if added is not None:
            # A snapshot: the designer's own lists may change after this.
            self.expected[study.id] = json.dumps(state)
        return added

    def _observation(self, t: TrialRow, space: SearchSpace | None = None) -> Observation:
        # The best value ranks trials (as best_trial does); only a completed trial has one.
        value = t.best_value if t.status == "completed" else None
        searched = self.experiment.nuisance if space is None else space  # the study's space
        nuisance = {k: v for k, v in t.params.items() if k in searched}
        return Observation(t.index, nuisance, value, t.status)

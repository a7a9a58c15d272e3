"""References to results (``EXPERIMENT``, ``EXPERIMENT/STUDY``, ``EXPERIMENT/STUDY#INDEX``) and
the replicates behind them: what ``tunebook compare`` and ``tunebook launch`` judge.

A reference names, in one store:

* ``EXPERIMENT``: its best study, the one with the best mean objective over its completed
  trials;
* ``EXPERIMENT/STUDY``: that study (the study name may itself contain ``/`` or ``#``: a name
  that is a study of the experiment is always read as one);
* ``EXPERIMENT/STUDY#INDEX`` (or ``EXPERIMENT/STUDY #INDEX``, the trial's label): one
  trial. Its replicates are those of a retrain of it, the study ``STUDY #INDEX`` of an
  experiment that ``follows: EXPERIMENT`` (the one with the most completed replicates when
  there are several); without a retrain, the trial alone. The original trial is not pooled
  with its retrain: it was selected as the best of a search, so its value is biased upward
  (the winner's curse), and the retrain's seeds are new ones.

The replicates of a study are the objective values (best over training or final, the
experiment's objective) of its completed trials within the current budget; infeasible and
failed ones are counted as failures, never as numbers.
"""

from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass, field
from typing import Any

from tunebook.analysis.data import ExperimentData, TrialData, load
from tunebook.analysis.selection import parse_ref as parse_trial_ref
from tunebook.core.numeric import finite
from tunebook.errors import TunebookError
from tunebook.objective import Objective
from tunebook.store.api import StoreAPI

__all__ = ["Ref", "Replicates", "parse_ref", "replicates", "retrain_study_name",
           "study_stats"]


def retrain_study_name(study: str, index: int) -> str:
    """The name of the study that retrains trial ``index`` of ``study`` (``study #index``)."""
    return f"{study} #{index}"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: an experiment, optionally a study, optionally a trial index."""

    experiment: str
    study: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        out = self.experiment
        if self.study is not None:
            out += f"/{self.study}"
        if self.index is not None:
            out += f"#{self.index}"
        return out


def _unknown(kind: str, text: str, known: list[str], where: str) -> TunebookError:
    close = difflib.get_close_matches(text, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return TunebookError(f"{where}: no {kind} {text!r}{hint}; known: {listed or 'none'}")


def parse_ref(store: StoreAPI, text: str, where: str = "REF") -> Ref:
    """Parse ``text`` against the experiments and studies of ``store`` (TunebookError naming
    ``where`` for an unknown experiment, study or trial)."""
    names = [e.name for e in store.experiments()]
    if text in names:
        return Ref(text)
    cuts = [i for i, c in enumerate(text) if c == "/" and text[:i] in names]
    if not cuts:
        raise _unknown("experiment", text.split("/", 1)[0], names, where)
    name, rest = text[:cuts[-1]], text[cuts[-1] + 1:]
    exp = store.require_experiment(name)
    studies = [st.name for st in store.studies(exp.id)]
    if rest in studies:
        return Ref(name, rest)
    if "#" not in rest:
        raise _unknown(f"study of {name!r} named", rest, studies, where)
    # the trial part reads like every --trial option (selection.parse_ref: "STUDY #INDEX")
    study, idx = parse_trial_ref(rest, studies, name, option=where)
    if not any(t.index == idx for t in store.trials(exp.id, study=study)):
        raise TunebookError(f"{where}: study {study!r} of {name!r} has no trial #{idx}")
    return Ref(name, study, idx)


@dataclass(frozen=True)
class Replicates:
    """The replicates behind a reference.

    Attributes:
        ref: the reference as resolved (its study filled in for an experiment reference).
        source: where the values come from, ``EXPERIMENT/STUDY`` (a retrain's study for a
            trial reference that has one).
        objective: the objective the values follow.
        values: the finite objective values of the completed trials.
        seeds: their training seeds, in the same order.
        infeasible, failed, unfinished: how many trials ended otherwise.
        params: the configuration (the hyperparameters of the first trial; in a replicate
            study every trial has the same).
        seeds_only: True when the values differ only by their training seed (a study of an
            experiment without a nuisance search, or a single trial); False for a study that
            searched nuisance hyperparameters, whose spread is not the trial variance.
    """

    ref: Ref
    source: str
    objective: Objective
    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()
    infeasible: int = 0
    failed: int = 0
    unfinished: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seeds_only: bool = True

    @property
    def n(self) -> int:
        """Number of replicates (completed trials with a finite value)."""
        return len(self.values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the reference, the source, the values and their statistics."""
        return {"ref": str(self.ref), "source": self.source, "metric": self.objective.metric,
                "goal": self.objective.goal, "mode": self.objective.mode,
                "values": list(self.values), "seeds": list(self.seeds), "n": self.n,
                **study_stats(self.values), "infeasible": self.infeasible,
                "failed": self.failed, "unfinished": self.unfinished, "params": self.params,
                "seeds_only": self.seeds_only}


def study_stats(values: tuple[float, ...] | list[float]) -> dict[str, float | None]:
    """``mean``, ``sd`` (sample standard deviation, None below 2 values), ``min``, ``max``."""
    vals = list(values)
    return {"mean": statistics.fmean(vals) if vals else None,
            "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "min": min(vals) if vals else None, "max": max(vals) if vals else None}


def _of(data: ExperimentData, ref: Ref, trials: list[TrialData]) -> Replicates:
    done = [t for t in trials if t.status == "completed" and finite(data.value(t)) is not None]
    return Replicates(
        ref=ref, source=f"{data.name}/{trials[0].study}" if trials else data.name,
        objective=data.objective, values=tuple(float(data.value(t) or 0.0) for t in done),
        seeds=tuple(t.seed for t in done),
        infeasible=sum(t.status == "infeasible" for t in trials),
        failed=sum(t.status == "failed" or (t.status == "completed" and t not in done)
                   for t in trials),
        unfinished=sum(t.status in ("pending", "running", "interrupted") for t in trials),
        params=dict(trials[0].params) if trials else {},
        seeds_only=data.experiment.replicates or len(trials) == 1)


def _load(store: StoreAPI, name: str, final: bool) -> ExperimentData:
    return load(store, name, final=final, curves=False, current=True)


def replicates(store: StoreAPI, text: str, final: bool = False,
               where: str = "REF") -> Replicates:
    """The replicates behind reference ``text`` in ``store`` (see the module); ``final``
    takes each trial's final value instead of its best over training."""
    ref = parse_ref(store, text, where)
    data = _load(store, ref.experiment, final)
    if ref.study is None:
        by_study = {s: _of(data, Ref(ref.experiment, s),
                           [t for t in data.trials if t.study == s]) for s in data.studies}
        usable = {s: r for s, r in by_study.items() if r.values}
        if not usable:
            raise TunebookError(f"{where}: experiment {ref.experiment!r} has no completed "
                                "trial yet")
        sign = data.objective.sign
        best = min(usable, key=lambda s: sign * statistics.fmean(usable[s].values))
        return usable[best]
    if ref.index is None:
        return _of(data, ref, [t for t in data.trials if t.study == ref.study])
    retrained = _retrain_of(store, ref, final)
    if retrained is not None:
        return retrained
    return _of(data, ref, [t for t in data.trials
                           if t.study == ref.study and t.index == ref.index])


def _retrain_of(store: StoreAPI, ref: Ref, final: bool) -> Replicates | None:
    """The replicates of trial ``ref`` in a retrain experiment, if one holds any."""
    assert ref.study is not None and ref.index is not None
    wanted = retrain_study_name(ref.study, ref.index)
    found: list[Replicates] = []
    for e in store.experiments():
        if e.config.get("follows") != ref.experiment:
            continue
        if wanted not in {st.name for st in store.studies(e.id)}:
            continue
        data = _load(store, e.name, final)
        found.append(_of(data, ref, [t for t in data.trials if t.study == wanted]))
    found = [r for r in found if r.n or r.infeasible or r.failed]
    return max(found, key=lambda r: r.n) if found else None

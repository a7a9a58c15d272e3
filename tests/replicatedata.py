"""Stores holding constructed replicates: experiments whose trials end with chosen values, for
the tests of compare, launch, retrain's file and the project page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunebook.experiment import Experiment
from tunebook.store.sql import NewTrial, Store, StudySpec

#: A trial's outcome: its objective value, "infeasible", or None (failed).
Outcome = float | str | None


def config(name: str, metric: str = "val_loss", goal: str = "minimize",
           follows: str | None = None, replicates: bool = False) -> dict[str, Any]:
    """A valid experiment document (the synthetic workload); with ``replicates``, no nuisance
    search (every trial of a study the same configuration)."""
    doc: dict[str, Any] = {
        "name": name, "goal": f"goal of {name}",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": metric, "goal": goal},
        "max_train_steps": 20, "eval_every": 10,
        "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
        "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 1.0}},
        "fixed": {"noise": 0.01},
    }
    if follows is not None:
        doc["follows"] = follows
    if replicates:
        doc["nuisance"] = {}
    return doc


def fake(store: Store, name: str, outcomes: Mapping[str, Sequence[Outcome]],
         metric: str = "val_loss", goal: str = "minimize", follows: str | None = None,
         params: Mapping[str, Mapping[str, Any]] | None = None,
         replicates: bool = False) -> int:
    """Register ``name`` with one study per key of ``outcomes`` and end its trials with those
    outcomes (trial ``i`` of study ``s``: ``arm`` ``s``, ``learning_rate`` 0.1 * (i + 1), unless
    ``params`` gives the study's; with ``replicates`` no nuisance search, ``learning_rate`` 0.1
    for every trial); returns the experiment's id."""
    doc = config(name, metric, goal, follows, replicates)
    exp = Experiment.from_dict(doc)
    specs = [StudySpec(s, k, {}, "quasi_random", 0, len(v))
             for k, (s, v) in enumerate(outcomes.items())]
    def values(s: str, i: int) -> dict[str, Any]:
        lr = 0.1 * (1 if replicates else i + 1)
        return dict((params or {}).get(s) or {"arm": s, "learning_rate": lr, "noise": 0.01})

    trials = {s: [NewTrial(i, values(s, i), 1000 * k + i) for i in range(len(v))]
              for k, (s, v) in enumerate(outcomes.items())}
    eid = store.register(name, exp.identity(), exp.to_dict(), specs, trials)
    while (t := store.claim(eid, "w")) is not None:
        v = outcomes[t.study][t.index]
        if v == "infeasible":
            store.finish(t.id, "w", "infeasible", infeasible_reason="diverged",
                         infeasible_step=10)
        elif v is None:
            store.finish(t.id, "w", "failed", error="boom")
        else:
            store.add_measurements(t.id, [(10, metric, float(v))])
            store.finish(t.id, "w", "completed", best_step=10, best_value=float(v),
                         final_step=10, final_value=float(v))
    return eid

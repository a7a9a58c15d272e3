"""Stores with finished experiments for the report tests (synthetic workloads, in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store


def synthetic(root: Path, name: str = "synthetic", trials: int = 8, **over: Any) -> Store:
    """Two studies of the synthetic workload, some trials diverging (learning_rate > 2)."""
    doc: dict[str, Any] = {
        "name": name, "goal": "Does y matter?",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": 100, "eval_every": 10,
        "search": {"algorithm": "quasi_random", "trials": trials, "seed": 0},
        "scientific": {"y": [0.0, -0.2]},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 10.0,
                                       "scale": "log"},
                     "x": {"type": "float", "low": -1.0, "high": 1.0},
                     "act": {"type": "categorical", "values": ["relu", "tanh"]}},
    }
    doc.update(over)
    run(Experiment.from_dict(doc, source=f"{name}.yaml"), root=root, workers=0)
    return Store.at_root(root)

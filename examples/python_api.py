"""The same experiment file, written in Python, run, and queried for the best trials."""

from __future__ import annotations

import sys
from pathlib import Path

import tunebook
from tunebook import Experiment, Float, Objective, Search


def main(root: str = "tunebook-example") -> None:
    experiment = Experiment(
        name="synthetic-lr",
        goal="Which learning rate range works for the synthetic workload?",
        workload="tunebook.workloads.synthetic:quadratic",
        objective=Objective("val_loss", "minimize"),
        max_train_steps=200,
        eval_every=20,
        search=Search(algorithm="quasi_random", trials=8, seed=0),
        scientific={"y": [0.0, -0.2]},
        nuisance={"learning_rate": Float(1e-4, 10.0, scale="log"),
                  "x": Float(-1.0, 1.0)},
    )
    result = tunebook.run(experiment, root=Path(root), workers=2)
    print(f"{result.counts} in {result.elapsed:.1f}s")
    records = tunebook.trial_records(tunebook.Store.at_root(root), experiment.name)
    for study in ("y=0.0", "y=-0.2"):
        done = [r for r in records if r.study == study and r.best_value is not None]
        best = min(done, key=lambda r: r.best_value or 0.0)
        print(f"{study}: best val_loss {best.best_value:.4f} at step {best.best_step} "
              f"with learning_rate={best.params['learning_rate']:.3g}, x={best.params['x']:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])

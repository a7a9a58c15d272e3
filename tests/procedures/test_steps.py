"""The ``steps`` procedure on a workload whose training set is fit at a known step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import steps_fit
from tunebook import procedures
from tunebook.experiment import Experiment
from tunebook.procedures.steps import Steps
from tunebook.store.sql import Store

from conftest import run_cli, write_experiment


def _file(tmp_path: Path, **overrides: object) -> Path:
    doc: dict[str, object] = {
        "name": "fit", "workload": "steps_fit:train",
        "objective": {"metric": "val_error", "goal": "minimize"},
        "max_train_steps": 400, "eval_every": 20, "scientific": {},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0,
                                       "scale": "log"}},
        "fixed": {"weight_decay": 0.1, "schedule": "cosine"}}
    doc.update(overrides)
    return write_experiment(tmp_path, **doc)


def _within(steps: int, low: float, high: float, trials: int, every: int) -> bool:
    """The stated tolerance: the recommendation is an evaluation step, at or after the step at
    which the fastest grid point's error reaches the 0.01 threshold (99% of its exact fit
    step) and less than one evaluation interval after its exact fit step."""
    grid = np.exp(np.linspace(math.log(low), math.log(high), trials))
    exact = min(steps_fit.fit_step(float(lr)) for lr in grid)
    return steps % every == 0 and 0.99 * exact - 1e-9 <= steps < exact + every


def test_recommends_the_fastest_fit_step_and_resumes(tmp_path: Path) -> None:
    base = Experiment.from_yaml(_file(tmp_path))
    root = tmp_path / "root"
    rec = procedures.run_procedure(Steps(trials=8), base, root=root, workers=0)
    assert rec is not None
    assert _within(rec.values["max_train_steps"], 1e-3, 1.0, 8, 20)
    assert rec.evidence["compute_bound"] is False and not rec.evidence["boundary_problem"]
    assert "not compute-bound" in rec.text and "when in doubt, train longer" in rec.text
    # The sweep fixed weight decay at 0 and used a constant schedule (the workload refuses
    # another; weight decay 0.1 would have doubled the steps).
    store = Store.at_root(root, create=False)
    try:
        config = store.require_experiment("fit.steps.lr-sweep").config
        assert config["fixed"]["weight_decay"] == 0 and config["fixed"]["schedule"] == "constant"
        exp_id = store.require_experiment("fit.steps.lr-sweep").id
        before = [(t.id, t.finished_at) for t in store.trials(exp_id)]
    finally:
        store.close()
    assert len(before) == 8
    again = procedures.run_procedure("steps", base, root=root, workers=0)
    assert again is not None and again.values == rec.values
    store = Store.at_root(root, create=False)
    try:  # the second call ran nothing new
        assert [(t.id, t.finished_at) for t in store.trials(exp_id)] == before
        assert len(procedures.recommendations(store, "fit", "steps")) == 2
    finally:
        store.close()


def test_never_fit_is_compute_bound_and_recommends_no_value(tmp_path: Path) -> None:
    base = Experiment.from_yaml(_file(tmp_path, max_train_steps=100))
    rec = procedures.run_procedure(Steps(trials=4), base, root=tmp_path / "root", workers=0)
    assert rec is not None and rec.values == {}
    assert rec.evidence["compute_bound"] is True
    assert all(t["fit_step"] is None for t in rec.evidence["trials"])
    assert "No recommendation" in rec.text and "rounds" in rec.text


def test_a_training_set_that_cannot_be_fit_is_not_compute_bound(tmp_path: Path) -> None:
    base = Experiment.from_yaml(_file(tmp_path, fixed={"floor": 0.2}))
    rec = procedures.run_procedure(Steps(trials=4), base, root=tmp_path / "root", workers=0)
    assert rec is not None and rec.values == {} and rec.evidence["compute_bound"] is False
    assert "assumption" in rec.text and "looks compute-bound" not in rec.text


def test_a_range_of_too_small_learning_rates_is_flagged(tmp_path: Path) -> None:
    lr = {"type": "float", "low": 1e-4, "high": 1e-2, "scale": "log"}
    base = Experiment.from_yaml(_file(tmp_path, nuisance={"learning_rate": lr},
                                      max_train_steps=1000, eval_every=50))
    rec = procedures.run_procedure(Steps(trials=6), base, root=tmp_path / "root", workers=0)
    assert rec is not None and rec.evidence["boundary_problem"] is True
    assert rec.findings and "edge of the sweep" in rec.text
    assert _within(rec.values["max_train_steps"], 1e-4, 1e-2, 6, 50)


def test_the_command_end_to_end_in_json(tmp_path: Path) -> None:
    path = _file(tmp_path)
    proc = run_cli("steps", str(path), "--root", str(tmp_path / "root"), "--workers", "0",
                   "--trials", "4", "--format", "json", check=True)
    out = json.loads(proc.stdout)
    assert _within(out["recommendation"]["max_train_steps"], 1e-3, 1.0, 4, 20)
    assert out["evidence"]["experiments"] == ["fit.steps.lr-sweep"]
    text = run_cli("steps", str(path), "--root", str(tmp_path / "root"), "--workers", "0",
                   "--trials", "4", check=True).stdout
    assert text.startswith("max_train_steps = ")


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("steps", str(_file(tmp_path)), "--trials", "1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--trials" in proc.stderr
    proc = run_cli("steps", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert run_cli("steps", "--help").returncode == 0

"""The procedures end to end on a real built-in workload (the digits MLP, tiny budgets), as a
new user runs them: the command, the store, the findings, the procedure's page."""

from __future__ import annotations

import json
from pathlib import Path

from tunebook.procedures import recommendations
from tunebook.store.sql import Store

from conftest import run_cli, write_experiment


def _digits(tmp_path: Path, **overrides: object) -> Path:
    doc: dict[str, object] = {
        "name": "digits", "workload": "tunebook.workloads.digits:train_mlp",
        "objective": {"metric": "val_error", "goal": "minimize"},
        "max_train_steps": 120, "eval_every": 20, "scientific": {},
        "search": {"algorithm": "quasi_random", "trials": 4, "seed": 0},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2,
                                       "scale": "log"}},
        "fixed": {"batch_size": 64, "width": 32, "weight_decay": 1e-4, "schedule": "cosine"}}
    doc.update(overrides)
    return write_experiment(tmp_path, **doc)


def test_steps_on_digits_recommends_a_step_budget_with_its_page(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = run_cli("steps", str(_digits(tmp_path)), "--root", str(root), "--workers", "0",
                   "--trials", "4", "--format", "json", check=True)
    out = json.loads(proc.stdout)
    steps = out["recommendation"].get("max_train_steps")
    # Adam fits the digits training set (error <= 1%) well within 120 steps at the best rates
    # of the sweep; the recommendation is an evaluation step of the sweep.
    assert steps is not None and steps % 20 == 0 and 20 <= steps <= 120
    assert out["evidence"]["experiments"] == ["digits.steps.lr-sweep"]
    store = Store.at_root(root)
    try:
        (rec,) = recommendations(store, "digits", "steps")
        assert rec.values["max_train_steps"] == steps
        (sweep,) = [e for e in store.experiments() if e.name == "digits.steps.lr-sweep"]
        trials = store.trials(sweep.id)
        assert len(trials) == 4 and {t.status for t in trials} == {"completed"}
        # The sweep removed the regulariser and the schedule, as the playbook's procedure says.
        assert all(t.params["weight_decay"] == 0 and t.params["schedule"] == "constant"
                   for t in trials)
    finally:
        store.close()
    page = root / "reports" / "digits--steps.html"
    assert page.exists() and "max_train_steps" in page.read_text(encoding="utf-8")


def test_stability_on_digits_names_the_unstable_rate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = _digits(tmp_path, max_train_steps=60, eval_every=10,
                   fixed={"batch_size": 64, "width": 32, "optimizer": "momentum"})
    proc = run_cli("stability", str(path), "--root", str(root), "--workers", "0",
                   "--format", "json", check=True)
    out = json.loads(proc.stdout)
    bad = out["recommendation"]["unstable_base_learning_rate"]
    # Momentum SGD on the MLP breaks somewhere in the sweep to 100x the range's top (3.0).
    assert bad is not None and 0.03 < bad <= 3.0
    sweep = out["evidence"]["sweep"]
    assert all(r["unstable"] is None for r in sweep if r["learning_rate"] < bad)
    assert (root / "reports" / "digits--stability.html").exists()
    checks = {f["check"] for f in out["evidence"]["findings"]}
    assert "unstable_learning_rate" in checks

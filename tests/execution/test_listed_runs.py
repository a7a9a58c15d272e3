"""Replicate studies and listed configurations, run for real: run, resume, report, findings,
``best`` and ``trials`` (the synthetic workload, in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.cli import main
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

BASE: dict[str, Any] = {
    "name": "listed",
    "goal": "which configuration, over several seeds?",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "max_train_steps": 30,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 5, "seed": 2},
    "nuisance": {},
    "fixed": {"noise": 0.05},
}


def write(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump({**BASE, **overrides}, sort_keys=False), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def findings(capsys: pytest.CaptureFixture[str], root: Path) -> list[dict[str, Any]]:
    out = json.loads(cli(capsys, "findings", "listed", "--root", str(root), "--format", "json"))
    assert isinstance(out, list)
    return out


def test_replicates_run_resume_and_report(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scientific={"x": [0.0, 0.3]}, fixed={"noise": 0.05,
                                                                "learning_rate": 0.03})
    root = tmp_path / "root"
    assert run(Experiment.from_yaml(path), root=root, workers=0).counts == {"completed": 10}
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("listed").id)
    for study in ("x=0.0", "x=0.3"):
        mine = [t for t in trials if t.study == study]
        assert len({json.dumps(t.params, sort_keys=True) for t in mine}) == 1  # one config
        assert len({t.seed for t in mine}) == 5  # five seeds
        assert len({t.best_value for t in mine}) == 5  # the seed moves the result
    # Resume: nothing to do; more trials: more seeds of the same configuration.
    assert run(Experiment.from_yaml(path), root=root, workers=0).counts == {"completed": 10}
    assert [t.attempts for t in store.trials(store.require_experiment("listed").id)] == [1] * 10
    more = write(tmp_path, scientific={"x": [0.0, 0.3]},
                 fixed={"noise": 0.05, "learning_rate": 0.03},
                 search={**BASE["search"], "trials": 7})
    assert run(Experiment.from_yaml(more), root=root, workers=0).counts == {"completed": 14}
    # The checks about the search space have nothing to say about an empty one.
    found = findings(capsys, root)
    checks = {f["check"] for f in found}
    assert not checks & {"boundary", "no_effect", "too_few_trials", "batch_size_tuned"}
    assert "isolation" in checks
    # Trial i of two replicate studies is a pair of seeds: the words say so.
    for f in found:
        if f["check"] in ("isolation", "enough_trials"):
            assert "nuisance" not in f["message"] + f["action"], f
    iso = next(f for f in found if f["check"] == "isolation")
    assert "seed pairs" in iso["message"]
    best = json.loads(cli(capsys, "best", "listed", "--root", str(root), "--format", "json"))
    assert set(best) == {"x=0.0", "x=0.3"}
    rows = json.loads(cli(capsys, "trials", "listed", "--root", str(root), "--format", "json"))
    assert len(rows) == 14
    cli(capsys, "report", "listed", "--root", str(root))
    html = (root / "reports" / "listed.html").read_text(encoding="utf-8")
    assert "x=0.3" in html and "seed pairs (replicates)" in html


@pytest.mark.parametrize("algorithm", ["random", "grid", "refine"])
def test_replicates_with_every_designer(tmp_path: Path, algorithm: str) -> None:
    path = write(tmp_path, search={"algorithm": algorithm, "trials": 4, "seed": 0})
    result = run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    assert result.counts == {"completed": 4}


def test_listed_configurations_through_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = [{"name": "good", "learning_rate": 0.03},
               {"learning_rate": 0.3, "y": 0.5},
               {"learning_rate": "1e-3"}]
    path = write(tmp_path, configs=configs,
                 nuisance={"x": {"type": "float", "low": -1.0, "high": 1.0}},
                 search={"algorithm": "quasi_random", "trials": 6, "seed": 1})
    root = tmp_path / "root"
    cli(capsys, "run", str(path), "--root", str(root), "--workers", "0", "--quiet")
    names = ["good", "learning_rate=0.3,y=0.5", "learning_rate=0.001"]
    store = Store.at_root(root)
    exp_id = store.require_experiment("listed").id
    assert [s.name for s in store.studies(exp_id)] == names
    trials = store.trials(exp_id)
    by_study: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(trials, key=lambda t: t.index):
        by_study.setdefault(t.study, []).append(t.params)
    assert all(p["learning_rate"] == 0.03 and "y" not in p for p in by_study["good"])
    assert all(p["y"] == 0.5 for p in by_study[names[1]])
    # the studies share the nuisance points (a paired comparison)
    assert [p["x"] for p in by_study["good"]] == [p["x"] for p in by_study[names[2]]]
    # resume: the same experiment, nothing new
    out = cli(capsys, "run", str(path), "--root", str(root), "--workers", "0", "--quiet")
    assert len(store.trials(exp_id)) == 18, out
    best = json.loads(cli(capsys, "best", "listed", "--root", str(root), "--format", "json"))
    assert list(best) == names
    found = findings(capsys, root)
    iso = next(f for f in found if f["check"] == "isolation")
    assert "learning_rate=0.03" in iso["message"]  # studies named by their values
    cli(capsys, "report", "listed", "--root", str(root))
    table = (root / "reports" / "listed.md").read_text(encoding="utf-8")
    assert all(f"| {n} |" in table for n in names)
    html = (root / "reports" / "listed.html").read_text(encoding="utf-8")
    assert "learning_rate" in html and "scientific" in html


def test_a_changed_list_is_another_experiment(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    path = write(tmp_path, configs=[{"learning_rate": 0.03}])
    run(Experiment.from_yaml(path), root=root, workers=0)
    changed = write(tmp_path, configs=[{"learning_rate": 0.03}, {"learning_rate": 0.1}])
    capsys.readouterr()
    code = main(["run", str(changed), "--root", str(root), "--workers", "0", "--quiet"])
    assert code != 0
    err = capsys.readouterr().err
    assert "listed" in err and err.count("\n") == 1

"""Every example in examples/ runs (at a small size) in the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunebook.analysis.results import trial_records
from tunebook.store.sql import Store

from conftest import run_cli

EXAMPLES = Path(__file__).parent.parent / "examples"


def _shrunk(src: Path, dest: Path, steps: int, trials: int) -> Path:
    doc = yaml.safe_load(src.read_text())
    doc["max_train_steps"] = steps
    doc["eval_every"] = max(1, steps // 4)
    doc["search"]["trials"] = trials
    shutil.copytree(EXAMPLES, dest, dirs_exist_ok=True)
    path = dest / src.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_every_yaml_example_is_covered() -> None:
    # The mnist1d and text examples run (small) in
    # tests/workloads/test_workloads.py::test_example_runs_at_a_small_size; the Lightning one in
    # tests/integrations/test_lightning.py, transformers_tiny in
    # tests/integrations/test_transformers.py.
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "command_momentum.yaml", "digits_depth.yaml", "lightning_digits.yaml",
        "mnist1d_cnn_depth.yaml", "mnist1d_mlp_dropout.yaml", "text_warmup.yaml",
        "transformers_tiny.yaml"]


def test_digits_depth(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = _shrunk(EXAMPLES / "digits_depth.yaml", tmp_path / "ex", steps=60, trials=2)
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--workers", "2", check=True)
    records = trial_records(Store.at_root(tmp_path / "r"), "digits-depth")
    assert len(records) == 4 and {r.study for r in records} == {"num_layers=1", "num_layers=2"}
    for r in records:
        assert r.status in ("completed", "infeasible"), r.error
    assert any(r.status == "completed" and 0 <= (r.best_value or -1) <= 1 for r in records)
    _coherent(tmp_path / "r", "digits-depth", examples=True)


def _coherent(root: Path, name: str, examples: bool = False) -> None:
    """The example's findings give no opposite advice; a built-in workload's metrics carry
    their resolution (the validation set's size) and chance level."""
    from tunebook.analysis import load
    from tunebook.analysis.checks import run_checks
    from tunebook.analysis.findings import contradictions
    from tunebook.analysis.resolution import resolution

    data = load(Store.at_root(root), name)
    assert not contradictions(run_checks(data))
    if examples:
        res = resolution(data)
        assert res.source == "reported" and res.examples and res.quantum == 1 / res.examples
        assert res.chance is not None and 0.5 < res.chance < 1


def test_command_momentum(tmp_path: Path) -> None:
    path = _shrunk(EXAMPLES / "command_momentum.yaml", tmp_path / "ex", steps=100, trials=4)
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--workers", "2", check=True)
    records = trial_records(Store.at_root(tmp_path / "r"), "quadratic-momentum")
    assert len(records) == 8
    assert {r.status for r in records} <= {"completed", "infeasible"}
    assert sum(r.status == "completed" for r in records) >= 4
    _coherent(tmp_path / "r", "quadratic-momentum")


def test_python_api(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "y=0.0: best val_loss" in proc.stdout and "y=-0.2: best val_loss" in proc.stdout

"""tunebook.script, the helper for command workloads written in Python; the documented example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tunebook
from tunebook import script
from tunebook.analysis.results import trial_records
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial
from tunebook.execution.workload import CommandWorkload
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "command-workloads.md"
EXAMPLE = ROOT / "examples" / "command" / "resumable.py"


@pytest.fixture
def same_tunebook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands (run in the experiment's folder) import the tunebook under test: a relative
    PYTHONPATH such as ``src`` would mean another folder there."""
    paths = [str(Path(tunebook.__file__).resolve().parents[1])]
    paths += [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


@pytest.fixture
def no_tunebook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TUNEBOOK_"):
            monkeypatch.delenv(name)


def test_import_is_light(same_tunebook: None) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tunebook.script"],
                          capture_output=True, text=True, check=True)
    modules = {line.split("|")[-1].strip().split(".")[0]
               for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "tunebook" in modules
    assert modules.isdisjoint({"torch", "numpy", "sqlalchemy", "sklearn", "scipy"}), modules


def test_hparams_are_typed_like_tunebook_writes_them() -> None:
    argv = ["--lr=0.001", "--small=1e-05", "--layers=3", "--neg=-2", "--bn=true", "--ema=false",
            "--opt=adam", "--odd=nan", "--empty=", "--flag", "positional", "--", "--eq=a=b"]
    assert script.hparams(argv) == {
        "lr": 0.001, "small": 1e-05, "layers": 3, "neg": -2, "bn": True, "ema": False,
        "opt": "adam", "odd": pytest.approx(float("nan"), nan_ok=True), "empty": "",
        "flag": True, "eq": "a=b"}
    assert isinstance(script.hparams(["--layers=3"])["layers"], int)


def test_report_and_infeasible_print_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    script.report(10, loss=0.5, count=3, bad=float("nan"))
    with pytest.raises(SystemExit) as info:
        script.infeasible("diverged", 20)
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["loss"] == 0.5 and json.loads(lines[0])["count"] == 3
    assert lines[0].startswith('{"step": 10,') and "NaN" in lines[0]
    assert json.loads(lines[1]) == {"infeasible": "diverged", "step": 20}
    with pytest.raises(TypeError, match="step"):
        script.report(1.5, loss=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss"):
        script.report(1, loss="high")  # type: ignore[arg-type]


def test_environment(monkeypatch: pytest.MonkeyPatch, no_tunebook_env: None,
                     tmp_path: Path) -> None:
    assert (script.start_step(), script.resume_dir(), script.trial_dir()) == (0, None, None)
    assert (script.max_train_steps(5), script.eval_every(2), script.seed()) == (5, 2, 0)
    with pytest.raises(RuntimeError, match="TUNEBOOK_MAX_TRAIN_STEPS is not set"):
        script.max_train_steps()
    monkeypatch.setenv("TUNEBOOK_START_STEP", "120")
    monkeypatch.setenv("TUNEBOOK_RESUME_FROM", str(tmp_path))
    monkeypatch.setenv("TUNEBOOK_MAX_TRAIN_STEPS", "300")
    assert (script.start_step(), script.resume_dir(), script.max_train_steps(5)) == (
        120, tmp_path, 300)


def test_checkpoint_announces_the_folder_once_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TUNEBOOK_CHECKPOINT_DIR", str(tmp_path / "staging"))
    with script.checkpoint(10) as folder:
        assert folder.is_dir() and not any(folder.iterdir())
        (folder / "w.json").write_text("[1]")
        assert capsys.readouterr().out == ""  # nothing announced inside the block
    assert json.loads(capsys.readouterr().out) == {"checkpoint": 10, "path": str(folder)}
    assert folder.parent == tmp_path / "staging" and (folder / "w.json").exists()
    with pytest.raises(RuntimeError), script.checkpoint(20) as failed:
        (failed / "w.json").write_text("partial")
        raise RuntimeError("disk full")
    assert not failed.exists() and capsys.readouterr().out == ""
    with script.checkpoint(10) as again:
        pass
    assert again != folder  # every checkpoint gets a fresh folder
    with pytest.raises(TypeError):
        script.checkpoint(-1).__enter__()


def test_checkpoint_outside_tunebook_is_a_temporary_folder(
        no_tunebook_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    with script.checkpoint(10) as folder:
        (folder / "w.json").write_text("[1]")
    assert not folder.exists() and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- the docs example
def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def test_the_documented_script_is_the_example_file() -> None:
    assert EXAMPLE.read_text() in _blocks("python")


def test_the_documented_experiment_runs(tmp_path: Path, same_tunebook: None) -> None:
    (yaml_text,) = [b for b in _blocks("yaml") if b.startswith("name:")]
    doc = yaml.safe_load(yaml_text)
    doc["max_train_steps"], doc["eval_every"] = 40, 10
    doc["search"]["trials"] = 2
    (tmp_path / "sgd.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(EXAMPLE, tmp_path / doc["command"].split()[-1])
    result = run(Experiment.from_yaml(tmp_path / "sgd.yaml"), root=tmp_path / "r", workers=2)
    assert result.counts.get("completed") == 4, result.counts
    store = Store.at_root(tmp_path / "r")
    records = trial_records(store, doc["name"])
    assert all(r.best_value is not None and r.best_value < 10 for r in records)
    steps = {s for _, s, _, _ in store.measurements()}
    assert steps == {10, 20, 30, 40}
    folders = list((tmp_path / "r" / "runs").glob("*/*/trial-*/checkpoints"))
    assert len(folders) == 4
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
            "step-0000000030", "step-0000000040"]
        manifest = json.loads((folder / "step-0000000040" / "tunebook-manifest.json").read_text())
        assert set(manifest["files"]) == {"state.json"}


class _Rows:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], float] = {}

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        for step, metric, value in rows:
            assert (step, metric) not in self.rows, (step, metric)  # exactly once
            self.rows[step, metric] = value

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        pass

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        dropped = [key for key in self.rows if key[0] > after_step]
        for key in dropped:
            del self.rows[key]
        return len(dropped)


def test_the_example_resumes_exactly(tmp_path: Path, same_tunebook: None) -> None:
    """Train 200 steps in one go; then 100 steps, and resume those to 200 (from the checkpoint
    at 100, or from the one at 75 when the one at 100 is corrupt): the same curve, bit for bit,
    every evaluation stored once."""
    workload = CommandWorkload(("python", str(EXAMPLE)), base_dir=str(tmp_path))

    def trial(name: str, steps: int, sink: _Rows) -> Trial:
        return Trial(hparams={"learning_rate": 0.05, "batch_size": 4}, max_train_steps=steps,
                     eval_every=25, seed=11, dir=tmp_path / name, sink=sink)

    whole = _Rows()
    workload.run(trial("whole", 200, whole))
    assert sorted({s for s, _ in whole.rows}) == list(range(25, 201, 25))

    for corrupt in (False, True):
        sink = _Rows()
        first = trial(f"resumed-{corrupt}", 100, sink)
        workload.run(first)
        if corrupt:
            state = first.checkpoint_root / "step-0000000100" / "state.json"
            state.write_text(state.read_text().replace("1", "2", 1))
        second = trial(f"resumed-{corrupt}", 200, sink)
        assert second.start_step == 100
        sink.truncate_measurements(0, 100)
        workload.run(second)
        assert second.start_step == (75 if corrupt else 100)
        assert sink.rows == whole.rows

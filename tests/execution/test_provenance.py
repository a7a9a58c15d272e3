"""Provenance: the commit, uncommitted changes, and the run's own files that git lacks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunebook.execution import provenance as prov
from tunebook.execution.provenance import GitState, git_state, provenance, workload_files
from tunebook.experiment import Experiment
from tunebook.report.html import reproduction
from tunebook.store.api import RunRow


def _run(record: dict[str, Any]) -> RunRow:
    """A stored run whose provenance is ``record``, as the report reads it."""
    return RunRow(id=1, started_at=0.0, finished_at=None, host="h", workers=1,
                  provenance=record, outcome=None)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A work tree with one commit: README, exp/committed.yaml, exp/train.py, lib/model.py."""
    root = tmp_path / "repo"
    (root / "exp").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "README").write_text("r\n")
    (root / "exp" / "committed.yaml").write_text("c\n")
    (root / "exp" / "train.py").write_text("print('train')\n")
    (root / "lib" / "model.py").write_text("m = 1\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_a_clean_tree(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git_state(repo / "exp", ["train.py", "committed.yaml"]) == GitState(head, False)


def test_modified_and_untracked_files_are_named(repo: Path) -> None:
    (repo / "exp" / "train.py").write_text("print('changed')\n")
    (repo / "exp" / "new.yaml").write_text("n\n")
    (repo / "exp" / "run.log").write_text("ignored files are not in git either\n")
    (repo / "lib" / "model.py").write_text("m = 2\n")
    git(repo, "add", "lib/model.py")  # staged, not committed: still a change
    state = git_state(repo / "exp", ["new.yaml", "train.py", "run.log", "committed.yaml",
                                     repo / "lib" / "model.py", "missing.py"])
    assert state.commit == git(repo, "rev-parse", "HEAD").strip() and state.dirty
    assert state.modified == ("exp/train.py", "lib/model.py")
    assert state.untracked == ("exp/new.yaml", "exp/run.log")


def test_untracked_files_alone_leave_the_tree_clean(repo: Path) -> None:
    (repo / "exp" / "new.yaml").write_text("n\n")
    state = git_state(repo, ["exp/new.yaml"])
    assert not state.dirty and state.modified == () and state.untracked == ("exp/new.yaml",)


def test_renames_and_odd_names(repo: Path) -> None:
    git(repo, "mv", "exp/committed.yaml", "exp/renamed one.yaml")
    (repo / "exp" / "é ü.py").write_text("x\n")
    state = git_state(repo / "exp", ["renamed one.yaml", "é ü.py", "train.py"])
    assert state.dirty and state.modified == ("exp/renamed one.yaml",)
    assert state.untracked == ("exp/é ü.py",)


def test_files_outside_the_tree_and_no_tree(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("x\n")
    assert git_state(repo, [outside]).untracked == ()
    assert git_state(tmp_path / "nowhere") == GitState(None, False)


def test_no_commit_yet(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.yaml").write_text("a\n")
    assert git_state(tmp_path, ["a.yaml"]) == GitState(None, False)


def test_few_git_calls(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = subprocess.run

    def counting(args: list[str], **kw: Any) -> Any:
        calls.append(args)
        assert kw.get("timeout") == prov.GIT_TIMEOUT
        return real(args, **kw)

    monkeypatch.setattr(prov.subprocess, "run", counting)
    git_state(repo, [])
    assert len(calls) == 2
    calls.clear()
    (repo / "exp" / "train.py").write_text("changed\n")
    git_state(repo, ["exp/train.py"])  # known modified from the status: no lookup
    assert len(calls) == 2
    calls.clear()
    git_state(repo, ["exp/committed.yaml", "README", "exp/new.yaml"])
    assert len(calls) == 3


def test_git_timing_out_is_no_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(args: list[str], **kw: Any) -> Any:
        raise subprocess.TimeoutExpired(args, kw["timeout"])

    monkeypatch.setattr(prov.subprocess, "run", slow)
    assert git_state(repo, ["README"]) == GitState(None, False)


# --------------------------------------------------------------------------- the run's files
def _yaml(folder: Path, workload: str) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(textwrap.dedent(f"""
        name: p
        goal: g
        {workload}
        objective: {{metric: loss, goal: minimize}}
        max_train_steps: 10
        eval_every: 5
        search: {{algorithm: quasi_random, trials: 1, seed: 0}}
        nuisance: {{x: {{type: float, low: 0.0, high: 1.0}}}}
    """))
    return path


def test_a_command_run_names_its_script_and_experiment_file(repo: Path) -> None:
    (repo / "exp" / "train.py").write_text("print('changed')\n")
    (repo / "exp" / "cfg.json").write_text("{}\n")
    path = _yaml(repo / "exp", "command: python train.py --config=cfg.json --n=3 ../lib")
    experiment = Experiment.from_yaml(path)
    assert workload_files(experiment) == [repo / "exp" / "train.py", repo / "exp" / "cfg.json"]
    p = provenance(str(path), experiment.base_dir, "hash")
    assert p.git_commit == git(repo, "rev-parse", "HEAD").strip() and p.git_dirty
    assert p.git_modified == ["exp/train.py"]
    assert p.git_untracked == ["exp/experiment.yaml", "exp/cfg.json"]
    assert json.loads(json.dumps(p.as_dict())) == p.as_dict()
    data = SimpleNamespace(runs=(_run(p.as_dict()),), experiment=experiment)
    assert reproduction(data).endswith(  # type: ignore[arg-type]
        f"; git {p.git_commit[:12]} + uncommitted changes to exp/train.py; "
        "exp/experiment.yaml and exp/cfg.json untracked")


def test_a_python_run_names_its_module(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "exp" / "mywork.py").write_text("def train(hparams, trial):\n    pass\n")
    path = _yaml(repo / "exp", "workload: mywork:train")
    git(repo, "add", "exp/experiment.yaml")
    git(repo, "commit", "-q", "-m", "experiment")
    monkeypatch.syspath_prepend(str(repo / "exp"))
    monkeypatch.delitem(sys.modules, "mywork", raising=False)
    experiment = Experiment.from_yaml(path)
    assert workload_files(experiment) == [repo / "exp" / "mywork.py"]  # found, not imported
    assert "mywork" not in sys.modules
    p = provenance(str(path), experiment.base_dir, "hash", experiment=experiment)
    assert (p.git_dirty, p.git_modified, p.git_untracked) == (False, [], ["exp/mywork.py"])
    data = SimpleNamespace(runs=(_run(p.as_dict()),), experiment=experiment)
    assert reproduction(data).endswith(  # type: ignore[arg-type]
        f"; git {p.git_commit[:12]}; exp/mywork.py untracked")  # type: ignore[index]


def test_reproduction_of_provenance_stored_before_the_new_fields() -> None:
    old = {"tunebook_version": "0.1.0", "python": "3.11.4", "file": "e.yaml",
           "config_hash": "abc", "git_commit": "f596c0a" + "0" * 33, "git_dirty": True,
           "command": "tunebook run e.yaml"}
    experiment = SimpleNamespace(source="e.yaml", identity=lambda: "abc")
    data = SimpleNamespace(runs=(_run(old),), experiment=experiment)
    assert reproduction(data) == (  # type: ignore[arg-type]
        "tunebook run e.yaml; tunebook 0.1.0; config abc; git f596c0a00000 + uncommitted changes")
    old["git_dirty"] = False
    assert reproduction(data).endswith("; git f596c0a00000")  # type: ignore[arg-type]

"""Regressions found in review: each test reproduces a bug that was fixed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tunebook.cli import _without_password
from tunebook.errors import ConfigError, StoreError
from tunebook.experiment import Experiment
from tunebook.results import trial_records
from tunebook.runner import run
from tunebook.store import Store, StudySpec
from tunebook.summary import finite_json as _finite_json

from conftest import cli_env, run_cli, write_experiment


def test_command_gets_an_absolute_trial_folder_with_a_relative_root(tmp_path: Path) -> None:
    exps = tmp_path / "exps"
    exps.mkdir()
    (exps / "train.py").write_text(
        "import json, os, pathlib\n"
        "pathlib.Path(os.environ['TUNEBOOK_TRIAL_DIR'], 'mine.txt').write_text('x')\n"
        "print(json.dumps({'step': 10, 'loss': 1.0}))\n")
    path = write_experiment(exps, workload=None, command="python train.py", scientific={},
                            search={"trials": 1}, max_train_steps=10, eval_every=10)
    run_cli("run", str(path), "--root", "r", "--workers", "1", "--quiet", check=True,
            cwd=tmp_path)
    assert (tmp_path / "r/runs/toy/main/trial-00000/mine.txt").exists()
    assert not (exps / "r").exists()


def test_sys_exit_in_a_workload_fails_only_its_trial(tmp_path: Path) -> None:
    exp = Experiment.from_yaml(write_experiment(tmp_path, workload="toy:exits", scientific={},
                                                search={"trials": 6, "seed": 1}))
    for workers in (0, 1):
        root = tmp_path / f"r{workers}"
        run(exp, root=root, workers=workers)
        for r in trial_records(Store.at_root(root), "toy"):
            if r.params["x"] > 0.5:
                assert r.status == "failed" and "SystemExit: 3" in (r.error or "")
                assert r.attempts == 1
            else:
                assert r.status == "completed"


def test_checkpoints_the_store_never_recorded_are_not_resumed(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 1}, scientific={})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    for f in (tmp_path / "r").glob("tunebook.db*"):
        f.unlink()
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    [rec] = trial_records(Store.at_root(tmp_path / "r"), "toy")
    assert rec.status == "completed" and rec.best_step is not None
    folder = tmp_path / "r/runs/toy/main/trial-00000"
    assert list(folder.glob("checkpoints.unrecorded-*"))


def test_a_mistyped_new_objective_leaves_the_store_untouched(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 2})
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--quiet", check=True)
    before = json.loads(run_cli("trials", "toy", "--root", str(tmp_path / "r"), "--format",
                                "json", check=True).stdout)
    typo = write_experiment(tmp_path, search={"trials": 2},
                            objective={"metric": "los", "goal": "minimize"})
    proc = run_cli("run", str(typo), "--root", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 2 and "did you mean 'loss'" in proc.stderr
    after = json.loads(run_cli("trials", "toy", "--root", str(tmp_path / "r"), "--format",
                               "json", check=True).stdout)
    assert after == before
    exp = Store.at_root(tmp_path / "r").require_experiment("toy")
    assert exp.config["objective"]["metric"] == "loss"


def test_scientific_values_with_the_same_label_are_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(write_experiment(tmp_path).read_text())
    doc["scientific"] = {"x": [1, "1"]}
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict(doc, source="e.yaml")
    assert info.value.key == "scientific.x" and "same study name 'x=1'" in str(info.value)


def test_exponent_strings_are_numbers_everywhere(tmp_path: Path) -> None:
    doc = yaml.safe_load("fixed: {wd: 1e-4}\nscientific: {lr: [1e-1, 1.0e-1, 2e-1]}\n")
    assert doc["fixed"]["wd"] == "1e-4"  # PyYAML's YAML 1.1 reading, the trap
    base = yaml.safe_load(write_experiment(tmp_path).read_text())
    base["fixed"] = doc["fixed"]
    base["scientific"] = {"lr": ["1e-1", 0.2]}
    exp = Experiment.from_dict(base)
    assert exp.fixed["wd"] == 1e-4 and exp.scientific["lr"] == (0.1, 0.2)


def test_stale_heartbeats_of_live_local_workers_are_kept(tmp_path: Path) -> None:
    store = Store.at_root(tmp_path)
    exp_id = store.register("e", "i", {}, [StudySpec("s", 0, {}, "grid", 0, 2)],
                            {"s": [(0, {}, 1), (1, {}, 2)]})
    a, b = store.claim(exp_id, "alive"), store.claim(exp_id, "remote")
    assert a is not None and b is not None
    assert store.release_stale(exp_id, -1, 3, exclude_workers=("alive",)) == [b.id]
    assert store.trial(a.id).status == "running"


def test_command_child_dies_with_its_worker(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    (tmp_path / "sleepy.py").write_text(
        "import os, pathlib, time\n"
        "d = pathlib.Path(os.environ['TUNEBOOK_TRIAL_DIR'])\n"
        "(d / f'child-{os.getpid()}').write_text(str(os.getppid()))\n"
        "time.sleep(60)\n")
    path = write_experiment(tmp_path, workload=None, command="python sleepy.py",
                            scientific={}, search={"trials": 1}, max_train_steps=10,
                            eval_every=10)
    proc = subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
                             str(tmp_path / "r"), "--workers", "1", "--quiet"], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        folder = tmp_path / "r/runs/toy/main/trial-00000"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(folder.glob("child-*")):
            time.sleep(0.05)
        marker = next(folder.glob("child-*"))
        child, worker = int(marker.name.split("-")[1]), int(marker.read_text())
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and \
                "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
            time.sleep(0.05)
        alive = Path(f"/proc/{child}").exists() and \
            "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]
        assert not alive, "the command outlived its SIGKILLed worker"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for marker in (tmp_path / "r").rglob("child-*"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(marker.name.split("-")[1]), signal.SIGKILL)


def test_unknown_metric_on_the_command_line(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 1})
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--quiet", check=True)
    for cmd in ("trials", "best", "report", "findings"):
        proc = run_cli(cmd, "toy", "--root", str(tmp_path / "r"), "--metric", "lsos")
        assert proc.returncode == 2, cmd
        assert "--metric: no trial of 'toy' reported 'lsos' (did you mean 'loss'?)" in proc.stderr


def test_strict_json_and_no_password_anywhere() -> None:
    assert _finite_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}}) == {
        "a": [1.0, None], "b": {"c": None}}
    assert _without_password(["run", "x", "--store", "postgresql+psycopg://u:pw@h/d"])[-1] == (
        "postgresql+psycopg://u:***@h/d")
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:1/d")
    assert "s3cret" not in str(info.value)


def test_a_worker_that_lost_its_trial_stops_and_writes_nothing(tmp_path: Path) -> None:
    from tunebook.worker import Heartbeat, WorkerOptions, run_trial

    exp = Experiment.from_yaml(write_experiment(tmp_path, workload="toy:taken_over",
                                                scientific={}, search={"trials": 1}))
    store = Store.at_root(tmp_path / "r")
    from tunebook.runner import materialize

    studies, trials = materialize(exp)
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
    row = store.claim(exp_id, "me")
    assert row is not None
    row = type(row)(**{**row.__dict__, "params": {**row.params, "_worker": "me",
                                                  "_exp": exp_id}})
    from tunebook.workload import load_workload

    with Heartbeat(store, "me", 0.05) as beat:
        status = run_trial(store, exp, load_workload(exp), row, tmp_path / "r", "me",
                           WorkerOptions(heartbeat_seconds=0.05), beat)
    assert status == "lost"
    now = store.trial(row.id)
    assert now.status == "running" and now.worker == "other"
    # Nothing from the lost attempt reaches the store (its buffered step 1 included): the new
    # owner starts from the checkpoint it finds and reports everything again.
    assert store.measurements([row.id]) == []

"""The runner end to end: real worker processes, a real SQLite file, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tunebook.analysis.results import trial_records
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import cli_env, run_cli, write_experiment
from toy import expected_value


def _load(path: Path) -> Experiment:
    return Experiment.from_yaml(path)


def _check_curves(store: Store, name: str, max_steps: int, every: int) -> None:
    """Every trial has each evaluation exactly once, with the exact expected value."""
    exp = store.require_experiment(name)
    trials = {t.id: t for t in store.trials(exp.id)}
    got: dict[int, list[tuple[int, float]]] = {}
    for tid, step, _, value in store.measurements(experiment_id=exp.id, metric="loss"):
        got.setdefault(tid, []).append((step, value))
    for tid, t in trials.items():
        want = [(s, expected_value(t.params, s)) for s in range(every, max_steps + 1, every)]
        assert got.get(tid) == want, f"trial {t.study}#{t.index}"


def _params(store: Store, name: str) -> list[tuple[str, int, Any, int]]:
    exp = store.require_experiment(name)
    return [(t.study, t.index, t.params, t.seed) for t in store.trials(exp.id)]


def test_serial_and_parallel_runs_give_identical_trials(tmp_path: Path) -> None:
    exp = _load(write_experiment(tmp_path, search={"trials": 5, "seed": 11}))
    serial = run(exp, root=tmp_path / "serial", workers=0)
    parallel = run(exp, root=tmp_path / "parallel", workers=2)
    assert serial.counts == parallel.counts == {"completed": 10}
    s1, s2 = Store.at_root(tmp_path / "serial"), Store.at_root(tmp_path / "parallel")
    assert _params(s1, "toy") == _params(s2, "toy")
    assert len({seed for *_, seed in _params(s1, "toy")}) == 10  # distinct per trial
    _check_curves(s1, "toy", 40, 10)
    _check_curves(s2, "toy", 40, 10)
    # The two studies search the same nuisance points (a paired comparison).
    by_study: dict[str, list[float]] = {}
    for study, _, params, _ in _params(s1, "toy"):
        by_study.setdefault(study, []).append(params["x"])
    assert by_study["arm=a"] == by_study["arm=b"]


def test_failures_and_nan_never_stop_the_study(tmp_path: Path) -> None:
    exp = _load(write_experiment(tmp_path, workload="toy:flaky", scientific={},
                                 search={"trials": 10, "seed": 0}))
    result = run(exp, root=tmp_path / "r", workers=2)
    records = trial_records(Store.at_root(tmp_path / "r"), "toy")
    by_status: dict[str, list[Any]] = {}
    for r in records:
        by_status.setdefault(r.status, []).append(r)
    assert set(by_status) == {"completed", "failed", "infeasible"}
    assert sum(result.counts.values()) == 10
    for r in by_status["failed"]:
        assert r.params["x"] > 0.5 and "ValueError: boom" in (r.error or "")
    for r in by_status["infeasible"]:
        assert r.params["x"] < 0.2 and r.infeasible_step == 2
        assert "loss is nan" in (r.infeasible_reason or "")
    for r in by_status["completed"]:
        assert r.best_value == min(1.0, r.params["x"]) and r.final_step == 3


def test_workload_can_declare_divergence(tmp_path: Path) -> None:
    exp = _load(write_experiment(tmp_path, workload="toy:diverge", scientific={},
                                 search={"trials": 2}))
    run(exp, root=tmp_path / "r", workers=0)
    for r in trial_records(Store.at_root(tmp_path / "r"), "toy"):
        assert (r.status, r.infeasible_reason, r.infeasible_step) == (
            "infeasible", "gradient norm exploded", 5)
        assert r.best_value == 2.0  # what was measured before diverging is kept


def test_worker_that_keeps_dying_fails_the_trial_after_three_attempts(tmp_path: Path) -> None:
    exp = _load(write_experiment(tmp_path, workload="toy:suicide", scientific={},
                                 search={"trials": 6, "seed": 1}))
    result = run(exp, root=tmp_path / "r", workers=2)
    records = trial_records(Store.at_root(tmp_path / "r"), "toy")
    assert sum(result.counts.values()) == 6
    for r in records:
        if r.params["x"] > 0.5:
            assert r.status == "failed" and r.attempts == 3
            assert "exited with code -9" in (r.error or "")
        else:
            assert r.status == "completed" and r.attempts == 1


def test_rerun_resumes_and_extends_without_duplicates(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 2, "seed": 5})
    run(_load(path), root=tmp_path / "r", workers=0)
    store = Store.at_root(tmp_path / "r")
    first = {(t.study, t.index): t.finished_at for t in store.trials(1)}
    again = run(_load(path), root=tmp_path / "r", workers=1)
    assert again.counts == {"completed": 4}
    assert {(t.study, t.index): t.finished_at for t in store.trials(1)} == first
    path = write_experiment(tmp_path, search={"trials": 3, "seed": 5})
    run(_load(path), root=tmp_path / "r", workers=1)
    rows = store.trials(1)
    assert len(rows) == 6 and all(t.status == "completed" for t in rows)
    assert {(t.study, t.index): t.finished_at for t in rows if t.index < 2} == first
    _check_curves(store, "toy", 40, 10)


def _wait_for(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _running_with_checkpoint(root: Path) -> list[Any]:
    db = root / "tunebook.db"
    if not db.exists():
        return []
    store = Store.at_root(root)
    try:
        if store.get_experiment("toy") is None:
            return []
        return [t for t in store.trials(1, statuses=("running",))
                if (t.checkpoint_step or 0) >= 20]
    finally:
        store.close()


def _start_run(path: Path, root: Path, **popen: Any) -> subprocess.Popen[str]:
    """`tunebook run` with 2 workers in the background, output captured."""
    return subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
                             str(root), "--workers", "2", "--quiet"], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_sigkill_of_a_worker_mid_trial_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, max_train_steps=60, eval_every=10,
                            fixed={"sleep": 0.01}, search={"trials": 3, "seed": 2})
    root = tmp_path / "r"
    proc = _start_run(path, root)
    try:
        _wait_for(lambda: _running_with_checkpoint(root))
        victim = _running_with_checkpoint(root)[0]
        folder = root / "runs" / "toy" / victim.study / f"trial-{victim.index:05d}"
        pid = int((folder / "pids").read_text().split()[-1])
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    store = Store.at_root(root)
    rows = {t.id: t for t in store.trials(1)}
    assert all(t.status == "completed" for t in rows.values())
    killed = rows[victim.id]
    assert killed.attempts == 2
    assert len((folder / "pids").read_text().split()) == 2
    starts = [line for line in (folder / "log.txt").read_text().splitlines()
              if line.startswith("--- attempt")]
    # The first attempt starts silently; the second says where it resumed.
    assert len(starts) == 1 and starts[0].startswith("--- attempt 2 ")
    assert int(starts[0].rsplit("=", 1)[1]) >= 20  # resumed from its checkpoint
    _check_curves(store, "toy", 60, 10)


def test_ctrl_c_marks_running_trials_interrupted_and_the_next_run_resumes(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, max_train_steps=60, eval_every=10,
                            fixed={"sleep": 0.01}, search={"trials": 3, "seed": 2})
    root = tmp_path / "r"
    proc = _start_run(path, root, start_new_session=True)
    try:
        _wait_for(lambda: _running_with_checkpoint(root))
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "will run (resuming from checkpoints) next time" in err
    store = Store.at_root(root)
    statuses = [t.status for t in store.trials(1)]
    assert "running" not in statuses and "interrupted" in statuses
    interrupted = [t for t in store.trials(1) if t.status == "interrupted"]
    run_cli("run", str(path), "--root", str(root), "--workers", "2", "--quiet", check=True)
    rows = {t.id: t for t in store.trials(1)}
    assert all(t.status == "completed" for t in rows.values())
    for t in interrupted:
        assert rows[t.id].attempts == 1  # a user's Ctrl-C is not a failed attempt
    _check_curves(store, "toy", 60, 10)


@pytest.mark.parametrize("workers", [0, 1])
def test_run_is_a_no_op_when_everything_is_done(tmp_path: Path, workers: int) -> None:
    path = write_experiment(tmp_path, search={"trials": 1})
    run(_load(path), root=tmp_path / "r", workers=workers)
    again = run(_load(path), root=tmp_path / "r", workers=workers)
    assert again.counts == {"completed": 2}


def test_changed_objective_refreshes_summaries(tmp_path: Path) -> None:
    run(_load(write_experiment(tmp_path, search={"trials": 2})), root=tmp_path / "r", workers=0)
    path = write_experiment(tmp_path, search={"trials": 2},
                            objective={"metric": "other", "goal": "maximize"})
    run(_load(path), root=tmp_path / "r", workers=0)
    for r in trial_records(Store.at_root(tmp_path / "r"), "toy"):
        curve = {s: -expected_value(r.params, s) for s in (10, 20, 30, 40)}
        best_step = max(curve, key=lambda s: curve[s])
        assert (r.best_step, r.best_value) == (best_step, curve[best_step])
        assert r.final_value == curve[40]


def test_parallel_run_on_postgresql(tmp_path: Path, postgres: Any) -> None:
    url = postgres.new_database()
    exp = _load(write_experiment(tmp_path, search={"trials": 3, "seed": 11}))
    result = run(exp, root=tmp_path / "r", store=url, workers=2)
    assert result.counts == {"completed": 6}
    store = Store(url)
    _check_curves(store, "toy", 40, 10)
    serial = run(exp, root=tmp_path / "s", workers=0)
    assert serial.counts == result.counts
    assert _params(store, "toy") == _params(Store.at_root(tmp_path / "s"), "toy")


def test_unguarded_script_fails_fast_with_the_fix(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import tunebook\n"
        "from tunebook import Experiment, Float, Objective\n"
        "exp = Experiment(name='u', objective=Objective('val_loss'), max_train_steps=10,\n"
        "                 eval_every=5, workload='tunebook.workloads.synthetic:quadratic',\n"
        f"                 nuisance={{'x': Float(0.0, 1.0)}})\n"
        f"tunebook.run(exp, root={str(tmp_path / 'r')!r}, workers=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert proc.returncode != 0
    assert "if __name__ == \"__main__\":" in proc.stderr
    runs = Store.at_root(tmp_path / "r").runs(1)
    assert len(runs) == 1  # the workers' imports of the script registered nothing


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

"""Runs you can trust: kills of any process, loud failures, retries, timeouts.

Every test drives the real ``tunebook`` command in a subprocess, as a user (or a scheduler)
would, and checks the store and the trial folders afterwards.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tunebook.core.processes import pid_alive
from tunebook.store.sql import Store

from conftest import cli_env, run_cli, write_experiment
from faultkit import children as _children
from faultkit import executions as _executions
from toy import expected_value


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGKILL, False),
                                           (signal.SIGKILL, True)],
                         ids=["SIGTERM", "SIGKILL", "SIGKILL-whole-group"])
def test_killing_a_run_never_runs_a_trial_twice(tmp_path: Path, sig: int,
                                                           group: bool) -> None:
    path = write_experiment(tmp_path, name="kill-main", workload="toy:lifecycle",
                            max_train_steps=20, eval_every=5, scientific={},
                            search={"algorithm": "quasi_random", "trials": 4, "seed": 1},
                            fixed={"sleep": 0.05})
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root", str(root),
            "--workers", "2", "--quiet", "--no-report"]
    first = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    runs_dir = root / "runs" / "kill-main" / "main"
    # Wait until both workers are mid-trial.
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline:
        ticking = [d for d in runs_dir.glob("trial-*") if any(
            k == "tick" for ev in _executions(d).values() for k, _ in ev)] \
            if runs_dir.exists() else []
        if len(ticking) >= 2:
            workers = [p for p in _children(first.pid) if "tunebook" in Path(
                f"/proc/{p}/cmdline").read_text(errors="replace")
                or "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    assert workers, "the run never had two trials going"
    if group:  # everything at once: nobody is left to mark anything
        os.killpg(first.pid, sig)
    else:  # the main process alone, as a scheduler or the OOM killer does
        os.kill(first.pid, sig)
    killed_at = time.monotonic()
    # Re-run at once: it must never hand a trial to a second process while the first lives.
    second = run_cli("run", str(path), "--root", str(root), "--workers", "2", "--quiet",
                     "--no-report")
    out, err = first.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert first.returncode == 143, (out, err)
        assert "SIGTERM" in err
    assert second.returncode == 0, (second.stdout, second.stderr)
    time.sleep(max(0.0, 10 - (time.monotonic() - killed_at)))
    assert not [p for p in workers if pid_alive(p)], "workers outlived their run"

    store = Store.at_root(root)
    exp = store.require_experiment("kill-main")
    trials = store.trials(exp.id)
    assert [t.status for t in trials] == ["completed"] * 4
    rows = store.measurements(experiment_id=exp.id)
    for t in trials:
        steps = [(s, v) for tid, s, m, v in rows if tid == t.id and m == "loss"]
        assert steps == [(s, expected_value(t.params, s)) for s in (5, 10, 15, 20)]
        runs = _executions(runs_dir / f"trial-{t.index:05d}")
        assert sum(1 for ev in runs.values() for k, _ in ev if k == "end") == 1
        spans = sorted((min(tm for _, tm in ev), max(tm for _, tm in ev))
                       for ev in runs.values())
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end < start, f"trial {t.index}: two executions overlapped: {spans}"
    # Both runs' records are closed: the killed one by itself (SIGTERM) or by the next run.
    records = store.runs(exp.id)
    assert len(records) == 2 and all(r.finished_at is not None for r in records)
    first = records[0].outcome
    assert first is not None
    if sig == signal.SIGKILL:
        assert first["abandoned"] is True
    else:
        assert first["signal"] == "SIGTERM"


def test_failures_are_loud_and_can_be_retried_after_the_fix(tmp_path: Path) -> None:
    marker = tmp_path / "bug"
    marker.write_text("present")
    path = write_experiment(tmp_path, name="retry", workload="toy:fragile", scientific={},
                            search={"algorithm": "quasi_random", "trials": 6, "seed": 0},
                            fixed={"marker": str(marker)})
    root = tmp_path / "root"
    first = run_cli("run", str(path), "--root", str(root), "--workers", "2")
    assert first.returncode == 1, (first.stdout, first.stderr)
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("retry").id)
    failed = [t for t in trials if t.status == "failed"]
    infeasible = [t for t in trials if t.status == "infeasible"]
    assert failed and infeasible and len(failed) + len(infeasible) == 6
    # Each failure printed as it happened, with its cause; the first with its traceback.
    for t in failed:
        assert f"trial main#{t.index} failed: RuntimeError: disk full" in first.stderr
    assert first.stderr.count("Traceback") == 1
    # The closing line says how to retry, with the same --root (pasteable).
    assert f"--root {root}" in first.stderr and "--retry-failed" in first.stderr

    marker.unlink()  # the fix
    again = run_cli("run", str(path), "--root", str(root), "--quiet")
    assert again.returncode == 1  # failed trials stay failed until asked
    retried = run_cli("run", str(path), "--root", str(root), "--quiet", "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert f"{len(failed)} failed trials re-queued" in retried.stdout
    after = {t.id: t for t in store.trials(store.require_experiment("retry").id)}
    for t in failed:
        assert after[t.id].status == "completed" and after[t.id].error is None
        assert after[t.id].attempts == 1
        log = (root / "runs" / "retry" / "main" / f"trial-{t.index:05d}" / "log.txt").read_text()
        assert "re-queued by --retry-failed" in log and "disk full" in log
    for t in infeasible:  # results, never retried
        assert after[t.id].status == "infeasible" and after[t.id].attempts == t.attempts


@pytest.mark.parametrize("case", ["missing_package", "wrong_name", "python_missing_file",
                                  "not_executable"])
def test_a_workload_that_cannot_start_stops_the_run_at_once(
        tmp_path: Path, case: str) -> None:
    extra: dict[str, Any] = {"workload": f"toy:{case}"}
    if case == "python_missing_file":
        extra = {"workload": None, "command": "python no_such_script.py"}
    elif case == "not_executable":
        script = tmp_path / "train.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        extra = {"workload": None, "command": "./train.sh"}
    doc = {k: v for k, v in extra.items() if v is not None}
    path = write_experiment(tmp_path, name="broken", scientific={},
                            search={"algorithm": "quasi_random", "trials": 20, "seed": 0},
                            **doc)
    if "command" in doc:  # write_experiment always sets workload: drop it
        import yaml

        d = yaml.safe_load(path.read_text())
        d.pop("workload")
        path.write_text(yaml.safe_dump(d))
    root = tmp_path / "root"
    proc = run_cli("run", str(path), "--root", str(root), "--workers", "2", "--quiet")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("tunebook: error: ")]
    assert len(errors) == 1, proc.stderr
    if case != "python_missing_file":
        assert "Traceback" not in proc.stderr, proc.stderr
    else:  # stopped at the second such failure: the first may be printed, as failures are
        assert all(ln.startswith(("trial main#", "    ")) for ln in proc.stderr.splitlines()
                   if ln not in errors), proc.stderr
    assert "could not start" in errors[0] and "--retry-failed" in errors[0]
    expected = {"missing_package": "tunebook_no_such_package", "wrong_name": "learning_rate",
                "python_missing_file": "no_such_script.py", "not_executable": "ermission"}
    assert expected[case] in errors[0], errors[0]
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("broken").id)
    # Not every trial of 20 burnt: an import, name or permission error stops each of the 2
    # workers at its first failure; a command's exit status needs a second trial failing the
    # same way (one could be the trial's own values), and the other worker may be on a third.
    most = 2 if case != "python_missing_file" else 3
    assert 1 <= sum(t.status == "failed" for t in trials) <= most
    assert sum(t.attempts > 0 for t in trials) <= most
    assert not [t for t in trials if t.status == "running"]


def test_a_command_that_exits_0_without_reporting_fails(tmp_path: Path) -> None:
    import yaml

    path = write_experiment(tmp_path, name="mute", scientific={},
                            search={"algorithm": "quasi_random", "trials": 2, "seed": 0})
    d = yaml.safe_load(path.read_text())
    d.pop("workload")
    # It reports another metric, so it does start: the objective is simply never there.
    d["command"] = ["python", "-c", "print('{\"step\": 1, \"accuracy\": 0.5}')"]
    path.write_text(yaml.safe_dump(d))
    root = tmp_path / "root"
    proc = run_cli("run", str(path), "--root", str(root), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "objective.metric" in proc.stderr and "accuracy" in proc.stderr
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("mute").id)
    assert trials[0].status == "failed"
    assert (trials[0].error or "").startswith("finished without reporting 'loss'")
    assert not [t for t in trials if t.status == "completed"]


@pytest.mark.parametrize("kind", ["python", "command"])
def test_trial_timeout_stops_the_trial_and_its_processes(tmp_path: Path, kind: str) -> None:
    import yaml

    path = write_experiment(tmp_path, name="slow", scientific={}, workload="toy:curve",
                            max_train_steps=400, eval_every=10,
                            search={"algorithm": "quasi_random", "trials": 2, "seed": 0},
                            fixed={"sleep": 0.1}, trial_timeout=1.5)
    if kind == "command":
        d = yaml.safe_load(path.read_text())
        d.pop("workload")
        d["command"] = ["python", "-c", (
            "import os, time; open(os.environ['TUNEBOOK_TRIAL_DIR'] + '/child', 'w')"
            ".write(str(os.getpid())); print('{\"step\": 1, \"loss\": 1.0}', flush=True); "
            "time.sleep(120)")]
        path.write_text(yaml.safe_dump(d))
    root = tmp_path / "root"
    started = time.monotonic()
    proc = run_cli("run", str(path), "--root", str(root), "--workers", "2", "--quiet",
                   "--no-report")
    took = time.monotonic() - started
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert took < 60
    assert "timed out after 1.5 s" in proc.stderr
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("slow").id)
    assert [t.status for t in trials] == ["failed", "failed"]
    assert all((t.error or "").startswith("timed out after 1.5 s") for t in trials)
    if kind == "command":
        for t in trials:
            pid = int((root / "runs" / "slow" / "main" / f"trial-{t.index:05d}" / "child")
                      .read_text())
            assert not pid_alive(pid)
    # The command line overrides the file.
    longer = run_cli("run", str(path), "--root", str(root), "--quiet", "--no-report",
                     "--retry-failed", "--trial-timeout", "0.5")
    assert "timed out after 0.5 s" in longer.stderr


def test_a_workload_that_ignores_its_timeout_is_killed_with_its_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunebook.execution import runner
    from tunebook.experiment import Experiment

    monkeypatch.setattr(runner, "HARD_KILL_GRACE", 1.0)
    path = write_experiment(tmp_path, name="stuck", scientific={}, workload="toy:stubborn",
                            search={"algorithm": "quasi_random", "trials": 1, "seed": 0})
    root = tmp_path / "root"
    monkeypatch.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])
    started = time.monotonic()
    result = runner.run(Experiment.from_yaml(path), root=root, workers=1, trial_timeout=1.0,
                        poll_seconds=0.05)
    assert time.monotonic() - started < 30
    assert result.counts == {"failed": 1}
    store = Store.at_root(root)
    (t,) = store.trials(result.experiment_id)
    assert (t.error or "").startswith("timed out after 1 s (trial_timeout); the workload did "
                                      "not stop, so its worker was killed")
    pid = int((root / "runs" / "stuck" / "main" / "trial-00000" / "pid").read_text())
    assert not pid_alive(pid)


def test_fixing_the_file_after_a_workload_could_not_start_needs_no_new_name(
        tmp_path: Path) -> None:
    # A new user's first run: the workload reads a hyperparameter the file does not set.
    path = write_experiment(tmp_path, name="first", scientific={}, workload="toy:wrong_name",
                            search={"algorithm": "quasi_random", "trials": 4, "seed": 0})
    root = tmp_path / "root"
    proc = run_cli("run", str(path), "--root", str(root), "--quiet")
    assert proc.returncode == 2 and "could not start: KeyError: 'learning_rate'" in proc.stderr
    # The fix is in the file (a new identity): nothing was measured, so the same name works.
    path = write_experiment(tmp_path, name="first", scientific={}, workload="toy:wrong_name",
                            search={"algorithm": "quasi_random", "trials": 4, "seed": 0},
                            fixed={"learning_rate": 0.1})
    proc = run_cli("run", str(path), "--root", str(root), "--quiet", "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    store = Store.at_root(root)
    trials = store.trials(store.require_experiment("first").id)
    assert [t.status for t in trials] == ["completed"] * 4
    # Once something was measured, a changed file is a new round: refused, one line.
    path = write_experiment(tmp_path, name="first", scientific={}, workload="toy:wrong_name",
                            search={"algorithm": "quasi_random", "trials": 4, "seed": 0},
                            fixed={"learning_rate": 0.2})
    proc = run_cli("run", str(path), "--root", str(root), "--quiet")
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_what_a_command_started_dies_before_its_trial_runs_again(tmp_path: Path) -> None:
    import yaml

    # A shell wrapper that starts the trainer as its child (no exec): when the worker is
    # SIGKILLed, the wrapper dies with it, the trainer would be re-parented and go on.
    (tmp_path / "train.py").write_text(
        "import json, os, sys, time\n"
        "path = os.path.join(os.environ['TUNEBOOK_TRIAL_DIR'], 'ticks')\n"
        "for step in range(1, 61):\n"
        "    time.sleep(0.05)\n"
        "    with open(path, 'a') as f:\n"
        "        f.write(f'{os.getpid()} {time.time():.6f}\\n')\n"
        "    if step % 10 == 0:\n"
        "        print(json.dumps({'step': step, 'loss': 1.0 / step}), flush=True)\n")
    (tmp_path / "wrap.sh").write_text(f'"{sys.executable}" train.py "$@"\necho done\n')
    path = write_experiment(tmp_path, name="wrapped", scientific={},
                            search={"algorithm": "quasi_random", "trials": 1, "seed": 0},
                            max_train_steps=60, eval_every=10)
    d = yaml.safe_load(path.read_text())
    d.pop("workload")
    d["command"] = ["sh", "wrap.sh"]
    path.write_text(yaml.safe_dump(d))
    root = tmp_path / "root"
    run = subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
                            str(root), "--quiet", "--no-report"], env=cli_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ticks = root / "runs" / "wrapped" / "main" / "trial-00000" / "ticks"
    deadline = time.monotonic() + 60
    while not (ticks.exists() and len(ticks.read_text().splitlines()) >= 10):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    (worker,) = [p for p in _children(run.pid)
                 if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    os.kill(worker, signal.SIGKILL)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    spans: dict[str, list[float]] = {}
    for line in ticks.read_text().splitlines():
        pid, t = line.split()
        spans.setdefault(pid, []).append(float(t))
    assert len(spans) == 2, spans.keys()  # the killed attempt's trainer, then the retry's
    first, second = sorted(spans.values(), key=min)
    assert max(first) < min(second), "the old trainer went on next to the retry"


def test_one_trial_failing_on_its_own_values_does_not_stop_the_run(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, name="picky", scientific={}, workload="toy:picky",
                            search={"algorithm": "quasi_random", "trials": 4, "seed": 0})
    proc = run_cli("run", str(path), "--root", str(tmp_path / "root"), "--quiet")
    assert proc.returncode == 1, proc.stderr  # finished, with a failed trial
    assert "tunebook: error" not in proc.stderr
    store = Store.at_root(tmp_path / "root")
    trials = store.trials(store.require_experiment("picky").id)
    assert [t.status for t in trials] == ["failed", "completed", "completed", "completed"]


def test_printed_commands_can_be_pasted_as_they_are() -> None:
    import argparse
    import shlex

    from tunebook.cli import build_parser
    from tunebook.cli.run import _again

    args = argparse.Namespace(root=Path("my root"), trial_timeout=90.0, workers=2,
                              store="postgresql+psycopg://me:secret@db:5432/tb")
    line = _again("run", "exp.yaml", args)
    assert "secret" not in line and "***" not in line  # no password, not a masked one
    argv = shlex.split(line)
    assert argv[:1] == ["tunebook"]
    parsed = build_parser().parse_args([*argv[1:], "--retry-failed"])
    assert (parsed.root, parsed.store, parsed.trial_timeout, parsed.workers, parsed.file) == (
        Path("my root"), "postgresql+psycopg://me@db:5432/tb", 90.0, 2, "exp.yaml")
    # A name that starts with "-" is still the name.
    parsed = build_parser().parse_args(shlex.split(_again("findings", "-x", args))[1:])
    assert parsed.name == "-x" and parsed.root == Path("my root")


@pytest.mark.slow
def test_a_worker_stuck_in_native_code_dies_soon_after_its_run(tmp_path: Path) -> None:
    from tunebook.execution.worker import STUCK_GRACE

    path = write_experiment(tmp_path, name="stuck", scientific={}, workload="toy:native_busy",
                            search={"algorithm": "quasi_random", "trials": 1, "seed": 0})
    root = tmp_path / "root"
    run = subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
                            str(root), "--quiet", "--no-report"], env=cli_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    pid_file = root / "runs" / "stuck" / "main" / "trial-00000" / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    time.sleep(0.5)  # inside the native call now
    os.kill(run.pid, signal.SIGKILL)
    run.communicate()
    killed = time.monotonic()
    while pid_alive(worker) and time.monotonic() - killed < STUCK_GRACE + 10:
        time.sleep(0.2)
    assert not pid_alive(worker), "a worker stuck in native code outlived its run"
    # Its trial was never marked (it could not run Python): the next run frees it.
    proc = run_cli("run", str(path), "--root", str(root), "--quiet", "--no-report",
                   "--trial-timeout", "1")
    assert proc.returncode == 1 and "timed out" in proc.stderr, proc.stderr


def test_a_reused_pid_does_not_keep_a_dead_workers_trial() -> None:
    from tunebook.core.processes import worker_alive, worker_name, worker_pid

    name = worker_name("w1")
    assert worker_pid(name) == os.getpid() and worker_alive(name) is True
    host, ident, label = name.split(":")
    pid, started = ident.split(".")
    # The same pid, started at another time: another process, so the worker is gone.
    assert worker_alive(f"{host}:{pid}.{int(started) + 1}:{label}") is False
    assert worker_alive(f"{host}:{pid}:{label}") is True  # names of older versions: pid only
    assert worker_alive(f"elsewhere-{host}:{pid}:{label}") is None  # another host: unknown

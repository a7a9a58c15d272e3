"""``tunebook submit`` and ``tunebook worker``: workers on "other machines" (another
``TUNEBOOK_HOST``, another root) beside a ``tunebook run``, on a real PostgreSQL server and on
SQLite. Every trial completes exactly once, with the exact curve a serial run gives, and no
trial ever runs in two places at once.

The workload is a module file beside the experiment file (not importable from anywhere else):
workers find it through the folder recorded at submit, or ``--base-dir``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.store.sql import Store, sqlite_url

from conftest import cli_env

# Appends one JSON line per event to $CLUSTER_LOG (O_APPEND: whole lines from any process),
# reports an exact curve and checkpoints at every evaluation, so an interrupted trial resumes.
WORKLOAD = '''
import json, os, time

def value(x, step):
    return round(float(x) ** 2 + 1.0 / step + 0.001 * (step % 7), 12)

def log(event, trial):
    line = json.dumps({"event": event, "exp": trial.dir.parent.parent.name,
                       "study": trial.study, "index": trial.index,
                       "t": time.time(), "pid": os.getpid(),
                       "host": os.environ.get("TUNEBOOK_HOST", "")}) + "\\n"
    fd = os.open(os.environ["CLUSTER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

def train(hparams, trial):
    log("start", trial)
    if os.environ.get("CLUSTER_FAIL"):
        raise RuntimeError("the data folder is not mounted")
    state = trial.load_state() or {"step": 0}
    step = state["step"]
    while step < trial.max_train_steps:
        step += 1
        time.sleep(float(hparams.get("sleep", 0.0)))
        if step % trial.eval_every == 0:
            trial.report(step, loss=value(hparams["x"], step))
            trial.save_state(step, {"step": step})
    log("end", trial)
'''


def value(x: float, step: int) -> float:
    return round(float(x) ** 2 + 1.0 / step + 0.001 * (step % 7), 12)


def _experiment(folder: Path, name: str = "shared", algorithm: str = "quasi_random",
                trials: int = 6, sleep: float = 0.02, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clusterwl.py").write_text(WORKLOAD)
    doc: dict[str, Any] = {
        "name": name, "goal": "workers anywhere", "workload": "clusterwl:train",
        "objective": {"metric": "loss", "goal": "minimize"},
        "max_train_steps": 20, "eval_every": 5,
        "search": {"algorithm": algorithm, "trials": trials, "seed": 7, **extra},
        "scientific": {"arm": ["a", "b"]},
        "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "fixed": {"sleep": sleep},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _env(log: Path, host: str | None = None) -> dict[str, str]:
    env = cli_env()
    env["CLUSTER_LOG"] = str(log)
    env.pop("TUNEBOOK_HOST", None)
    if host is not None:
        env["TUNEBOOK_HOST"] = host
    return env


def _cli(*args: str, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``tunebook ARGS`` in a subprocess (the test workloads importable, no CLUSTER_LOG unless
    ``env`` has one)."""
    return subprocess.run([sys.executable, "-m", "tunebook.cli", *args], capture_output=True,
                          text=True, env=env or cli_env(), cwd=cwd, timeout=300)


def _start(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tunebook.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs: Sequence[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append((p.returncode, stdout, stderr))
    return out


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _check_exactly_once(url: str, name: str, log: Path, hosts: set[str]) -> set[str]:
    """Every trial completed once, its measurements the exact curve, its runs never
    overlapping, run only by the given hosts; returns the hosts that ran trials."""
    store = Store(url)
    try:
        exp = store.require_experiment(name)
        trials = store.trials(exp.id)
        meas = store.measurements(experiment_id=exp.id, metric="loss")
    finally:
        store.close()
    assert trials and all(t.status == "completed" for t in trials), [
        (t.study, t.index, t.status, t.error) for t in trials]
    events = [e for e in _events(log) if e["exp"] == name]
    for t in trials:
        mine = [e for e in events if (e["study"], e["index"]) == (t.study, t.index)]
        ends = [e for e in mine if e["event"] == "end"]
        assert len(ends) == 1, (t.study, t.index, mine)  # ran to its end exactly once
        spans = sorted((e["t"], e["event"]) for e in mine)
        # start, end, start, end...: never two starts without an end between them
        assert [ev for _, ev in spans] == ["start", "end"] * (len(spans) // 2), spans
        got = [(s, v) for tid, s, _, v in meas if tid == t.id]
        assert got == [(s, value(t.params["x"], s)) for s in (5, 10, 15, 20)], got
        # The worker name carries its machine's name (TUNEBOOK_HOST stands for it).
        assert (t.worker or "").split(":")[0] == (ends[0]["host"] or socket.gethostname())
    ran = {e["host"] for e in events}
    assert ran <= hosts, ran
    return ran


def test_submit_then_workers_on_other_machines_and_a_run_on_postgresql(
        postgres: Any, tmp_path: Path) -> None:
    # A password in the URL (the test server trusts every local connection): never printed.
    url = postgres.new_database().replace("//tunebook@", "//tunebook:s3cret@")
    path = _experiment(tmp_path / "project", trials=6, sleep=0.05)
    log = tmp_path / "events.jsonl"
    sub = _cli("submit", str(path), "--store", url, "--root", str(tmp_path / "r0"))
    assert sub.returncode == 0, sub.stderr
    assert "12 trials, 12 left to run" in sub.stdout
    assert "tunebook worker" in sub.stdout and "shared" in sub.stdout
    assert "s3cret" not in sub.stdout + sub.stderr
    assert url.replace(":s3cret@", "@") in sub.stdout  # the command, pasteable as is
    store = Store(url)
    try:
        exp = store.require_experiment("shared")
        assert store.counts(exp.id) == {"pending": 12}
        [record] = store.runs(exp.id)
        assert record.workers == 0 and record.provenance["submitted"] is True
        assert record.provenance["base_dir"] == str(path.parent)
    finally:
        store.close()
    elsewhere = tmp_path / "elsewhere"  # a worker's current folder: not the project's
    elsewhere.mkdir()
    procs = [
        _start(["worker", "--store", url, "--root", str(tmp_path / "ra"), "--workers", "2",
                "--quiet"], _env(log, "node-a"), elsewhere),
        _start(["worker", "--store", url, "--root", str(tmp_path / "rb"), "--workers", "2",
                "--quiet", "shared"], _env(log, "node-b"), elsewhere),
        _start(["run", str(path), "--store", url, "--root", str(tmp_path / "r0"),
                "--workers", "2", "--quiet", "--no-report"], _env(log), tmp_path),
    ]
    for code, stdout, stderr in _wait(procs):
        assert code == 0, (stdout, stderr)
        assert "s3cret" not in stdout + stderr
    ran = _check_exactly_once(url, "shared", log, {"node-a", "node-b", ""})
    # Each supervisor that joined kept its own run record, on its own host, closed.
    store = Store(url)
    try:
        runs = store.runs(store.require_experiment("shared").id)
    finally:
        store.close()
    assert {r.host for r in runs} >= ran - {""}
    assert all(r.finished_at is not None for r in runs)
    assert not any("s3cret" in r.provenance["command"] for r in runs)


def test_two_workers_on_sqlite(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "project", trials=5)
    root = tmp_path / "root"  # one SQLite store, shared by both (one machine, two names)
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    procs = [_start(["worker", "--root", str(root), "--workers", "2", "--quiet"],
                    _env(log, host), tmp_path) for host in ("node-a", "node-b")]
    for code, stdout, stderr in _wait(procs):
        assert code == 0, (stdout, stderr)
        assert "nothing left to run" in stdout
    _check_exactly_once(sqlite_url(root / "tunebook.db"), "shared", log, {"node-a", "node-b"})


def test_an_adaptive_study_shared_by_two_workers_on_postgresql(postgres: Any,
                                                               tmp_path: Path) -> None:
    """refine, supervised by two workers at once: each index once, within the budget, and the
    very points (hence curves) of a serial run on its own store."""
    url = postgres.new_database()
    path = _experiment(tmp_path / "project", name="adaptive", algorithm="refine", trials=8,
                       sleep=0.0)
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--store", url).returncode == 0
    procs = [_start(["worker", "--store", url, "--root", str(tmp_path / host), "--workers",
                     "2", "--quiet"], _env(log, host), tmp_path) for host in ("node-a", "node-b")]
    for code, stdout, stderr in _wait(procs):
        assert code == 0, (stdout, stderr)
    _check_exactly_once(url, "adaptive", log, {"node-a", "node-b"})
    serial = tmp_path / "serial"
    done = _cli("run", str(path), "--root", str(serial), "--workers", "1", "--quiet",
                   "--no-report", env=_env(tmp_path / "serial.jsonl"))
    assert done.returncode == 0, done.stderr

    def points(u: str) -> list[tuple[str, int, float]]:
        store = Store(u)
        try:
            return [(t.study, t.index, t.params["x"])
                    for t in store.trials(store.require_experiment("adaptive").id)]
        finally:
            store.close()

    shared = points(url)
    assert len(shared) == 16
    assert shared == points(sqlite_url(serial / "tunebook.db"))


def test_a_stopped_worker_leaves_its_trials_to_the_next(tmp_path: Path) -> None:
    """SIGTERM: exit 143, the running trials interrupted; another worker resumes them from
    their checkpoints and the curves are exact."""
    path = _experiment(tmp_path / "project", trials=2, sleep=0.1)
    root = tmp_path / "root"
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    p = _start(["worker", "--root", str(root), "--workers", "2", "--quiet"],
               _env(log, "node-a"), tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            log.exists() and any(e["event"] == "start" for e in _events(log))):
        time.sleep(0.1)
    time.sleep(0.8)  # past a checkpoint or two
    p.send_signal(signal.SIGTERM)
    code, _, stderr = _wait([p])[0]
    assert code == 143, stderr
    assert "SIGTERM" in stderr
    store = Store.at_root(root)
    try:
        counts = store.counts(store.require_experiment("shared").id)
    finally:
        store.close()
    assert counts.get("interrupted", 0) >= 1 and "running" not in counts, counts
    again = _cli("worker", "--root", str(root), "--quiet", cwd=tmp_path,
                    env=_env(log, "node-b"))
    assert again.returncode == 0, again.stderr
    events = _events(log)
    resumed = [e for e in events if e["event"] == "start" and e["host"] == "node-b"]
    assert resumed
    store = Store.at_root(root)
    try:
        exp_id = store.require_experiment("shared").id
        trials = store.trials(exp_id)
        meas = store.measurements(experiment_id=exp_id, metric="loss")
    finally:
        store.close()
    assert all(t.status == "completed" for t in trials)
    for t in trials:
        got = [(s, v) for tid, s, _, v in meas if tid == t.id]
        assert got == [(s, value(t.params["x"], s)) for s in (5, 10, 15, 20)]


def test_the_workload_is_found_with_base_dir(tmp_path: Path) -> None:
    """The experiment's folder moved (another machine's layout): a clear error naming the
    experiment and the folder tried, then --base-dir finds it."""
    path = _experiment(tmp_path / "project", trials=1)
    root = tmp_path / "root"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    moved = tmp_path / "checkout"
    (tmp_path / "project").rename(moved)
    log = tmp_path / "events.jsonl"
    lost = _cli("worker", "--root", str(root), "shared", cwd=tmp_path, env=_env(log))
    assert lost.returncode == 2
    [line] = lost.stderr.splitlines()
    assert "experiment 'shared'" in line and "clusterwl" in line and str(tmp_path) in line
    assert "--base-dir" in line
    found = _cli("worker", "--root", str(root), "shared", "--base-dir", str(moved),
                    "--quiet", cwd=tmp_path, env=_env(log))
    assert found.returncode == 0, found.stderr
    _check_exactly_once(sqlite_url(root / "tunebook.db"), "shared", log, {""})


def _tamper(root: Path, **values: Any) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(sqlite_url(root / "tunebook.db"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE experiments SET identity = :identity"), values)
    finally:
        engine.dispose()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("argv", "fragments"), [
    (["worker", "nosuch"], ["no experiment named 'nosuch'", "known: shared"]),
    (["worker", "shared", "--wait", "-1"], ["--wait", "must be > 0 seconds", "'-1'"]),
    (["worker", "--wait", "soon"], ["--wait", "'soon'"]),
    (["worker", "--workers", "-2"], ["--workers", "got -2"]),
    (["worker", "--stale-after", "0"], ["--stale-after", "'0'"]),
    (["worker", "--base-dir", "{afile}"], ["--base-dir", "is not a folder"]),
    (["worker", "--address", "auto"], ["--address", "needs --executor ray", "'auto'"]),
    (["worker", "shared\udce9"], ["NAME", "UTF-8", "'shared\\udce9'"]),
    (["worker", "shared", "{identity}"], ["identity", "deadbeef", "tunebook version"]),
    (["submit", "{tmp}/missing.yaml"], ["missing.yaml", "cannot read"]),
    (["submit", "{tmp}/typo.yaml"], ["workload", "'no_such_module'"]),
])
def test_bad_input(argv: list[str], fragments: list[str], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    """One line on stderr naming the option or thing, exit 2, the store unchanged."""
    from tunebook.cli import main

    path = _experiment(tmp_path / "project", trials=1)
    root = tmp_path / "root"
    assert main(["submit", str(path), "--root", str(root)]) == 0
    (tmp_path / "afile").write_text("x")
    typo = yaml.safe_load(path.read_text())
    typo["workload"] = "no_such_module:train"
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
    if "{identity}" in argv:
        argv = [a for a in argv if a != "{identity}"]
        _tamper(root, identity="deadbeef00000000")
    argv = [a.replace("{afile}", str(tmp_path / "afile")).replace("{tmp}", str(tmp_path))
            for a in argv]
    before = _files(root)
    capsys.readouterr()
    code = main([*argv, "--root", str(root)])
    _, err = capsys.readouterr()
    assert code == 2, err
    [line] = err.splitlines()
    assert line.startswith("tunebook: error: ")
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert _files(root) == before
    assert not (root / "runs").exists()  # no trial folder


def test_nothing_to_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    empty = _cli("worker", "--root", str(root))
    assert empty.returncode == 2 and "no tunebook store" in empty.stderr
    path = _experiment(tmp_path / "project", trials=1)
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    log = tmp_path / "events.jsonl"
    assert _cli("worker", "--root", str(root), "--quiet", env=_env(log)).returncode == 0
    again = _cli("worker", "--root", str(root), env=_env(log))
    assert again.returncode == 0 and "nothing left to run" in again.stdout
    assert len([e for e in _events(log) if e["event"] == "end"]) == 2


def test_a_bad_checkpoint_root_is_said_even_with_nothing_to_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = _experiment(tmp_path / "project", trials=1)
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    (tmp_path / "afile").write_text("x")
    log = tmp_path / "events.jsonl"
    assert _cli("worker", "--root", str(root), "--quiet", env=_env(log)).returncode == 0
    bad = _cli("worker", "--root", str(root), "--checkpoint-root", str(tmp_path / "afile"),
               "--wait", "1", env=_env(log))
    assert bad.returncode == 2 and "--checkpoint-root" in bad.stderr
    assert "is not a folder" in bad.stderr and "nothing left" not in bad.stdout


def test_wait_picks_up_work_submitted_later(tmp_path: Path) -> None:
    root = tmp_path / "root"
    log = tmp_path / "events.jsonl"
    first = _experiment(tmp_path / "project", trials=1)
    assert _cli("submit", str(first), "--root", str(root)).returncode == 0
    p = _start(["worker", "--root", str(root), "--wait", "0.5", "--quiet"], _env(log, "node-a"),
               tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            log.exists() and sum(e["event"] == "end" for e in _events(log)) >= 2):
        time.sleep(0.2)
    second = _experiment(tmp_path / "project", name="later", trials=1)
    assert _cli("submit", str(second), "--root", str(root)).returncode == 0
    while time.monotonic() < deadline and not (
            sum(e["event"] == "end" for e in _events(log)) >= 4):
        time.sleep(0.2)
    assert p.poll() is None  # still waiting for more
    os.kill(p.pid, signal.SIGTERM)
    code, stdout, stderr = _wait([p])[0]
    assert code == 143, (stdout, stderr)
    for name in ("shared", "later"):
        _check_exactly_once(sqlite_url(root / "tunebook.db"), name, log, {"node-a"})


def test_a_vanished_machines_trial_is_released_by_a_worker(tmp_path: Path) -> None:
    """A trial held by a worker on another machine that went silent (no heartbeat) is
    released by a worker after --stale-after seconds and run to its end here."""
    path = _experiment(tmp_path / "project", trials=1)
    root = tmp_path / "root"
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    store = Store.at_root(root)
    try:
        exp_id = store.require_experiment("shared").id
        held = store.claim(exp_id, "node-z:4242.1:w1")  # its host is gone: only a heartbeat
        assert held is not None
    finally:
        store.close()
    done = _cli("worker", "--root", str(root), "--stale-after", "1", "--quiet",
                env=_env(log, "node-a"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    store = Store.at_root(root)
    try:
        again = store.trial(held.id)
    finally:
        store.close()
    assert again.status == "completed" and again.attempts == 2
    assert again.worker is not None and again.worker.startswith("node-a:")
    _check_exactly_once(sqlite_url(root / "tunebook.db"), "shared", log, {"node-a"})


def test_a_worker_publishes_to_its_checkpoint_root(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "project", trials=2)
    root, mount = tmp_path / "root", tmp_path / "mount"
    mount.mkdir()
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    done = _cli("worker", "--root", str(root), "--quiet", "--checkpoint-root", str(mount),
                env=_env(log, "node-a"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Every trial's evaluations were published to the shared root as verified manifests.
    steps = {int(p.name.split("-")[1].split(".")[0]) for p in mount.rglob("manifest-*.json")}
    assert steps and max(steps) == 20
    bad = _cli("worker", "--root", str(root), "--checkpoint-root", "nosuch://x",
               env=_env(log), cwd=tmp_path)
    assert bad.returncode == 2 and "--checkpoint-root" in bad.stderr and "nosuch" in bad.stderr


def test_retry_failed_requeues_the_failed_trials_once(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "project", trials=2)
    root = tmp_path / "root"
    log = tmp_path / "events.jsonl"
    assert _cli("submit", str(path), "--root", str(root)).returncode == 0
    broken = {**_env(log), "CLUSTER_FAIL": "1"}
    first = _cli("worker", "--root", str(root), "--quiet", "--max-attempts", "1", env=broken)
    assert first.returncode == 1, first.stderr
    assert "the data folder is not mounted" in first.stderr
    # Fixed, but not asked to retry: failed trials are not work.
    plain = _cli("worker", "--root", str(root), env=_env(log))
    assert plain.returncode == 0 and "nothing left to run" in plain.stdout
    # Asked to retry while still broken: each failed trial runs once more, then the worker
    # stops (it does not re-queue them again and again).
    again = _cli("worker", "--root", str(root), "--quiet", "--max-attempts", "1",
                 "--retry-failed", env=broken)
    assert again.returncode == 1, again.stderr
    starts = [e for e in _events(log) if e["event"] == "start"]
    assert len(starts) == 2 * 4
    fixed = _cli("worker", "--root", str(root), "--quiet", "--retry-failed", env=_env(log))
    assert fixed.returncode == 0, fixed.stderr
    assert "4 trials left" in fixed.stdout
    store = Store(sqlite_url(root / "tunebook.db"))
    try:
        trials = store.trials(store.require_experiment("shared").id)
        meas = store.measurements(metric="loss")
    finally:
        store.close()
    assert [t.status for t in trials] == ["completed"] * 4
    for t in trials:
        got = [(s, v) for tid, s, _, v in meas if tid == t.id]
        assert got == [(s, value(t.params["x"], s)) for s in (5, 10, 15, 20)]

"""Executors on their own: real worker processes (or this process) against a real store.

The runner's supervision through them (kills, timeouts, orphans, retries) is tested end to end
in test_runner.py and test_run_safety.py; these tests pin what each executor promises.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunebook.core.processes import worker_name
from tunebook.execution.executors import Inline, Job, LocalProcesses, make_executor
from tunebook.execution.suggestions import materialize
from tunebook.execution.worker import WorkerOptions
from tunebook.execution.workload import load_workload
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import write_experiment


def _job(tmp_path: Path, **overrides: object) -> tuple[Job, Store]:
    exp = Experiment.from_yaml(write_experiment(tmp_path, **overrides))
    store = Store.at_root(tmp_path)
    studies, trials = materialize(exp)
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
    return Job(exp, exp_id, store.url, tmp_path.resolve(), WorkerOptions()), store


def test_local_processes_run_the_queue_and_are_reaped(tmp_path: Path) -> None:
    job, store = _job(tmp_path)
    ex = make_executor(job, 2, store, None)
    assert isinstance(ex, LocalProcesses) and not ex.blocking
    ex.start()
    ex.start()
    assert len(ex.live()) == 2
    exits = []
    deadline = time.monotonic() + 120
    while ex.live() and time.monotonic() < deadline:
        ex.wait(0.5)
        exits += ex.reap()
    assert ex.live() == frozenset()
    assert sorted(e.exitcode for e in exits) == [0, 0]
    assert all(e.workload_error is None for e in exits)
    assert store.counts(job.experiment_id) == {"completed": 8}
    # Each trial ran under the name of a worker the executor started.
    assert {t.worker for t in store.trials(job.experiment_id)} <= {e.name for e in exits}
    assert ex.stop() == []


def test_a_worker_that_cannot_load_the_workload_says_why(tmp_path: Path) -> None:
    job, _store = _job(tmp_path, workload="toy:curve")
    # What the worker loads is what its copy of the experiment names: break it there.
    broken = Experiment.from_dict({**job.experiment.to_dict(), "workload": "toy:nothing_here"},
                                  source="broken.yaml")
    ex = LocalProcesses(Job(broken, job.experiment_id, job.store_url, job.root,
                            job.options), 1)
    ex.start()
    deadline = time.monotonic() + 60
    exits = []
    while not exits and time.monotonic() < deadline:
        ex.wait(0.5)
        exits = ex.reap()
    (gone,) = exits
    assert gone.exitcode != 0 and "nothing_here" in (gone.workload_error or "")
    ex.stop()


def test_kill_and_stop_end_the_workers_at_once_or_cleanly(tmp_path: Path) -> None:
    job, store = _job(tmp_path, workload="toy:curve", fixed={"sleep": 0.2})
    ex = LocalProcesses(job, 2)
    ex.start()
    ex.start()
    deadline = time.monotonic() + 60
    while store.counts(job.experiment_id).get("running", 0) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first, second = sorted(ex.live())
    ex.kill(first)
    assert ex.live() == frozenset({second}) and ex.alive(first) is False
    assert ex.reap() == []  # a killed worker is not reported as having exited by itself
    assert ex.stop() == [second]
    assert ex.alive(second) is False
    # SIGTERM let the second mark its trial interrupted; the killed one's is still running.
    by_worker = {t.worker: t.status for t in store.trials(job.experiment_id) if t.worker}
    assert by_worker[second] == "interrupted" and by_worker[first] == "running"
    # The executor finds the dead worker's trial and puts it back.
    (released,) = ex.release_orphans(store, max_attempts=3)
    assert store.trial(released).status == "interrupted"


def test_orphans_of_a_live_process_are_kept(tmp_path: Path) -> None:
    job, store = _job(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = worker_name("other-run", sleeper.pid)
        dead = f"{socket.gethostname()}:{2**22 + 7}:gone"  # above Linux's default pid_max
        assert store.claim(job.experiment_id, alive) is not None
        assert store.claim(job.experiment_id, dead) is not None
        ex = LocalProcesses(job, 1)
        assert ex.alive(alive) is True and ex.alive(dead) is False
        assert ex.alive("elsewhere:12:w1") is None  # another host's worker: cannot tell
        released = ex.release_orphans(store, max_attempts=3)
        assert [store.trial(t).status for t in released] == ["interrupted"]
        assert {t.worker for t in store.trials(job.experiment_id, statuses=("running",))} \
            == {alive}
        ex.stop()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_inline_runs_every_trial_in_this_process(tmp_path: Path) -> None:
    job, store = _job(tmp_path)
    ex = make_executor(job, 0, store, load_workload(job.experiment))
    assert isinstance(ex, Inline) and ex.blocking and ex.slots == 1
    ex.start()
    assert store.counts(job.experiment_id) == {"completed": 8}
    assert {t.worker for t in store.trials(job.experiment_id)} == {ex.name}
    assert str(os.getpid()) in ex.name
    assert ex.live() == frozenset() and ex.reap() == [] and ex.stop() == []
    with pytest.raises(ValueError, match="run's own process"):
        ex.kill(ex.name)

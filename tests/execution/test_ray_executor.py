"""The Ray executor against a real local Ray cluster started here (``ray start --head``), plus a
second local node where a test needs one. Never a mock: the actors are real Ray worker
processes claiming trials from a real store.

Each run's results are compared, measurement by measurement, with the same experiment run in
this process: the toy workload is deterministic, so a trial that was killed and resumed must end
with exactly the measurements of one uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tunebook.execution.executors import EXECUTORS, Job, make_executor
from tunebook.execution.runner import RunResult, run
from tunebook.execution.suggestions import materialize
from tunebook.execution.worker import WorkerOptions
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import TESTS, cli_env, run_cli, write_experiment

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tunebook[ray]')")
RAY = str(Path(sys.executable).with_name("ray"))
# Token authentication is on by default since Ray 2.5x; the test cluster listens on this machine
# only. Faster health checks: a killed node is declared dead in seconds, not 30 s.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500",
           "RAY_health_check_failure_threshold": "4", "RAY_health_check_initial_delay_ms": "0"}


class RayNode:
    """One ``ray start --block`` process (a head, or a node joining one); stopped with SIGTERM,
    which stops the Ray processes it started (no machine-wide ``ray stop``)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, **RAY_ENV}
        # The actors import tunebook and the tests' workloads.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.output: list[str] = []
        self.address = ""
        deadline = time.monotonic() + 120
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            found = re.search(r"ray start --address='([^']+)'", line)
            if found:
                self.address = found.group(1)
            if "block forever" in line:
                break
            assert time.monotonic() < deadline, "".join(self.output)
        assert self.proc.poll() is None, "".join(self.output)
        # Keep reading (a full pipe would block the Ray processes' logging).
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def raylet_pid(self) -> int:
        """The raylet this node started (a child of the ``ray start`` process)."""
        for pid in _children(self.proc.pid):
            if _comm(pid) == "raylet":
                return pid
        raise AssertionError("no raylet under " + str(self.proc.pid))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children",
                                            encoding="ascii") as f:
        return [int(p) for p in f.read().split()]
    return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def head() -> Iterator[RayNode]:
    """A real one-machine Ray cluster (2 CPUs) for this module's tests."""
    node = RayNode("--head", "--port=0", "--num-cpus=2", "--include-dashboard=false")
    try:
        assert node.address, "".join(node.output)
        yield node
    finally:
        node.stop()


@pytest.fixture
def connected(head: RayNode) -> Iterator[str]:
    """This process connected to the test cluster (as ``tunebook run --address`` does), and
    disconnected afterwards."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    yield head.address
    ray.shutdown()


def _experiment(tmp_path: Path, **overrides: Any) -> Experiment:
    return Experiment.from_yaml(write_experiment(tmp_path, **overrides))


def _results(store: Store, exp_id: int) -> dict[tuple[str, int], Any]:
    """Per trial: its status and every measurement (step, metric, value)."""
    out = {}
    for t in store.trials(exp_id):
        points = sorted((s, m, v) for _, s, m, v in store.measurements([t.id]))
        out[(t.study, t.index)] = (t.status, points)
    return out


def _reference(tmp_path: Path, **overrides: Any) -> dict[tuple[str, int], Any]:
    """The experiment's results when run in this process."""
    folder = tmp_path / "reference"
    folder.mkdir()
    exp = _experiment(folder, **overrides)
    with contextlib.closing(Store.at_root(folder)) as store:
        result = run(exp, root=folder, store=store, workers=0)
        return _results(store, result.experiment_id)


def _run_in_thread(exp: Experiment, root: Path, **kwargs: Any) -> tuple[threading.Thread,
                                                                        list[RunResult]]:
    out: list[RunResult] = []
    thread = threading.Thread(target=lambda: out.append(run(exp, root=root, **kwargs)))
    thread.start()
    return thread, out


def _wait_for(condition: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _pid(worker: str | None) -> int:
    return int((worker or "").split(":")[1].split(".")[0])


def test_a_run_through_ray_gives_the_results_of_local_processes(
        tmp_path: Path, connected: str) -> None:
    exp = _experiment(tmp_path)
    result = run(exp, root=tmp_path, workers=2, executor="ray", address=connected)
    with contextlib.closing(Store.at_root(tmp_path)) as store:
        got = _results(store, result.experiment_id)
        workers = {t.worker for t in store.trials(result.experiment_id)}
    assert result.counts == {"completed": 8} and not result.interrupted
    assert got == _reference(tmp_path)
    # Named as local workers are, from inside the actor: this host, the actor's own pid.
    assert all(w and w.endswith(tuple(f":ray{i}" for i in range(1, 9))) for w in workers)
    assert all(_pid(w) != os.getpid() for w in workers)


def test_actors_are_reaped_killed_and_stopped_like_processes(
        tmp_path: Path, connected: str) -> None:
    exp = _experiment(tmp_path, fixed={"sleep": 0.2})
    with contextlib.closing(Store.at_root(tmp_path)) as store:
        studies, trials = materialize(exp)
        exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
        job = Job(exp, exp_id, store.url, tmp_path.resolve(), WorkerOptions())
        ex = make_executor(job, 2, store, None, executor="ray", address=connected)
        assert type(ex).__name__ == "RayExecutor" and not ex.blocking and ex.slots == 2
        ex.start()
        ex.start()
        assert len(ex.live()) == 2  # placed or not, both count
        _wait_for(lambda: store.counts(exp_id).get("running", 0) == 2)
        first, second = sorted(ex.live())
        assert {t.worker for t in store.trials(exp_id, statuses=("running",))} == {first,
                                                                                   second}
        ex.kill(first)
        assert ex.live() == frozenset({second})
        _wait_for(lambda: ex.alive(first) is False, 30)
        assert ex.reap() == []  # a killed actor is not reported as having exited by itself
        assert ex.stop() == [second]
        assert ex.alive(second) is False
        by_worker = {t.worker: t.status for t in store.trials(exp_id) if t.worker}
        # SIGTERM let the second mark its trial interrupted; the killed one's is still running.
        assert by_worker[second] == "interrupted" and by_worker[first] == "running"
        (released,) = ex.release_orphans(store, max_attempts=3)
        assert store.trial(released).status == "interrupted"


def test_an_actor_that_cannot_load_the_workload_says_why(
        tmp_path: Path, connected: str) -> None:
    exp = _experiment(tmp_path)
    with contextlib.closing(Store.at_root(tmp_path)) as store:
        studies, trials = materialize(exp)
        exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
        broken = Experiment.from_dict({**exp.to_dict(), "workload": "toy:nothing_here"},
                                      source="broken.yaml")
        ex = make_executor(Job(broken, exp_id, store.url, tmp_path.resolve(), WorkerOptions()),
                           1, store, None, executor="ray", address=connected)
        ex.start()
        exits: list[Any] = []
        deadline = time.monotonic() + 120
        while not exits and time.monotonic() < deadline:
            ex.wait(0.5)
            exits = ex.reap()
        (gone,) = exits
        assert gone.exitcode != 0 and "nothing_here" in (gone.workload_error or "")
        assert ex.stop() == []


def test_a_killed_actor_s_trial_resumes_and_completes_once(
        tmp_path: Path, connected: str) -> None:
    overrides: dict[str, Any] = {"fixed": {"sleep": 0.05}, "max_train_steps": 60,
                                 "search": {"algorithm": "quasi_random", "trials": 2, "seed": 3}}
    exp = _experiment(tmp_path, **overrides)
    thread, out = _run_in_thread(exp, tmp_path, workers=2, executor="ray", address=connected)
    with contextlib.closing(Store.at_root(tmp_path)) as store:
        # A trial past its first checkpoint: kill -9 the actor's process running it.
        victim = _wait_for(lambda: next(
            (t for t in store.trials(1, statuses=("running",))
             if store.measurements([t.id])), None))
        os.kill(_pid(victim.worker), signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        (result,) = out
        assert result.counts == {"completed": 4}
        after = store.trial(victim.id)
        assert after.status == "completed" and after.attempts == 2
        assert after.worker != victim.worker
        got = _results(store, result.experiment_id)
    assert got == _reference(tmp_path, **overrides)


def test_resources_place_trials_and_a_lost_node_s_trial_resumes_on_the_head(
        tmp_path: Path, connected: str, head: RayNode) -> None:
    node2 = RayNode(f"--address={head.address}", "--num-cpus=1", '--resources={"node2": 1}')
    try:
        node2_raylet = node2.raylet_pid()

        def on_node2(worker: str | None) -> bool:
            return _pid(worker) in _children(node2_raylet)

        # 1. resources: {custom: {node2: 1}}: every trial runs on node2, one at a time (the
        # second actor never finds a place; once no trial is left the run ends anyway).
        placed = tmp_path / "placed"
        placed.mkdir()
        exp = _experiment(placed, resources={"custom": {"node2": 1}}, fixed={"sleep": 0.02},
                          search={"algorithm": "quasi_random", "trials": 2, "seed": 3})
        thread, out = _run_in_thread(exp, placed, workers=2, executor="ray", address=connected)
        with contextlib.closing(Store.at_root(placed)) as store:
            first = _wait_for(lambda: next(
                (t for t in store.trials(1, statuses=("running",))), None))
            assert on_node2(first.worker)
            thread.join(timeout=300)
            assert not thread.is_alive()
            assert out[0].counts == {"completed": 4}
            assert {t.worker for t in store.trials(1)} == {first.worker}

        # 2. node2 lost mid-trial (its raylet killed): the trial resumes on the head node.
        overrides: dict[str, Any] = {
            "fixed": {"sleep": 0.05}, "max_train_steps": 80,
            "search": {"algorithm": "quasi_random", "trials": 2, "seed": 3}}
        lost = tmp_path / "lost"
        lost.mkdir()
        exp = _experiment(lost, **overrides)
        thread, out = _run_in_thread(exp, lost, workers=3, executor="ray", address=connected)
        with contextlib.closing(Store.at_root(lost)) as store:
            victim = _wait_for(lambda: next(
                (t for t in store.trials(1, statuses=("running",))
                 if on_node2(t.worker) and store.measurements([t.id])), None))
            os.kill(node2_raylet, signal.SIGKILL)
            thread.join(timeout=300)
            assert not thread.is_alive()
            (result,) = out
            assert result.counts == {"completed": 4}
            after = store.trial(victim.id)
            assert after.status == "completed" and after.attempts == 2
            assert after.worker != victim.worker
            got = _results(store, result.experiment_id)
        assert got == _reference(tmp_path, **overrides)
    finally:
        node2.stop()


def test_the_command_line_stops_on_ctrl_c_and_resumes_with_a_quiet_terminal(
        tmp_path: Path) -> None:
    """No --address: the run starts a Ray of its own. Ctrl-C (SIGINT to the terminal's
    process group, Ray's processes included) interrupts the trials, which resume next time."""
    # A workload that prints on both streams (the toy curve otherwise).
    (tmp_path / "chatty.py").write_text(
        "import sys\nfrom toy import curve\n\n\ndef chatty(hparams, trial):\n"
        "    print('CHATTY out')\n    print('CHATTY err', file=sys.stderr)\n"
        "    curve(hparams, trial)\n")
    exp = write_experiment(tmp_path, workload="chatty:chatty", fixed={"sleep": 0.05})
    argv = [sys.executable, "-m", "tunebook.cli", "run", str(exp), "--executor", "ray",
            "--workers", "2", "--root", str(tmp_path / "tb"), "--no-report", "--quiet"]
    first = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    with contextlib.closing(Store.at_root(tmp_path / "tb")) as store:
        _wait_for(lambda: any(store.measurements([t.id])
                              for t in store.trials(1, statuses=("running",))))
        os.killpg(first.pid, signal.SIGINT)
        out, err = first.communicate(timeout=120)
        statuses = {t.status for t in store.trials(1)}
        assert "interrupted" in statuses and "running" not in statuses, out + err
        assert all(t.attempts == 0 for t in store.trials(1))  # a stop is not a failure
    assert "--executor ray" in err.splitlines()[-1], err
    proc = run_cli(*argv[3:], check=True)
    assert "8 completed" in proc.stdout
    # The trials' own output is in their log.txt, not on the terminal.
    assert "CHATTY" not in out + err + proc.stdout + proc.stderr
    with contextlib.closing(Store.at_root(tmp_path / "tb")) as store:
        got = _results(store, 1)
    assert got == _reference(tmp_path, fixed={"sleep": 0.05})


def test_a_run_on_postgresql_through_a_running_cluster(
        tmp_path: Path, connected: str, postgres: Any) -> None:
    url = postgres.new_database()
    exp = write_experiment(tmp_path)
    proc = run_cli("run", str(exp), "--executor", "ray", "--address", connected,
                   "--workers", "2", "--store", url, "--root", str(tmp_path / "tb"),
                   "--no-report", "--quiet", check=True)
    assert "8 completed" in proc.stdout
    store = Store(url)
    try:
        got = _results(store, store.get_experiment("toy").id)  # type: ignore[union-attr]
    finally:
        store.close()
    assert got == _reference(tmp_path)


def test_a_worker_joins_a_submitted_experiment_through_a_running_cluster(
        tmp_path: Path, connected: str) -> None:
    exp = write_experiment(tmp_path)
    root = str(tmp_path / "tb")
    run_cli("submit", str(exp), "--root", root, check=True)
    proc = run_cli("worker", "--executor", "ray", "--address", connected, "--workers", "2",
                   "--root", root, "--quiet", check=True)
    assert "8 completed" in proc.stdout and "nothing left to run" in proc.stdout
    store = Store.at_root(root)
    try:
        got = _results(store, store.get_experiment("toy").id)  # type: ignore[union-attr]
    finally:
        store.close()
    assert got == _reference(tmp_path)


def test_without_ray_one_line_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tunebook.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray sees
    exp = write_experiment(tmp_path)
    code = main(["run", str(exp), "--executor", "ray", "--root", str(tmp_path / "tb")])
    err = capsys.readouterr().err
    assert code != 0 and err.strip().splitlines() == [
        "tunebook: error: the Ray executor needs Ray: pip install 'tunebook[ray]'"]
    assert not (tmp_path / "tb").exists()  # nothing written


def test_local_workers_say_once_that_resources_are_for_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunebook.cli import main

    exp = write_experiment(tmp_path, resources={"num_gpus": 1})
    assert main(["run", str(exp), "--workers", "0", "--root", str(tmp_path / "tb"),
                 "--no-report", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("resources are for --executor ray") == 1


def test_the_executor_names_are_known() -> None:
    assert EXECUTORS == ("local", "ray")

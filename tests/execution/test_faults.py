"""Faults at scale, against real components: workers killed with SIGKILL at random, a worker
host vanishing (SIGSTOP, then SIGCONT), PostgreSQL restarted mid-run and the network to it
dropped for a while.

Machines are stood for by processes on this one, each with its own ``TUNEBOOK_HOST`` (a worker
of another "host" is judged alive only by its heartbeat) and one trial folder (a shared file
system): node-a runs ``tunebook run FILE --store postgresql+psycopg://...``, node-b joins with
``tunebook worker NAME --store ...``. Every test ends with the same
exactly-once check (:func:`faultkit.assert_exactly_once`): every trial completed, its curve
equal to an uninterrupted reference run's, no step trained again once an execution of it ran
to its end, and no two executions of it overlapped in time.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tunebook.execution.worker import LOST_LINE
from tunebook.store.sql import Store

from conftest import write_experiment
from faultkit import Host, Reference, assert_exactly_once, kill, wait_for
from netproxy import NetProxy

NAME = "faults"
EVAL = 5


def _doc(trials: int, steps: int, sleep: float) -> dict[str, Any]:
    """``toy.lifecycle`` trials: a checkpoint at every evaluation, ``sleep`` s per step."""
    return {"name": NAME, "workload": "toy:lifecycle", "scientific": {},
            "max_train_steps": steps, "eval_every": EVAL,
            "search": {"algorithm": "quasi_random", "trials": trials, "seed": 7},
            "fixed": {"sleep": sleep}}


def _run(path: Path, url: str, root: Path, workers: int, *extra: str) -> list[str]:
    """``tunebook run FILE``: the machine that submits the experiment, and works on it."""
    return ["run", str(path), "--store", url, "--root", str(root), "--workers", str(workers),
            "--quiet", "--no-report", *extra]


def _worker(url: str, root: Path, workers: int, *extra: str) -> list[str]:
    """``tunebook worker NAME``: a machine that joins the stored experiment."""
    return ["worker", NAME, "--store", url, "--root", str(root), "--workers", str(workers),
            "--quiet", *extra]


def _experiment_id(store: Store, hosts: list[Host]) -> int:
    def alive() -> None:
        for h in hosts:
            assert h.running(), h.output()

    exp = wait_for("the experiment's registration", lambda: store.get_experiment(NAME),
                   alive=alive)
    return int(exp.id)


def _busy(store: Store, exp_id: int) -> set[int]:
    """The pids of the workers holding a running trial (from their names)."""
    return {int((t.worker or "").split(":")[1].split(".")[0])
            for t in store.trials(exp_id, statuses=("running",))}


def _freeze(host: Host, store: Store) -> None:
    """SIGSTOP the whole machine (its run, its worker, its heartbeat) between two of its
    transactions: one frozen half-way keeps its trial's row locked, and the trial is skipped
    by releases until the server drops the connection (the guide says how to bound that)."""
    for _ in range(50):
        host.signal_group(signal.SIGSTOP)
        time.sleep(0.3)  # a write already on the wire lands
        with store.engine.connect() as conn:
            open_transactions = conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar()
        if not open_transactions:
            return
        host.signal_group(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"{host.name} could not be stopped outside a transaction")


def _finish(hosts: list[Host]) -> None:
    for h in hosts:
        assert h.finish() == 0, h.output()


def test_a_vanished_host_s_trial_resumes_elsewhere_and_its_worker_writes_nothing(
        tmp_path: Path, dedicated_postgres: Any) -> None:
    url = dedicated_postgres.new_database()
    doc = _doc(trials=3, steps=40, sleep=0.1)
    reference = Reference.run(tmp_path / "reference", **doc)
    path = write_experiment(tmp_path, **doc)
    root = tmp_path / "root"
    # The heartbeat is refreshed every 5 s (and with every write): 6 s of silence is a stop.
    a = Host("node-a", _run(path, url, root, 1, "--stale-after", "6"), tmp_path)
    store = Store(url)
    exp_id = _experiment_id(store, [a])
    b = Host("node-b", _worker(url, root, 1, "--stale-after", "6"), tmp_path)

    def b_holds() -> Any:
        return next((t for t in store.trials(exp_id, statuses=("running",))
                     if (t.worker or "").startswith("node-b:") and (t.checkpoint_step or 0)
                     >= 2 * EVAL), None)

    held = wait_for("node-b's worker to publish checkpoints", b_holds, alive=lambda: None)
    (b_worker,) = b.workers()
    _freeze(b, store)
    stopped_step = store.trial(held.id).checkpoint_step or 0

    def a_resumed() -> Any:
        t = store.trial(held.id)
        return (t.status == "running" and (t.worker or "").startswith("node-a:")
                and (t.checkpoint_step or 0) > stopped_step)

    wait_for("node-a to take the silent trial over", a_resumed)
    b.signal_group(signal.SIGCONT)  # the machine comes back, mid-way through the new attempt
    continued = time.time()
    _finish([a, b])

    outcome = assert_exactly_once(url, NAME, root, reference, EVAL, frozen=frozenset({b_worker}))
    (trial,) = [t for t in outcome.trials if t.id == held.id]
    assert trial.attempts == 2
    # Resumed on node-a from the checkpoint node-b had published, not from step 0.
    ((attempt, worker, start_step),) = outcome.resumes[held.id]
    assert attempt == 2 and worker.startswith("node-a:") and start_step >= stopped_step > 0
    # node-b's worker, continued, found out at its next write and abandoned the attempt: at
    # most the steps up to its next report, never an end, and nothing it wrote was kept (the
    # curve equals the reference's, its last checkpoint step never reached the store).
    (stale,) = [s for s in outcome.spans[held.id] if s.pid == b_worker]
    after = [kind for kind, t in stale.marks if t >= continued]
    assert "end" not in after and len(after) <= EVAL, stale
    assert LOST_LINE.format(held.worker) in outcome.logs[held.id]
    store.close()


KILLS = 20


@pytest.mark.slow
def test_twenty_random_kills_lose_nothing_and_run_nothing_twice(
        tmp_path: Path, dedicated_postgres: Any) -> None:
    rng = random.Random(14)  # which machine, which process, when
    url = dedicated_postgres.new_database()
    doc = _doc(trials=12, steps=30, sleep=0.05)
    reference = Reference.run(tmp_path / "reference", **doc)
    path = write_experiment(tmp_path, **doc)
    root = tmp_path / "root"
    # Attempts: a trial may be hit by several of the kills; none should fail for it.
    attempts = ("--max-attempts", str(2 * KILLS + 1))
    store = Store(url)
    hosts = [Host("node-a", _run(path, url, root, 2, *attempts), tmp_path)]
    exp_id = _experiment_id(store, hosts)
    hosts.append(Host("node-b", _worker(url, root, 2, *attempts), tmp_path))
    kills = {"worker": 0, "run": 0, "machine": 0}
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.1, 0.6))
        kind = rng.choices(list(kills), weights=[6, 2, 2])[0]
        if kind == "worker":  # a worker process mid-trial, as the OOM killer does
            def busy() -> list[int]:
                assert store.counts(exp_id).get("completed", 0) < len(reference.curves), (
                    "the trials ran out before the last kill: make them longer")
                return [pid for pid in sorted(set(hosts[0].workers() + hosts[1].workers()))
                        if pid in _busy(store, exp_id)]

            kill(rng.choice(wait_for("a worker mid-trial", busy, timeout=30)))
        elif kind == "run":  # the run alone: its workers follow it, marking their trials
            host = rng.choice(hosts)
            kill(host.proc.pid)
            host.restart()
        else:  # the whole machine at once: nobody is left to mark anything
            host = rng.choice(hosts)
            host.signal_group(signal.SIGKILL)
            host.restart()
        kills[kind] += 1
    left = len(reference.curves) - store.counts(exp_id).get("completed", 0)
    _finish(hosts)

    outcome = assert_exactly_once(url, NAME, root, reference, EVAL)
    resumed = [step for r in outcome.resumes.values() for _, _, step in r]
    print(f"\n{KILLS} kills {kills}, {left} trials left then: {len(resumed)} resumed attempts, "
          f"{sum(s > 0 for s in resumed)} from a checkpoint")
    assert any(step > 0 for step in resumed), "no kill landed after a checkpoint"
    # Every attempt beyond the first is accounted for by a kill (a machine has 2 workers; a
    # run's worker stopped between its claim and its trial's start cannot mark it).
    extra = sum(t.attempts - 1 for t in outcome.trials)
    assert extra <= kills["worker"] + 2 * (kills["machine"] + kills["run"])
    store.close()


def _mid_run(store: Store, exp_id: int, hosts: list[Host]) -> None:
    """Wait until both machines' workers are mid-trial (past a checkpoint)."""
    def going() -> bool:
        for h in hosts:
            assert h.running(), h.output()
        running = store.trials(exp_id, statuses=("running",))
        return {(t.worker or "")[:6] for t in running
                if (t.checkpoint_step or 0) >= EVAL} == {"node-a", "node-b"}

    wait_for("both machines mid-trial", going)


def _outage_run(tmp_path: Path, urls: dict[str, str], direct: str, cut: Any, seconds: float,
                *extra: str) -> tuple[Any, tuple[float, float]]:
    """Two machines of 2 workers each (``urls``: how each reaches the store) run 8 trials;
    mid-run, ``cut.pause()`` for ``seconds`` then ``cut.resume()``. Returns the exactly-once
    outcome and the cut's (start, end) times. The test watches the store through ``direct``."""
    doc = _doc(trials=8, steps=30, sleep=0.05)
    reference = Reference.run(tmp_path / "reference", **doc)
    path = write_experiment(tmp_path, **doc)
    root = tmp_path / "root"
    store = Store(direct)
    hosts = [Host("node-a", _run(path, urls["node-a"], root, 2, *extra), tmp_path)]
    exp_id = _experiment_id(store, hosts)
    hosts.append(Host("node-b", _worker(urls["node-b"], root, 2, *extra), tmp_path))
    _mid_run(store, exp_id, hosts)
    down = time.time()
    cut.pause()
    try:
        time.sleep(seconds)
    finally:
        cut.resume()
    up = time.time()
    _finish(hosts)
    store.close()
    return assert_exactly_once(direct, NAME, root, reference, EVAL), (down, up)


def _spanning(outcome: Any, down: float, up: float) -> int:
    """How many executions were going on before the cut and went on after it."""
    return sum(1 for runs in outcome.spans.values() for s in runs
               if s.start < down and s.end > up)


def test_a_postgresql_restart_mid_run_loses_and_repeats_nothing(
        tmp_path: Path, dedicated_postgres: Any) -> None:
    url = dedicated_postgres.new_database()
    outcome, (down, up) = _outage_run(tmp_path, {"node-a": url, "node-b": url}, url,
                                      dedicated_postgres, 4.0)
    # Nothing was released: every trial ran once, in one execution, riding the restart out.
    assert [t.attempts for t in outcome.trials] == [1] * len(outcome.trials)
    assert all(len(runs) == 1 for runs in outcome.spans.values())
    assert _spanning(outcome, down, up) >= 2  # the restart hit trials mid-way


@pytest.mark.parametrize("drop", ["everyone-4s", "one-machine-past-stale-after"])
def test_the_network_to_the_store_dropped_mid_run_loses_and_repeats_nothing(
        tmp_path: Path, dedicated_postgres: Any, drop: str) -> None:
    direct = dedicated_postgres.new_database()
    proxy = NetProxy(dedicated_postgres.port)
    try:
        if drop == "everyone-4s":
            urls = dict.fromkeys(("node-a", "node-b"), proxy.url(direct))
            outcome, (down, up) = _outage_run(tmp_path, urls, direct, proxy, 4.0)
        else:  # node-b alone is cut off, for longer than --stale-after
            urls = {"node-a": direct, "node-b": proxy.url(direct)}
            outcome, (down, up) = _outage_run(tmp_path, urls, direct, proxy, 9.0,
                                              "--stale-after", "6")
    finally:
        proxy.close()
    assert proxy.cut >= 3  # the runs' and workers' connections were open, and cut
    if drop == "everyone-4s":
        # Nothing was released: every trial ran once, in one execution, riding the drop out.
        assert [t.attempts for t in outcome.trials] == [1] * len(outcome.trials)
        assert all(len(runs) == 1 for runs in outcome.spans.values())
        assert _spanning(outcome, down, up) >= 2
    else:
        # node-a's run released node-b's silent trials and resumed them from their
        # checkpoints; node-b's workers, back on the network, had every write refused (the
        # curves equal the reference's) and abandoned them.
        lost = [tid for tid, log in outcome.logs.items() if "lost the trial" in log]
        resumed = [(worker[:6], step) for r in outcome.resumes.values()
                   for _, worker, step in r]
        print(f"\n{len(lost)} trials lost by node-b's workers, resumed {resumed}")
        assert lost and any(host == "node-a" and step > 0 for host, step in resumed)

"""The Ray executor: each worker slot is a Ray actor running the ordinary worker loop.

The store stays the queue and the source of truth: an actor claims trials from it, heartbeats
and records results exactly as a local worker process does, so claims, attempts and
exactly-once completion are the store's, not Ray's. Ray only places the actors (with the
experiment's ``resources``), tells when one died, and kills them. Hence:

* actors are created with ``max_restarts=0`` and no task retries: a retry would run a trial
  again outside the store's attempt accounting; the runner starts a new actor instead, and the
  trial resumes from its checkpoint as after any worker death;
* an actor claims trials as :func:`~tunebook.core.processes.worker_name` makes the name inside
  it (its node's host name and its own pid), so trials of actors on this machine are judged by
  pid like local workers' and those on other machines by heartbeat;
* an actor that died (killed, out of memory, its node lost) is reported by :meth:`reap` the
  moment Ray knows it, and the runner releases its trial at once; the heartbeat
  (``--stale-after``) is the backstop for what Ray does not see;
* :meth:`RayExecutor.stop` sends each actor SIGTERM (the trial is marked interrupted and
  resumes on the next run, as with local workers), then ``ray.kill`` after ``STOP_GRACE``.

Ray is imported here only, when the executor is built (``pip install 'tunebook[ray]'``).
The workers' output goes to Ray's own worker logs, not to this terminal (``log_to_driver``
off): each trial's ``log.txt`` stays the record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

from tunebook.core.processes import host_name, worker_alive, worker_name
from tunebook.errors import StoreError, TunebookError
from tunebook.execution.executors import STOP_GRACE, Executor, Job, WorkerExit
from tunebook.execution.worker import (
    EXIT_WORKLOAD_ERROR,
    Stop,
    limit_threads,
    worker_loop,
)
from tunebook.store.api import StoreAPI

__all__ = ["RayExecutor", "RayWorker", "ray_options"]

INSTALL_HINT = "the Ray executor needs Ray: pip install 'tunebook[ray]'"
_PENDING = "ray-pending:"  # the name of an actor Ray has not placed yet (it holds no trial)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TunebookError(INSTALL_HINT) from None
    return ray


def ray_options(resources: dict[str, Any]) -> dict[str, Any]:
    """The actor options (``.options(...)``) for an experiment's ``resources``.

    Without ``num_cpus`` an actor takes one CPU (one worker, one compute thread, as local
    workers); ``custom`` becomes Ray's ``resources``.
    """
    out: dict[str, Any] = {"num_cpus": resources.get("num_cpus", 1)}
    for key in ("num_gpus", "memory"):
        if key in resources:
            out[key] = resources[key]
    if resources.get("custom"):
        out["resources"] = dict(resources["custom"])
    return out


def _raise_stop(signum: int, frame: Any) -> None:
    from tunebook.core.interrupts import deliver

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
    deliver(Stop())


class RayWorker:
    """The body of one worker actor (wrapped with ``ray.remote`` by :class:`RayExecutor`).

    Ray runs a plain actor's methods one at a time in the worker process's main thread, so
    the trial timeout (SIGALRM) and a stop (SIGTERM) work there as in a local worker.
    """

    def __init__(self) -> None:
        self.name = ""

    def ident(self, label: str) -> tuple[str, int, str]:
        """This actor's worker name, its pid and its Ray node id."""
        import ray

        self.name = worker_name(label)
        return self.name, os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, job: Job) -> str | None:
        """Claim and run trials until none is left; returns a workload error, or None."""
        from tunebook.execution.workload import load_workload
        from tunebook.experiment import Experiment
        from tunebook.store.sql import Store

        previous = signal.signal(signal.SIGTERM, _raise_stop)
        store = None
        try:
            limit_threads()
            exp = job.experiment
            # Rebuilt from its description, as a local worker does: the workload is imported
            # on this node.
            experiment = Experiment.from_dict(exp.to_dict(), source=exp.source,
                                              base_dir=exp.base_dir)
            workload = load_workload(experiment)
            store = Store(job.store_url, wait_for_store=True)
            worker_loop(store, experiment, job.experiment_id, workload, job.root, self.name,
                        replace(job.options, parent_pid=None))
        except TunebookError as exc:
            return str(exc)
        except Stop:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if store is not None:
                store.close()
            signal.signal(signal.SIGTERM, previous)
        return None


def _signal_pid(pid: int) -> None:
    """SIGTERM to a process on the node this runs on (a task pinned there)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


@dataclass
class _Actor:
    handle: Any
    ident: Any  # the ref of ident(): (name, pid, node id) once placed
    done: Any  # the ref of run()
    name: str
    key: str  # its name while Ray has not placed it
    pid: int | None = None
    node: str | None = None


class RayExecutor(Executor):
    """Worker actors on a Ray cluster; see the module's description.

    Args:
        address: a running cluster (``auto``: the one ``ray start`` started on this machine,
            ``HOST:PORT``, ``ray://HOST:PORT``), left running; None (and no ``RAY_ADDRESS``)
            starts a local Ray of its own with ``slots`` workers' CPUs, shut down by
            :meth:`stop`. Where this process is already connected to a Ray (``ray.init``
            called by the caller), that one is used and left connected.
        store: the run's store: while an actor waits for resources, the executor checks that
            trials are still left for it.
    """

    def __init__(self, job: Job, slots: int, store: StoreAPI, address: str | None = None) -> None:
        self.job = job
        self.slots = slots
        self._store = store
        self._ray = ray = _import_ray()
        self._options = ray_options(dict(job.experiment.resources))
        self._owned = False
        if not ray.is_initialized():
            quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
            if address is None and not os.environ.get("RAY_ADDRESS"):
                cpus = self._options["num_cpus"]
                # "local": a Ray of its own even where `ray start` left one (join that one
                # with --address auto).
                ray.init(address="local", num_cpus=max(1, int(slots * cpus + 0.999)),
                         include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
            # Ours to end: a local Ray stops, a cluster is only disconnected from (a later
            # run in this process may name another address).
            self._owned = True
        try:
            if job.store_url.startswith("sqlite"):
                _check_one_machine(ray, job.store_url)
        except StoreError:
            self._shutdown()
            raise
        self._cls = ray.remote(max_restarts=0, max_task_retries=0)(RayWorker)
        self._signal = ray.remote(num_cpus=0, max_retries=0)(_signal_pid)
        self._actors: dict[str, _Actor] = {}
        self._generation = 0

    # ------------------------------------------------------------------ names
    def _placed(self) -> None:
        """Give actors Ray has placed their real worker names."""
        pending = [a for a in self._actors.values() if a.name.startswith(_PENDING)]
        if not pending:
            return
        ready, _ = self._ray.wait([a.ident for a in pending], num_returns=len(pending),
                                  timeout=0)
        for a in pending:
            if a.ident in ready:
                try:
                    a.name, a.pid, a.node = self._ray.get(a.ident)
                except self._ray.exceptions.RayError:
                    continue  # died before it was placed: reap says so
                del self._actors[a.key]
                self._actors[a.name] = a

    def live(self) -> frozenset[str]:
        """The actors started and not yet reaped, stopped or killed."""
        self._placed()
        return frozenset(self._actors)

    def start(self) -> None:
        """Create one worker actor (Ray places it when the resources are free)."""
        self._generation += 1
        handle = self._cls.options(**self._options).remote()
        ident = handle.ident.remote(f"ray{self._generation}")
        done = handle.run.remote(self.job)
        key = f"{_PENDING}{self._generation}"
        self._actors[key] = _Actor(handle, ident, done, key, key)

    def reap(self) -> list[WorkerExit]:
        """The actors that ended: by themselves (code 0), with a workload error, or dead
        (code None: killed, or their node lost)."""
        self._placed()
        if not self._actors:
            return []
        refs = [a.done for a in self._actors.values()]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        exits = []
        for name, a in list(self._actors.items()):
            if a.done not in ready:
                continue
            del self._actors[name]
            try:
                error = self._ray.get(a.done)
            except self._ray.exceptions.RayError:
                exits.append(WorkerExit(name, None))
                continue
            exits.append(WorkerExit(name, EXIT_WORKLOAD_ERROR if error else 0, error))
        exits += self._unplaceable()
        return exits

    def _unplaceable(self) -> list[WorkerExit]:
        """Actors still waiting for resources once no trial is left to claim: they would
        keep the run waiting for ever. Removed, as if they had exited with nothing to do."""
        pending = [n for n in self._actors if n.startswith(_PENDING)]
        if not pending:
            return []
        counts = self._store.counts(self.job.experiment_id)
        if counts.get("pending", 0) + counts.get("interrupted", 0):
            return []
        for name in pending:
            self._ray.kill(self._actors.pop(name).handle, no_restart=True)
        return [WorkerExit(name, 0) for name in pending]

    def kill(self, name: str) -> None:
        """``ray.kill`` one actor and wait (up to 30 s) until Ray reports it dead."""
        a = self._actors.pop(name)
        self._ray.kill(a.handle, no_restart=True)
        self._ray.wait([a.done], timeout=30)
        _wait_gone([a])

    def wait(self, timeout: float) -> None:
        """Wake up as soon as an actor ends, or after ``timeout``."""
        refs = [a.done for a in self._actors.values()]
        if refs:
            self._ray.wait(refs, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def stop(self) -> list[str]:
        """SIGTERM every actor (it marks its trial interrupted), ``ray.kill`` the late ones;
        a local Ray started by this executor is shut down."""
        self._placed()
        actors, self._actors = self._actors, {}
        try:
            for a in actors.values():
                self._ask_to_stop(a)
            refs = [a.done for a in actors.values()]
            if refs:
                self._ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE)
            for a in actors.values():
                self._ray.kill(a.handle, no_restart=True)
            if refs:
                self._ray.wait(refs, num_returns=len(refs), timeout=30)
            _wait_gone(list(actors.values()))
        finally:
            self._shutdown()
        return list(actors)

    def _ask_to_stop(self, a: _Actor) -> None:
        if a.pid is None:
            return  # not placed: it holds no trial
        if a.node == self._ray.get_runtime_context().get_node_id() or (
                a.name.split(":", 1)[0] == host_name()):
            _signal_pid(a.pid)
            return
        strategy = self._ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            a.node, soft=False)
        self._signal.options(scheduling_strategy=strategy).remote(a.pid)

    def _shutdown(self) -> None:
        if self._owned:
            self._owned = False
            self._ray.shutdown()


def _wait_gone(actors: list[_Actor], timeout: float = 30.0) -> None:
    """Wait until the processes of killed actors on this machine are gone: Ray reports an
    actor dead before its process has exited, and a trial must never run in two processes."""
    deadline = time.monotonic() + timeout
    for a in actors:
        while worker_alive(a.name) and time.monotonic() < deadline:
            time.sleep(0.05)


def _check_one_machine(ray: Any, store_url: str) -> None:
    """A SQLite store is a file on this machine: every Ray node must be this machine."""
    here = ray.util.get_node_ip_address()
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") != here:
            raise StoreError(
                f"a SQLite store ({store_url}) is a file on this machine, but Ray node "
                f"{node.get('NodeManagerAddress')} is another machine: use a PostgreSQL store "
                "(--store postgresql+psycopg://...) with a Ray cluster of several machines")

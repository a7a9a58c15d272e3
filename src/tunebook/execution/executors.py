"""Executors: where a run's trial workers live. The runner supervises them only through here.

The store is the queue and the source of truth: a worker claims trials from it, heartbeats and
records results there, and the runner decides from the store what a dead worker's trials become.
An executor only starts, watches and stops workers:

* :class:`LocalProcesses` (``workers >= 1``): spawned processes on this machine.
* :class:`Inline` (``workers=0``): the worker loop in the run's own process (debugging,
  benchmarks).
* :class:`~tunebook.execution.ray_executor.RayExecutor` (``executor="ray"``): Ray actors on a
  Ray cluster (imported only when asked for: Ray is an optional extra).

``tunebook worker`` processes on other machines will implement :class:`Executor` the same way.
To add one: subclass :class:`Executor` in this module (or beside it), build it in
:func:`make_executor`, and run tests/execution/test_executors.py against it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunebook.core.paths import trial_dir
from tunebook.core.processes import worker_alive, worker_name, worker_pid
from tunebook.execution.worker import (
    EXIT_WORKLOAD_ERROR,
    WorkerOptions,
    worker_loop,
    worker_main,
)
from tunebook.execution.workload import kill_leftovers
from tunebook.experiment import Experiment
from tunebook.store.api import StoreAPI

__all__ = ["EXECUTORS", "Executor", "Inline", "Job", "LocalProcesses", "WorkerExit",
           "make_executor"]

STOP_GRACE = 15.0  # seconds workers get to mark their trials interrupted before SIGKILL


@dataclass(frozen=True)
class Job:
    """What every worker of one run needs: the experiment, where its trials live, how to run.

    Attributes:
        store_url: workers in other processes open their own store from it.
        root: the folder of the trial directories (absolute).
    """

    experiment: Experiment
    experiment_id: int
    store_url: str
    root: Path
    options: WorkerOptions


@dataclass(frozen=True)
class WorkerExit:
    """A worker that ended by itself (or was killed by something else than the executor).

    Attributes:
        exitcode: the process's exit code (negative: killed by that signal), None if unknown.
        workload_error: what a worker that could not load the workload, or lost the store
            past its bound, said (one line); None otherwise.
    """

    name: str
    exitcode: int | None
    workload_error: str | None = None


class Executor(ABC):
    """Starts, supervises and stops the trial workers of one run.

    Worker names are those the workers claim trials under (the store's ``trials.worker``), so
    the runner can match what the store says with what the executor runs.
    """

    job: Job
    #: the most workers it keeps at once
    slots: int
    #: True when :meth:`start` runs trials itself, until none is left, before it returns
    blocking: bool = False

    @abstractmethod
    def live(self) -> frozenset[str]:
        """The names of the workers started and not yet reaped, stopped or killed."""

    @abstractmethod
    def start(self) -> None:
        """Start one more worker (it claims trials until none is left)."""

    @abstractmethod
    def reap(self) -> list[WorkerExit]:
        """Forget the workers that ended since the last call, and say how each ended."""

    @abstractmethod
    def kill(self, name: str) -> None:
        """Stop one worker at once, without letting it clean up (it ignored a timeout)."""

    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Block until a worker ends or ``timeout`` seconds pass."""

    @abstractmethod
    def stop(self) -> list[str]:
        """Stop every worker (each marks its trial interrupted if it can); returns their names.

        Called once, at the end of the run, whatever ended it; the runner puts back what
        the named workers still hold.
        """

    def alive(self, name: str | None) -> bool | None:
        """Whether the worker called ``name`` (of any run) still runs; None: cannot tell.

        Local workers carry their pid and host in their name; an executor whose workers
        live elsewhere answers for its own.
        """
        return worker_alive(name)

    def release_orphans(self, store: StoreAPI, max_attempts: int) -> list[int]:
        """Re-queue running trials whose worker process, on this host, is gone; returns ids.

        The pid in the worker's name is the process that runs the trial, so a worker that
        outlived its run keeps its trial until it has stopped (it marks it interrupted
        itself): the same trial never runs in two processes at once.
        """
        released: list[int] = []
        mine = self.live()
        for t in store.trials(self.job.experiment_id, statuses=("running",)):
            if t.worker in mine:
                continue
            if worker_pid(t.worker) != os.getpid() and self.alive(t.worker) is False:
                released += store.release_worker(t.worker or "", "the process running it is "
                                                 "gone", max_attempts, interrupted=True)
        return released

    def clean_up(self, store: StoreAPI, trial_ids: Sequence[int]) -> None:
        """Stop what a dead worker's trials started (a command's processes) before a retry."""
        for tid in trial_ids:
            t = store.trial(tid)
            kill_leftovers(trial_dir(self.job.root, self.job.experiment.name, t.study, t.index),
                           wait=0.0)


class LocalProcesses(Executor):
    """Worker processes on this machine, started with ``spawn`` (no state shared with the run).

    Each gets the run's pid: it stops by itself as soon as the run is gone (SIGKILL, OOM).
    """

    def __init__(self, job: Job, slots: int) -> None:
        self.job = job
        self.slots = slots
        self._ctx = mp.get_context("spawn")
        self._errors: Any = self._ctx.Queue()
        self._procs: dict[str, Any] = {}
        self._generation = 0

    def live(self) -> frozenset[str]:
        """The processes started and not yet reaped or killed."""
        return frozenset(self._procs)

    def start(self) -> None:
        """Spawn one worker process."""
        self._generation += 1
        job, exp = self.job, self.job.experiment
        options = replace(job.options, parent_pid=os.getpid())
        label = f"w{self._generation}"
        p = self._ctx.Process(
            target=worker_main, name=f"tunebook-worker-{self._generation}", daemon=True,
            args=(job.store_url, exp.to_dict(), exp.source, exp.base_dir, job.experiment_id,
                  str(job.root), label, self._errors, options))
        p.start()
        self._procs[worker_name(label, p.pid)] = p

    def reap(self) -> list[WorkerExit]:
        """The processes that exited; a workload error comes with the exit that reports it."""
        exits = []
        for name, p in list(self._procs.items()):
            if p.is_alive():
                continue
            p.join()
            del self._procs[name]
            message = None
            if p.exitcode == EXIT_WORKLOAD_ERROR:
                # Only a worker that could not load the workload says so on the queue; an
                # exit code alone could come from anything the worker ran.
                with contextlib.suppress(queue.Empty):
                    message = str(self._errors.get(timeout=1))
            exits.append(WorkerExit(name, p.exitcode, message))
        return exits

    def kill(self, name: str) -> None:
        """SIGKILL one worker process and wait for it."""
        p = self._procs.pop(name)
        p.kill()
        p.join()

    def wait(self, timeout: float) -> None:
        """Wake up as soon as a worker exits (the end of the run), or after ``timeout``."""
        sentinels = [p.sentinel for p in self._procs.values()]
        if sentinels:
            mp_connection.wait(sentinels, timeout=timeout)
        else:
            time.sleep(timeout)

    def stop(self) -> list[str]:
        """SIGTERM every worker (it marks its trial interrupted), then SIGKILL the late ones."""
        procs, self._procs = self._procs, {}
        try:
            for p in procs.values():
                if p.is_alive():
                    p.terminate()
            deadline = time.monotonic() + STOP_GRACE
            for p in procs.values():
                p.join(timeout=max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join()
        finally:
            self._errors.close()
        return list(procs)


class Inline(Executor):
    """The worker loop in the run's own process: :meth:`start` returns when no trial is left.

    Nothing runs between two calls, so there is never anything to reap, kill or wait for.
    """

    slots = 1
    blocking = True

    def __init__(self, job: Job, store: StoreAPI, workload: Any) -> None:
        self.job = job
        self.store = store
        self.workload = workload
        self.name = worker_name("inproc")
        self._running = False

    def live(self) -> frozenset[str]:
        """This process while :meth:`start` runs trials (a stop can come from inside)."""
        return frozenset((self.name,)) if self._running else frozenset()

    def start(self) -> None:
        """Claim and run trials here until none is left (or the workload proves broken)."""
        self._running = True
        job = self.job
        worker_loop(self.store, job.experiment, job.experiment_id, self.workload, job.root,
                    self.name, job.options)
        self._running = False

    def reap(self) -> list[WorkerExit]:
        """Nothing runs between calls."""
        return []

    def kill(self, name: str) -> None:
        """Unsupported: a trial in this process stops by its own timeout."""
        raise ValueError(f"cannot kill {name}: it is the run's own process")

    def wait(self, timeout: float) -> None:
        """Nothing to wait for."""

    def stop(self) -> list[str]:
        """This process's worker name if a stop interrupted :meth:`start`."""
        names = sorted(self.live())
        self._running = False
        return names


EXECUTORS = ("local", "ray")


def make_executor(job: Job, workers: int, store: StoreAPI, workload: Any,
                  executor: str = "local", address: str | None = None) -> Executor:
    """The executor for ``workers``: local processes, inline for 0, or Ray actors
    (``executor="ray"``, on the cluster at ``address``; see
    :mod:`tunebook.execution.ray_executor`)."""
    if executor == "ray":
        # Imported here: Ray is an optional extra, loaded only when asked for.
        from tunebook.execution.ray_executor import RayExecutor

        return RayExecutor(job, max(1, workers), store, address)
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}; one of {', '.join(EXECUTORS)}")
    if address is not None:
        raise ValueError("an address is for a cluster executor (executor='ray')")
    if workers <= 0:
        return Inline(job, store, workload)
    return LocalProcesses(job, workers)

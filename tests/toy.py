"""Workloads for the test suite (importable by spawned workers: tests/ is on sys.path)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from tunebook.execution.trial import Trial


def expected_value(params: dict[str, Any], step: int) -> float:
    """The exact value ``curve`` reports: tests compare the store against it."""
    return round(float(params["x"]) ** 2 + 1.0 / step + 0.001 * (step % 7), 12)


def curve(hparams: dict[str, Any], trial: Trial) -> None:
    """Deterministic curve with a checkpoint at every evaluation; ``sleep`` per step."""
    (trial.dir / "pids").open("a").write(f"{os.getpid()}\n")
    state = trial.load_state() or {"step": 0}
    step = state["step"]
    sleep = float(hparams.get("sleep", 0.0))
    while step < trial.max_train_steps:
        step += 1
        if sleep:
            time.sleep(sleep)
        if step % trial.eval_every == 0:
            v = expected_value(hparams, step)
            trial.report(step, loss=v, other=-v)
            trial.save_state(step, {"step": step})


def flaky(hparams: dict[str, Any], trial: Trial) -> None:
    """Raises for x > 0.5, reports NaN for x < 0.2, otherwise behaves."""
    x = float(hparams["x"])
    trial.report(1, loss=1.0)
    if x > 0.5:
        raise ValueError(f"boom at x={x}")
    if x < 0.2:
        trial.report(2, loss=math.nan)
    trial.report(3, loss=x)


def diverge(hparams: dict[str, Any], trial: Trial) -> None:
    """The workload says it diverged."""
    trial.report(5, loss=2.0)
    raise trial.infeasible("gradient norm exploded")


def no_objective(hparams: dict[str, Any], trial: Trial) -> None:
    """Reports a metric other than the objective."""
    trial.report(1, lost=1.0)


def suicide(hparams: dict[str, Any], trial: Trial) -> None:
    """Kills its own worker process for x > 0.5 (a segfault, an OOM kill...)."""
    import signal

    trial.report(1, loss=float(hparams["x"]))
    if float(hparams["x"]) > 0.5:
        os.kill(os.getpid(), signal.SIGKILL)


def exits(hparams: dict[str, Any], trial: Trial) -> None:
    """Calls sys.exit(3) for x > 0.5 (what argparse or a careless script does)."""
    import sys

    trial.report(1, loss=float(hparams["x"]))
    if float(hparams["x"]) > 0.5:
        sys.exit(3)


def taken_over(hparams: dict[str, Any], trial: Trial) -> None:
    """Simulates a stale heartbeat: the store gives this trial to another worker mid-run."""
    from tunebook.store.sql import Store

    trial.report(1, loss=1.0)
    store = trial._sink.store  # type: ignore[union-attr]  # the worker's ClaimedSink
    assert isinstance(store, Store)
    store.release_worker(str(hparams["_worker"]), "heartbeat too old", 3)
    assert store.claim(int(hparams["_exp"]), "other") is not None
    time.sleep(0.5)  # a few heartbeats: they now fail
    trial.report(2, loss=0.5)
    raise AssertionError("report() should have raised Lost")


def lifecycle(hparams: dict[str, Any], trial: Trial) -> None:
    """``curve`` that records its executions: ``start``/``tick``/``end`` lines with its pid and
    the time in ``<trial dir>/executions``, so tests can check no two executions overlapped."""
    path = trial.dir / "executions"

    def mark(kind: str) -> None:
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{kind} {os.getpid()} {time.time():.6f}\n")

    mark("start")
    state = trial.load_state() or {"step": 0}
    step = state["step"]
    sleep = float(hparams.get("sleep", 0.0))
    while step < trial.max_train_steps:
        step += 1
        time.sleep(sleep)
        mark("tick")
        if step % trial.eval_every == 0:
            trial.report(step, loss=expected_value(hparams, step))
            trial.save_state(step, {"step": step})
    mark("end")


def fragile(hparams: dict[str, Any], trial: Trial) -> None:
    """Fails after its first report while the file ``hparams['marker']`` exists (a bug that
    the user then fixes); diverges for x < 0.2 (a result, never retried)."""
    x = float(hparams["x"])
    trial.report(1, loss=x)
    if x < 0.2:
        raise trial.infeasible("diverged")
    if os.path.exists(str(hparams["marker"])):
        raise RuntimeError(f"disk full at x={x}")
    trial.report(2, loss=x / 2)


def missing_package(hparams: dict[str, Any], trial: Trial) -> None:
    """Imports a package that is not installed, as a workload with a missing extra does."""
    import importlib

    importlib.import_module("tunebook_no_such_package")


def wrong_name(hparams: dict[str, Any], trial: Trial) -> None:
    """Reads a hyperparameter the experiment does not define (a typo in the file)."""
    trial.report(1, loss=float(hparams["learning_rate"]))


def silent(hparams: dict[str, Any], trial: Trial) -> None:
    """Returns without reporting anything."""


def stubborn(hparams: dict[str, Any], trial: Trial) -> None:
    """Hangs with SIGALRM blocked, as a workload stuck in native code that never returns to
    the interpreter does: only killing its process stops it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    trial.report(1, loss=1.0)
    (trial.dir / "pid").write_text(str(os.getpid()))
    time.sleep(3600)


def picky(hparams: dict[str, Any], trial: Trial) -> None:
    """The first trial's values are out of the code's domain (a ValueError before any report);
    every other trial is fine."""
    if trial.index == 0:
        raise ValueError("math domain error")
    trial.report(1, loss=float(hparams["x"]))


def native_busy(hparams: dict[str, Any], trial: Trial) -> None:
    """Holds the GIL in one long native call (minutes), as a stuck C extension does."""
    trial.report(1, loss=1.0)
    trial.flush()
    (trial.dir / "pid").write_text(str(os.getpid()))
    sum(range(10**12))


def bowl(hparams: dict[str, Any], trial: Trial) -> None:
    """One report of a bowl around x = 0.3 after ``sleep`` seconds; past it, worse outcomes:
    infeasible for x > 0.9, an exception (after its report) for 0.8 < x <= 0.9."""
    time.sleep(float(hparams.get("sleep", 0.0)))
    x = float(hparams["x"])
    trial.report(1, loss=round((x - 0.3) ** 2, 12))
    if x > 0.9:
        raise trial.infeasible(f"x = {x} is beyond 0.9")
    if x > 0.8:
        raise ValueError(f"x = {x} is beyond 0.8")

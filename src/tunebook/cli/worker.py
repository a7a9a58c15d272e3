"""``tunebook worker --store URL [NAME ...]``: join the experiments of a store from any machine.

Every experiment of the store with trials left to run (or the NAMEs given) is rebuilt from its
stored configuration (:func:`tunebook.execution.remote.rebuild`: the workload resolved on this
machine) and run with ``--workers N`` local processes until nothing is left, one experiment
after another; then the command exits, or with ``--wait`` looks for new work every few seconds
until it is stopped. Each experiment is run by :func:`tunebook.execution.runner.run`: a worker
is a supervisor like ``tunebook run`` (dead or silent workers' trials released, adaptive
studies topped up, a run record kept), beside any number of others.

Exit codes as for ``tunebook run``: 0, 1 when a joined experiment has failed trials, 2 for bad
input (a NAME the store does not hold, a workload not found here; without NAMEs such an
experiment is skipped with its error line and the others run), 130/143/129 when stopped
(running trials resume on the next run or worker).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tunebook.cli.common import (
    _OPENED,
    EXIT_BAD_INPUT,
    EXIT_FAILED_TRIALS,
    EXIT_INTERRUPTED,
    EXIT_SIGNAL,
    _check_root,
    _error_line,
    _non_negative,
    _positive,
    _seconds,
    _visible,
)
from tunebook.cli.run import add_cluster_options, add_executor_options
from tunebook.errors import TunebookError

__all__ = ["add_parser", "cmd_worker"]

WAIT_SECONDS = 30.0  # --wait without a value: how often to look for new work


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``tunebook worker``."""
    p = sub.add_parser("worker", parents=[common],
                       help="run the trials left in a store's experiments (any machine)")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="experiments to join (default: every one with trials left)")
    p.add_argument("--workers", type=_non_negative, default=1,
                   help="local worker processes (0: run in this process)")
    p.add_argument("--wait", type=_seconds, nargs="?", const=WAIT_SECONDS, default=None,
                   metavar="SECONDS",
                   help="when nothing is left, look for new work every SECONDS "
                        f"(default {WAIT_SECONDS:g}) until stopped, instead of exiting")
    p.add_argument("--base-dir", type=Path, default=None, metavar="DIR",
                   help="the folder holding the workload's module file or program on this "
                        "machine (default: the experiment's folder at submit if it exists "
                        "here, else the current folder)")
    p.add_argument("--max-attempts", type=_positive, default=3,
                   help="a trial whose worker dies this many times fails")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-queue the failed trials of each joined experiment once, when "
                        "this worker first joins it (after fixing their cause)")
    add_cluster_options(p)
    add_executor_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_worker)


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a run (between experiments, while waiting for work)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _signals() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP stop the worker like Ctrl-C, never inside a store transaction;
    ``run`` installs its own handlers while an experiment runs."""
    from tunebook.core.interrupts import stops_on

    return stops_on((signal.SIGTERM, signal.SIGHUP), lambda sig: _Stopped(sig.name))


def cmd_worker(args: argparse.Namespace) -> int:
    """Join the store's experiments until nothing is left (see the module docstring)."""
    from tunebook.core.paths import store_file
    from tunebook.execution.remote import rebuild
    from tunebook.store.sql import Store, sqlite_url

    _check_root(args, writing=True)
    from tunebook.cli.run import _check_checkpoint_root, _check_executor

    _check_executor(args, None)
    _check_checkpoint_root(args, None)  # loud now, not when work arrives (--wait)
    if args.base_dir is not None and not args.base_dir.is_dir():
        raise TunebookError(f"--base-dir: {str(args.base_dir)!r} is not a folder")
    url = args.store or sqlite_url(store_file(args.root))
    store = Store(url, create=False)
    _OPENED.append(store)
    named = [store.require_experiment(name) for name in dict.fromkeys(args.names)]
    for row in named:  # before anything is written: a NAME that cannot run here is bad input
        rebuild(store, row, args.base_dir)
    try:
        with _signals():
            return _loop(args, url, store, named)
    except _Stopped as stop:
        print(f"{stop.name}: stopped while no trial was running", file=sys.stderr)
        return EXIT_SIGNAL.get(stop.name, EXIT_INTERRUPTED)


def _loop(args: argparse.Namespace, url: str, store: Any, named: list[Any]) -> int:
    from tunebook.execution.remote import trials_left

    skipped: set[str] = set()  # could not run here: said once
    stuck: dict[str, int] = {}  # ran to its end with trials left (nothing to do for them)
    retried: set[str] = set()  # --retry-failed: the experiments re-queued (once each)
    failed = bad = False
    said_waiting = False

    def retry(r: Any) -> bool:
        return bool(args.retry_failed) and r.name not in retried

    def left(r: Any) -> int:
        n = trials_left(store, r.id)
        if retry(r):  # its failed trials are work too, this once
            n += store.counts(r.id).get("failed", 0)
        return n

    while True:
        rows = named or store.experiments()
        todo = [(r, n) for r in rows if r.name not in skipped
                and (n := left(r)) > 0 and stuck.get(r.name) != n]
        if not todo:
            if args.wait is None:
                where = "the named experiments" if named else store.display_url
                why = f" ({len(skipped)} skipped: see the error above)" if skipped else ""
                print(_visible(f"nothing left to run in {where}{why}"))
                return EXIT_BAD_INPUT if bad else EXIT_FAILED_TRIALS if failed else 0
            if not said_waiting:
                print(f"nothing left to run; looking for new work every {args.wait:g} s "
                      "(Ctrl-C stops)", file=sys.stderr, flush=True)
                said_waiting = True
            time.sleep(args.wait)
            continue
        said_waiting = False
        for row, n in todo:
            requeue = retry(row)
            retried.add(row.name)
            code = _join(args, url, store, row, n, requeue)
            if code in (EXIT_INTERRUPTED, *EXIT_SIGNAL.values()):
                return code
            if code == EXIT_BAD_INPUT:
                skipped.add(row.name)
                bad = True
            failed = failed or code == EXIT_FAILED_TRIALS
            after = left(row)
            if code == 0 and after == n:
                stuck[row.name] = after


def _join(args: argparse.Namespace, url: str, store: Any, row: Any, left: int,
          retry_failed: bool) -> int:
    """Run one experiment to its end with this machine's workers (its failed trials re-queued
    first with ``retry_failed``); its exit code."""
    from tunebook.cli.progress import _ProgressBar
    from tunebook.cli.run import (
        _check_checkpoint_root,
        _check_executor,
        _without_password,
        _worker_options,
    )
    from tunebook.execution.remote import rebuild
    from tunebook.execution.runner import run

    try:
        experiment = rebuild(store, row, args.base_dir)
        _check_checkpoint_root(args, experiment)
        _check_executor(args, experiment)
    except TunebookError as exc:
        return _error_line(str(exc))
    print(_visible(f"experiment {row.name!r}: {left} trials left; joining with "
                   f"{_workers(args.workers)}"), flush=True)
    bar = _ProgressBar(sys.stderr, bar=not args.quiet)
    try:
        result = run(experiment, root=args.root, store=url, workers=args.workers,
                     max_attempts=args.max_attempts, retry_failed=retry_failed, progress=bar,
                     argv=["tunebook", *_without_password(sys.argv[1:])],
                     stale_after_seconds=args.stale_after, executor=args.executor,
                     address=args.address, options=_worker_options(args))
    except TunebookError as exc:  # a broken workload, say: the other experiments go on
        bar.close()
        return _error_line(str(exc))
    bar.close()
    counts = result.counts
    print(_visible(
        f"experiment {row.name!r}: {counts.get('completed', 0)} completed, "
        f"{counts.get('infeasible', 0)} infeasible, {counts.get('failed', 0)} failed "
        f"({result.elapsed:.1f}s, {_workers(args.workers)} here)"), flush=True)
    if result.interrupted:
        how = result.signal or "interrupted"
        print(f"{how}: running trials will resume (from checkpoints) on the next run or "
              "worker", file=sys.stderr)
        return EXIT_SIGNAL.get(result.signal or "", EXIT_INTERRUPTED)
    return EXIT_FAILED_TRIALS if counts.get("failed", 0) else 0


def _workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"

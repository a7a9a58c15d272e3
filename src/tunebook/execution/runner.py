"""Run an experiment: put its trials in the store, then work through them in parallel.

The store is the queue. ``run`` writes every study and its trials (trial ``i`` of a
non-adaptive designer is a pure function of the study seed, the search space and ``i``; an
adaptive designer's trials are added as results come in, see
:mod:`tunebook.execution.suggestions`), keeps an
:class:`~tunebook.execution.executors.Executor`'s workers busy claiming trials atomically,
replaces any worker that dies (its trial goes back to the queue and resumes from its
checkpoint, failing after ``max_attempts``), and stops cleanly on Ctrl-C or SIGTERM (running
trials become ``interrupted`` and resume on the next run).

What holds under each kill (the tests check each):

* SIGTERM or Ctrl-C to the run: workers stop, running trials become ``interrupted``, the run's
  record is closed, the next run resumes them.
* SIGKILL (or the OOM killer) to the run alone: every worker notices within about a second
  (``PR_SET_PDEATHSIG`` on Linux, a parent check elsewhere), marks its trial ``interrupted`` and
  exits; the next run closes the dead run's record as abandoned.
* SIGKILL to a worker: the run replaces it and re-queues its trial (an attempt).
* Everything killed at once: the next run finds the trials whose worker process is gone and
  re-queues them. A trial whose worker process is still alive is never handed to another.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tunebook.core.interrupts import stops_on
from tunebook.core.paths import trial_dir
from tunebook.core.processes import host_name
from tunebook.errors import StoreError, WorkloadError
from tunebook.execution.bookkeeping import (
    check_objective,
    close_abandoned_runs,
    refresh_summaries,
    requeue_failed,
    unknown_metric,
)
from tunebook.execution.executors import Executor, Job, make_executor
from tunebook.execution.provenance import provenance
from tunebook.execution.suggestions import Suggestions, TrialRows, materialize
from tunebook.execution.worker import (
    COULD_NOT_START,
    NO_OBJECTIVE,
    WorkerOptions,
    broken_workload,
    limit_threads,
)
from tunebook.execution.workload import load_workload
from tunebook.experiment import Experiment
from tunebook.store.api import StoreAPI
from tunebook.store.sql import RunOutcome, Store, StudySpec, TrialRow

__all__ = ["Progress", "RunResult", "materialize", "register_experiment", "run"]


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run, for progress displays.

    Attributes:
        new_failures: trials that failed since the previous snapshot (show each one's cause
            as it happens).
        outage: set while the store cannot be reached (what the store said).
    """

    total: int
    counts: dict[str, int]
    best: TrialRow | None
    elapsed: float
    metric: str
    new_failures: tuple[TrialRow, ...] = ()
    outage: str | None = None

    @property
    def done(self) -> int:
        """Trials that reached a final state."""
        return sum(self.counts.get(s, 0) for s in ("completed", "infeasible", "failed"))


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        counts: trials per status at the end (within each study's budget).
        interrupted: the run was stopped by Ctrl-C or a signal before it finished.
        signal: the signal that stopped it (``"SIGTERM"``, ``"SIGHUP"``), None for Ctrl-C.
        retried: failed trials put back in the queue by ``retry_failed``.
    """

    experiment_id: int
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    elapsed: float = 0.0
    signal: str | None = None
    retried: int = 0





def run(
    experiment: Experiment,
    *,
    root: str | Path = "tunebook",
    store: StoreAPI | str | None = None,
    workers: int = 1,
    max_attempts: int = 3,
    progress: Callable[[Progress], None] | None = None,
    poll_seconds: float = 0.25,
    stale_after_seconds: float = 120.0,
    options: WorkerOptions | None = None,
    argv: list[str] | None = None,
    retry_failed: bool = False,
    trial_timeout: float | None = None,
    executor: str = "local",
    address: str | None = None,
) -> RunResult:
    """Run (or resume) every study of ``experiment``; returns when no trial is left to run.

    Args:
        experiment: what to run.
        root: folder for trial directories (and the default SQLite store).
        store: a :class:`Store` or a SQLAlchemy URL; default ``<root>/tunebook.db``. A URL is
            only opened once the experiment and its workload have been checked, so bad input
            leaves no trace in the store.
        workers: number of local worker processes; 0 runs trials in this process (debugging).
        max_attempts: a trial whose worker died this many times is marked failed.
        progress: called with a :class:`Progress` snapshot a few times a second.
        argv: the command line that started the run, recorded for reproduction.
        retry_failed: put the experiment's failed trials back in the queue first (their
            attempts start again; the old error goes to the trial's ``log.txt``). Infeasible
            trials are results and are never retried.
        trial_timeout: seconds an attempt may run (default: the experiment's
            ``trial_timeout``, else no limit); past it the trial is stopped and ``failed``.
        executor: ``"local"`` (worker processes on this machine) or ``"ray"`` (``workers``
            Ray actors, each with the experiment's ``resources``).
        address: the Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts
            a local Ray for the run.

    Raises:
        WorkloadError: the workload cannot be loaded, could not even start on the first trial
            (the run stops there instead of failing every trial), or never reports the
            objective metric.
        StoreError: the store holds an incompatible experiment of the same name.
    """
    if getattr(mp.current_process(), "_inheriting", False):
        # A worker process is importing the user's script (spawn re-runs __main__), and the
        # script calls run() at the top level: starting workers from here would never end.
        raise WorkloadError(_GUARD_HINT)
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    started = time.monotonic()
    timeout = trial_timeout if trial_timeout is not None else experiment.trial_timeout
    options = options or WorkerOptions()
    if timeout is not None and options.trial_timeout is None:
        options = WorkerOptions(**{**options.__dict__, "trial_timeout": float(timeout)})
    # Absolute: command workloads run in the experiment's folder and get the trial folder's path.
    root = Path(root).resolve()
    # Check everything that can be wrong before the store is touched.
    workload = load_workload(experiment)
    limit_threads()
    studies, trials = materialize(experiment)
    owned = not isinstance(store, Store)  # opened here: closed here, whatever happens
    if isinstance(store, str):
        store = Store(store)
    elif store is None:
        store = Store.at_root(root)
    try:
        exp_id = register_experiment(store, experiment, studies, trials)
        close_abandoned_runs(store, exp_id)
        pool = make_executor(Job(experiment, exp_id, store.url, root, options), workers,
                             store, workload, executor, address)
        pool.release_orphans(store, max_attempts)
        result = RunResult(exp_id)
        if retry_failed:
            result.retried = requeue_failed(store, experiment, exp_id, root)
        record = provenance(experiment.source, experiment.base_dir, experiment.identity(),
                            argv, experiment=experiment).as_dict()
        # The pid lets the next run tell a run that died (SIGKILL) from one still going.
        # base_dir: where a `tunebook worker` elsewhere looks for the workload first.
        run_id = store.start_run(exp_id, host_name(), workers, {
            **record, "pid": os.getpid(), "base_dir": experiment.base_dir})
        session = _Session(experiment=experiment, store=store, exp_id=exp_id, root=root,
                           max_attempts=max_attempts, progress=progress,
                           total=sum(st.budget for st in studies), started=started,
                           result=result, suggestions=Suggestions.load(store, experiment, exp_id),
                           timeout=timeout,
                           seen_failures={t.id for t in store.trials(exp_id, statuses=("failed",))})
        if progress is not None and store.on_outage is None:
            store.on_outage = session.outage
        try:
            with _signals_as_interrupt(result):
                if pool.blocking:
                    session.in_process(pool)
                else:
                    session.supervise(pool, poll_seconds, stale_after_seconds)
        except StoreError:
            _store_gone(store)
            raise
        finally:
            # Closing the record must not hide why the run stopped, nor hang on a dead store.
            with contextlib.suppress(Exception):
                result.counts = session.snapshot()
            result.elapsed = time.monotonic() - started
            with contextlib.suppress(Exception):
                store.end_run(run_id, RunOutcome(result.counts, result.interrupted, result.signal,
                                                 round(result.elapsed, 3)))
        return result
    finally:
        if owned:
            store.close()


def register_experiment(store: StoreAPI, experiment: Experiment, studies: list[StudySpec],
                        trials: TrialRows) -> int:
    """Write the experiment, its studies and trials (``materialize``) to the store; returns its
    id. A changed objective must name a metric the stored trials reported (checked before
    anything is written: a typo must not wipe every trial's summary); their summaries are
    then recomputed. ``run`` and ``tunebook submit`` both register through here."""
    previous = store.get_experiment(experiment.name)
    obj = experiment.objective
    old_metric = previous.config.get("objective", {}).get("metric") if previous else None
    if previous is not None and old_metric != obj.metric:
        names = store.metric_names(previous.id)
        if names and obj.metric not in names:
            raise unknown_metric(experiment, names)
    exp_id = store.register(experiment.name, experiment.identity(), experiment.to_dict(),
                            studies, trials)
    if previous is not None and previous.config.get("objective") != {"metric": obj.metric,
                                                                     "goal": obj.goal}:
        refresh_summaries(store, exp_id, obj.metric, obj.goal)
    return exp_id


def _signals_as_interrupt(result: RunResult) -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP (a scheduler, a closed terminal) stop the run like Ctrl-C does; none
    of the three interrupts a store transaction half-way."""
    def interrupt(sig: signal.Signals) -> BaseException:
        if sig != signal.SIGINT:
            result.signal = sig.name
        return KeyboardInterrupt()

    return stops_on((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), interrupt)


_GUARD_HINT = ("tunebook.run() was called while a worker process was starting: a script that "
               "calls tunebook.run() must do it under `if __name__ == \"__main__\":` (worker "
               "processes import the script)")
EARLY_DEATHS = 3  # workers dying before running any trial, in a row, before giving up
HARD_KILL_GRACE = 10.0  # seconds past trial_timeout before a worker that ignores it is killed


@dataclass
class _Session:
    """One ``run()``: the loop that keeps an executor's workers busy until no trial is left."""

    experiment: Experiment
    store: StoreAPI
    exp_id: int
    root: Path
    max_attempts: int
    progress: Callable[[Progress], None] | None
    total: int
    started: float
    result: RunResult
    suggestions: Suggestions
    timeout: float | None = None
    seen_failures: set[int] = field(default_factory=set)
    early_deaths: int = 0
    checked_objective: bool = False
    # (worker, trial id) -> when this run first saw that worker running that trial
    running_since: dict[tuple[str, int], float] = field(default_factory=dict)
    last: Progress | None = None  # the latest snapshot shown
    failed_count: int = -1  # failed trials at the previous snapshot

    def outage(self, elapsed: float, cause: str) -> None:
        """The store is unreachable (it retries): say so on the progress display."""
        if self.progress is not None and self.last is not None:
            self.progress(replace(self.last, new_failures=(), outage=(
                f"{elapsed:.0f} s, retrying for up to {self.store.outage_seconds:.0f} s "
                f"({cause})")))

    def snapshot(self) -> dict[str, int]:
        """Counts per status; tells the progress display (with the new failures)."""
        counts = self.store.counts(self.exp_id)
        fresh: tuple[TrialRow, ...] = ()
        if counts.get("failed", 0) != self.failed_count:  # list them only when they change
            self.failed_count = counts.get("failed", 0)
            fresh = tuple(t for t in self.store.trials(self.exp_id, statuses=("failed",))
                          if t.id not in self.seen_failures)
            self.seen_failures.update(t.id for t in fresh)
        # Before showing them: a failure that stops the run is said once, by the error.
        self.check_failures(fresh)
        if self.progress is not None:
            obj = self.experiment.objective
            self.last = Progress(self.total, counts, self.store.best_trial(self.exp_id, obj.goal),
                                 time.monotonic() - self.started, obj.metric, fresh)
            self.progress(self.last)
        return counts

    def check_failures(self, fresh: Sequence[TrialRow]) -> None:
        """Stop the run when the workload is broken rather than unlucky.

        Only while no trial of the experiment ever reported anything: then a first failure
        before any report (import error, unknown hyperparameter, a command that exits at once)
        would repeat on every trial.
        """
        for t in fresh:
            error = t.error or ""
            if error.startswith(NO_OBJECTIVE):
                check_objective(self.store, self.exp_id, self.experiment)
            if error.startswith(COULD_NOT_START):
                broken = broken_workload(self.store, self.exp_id)
                if broken is None:
                    continue
                cause = (broken.error or "").splitlines()[0][len(COULD_NOT_START):]
                folder = trial_dir(self.root, self.experiment.name, broken.study, broken.index)
                raise WorkloadError(
                    f"{self.experiment.source}: workload: trial {broken.study}#{broken.index} "
                    f"could not start: {cause} (the run stopped there, before any trial "
                    f"reported anything; its log: {folder}/log.txt; after fixing it, run "
                    "again with --retry-failed; if the failure comes from the trial's own "
                    "values, a plain run goes on with the other trials)")

    def in_process(self, executor: Executor) -> None:
        """Run every trial in this process (``workers=0``: debugging, benchmarks).

        No snapshot between trials (it would cost more than a short trial): the loop itself
        stops at a workload that could not start, and the snapshot after it says why.
        """
        try:
            # What a killed run left to do comes first, as in supervise: asking an adaptive
            # designer for more before it finishes would change what the designer has seen.
            counts = self.store.counts(self.exp_id)
            self.suggestions.top_up(executor.slots - counts.get("pending", 0)
                                    - counts.get("interrupted", 0))
            executor.start()
            while self.suggestions.top_up(executor.slots):
                executor.start()
        except KeyboardInterrupt:
            for name in executor.stop():
                self.store.release_worker(name, "interrupted", self.max_attempts,
                                          interrupted=True)
            self.result.interrupted = True
        self.snapshot()
        check_objective(self.store, self.exp_id, self.experiment)

    def reap(self, executor: Executor) -> None:
        """Forget exited workers; their running trials go back to the queue."""
        for gone in executor.reap():
            released = self.store.release_worker(
                gone.name, f"worker exited with code {gone.exitcode}", self.max_attempts)
            executor.clean_up(self.store, released)
            if gone.workload_error is not None:
                raise WorkloadError(gone.workload_error)
            if gone.exitcode != 0 and not released:
                # It died before taking a trial: no trial will fail after max_attempts, so
                # without this the run would restart workers forever.
                self.early_deaths += 1
                if self.early_deaths >= EARLY_DEATHS:
                    raise WorkloadError(
                        f"{EARLY_DEATHS} worker processes in a row exited (code "
                        f"{gone.exitcode}) before running any trial; if tunebook.run() is "
                        "called from a script, guard the call with "
                        "`if __name__ == \"__main__\":`")
            else:
                self.early_deaths = 0

    def enforce_timeout(self, executor: Executor, running: Sequence[TrialRow]) -> None:
        """Kill a worker whose trial ignored its timeout (stuck in native code, say)."""
        if self.timeout is None:
            return
        now = time.monotonic()
        live = executor.live()
        current = {(t.worker or "", t.id) for t in running if t.worker in live}
        self.running_since = {k: v for k, v in self.running_since.items() if k in current}
        for key in current:
            since = self.running_since.setdefault(key, now)
            if now - since > self.timeout + HARD_KILL_GRACE:
                worker, trial_id = key
                executor.kill(worker)
                executor.clean_up(self.store, [trial_id])
                self.store.finish(trial_id, worker, "failed", error=(
                    f"timed out after {self.timeout:g} s (trial_timeout); the workload did not "
                    f"stop, so its worker was killed {HARD_KILL_GRACE:g} s later"))

    def supervise(self, executor: Executor, poll_seconds: float, stale_after: float) -> None:
        """Keep the executor's workers busy; replace any that die; stop cleanly on Ctrl-C."""
        try:
            while True:
                self.reap(executor)
                running = self.store.trials(self.exp_id, statuses=("running",))
                # Workers on this host that are alive keep their trials, however old the
                # heartbeat (a laptop suspend jumps the wall clock; a long native call starves
                # the heartbeat thread): ours, and those of another run or a killed one.
                mine = executor.live()
                alive = set(mine) | {
                    t.worker for t in running if t.worker and executor.alive(t.worker)}
                if self.store.release_stale(self.exp_id, stale_after, self.max_attempts,
                                            exclude_workers=tuple(sorted(alive))):
                    running = self.store.trials(self.exp_id, statuses=("running",))
                if any(t.worker not in mine for t in running):
                    # Left by a run that was killed: free them once their process is gone.
                    executor.clean_up(self.store, executor.release_orphans(self.store,
                                                                           self.max_attempts))
                self.enforce_timeout(executor, running)
                counts = self.snapshot()
                if not self.checked_objective and counts.get("completed", 0) > 0:
                    self.checked_objective = True
                    check_objective(self.store, self.exp_id, self.experiment)
                claimable = counts.get("pending", 0) + counts.get("interrupted", 0)
                if self.suggestions.top_up(executor.slots - claimable):
                    counts = self.store.counts(self.exp_id)
                    claimable = counts.get("pending", 0) + counts.get("interrupted", 0)
                for _ in range(min(executor.slots - len(executor.live()), claimable)):
                    executor.start()
                if not executor.live() and claimable == 0 and counts.get("running", 0) == 0:
                    return
                executor.wait(poll_seconds)
        except KeyboardInterrupt:
            self.result.interrupted = True
            _store_gone(self.store)  # a user who stops a run must not wait out an outage
        except StoreError:
            _store_gone(self.store)
            raise
        finally:
            _stop_workers(executor, self.store, self.max_attempts)


def _store_gone(store: StoreAPI) -> None:
    """The store stayed unreachable past its bound, or the user stopped the run: the clean-up
    that follows (closing the run's record, releasing trials) tries briefly instead of waiting
    out an outage again."""
    store.outage_seconds = min(store.outage_seconds, 1.0)


def _stop_workers(executor: Executor, store: StoreAPI, max_attempts: int) -> None:
    """Stop every worker (each marks its trial interrupted), then release what they held.

    A second Ctrl-C or SIGTERM while waiting must not leave workers behind: signals are
    ignored until every worker is gone.
    """
    ignored = {}
    if threading.current_thread() is threading.main_thread():
        ignored = {sig: signal.signal(sig, signal.SIG_IGN)
                   for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        for name in executor.stop():
            with contextlib.suppress(Exception):
                store.release_worker(name, "stopped", max_attempts, interrupted=True)
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)



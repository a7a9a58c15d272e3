"""Run an experiment: materialise its trials in the store, then work through them in parallel.

The store is the queue. ``run`` writes every study and its trials (trial ``i`` is a pure function
of the study seed, the search space and ``i``), starts ``workers`` long-lived worker processes
that claim trials atomically, replaces any worker that dies (its trial goes back to the queue and
resumes from its checkpoint, failing after ``max_attempts``), and stops cleanly on Ctrl-C
(running trials become ``interrupted`` and resume on the next run).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook.errors import WorkloadError
from tunebook.experiment import Experiment
from tunebook.provenance import provenance
from tunebook.results import summaries_for
from tunebook.search import make_designer, trial_seed
from tunebook.store import Store, TrialRow
from tunebook.worker import (
    EXIT_WORKLOAD_ERROR,
    WorkerOptions,
    limit_threads,
    worker_loop,
    worker_main,
)
from tunebook.workload import load_workload

__all__ = ["Progress", "RunResult", "materialize", "refresh_summaries", "run"]


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run, for progress displays."""

    total: int
    counts: dict[str, int]
    best: TrialRow | None
    elapsed: float
    metric: str

    @property
    def done(self) -> int:
        """Trials that reached a final state."""
        return sum(self.counts.get(s, 0) for s in ("completed", "infeasible", "failed"))


@dataclass
class RunResult:
    """What a run did."""

    experiment_id: int
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    elapsed: float = 0.0


TrialRows = dict[str, Sequence[tuple[int, dict[str, Any], int]]]


def materialize(experiment: Experiment) -> tuple[list[dict[str, Any]], TrialRows]:
    """Studies and their trials ``(index, params, seed)`` for the store.

    Each study searches the same nuisance points (same seed): a paired comparison of the
    scientific values, so differences between studies are not luck of the sampling.
    """
    studies: list[dict[str, Any]] = []
    trials: TrialRows = {}
    for spec in experiment.studies():
        designer = make_designer(experiment.search.algorithm, experiment.nuisance,
                                 experiment.search.seed, experiment.search.trials)
        cap = designer.capacity()
        budget = experiment.search.trials if cap is None else cap
        studies.append({"name": spec.name, "position": spec.position,
                        "scientific": spec.scientific, "algorithm": designer.name,
                        "seed": experiment.search.seed, "budget": budget})
        rows = []
        for i, nuisance in enumerate(designer.suggest(range(budget))):
            params = {**experiment.fixed, **spec.scientific, **nuisance}
            rows.append((i, params, trial_seed(experiment.search.seed, spec.name, i)))
        trials[spec.name] = rows
    return studies, trials


def refresh_summaries(store: Store, experiment_id: int, metric: str, goal: str) -> None:
    """Recompute every trial's best/final values for ``metric`` (the objective changed)."""
    ids = [t.id for t in store.trials(experiment_id)]
    summaries = summaries_for(store, experiment_id, ids, metric, goal)  # type: ignore[arg-type]
    store.set_summaries([{"id": tid, **s.as_dict()} for tid, s in summaries.items()])


def _release_orphans(store: Store, experiment_id: int, max_attempts: int) -> None:
    """Release trials left running by a previous run on this host whose process is gone."""
    host = socket.gethostname()
    for t in store.trials(experiment_id, statuses=("running",)):
        parts = (t.worker or "").split(":")
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                store.release_worker(t.worker or "", "the run that owned it is gone", max_attempts,
                                     interrupted=True)
            except PermissionError:
                pass


def run(
    experiment: Experiment,
    *,
    root: str | Path = "tunebook",
    store: Store | str | None = None,
    workers: int = 1,
    max_attempts: int = 3,
    progress: Callable[[Progress], None] | None = None,
    poll_seconds: float = 0.25,
    stale_after_seconds: float = 120.0,
    options: WorkerOptions | None = None,
    argv: list[str] | None = None,
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

    Raises:
        WorkloadError: the workload cannot be loaded, or never reports the objective metric.
        StoreError: the store holds an incompatible experiment of the same name.
    """
    if getattr(mp.current_process(), "_inheriting", False):
        # A worker process is importing the user's script (spawn re-runs __main__), and the
        # script calls run() at the top level: starting workers from here would never end.
        raise WorkloadError(_GUARD_HINT)
    started = time.monotonic()
    options = options or WorkerOptions()
    # Absolute: command workloads run in the experiment's folder and get the trial folder's path.
    root = Path(root).resolve()
    # Check everything that can be wrong before the store is touched.
    workload = load_workload(experiment)
    limit_threads()
    studies, trials = materialize(experiment)
    if isinstance(store, str):
        store = Store(store)
    elif store is None:
        store = Store.at_root(root)
    previous = store.get_experiment(experiment.name)
    obj = experiment.objective
    if previous is not None and previous.config.get("objective", {}).get("metric") != obj.metric:
        # A new objective for stored trials: it must be a metric they reported, checked before
        # anything is written (a typo must not wipe every trial's summary).
        names = store.metric_names(previous.id)
        if names and obj.metric not in names:
            raise _unknown_metric(experiment, names)
    exp_id = store.register(experiment.name, experiment.identity(), experiment.to_dict(),
                            studies, trials)
    if previous is not None and previous.config.get("objective") != {"metric": obj.metric,
                                                                     "goal": obj.goal}:
        refresh_summaries(store, exp_id, obj.metric, obj.goal)
    _release_orphans(store, exp_id, max_attempts)
    result = RunResult(exp_id)
    run_id = store.start_run(exp_id, socket.gethostname(), workers, provenance(
        experiment.source, experiment.base_dir, experiment.identity(), argv).as_dict())
    session = _Session(experiment=experiment, store=store, exp_id=exp_id, workload=workload,
                       root=root, max_attempts=max_attempts, options=options,
                       progress=progress, total=sum(len(v) for v in trials.values()),
                       started=started, result=result)
    try:
        if workers <= 0:
            session.in_process()
        else:
            session.with_workers(workers, poll_seconds, stale_after_seconds)
    finally:
        result.counts = session.snapshot()
        result.elapsed = time.monotonic() - started
        store.end_run(run_id, {"counts": result.counts, "interrupted": result.interrupted,
                               "elapsed": round(result.elapsed, 3)})
    return result


_GUARD_HINT = ("tunebook.run() was called while a worker process was starting: a script that "
               "calls tunebook.run() must do it under `if __name__ == \"__main__\":` (worker "
               "processes import the script)")
EARLY_DEATHS = 3  # workers dying before running any trial, in a row, before giving up


@dataclass
class _Session:
    """One ``run()``: the loop that keeps N workers busy until no trial is left."""

    experiment: Experiment
    store: Store
    exp_id: int
    workload: Any
    root: Path
    max_attempts: int
    options: WorkerOptions
    progress: Callable[[Progress], None] | None
    total: int
    started: float
    result: RunResult
    procs: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    early_deaths: int = 0

    def snapshot(self) -> dict[str, int]:
        """Counts per status; tells the progress display."""
        counts = self.store.counts(self.exp_id)
        if self.progress is not None:
            obj = self.experiment.objective
            self.progress(Progress(self.total, counts, self.store.best_trial(self.exp_id, obj.goal),
                                   time.monotonic() - self.started, obj.metric))
        return counts

    def in_process(self) -> None:
        """Run every trial in this process (``workers=0``: debugging, benchmarks)."""
        name = f"{socket.gethostname()}:{os.getpid()}:inproc"
        try:
            worker_loop(self.store, self.experiment, self.exp_id, self.workload, self.root,
                        name, self.options)
        except KeyboardInterrupt:
            self.store.release_worker(name, "interrupted", self.max_attempts, interrupted=True)
            self.result.interrupted = True
        _check_objective(self.store, self.exp_id, self.experiment)

    def spawn(self, ctx: Any, errors: Any) -> None:
        """Start one worker process."""
        self.generation += 1
        name = f"{socket.gethostname()}:{os.getpid()}:{self.generation}"
        exp = self.experiment
        p = ctx.Process(
            target=worker_main, name=f"tunebook-worker-{self.generation}", daemon=True,
            args=(self.store.url, exp.to_dict(), exp.source, exp.base_dir, self.exp_id,
                  str(self.root), name, errors, self.options))
        p.start()
        self.procs[name] = p

    def reap(self, errors: Any) -> None:
        """Forget exited workers; their running trials go back to the queue."""
        for name, p in list(self.procs.items()):
            if p.is_alive():
                continue
            p.join()
            del self.procs[name]
            released = self.store.release_worker(name, f"worker exited with code {p.exitcode}",
                                                 self.max_attempts)
            if p.exitcode == EXIT_WORKLOAD_ERROR:
                # Only a worker that could not load the workload says so on the queue; an exit
                # code alone could come from anything the worker ran.
                try:
                    raise WorkloadError(errors.get(timeout=1))
                except queue.Empty:
                    pass
            if p.exitcode != 0 and not released:
                # It died before taking a trial: no trial will fail after max_attempts, so
                # without this the run would restart workers forever.
                self.early_deaths += 1
                if self.early_deaths >= EARLY_DEATHS:
                    raise WorkloadError(
                        f"{EARLY_DEATHS} worker processes in a row exited (code {p.exitcode}) "
                        "before running any trial; if tunebook.run() is called from a script, "
                        "guard the call with `if __name__ == \"__main__\":`")
            else:
                self.early_deaths = 0

    def with_workers(self, workers: int, poll_seconds: float, stale_after: float) -> None:
        """Keep ``workers`` processes busy; replace any that die; stop cleanly on Ctrl-C."""
        ctx = mp.get_context("spawn")
        errors: Any = ctx.Queue()
        checked_objective = False
        try:
            while True:
                self.reap(errors)
                # Local workers that are alive keep their trials, however old the heartbeat
                # (a laptop suspend jumps the wall clock); dead ones were reaped above.
                self.store.release_stale(self.exp_id, stale_after, self.max_attempts,
                                         exclude_workers=tuple(self.procs))
                counts = self.snapshot()
                if not checked_objective and counts.get("completed", 0) > 0:
                    checked_objective = True
                    _check_objective(self.store, self.exp_id, self.experiment)
                claimable = counts.get("pending", 0) + counts.get("interrupted", 0)
                for _ in range(min(workers - len(self.procs), claimable)):
                    self.spawn(ctx, errors)
                if not self.procs and claimable == 0 and counts.get("running", 0) == 0:
                    return
                # Wake up as soon as a worker exits (the end of the run), or to refresh.
                sentinels = [p.sentinel for p in self.procs.values()]
                if sentinels:
                    mp_connection.wait(sentinels, timeout=poll_seconds)
                else:
                    time.sleep(poll_seconds)
        except KeyboardInterrupt:
            self.result.interrupted = True
        finally:
            _stop_workers(self.procs, self.store, self.max_attempts)
            errors.close()


def _stop_workers(procs: dict[str, Any], store: Store, max_attempts: int) -> None:
    """SIGTERM every worker (it marks its trial interrupted), then make sure."""
    for p in procs.values():
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 15
    for p in procs.values():
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    for name in procs:
        store.release_worker(name, "stopped", max_attempts, interrupted=True)


def _unknown_metric(experiment: Experiment, names: list[str]) -> WorkloadError:
    import difflib

    metric = experiment.objective.metric
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return WorkloadError(
        f"{experiment.source}: objective.metric: the workload never reports {metric!r}{hint}; "
        f"it reports {', '.join(names)}")


def _check_objective(store: Store, exp_id: int, experiment: Experiment) -> None:
    metric = experiment.objective.metric
    done = store.trials(exp_id, statuses=("completed",))
    if not done:
        return
    names = sorted({m for _, _, m, _ in store.measurements([done[0].id])})
    if names and metric not in names:
        raise _unknown_metric(experiment, names)
    if not names:
        raise WorkloadError(
            f"{experiment.source}: objective.metric: trial {done[0].study}#{done[0].index} "
            f"completed without reporting any metric (expected {metric!r})")


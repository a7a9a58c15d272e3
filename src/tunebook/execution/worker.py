"""A worker: claims trials from the store and runs them, one after another.

Workers are long-lived processes (importing torch costs seconds; paying it per trial would
dominate short trials) with one torch thread each. The same loop runs in a local process started
by ``tunebook run`` or on another machine pointed at the same store.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tunebook.core.interrupts import deliver, protected
from tunebook.core.paths import TRIAL_LOG, cache_dir, checkpoints_dir, trial_dir
from tunebook.core.processes import (
    die_with_parent,
    die_with_parent_sigkill,
    worker_name,
)
from tunebook.errors import Infeasible, TunebookError
from tunebook.execution.ckptstore import (
    SharedCheckpoints,
    TrialCheckpoints,
    open_checkpoint_root,
    prepare_trial,
)
from tunebook.execution.claim import ClaimedSink
from tunebook.execution.trial import Lost, Trial
from tunebook.execution.workload import Workload, load_workload
from tunebook.experiment import Experiment
from tunebook.objective import summarize
from tunebook.store.api import StoreAPI
from tunebook.store.sql import Store, TrialRow

__all__ = [
    "COULD_NOT_START",
    "NO_OBJECTIVE",
    "Stop",
    "TrialTimeout",
    "WorkerOptions",
    "broken_workload",
    "run_trial",
    "worker_loop",
    "worker_main",
]

EXIT_WORKLOAD_ERROR = 3
# Markers at the start of a failed trial's error, read by the runner: a workload that could not
# even start stops the run; one that never reported the objective may be an objective typo.
COULD_NOT_START = "could not start: "
NO_OBJECTIVE = "finished without reporting "
LOST_LINE = "--- {} lost the trial to another worker (heartbeat too old); abandoned"
MAX_ERROR_CHARS = 20_000  # a 30 MB exception message must not land in the store whole
# A workload failing with one of these before its first report is broken, not unlucky: a
# missing package, a hyperparameter name the code does not know (KeyError, or the ValueError
# that the built-in workloads and most argument checks raise), a wrong signature. The run
# stops at such a failure only while no trial of the experiment ever reported anything, and
# the trial stays failed, so a plain re-run moves on if it was the trial's own values.
_STARTUP_ERRORS: tuple[type[BaseException], ...] = (
    ImportError, NameError, AttributeError, KeyError, TypeError, ValueError, SyntaxError,
    OSError)


class Stop(BaseException):
    """Raised in a worker when it is asked to stop (SIGTERM): the trial is marked interrupted."""


class TrialTimeout(BaseException):
    """Raised in a trial that ran past ``trial_timeout`` seconds: the trial is marked failed.

    A BaseException, so that a workload's ``except Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker behaves.

    Attributes:
        heartbeat_seconds: how often the running trial's heartbeat is refreshed.
        idle_exit: exit when no trial is left (else wait for more).
        parent_pid: the process that started this worker; the worker stops (its trial becomes
            ``interrupted``) within about a second of that process dying, however it died.
        trial_timeout: seconds an attempt may run before it is stopped and recorded ``failed``.
        checkpoint_root: where checkpoints are shared (``--checkpoint-root``: a shared-mount
            path or an fsspec URL); overrides the experiment's ``checkpoint_root``.
    """

    heartbeat_seconds: float = 5.0
    idle_exit: bool = True
    parent_pid: int | None = None
    trial_timeout: float | None = None
    checkpoint_root: str | None = None


def limit_threads() -> None:
    """One compute thread per worker: N workers on N cores must not oversubscribe them."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
        # Raises once threads exist (already set in this process): nothing to do then.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


class Heartbeat:
    """One background thread per worker that refreshes the running trial's heartbeat.

    A thread per trial would cost a start and a join for every trial; short trials notice.

    With ``parent_pid``, a second thread watches the process that started the worker: when it
    is gone (killed by SIGKILL, the OOM killer, a scheduler), the worker sends itself SIGTERM,
    so its trial is marked ``interrupted`` and no worker outlives its run by more than about a
    second.
    """

    def __init__(self, store: StoreAPI, worker: str, every: float,
                 parent_pid: int | None = None) -> None:
        self.trial_id: int | None = None
        self.lost: int | None = None  # a trial the store gave to someone else meanwhile
        self._store, self._worker, self._every = store, worker, every
        self._parent = parent_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        # Its own thread: a heartbeat may wait out a store outage for minutes.
        self._watch = threading.Thread(target=self._watch_parent, daemon=True)

    def _watch_parent(self) -> None:
        while not self._stop.wait(0.5):
            if os.getppid() != self._parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            tid = self.trial_id
            if tid is not None:
                # A transient store error must not kill the trial.
                with contextlib.suppress(Exception):
                    if not self._store.heartbeat(tid, self._worker) and tid == self.trial_id:
                        self.lost = tid

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        if self._parent is not None:
            self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _TrialLog:
    """Appends to the trial's log.txt, creating the folder on first use only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(message.rstrip("\n") + "\n")


def run_trial(store: StoreAPI, experiment: Experiment, workload: Workload, row: TrialRow,
              root: str | Path, worker: str, options: WorkerOptions = WorkerOptions(),
              heartbeat: Heartbeat | None = None) -> str:
    """Run one claimed trial to its end and record the outcome; returns the final status.

    Exceptions from the workload never escape: they become ``failed`` (with the traceback) or
    ``infeasible``. Only :class:`Stop` escapes, after the trial is marked interrupted. A
    workload that returns without ever reporting the objective metric fails its trial
    ("finished without reporting val_error"): a result with no value is not a result.
    """
    if heartbeat is None:
        with Heartbeat(store, worker, options.heartbeat_seconds) as beat:
            return run_trial(store, experiment, workload, row, root, worker, options, beat)
    trial, log = _open_trial(store, experiment, row, root, worker, heartbeat, options)
    _seed_everything(row.seed)
    started = time.monotonic()
    fields: dict[str, Any] = {}
    heartbeat.trial_id = row.id
    timeout = options.trial_timeout
    try:
        try:
            with _alarm(timeout):
                workload.run(trial)
            status = "completed"
        except Infeasible as exc:
            status = "infeasible"
            fields = {"infeasible_reason": exc.reason, "infeasible_step": exc.step}
            log(f"infeasible: {exc}")
        except Stop:
            # Stopping must not wait out a store outage for ten minutes: a few seconds, then
            # the trial stays running and the next run frees it (its process is gone by then).
            store.outage_seconds = min(store.outage_seconds, 5.0)
            with contextlib.suppress(Lost):
                _safe_flush(trial)
            store.finish(row.id, worker, "interrupted", elapsed=time.monotonic() - started)
            log("interrupted")
            raise
        except Lost:
            # Its heartbeat was too old and another worker has it now: write nothing more.
            log(LOST_LINE.format(worker))
            return "lost"
        except TrialTimeout:
            status = "failed"
            fields = {"error": f"timed out after {timeout:g} s (trial_timeout)"}
            log(fields["error"])
        except (Exception, SystemExit) as exc:
            # SystemExit too: a workload calling sys.exit() (argparse does) fails its trial,
            # it does not take the worker down with it.
            status = "failed"
            text = _capped(traceback.format_exc())
            if _could_not_start(exc, trial):
                text = COULD_NOT_START + _one_line(exc) + "\n" + text
            fields = {"error": text}
            # A command's own output is in the log already: do not copy its tail there again.
            log(text if type(exc).__name__ != "WorkloadFailed"
                else "failed: " + str(exc).splitlines()[0])
        try:
            flushed = _safe_flush(trial)
        except Lost:  # the store refused the last measurements: another worker has it now
            log(LOST_LINE.format(worker))
            return "lost"
        if not flushed and status != "failed":
            status, fields = "failed", {"error": "could not write measurements to the store"}
    finally:
        heartbeat.trial_id = None
    status = _settle(store, experiment, row, trial, log, status, fields)
    store.finish(row.id, worker, status, elapsed=time.monotonic() - started, **fields)
    return status


def _open_trial(store: StoreAPI, experiment: Experiment, row: TrialRow, root: str | Path,
                worker: str, heartbeat: Heartbeat, options: WorkerOptions = WorkerOptions(),
                ) -> tuple[Trial, _TrialLog]:
    """The live :class:`Trial` of a claimed row, its folder made safe to resume from."""
    folder = trial_dir(root, experiment.name, row.study, row.index)
    log = _TrialLog(folder / TRIAL_LOG)
    stale = checkpoints_dir(folder)
    if row.first_start and stale.exists():
        # Left by another store (a deleted database, another --store on the same root): never
        # resume from checkpoints this store did not record. Moved aside, not deleted.
        aside = folder / f"checkpoints.unrecorded-{int(time.time())}"
        stale.rename(aside)
        log(f"moved checkpoints this store did not record to {aside.name}")
    heartbeat.lost = None
    shared = _shared_checkpoints(experiment, options, row, folder, log)
    metric = experiment.objective.metric
    trial = Trial(cancelled=lambda: heartbeat.lost == row.id, shared=shared,
                  holds_claim=lambda: store.heartbeat(row.id, worker),
                  hparams=dict(row.params), max_train_steps=experiment.max_train_steps,
                  eval_every=experiment.eval_every, seed=row.seed, dir=folder,
                  sink=ClaimedSink(store, worker),
                  trial_id=row.id, study=row.study, index=row.index,
                  objective=metric, goal=experiment.objective.goal,
                  log=log, cache_dir=cache_dir(root))
    if not row.first_start:
        # Measurements past the checkpoint we resume from belong to a lost future: drop them.
        store.truncate_measurements(row.id, trial.start_step, worker=worker)
        log(f"--- attempt {row.attempts} by {worker}, start_step={trial.start_step}")
    return trial, log


def _checkpoint_root(experiment: Experiment, options: WorkerOptions) -> SharedCheckpoints | None:
    """The shared checkpoints of this run: ``--checkpoint-root``, else the file's."""
    return open_checkpoint_root(options.checkpoint_root or experiment.checkpoint_root,
                                experiment.base_dir)


def _shared_checkpoints(experiment: Experiment, options: WorkerOptions, row: TrialRow,
                        folder: Path, log: _TrialLog) -> TrialCheckpoints | None:
    """The trial's shared checkpoints (None without a checkpoint root), the newest recorded
    one fetched into its folder first when this machine does not hold it."""
    shared = _checkpoint_root(experiment, options)
    if shared is None:
        return None
    mine = shared.trial(experiment.name, row.study, row.index)
    try:
        prepare_trial(mine, checkpoints_dir(folder), first_start=row.first_start,
                      recorded_step=row.checkpoint_step, log=log)
    except Exception as exc:  # s3fs retried already: resume from what this machine holds
        log(f"could not fetch from {mine.where} ({type(exc).__name__}: {exc}); resuming from "
            f"this machine's checkpoints")
    return mine


def _settle(store: StoreAPI, experiment: Experiment, row: TrialRow, trial: Trial, log: _TrialLog,
            status: str, fields: dict[str, Any]) -> str:
    """The final status and the fields to record, from what the attempt saw (``fields`` is
    completed in place): a completed trial that never reported the objective is failed."""
    metric = experiment.objective.metric
    if row.first_start:
        points = trial.objective_points  # this attempt saw the whole curve
    else:
        points = [(s, v) for _, s, _, v in store.measurements([row.id], metric=metric)]
    if status == "completed" and not points:
        seen = sorted(trial.reported_metrics)
        status = "failed"
        fields["error"] = (f"{NO_OBJECTIVE}{metric!r} (the objective metric); it reported "
                           + (", ".join(repr(m) for m in seen) if seen else "nothing"))
        log(fields["error"])
    fields.update(summarize(points, experiment.objective.goal).as_dict())
    for key in ("error", "infeasible_reason"):
        if isinstance(fields.get(key), str):
            # An undecodable file name in a message (a lone surrogate) cannot be stored.
            fields[key] = fields[key].encode("utf-8", "backslashreplace").decode("utf-8")
    if status == "completed":
        fields["error"] = None
    return status


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 500 characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 500 else text[:497] + "..."


def _capped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """The head and tail of a long error (the tail has the exception itself)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def _could_not_start(exc: BaseException, trial: Trial) -> bool:
    """A failure on a fresh start before the first report, of a kind that says the workload is
    broken (import, name, signature, missing file, a command that exits at once)."""
    if trial.reported_metrics or trial.start_step != 0:
        return False
    if isinstance(exc, _STARTUP_ERRORS):
        return True
    # A command workload that exited non-zero before printing any measurement.
    return type(exc).__name__ == "WorkloadFailed"


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in this (main) thread after ``seconds``."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        deliver(TrialTimeout())

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _safe_flush(trial: Trial) -> bool:
    try:
        trial.flush()
        return True
    except Exception:
        return False


def worker_loop(store: StoreAPI, experiment: Experiment, experiment_id: int, workload: Workload,
                root: str | Path, worker: str, options: WorkerOptions = WorkerOptions(),
                should_stop: Any = None) -> int:
    """Claim and run trials until none is left; returns how many ran."""
    shared = _checkpoint_root(experiment, options)
    if shared is not None:
        shared.probe()  # an unreachable bucket stops the worker before its first claim
    with Heartbeat(store, worker, options.heartbeat_seconds, options.parent_pid) as heartbeat:
        return _loop(store, experiment, experiment_id, workload, root, worker, options,
                     should_stop, heartbeat)


def _loop(store: StoreAPI, experiment: Experiment, experiment_id: int, workload: Workload,
          root: str | Path, worker: str, options: WorkerOptions, should_stop: Any,
          heartbeat: Heartbeat) -> int:
    ran = 0
    while True:
        if should_stop is not None and should_stop():
            return ran
        row = store.claim(experiment_id, worker)
        if row is None:
            if options.idle_exit:
                return ran
            time.sleep(0.2)
            continue
        status = run_trial(store, experiment, workload, row, root, worker, options, heartbeat)
        ran += 1
        if status == "failed" and broken_workload(store, experiment_id) is not None:
            return ran  # every next trial would fail the same way: the runner says why


# Failures that say the code cannot run at all, whatever the trial's values: one is enough.
# Any other kind (a ValueError, a command's non-zero exit) stops the run at the second trial
# that fails the same way, numbers aside.
_UNAMBIGUOUS = ("ImportError", "ModuleNotFoundError", "NameError", "AttributeError",
                "KeyError", "TypeError", "SyntaxError", "PermissionError", "FileNotFoundError")


def broken_workload(store: StoreAPI, experiment_id: int) -> TrialRow | None:
    """The failed trial showing that the workload cannot start, or None.

    Only while no trial of the experiment ever reported anything: a failure before the first
    report of an unambiguous kind (import, name, signature), or the same failure (numbers
    aside) on two trials.
    """
    seen: dict[str, int] = {}
    found = None
    for t in store.trials(experiment_id, statuses=("failed",)):
        error = t.error or ""
        if not error.startswith(COULD_NOT_START):
            continue
        cause = error.splitlines()[0][len(COULD_NOT_START):]
        key = re.sub(r"[-+]?\d[\w.+-]*", "#", cause)
        seen[key] = seen.get(key, 0) + 1
        if cause.split(":", 1)[0] in _UNAMBIGUOUS or seen[key] >= 2:
            found = t
            break
    # Last, and only when needed: listing the metrics reads every measurement's index.
    if found is None or store.metric_names(experiment_id):
        return None
    return found


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # Once is enough: a second SIGTERM (the parent-death signal and the parent check both
    # send one) must not interrupt the handling of the first, which marks the trial.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    deliver(Stop())


STUCK_GRACE = 10  # seconds a worker gets to stop by itself once its run is gone
# Watches the worker (its parent): once the worker's own parent is no longer the run, waits
# STUCK_GRACE seconds and SIGKILLs it. The worker's SIGTERM handler cannot run while its main
# thread holds the GIL in a long native call; this costs a shell and one `cut` a second. The
# sentinel dies with the worker (parent-death signal), so it never kills a reused pid.
_SENTINEL = """
while [ "$(cut -d' ' -f4 /proc/$PPID/stat 2>/dev/null)" = "$1" ]; do sleep 1; done
sleep "$2"
kill -9 $PPID 2>/dev/null
"""


_SENTINELS: list[Any] = []  # kept: a collected Popen of a live process warns


def _start_sentinel(run_pid: int) -> None:
    if sys.platform != "linux" or not os.path.exists(f"/proc/{os.getpid()}/stat"):
        return
    import subprocess

    # protected(): a SIGTERM landing in logging's at-fork hook would be swallowed there
    # ("Exception ignored in _releaseLock"), lost, and leave logging's lock held.
    with protected(), contextlib.suppress(OSError):
        _SENTINELS.append(subprocess.Popen(
            ["sh", "-c", _SENTINEL, "tunebook-sentinel", str(run_pid), str(STUCK_GRACE)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent_sigkill))


def worker_main(store_url: str, config: dict[str, Any], source: str, base_dir: str,
                experiment_id: int, root: str, label: str, errors: Any,
                options: WorkerOptions = WorkerOptions()) -> None:
    """Entry point of a local worker process (started with the ``spawn`` method).

    It claims trials as ``worker_name(label)`` (its own pid inside) and stops, marking its
    trial interrupted, on SIGTERM or as soon as the process that started it is gone.
    """
    # Ctrl-C reaches the whole process group; the parent decides how to stop us (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    # Linux sends SIGTERM the moment the run dies; the parent watch covers other systems.
    die_with_parent()
    store: StoreAPI | None = None
    try:
        if options.parent_pid is not None:
            if os.getppid() != options.parent_pid:
                return  # the run died while we were starting
            _start_sentinel(options.parent_pid)
        limit_threads()
        try:
            experiment = Experiment.from_dict(config, source=source, base_dir=base_dir)
            workload = load_workload(experiment)
        except TunebookError as exc:
            errors.put(str(exc))
            sys.exit(EXIT_WORKLOAD_ERROR)
        limit_threads()
        # The run checked the store a moment ago: wait out an outage rather than fail.
        store = Store(store_url, wait_for_store=True)
        worker_loop(store, experiment, experiment_id, workload, root, worker_name(label),
                    options)
    except TunebookError as exc:
        # The store unreachable past its bound, say: one line, through the run.
        errors.put(str(exc))
        sys.exit(EXIT_WORKLOAD_ERROR)
    except Stop:
        pass  # asked to stop (SIGTERM, or the run died) at any point: a quiet exit
    finally:
        # On the way out: a SIGTERM now (the run stopping its workers) has nothing to stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if store is not None:
            with contextlib.suppress(Stop):  # one delivered just before the line above
                store.close()

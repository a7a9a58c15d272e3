"""A worker: claims trials from the store and runs them, one after another.

Workers are long-lived processes (importing torch costs seconds; paying it per trial would
dominate short trials) with one torch thread each. The same loop runs in a local process started
by ``tunebook run`` or on another machine pointed at the same store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tunebook.errors import Infeasible, TunebookError
from tunebook.experiment import Experiment
from tunebook.store import Store, TrialRow
from tunebook.summary import summarize
from tunebook.trial import Lost, Trial
from tunebook.workload import Workload, load_workload

__all__ = ["Stop", "WorkerOptions", "run_trial", "trial_dir", "worker_loop", "worker_main"]

EXIT_WORKLOAD_ERROR = 3


class Stop(BaseException):
    """Raised in a worker when it is asked to stop (SIGTERM): the trial is marked interrupted."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker behaves."""

    heartbeat_seconds: float = 5.0
    idle_exit: bool = True


def slug(text: str) -> str:
    """A file-system-safe, readable and unique rendering of a name.

    Names that are already safe are kept as they are; any other gets a short hash of the
    original appended, so two names that differ only in unsafe characters (``a/b``, ``a_b``)
    never share a folder. A safe name that already ends like such a hash (``a_b-c14cddc0``, the
    slug of ``a/b``) gets one too: a kept name never ends like a hashed one, so two names map to
    the same folder only if their hashes collide.
    """
    s = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", text).strip("._")[:80] or "_"
    if s == text and not re.search(r"-[0-9a-f]{8}$", s):
        return s
    return f"{s}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def trial_dir(root: str | Path, experiment: str, study: str, index: int) -> Path:
    """The folder of one trial under a tunebook root."""
    return Path(root) / "runs" / slug(experiment) / slug(study) / f"trial-{index:05d}"


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
    """

    def __init__(self, store: Store, worker: str, every: float) -> None:
        self.trial_id: int | None = None
        self.lost: int | None = None  # a trial the store gave to someone else meanwhile
        self._store, self._worker, self._every = store, worker, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

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
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(message.rstrip("\n") + "\n")


def run_trial(store: Store, experiment: Experiment, workload: Workload, row: TrialRow,
              root: str | Path, worker: str, options: WorkerOptions = WorkerOptions(),
              heartbeat: Heartbeat | None = None) -> str:
    """Run one claimed trial to its end and record the outcome; returns the final status.

    Exceptions from the workload never escape: they become ``failed`` (with the traceback) or
    ``infeasible``. Only :class:`Stop` escapes, after the trial is marked interrupted.
    """
    if heartbeat is None:
        with Heartbeat(store, worker, options.heartbeat_seconds) as beat:
            return run_trial(store, experiment, workload, row, root, worker, options, beat)
    folder = trial_dir(root, experiment.name, row.study, row.index)
    log = _TrialLog(folder / "log.txt")
    stale = folder / "checkpoints"
    if row.first_start and stale.exists():
        # Left by another store (a deleted database, another --store on the same root): never
        # resume from checkpoints this store did not record. Moved aside, not deleted.
        aside = folder / f"checkpoints.unrecorded-{int(time.time())}"
        stale.rename(aside)
        log(f"moved checkpoints this store did not record to {aside.name}")
    hparams = dict(row.params)
    heartbeat.lost = None
    trial = Trial(cancelled=lambda: heartbeat.lost == row.id,
                  hparams=hparams, max_train_steps=experiment.max_train_steps,
                  eval_every=experiment.eval_every, seed=row.seed, dir=folder, sink=store,
                  trial_id=row.id, study=row.study, index=row.index,
                  objective=experiment.objective.metric, goal=experiment.objective.goal,
                  log=log, cache_dir=Path(root) / "cache")
    if not row.first_start:
        # Measurements past the checkpoint we resume from belong to a lost future: drop them.
        store.truncate_measurements(row.id, trial.start_step)
        log(f"--- attempt {row.attempts} by {worker}, start_step={trial.start_step}")
    _seed_everything(row.seed)
    started = time.monotonic()
    fields: dict[str, Any] = {}
    heartbeat.trial_id = row.id
    try:
        try:
            workload.run(trial)
            status = "completed"
        except Infeasible as exc:
            status = "infeasible"
            fields = {"infeasible_reason": exc.reason, "infeasible_step": exc.step}
            log(f"infeasible: {exc}")
        except Stop:
            _safe_flush(trial)
            store.finish(row.id, worker, "interrupted", elapsed=time.monotonic() - started)
            log("interrupted")
            raise
        except Lost:
            # Its heartbeat was too old and another worker has it now: write nothing more.
            log(f"--- {worker} lost the trial to another worker (heartbeat too old); abandoned")
            return "lost"
        except (Exception, SystemExit):
            # SystemExit too: a workload calling sys.exit() (argparse does) fails its trial,
            # it does not take the worker down with it.
            status = "failed"
            fields = {"error": traceback.format_exc()}
            log(fields["error"])
        if not _safe_flush(trial) and status != "failed":
            status, fields = "failed", {"error": "could not write measurements to the store"}
    finally:
        heartbeat.trial_id = None
    if row.first_start:
        points = trial.objective_points  # this attempt saw the whole curve
    else:
        points = [(s, v) for _, s, _, v in store.measurements(
            [row.id], metric=experiment.objective.metric)]
    fields.update(summarize(points, experiment.objective.goal).as_dict())
    if status == "completed":
        fields["error"] = None
    store.finish(row.id, worker, status, elapsed=time.monotonic() - started, **fields)
    return status


def _safe_flush(trial: Trial) -> bool:
    try:
        trial.flush()
        return True
    except Exception:
        return False


def worker_loop(store: Store, experiment: Experiment, experiment_id: int, workload: Workload,
                root: str | Path, worker: str, options: WorkerOptions = WorkerOptions(),
                should_stop: Any = None) -> int:
    """Claim and run trials until none is left; returns how many ran."""
    with Heartbeat(store, worker, options.heartbeat_seconds) as heartbeat:
        return _loop(store, experiment, experiment_id, workload, root, worker, options,
                     should_stop, heartbeat)


def _loop(store: Store, experiment: Experiment, experiment_id: int, workload: Workload,
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
        run_trial(store, experiment, workload, row, root, worker, options, heartbeat)
        ran += 1


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def worker_main(store_url: str, config: dict[str, Any], source: str, base_dir: str,
                experiment_id: int, root: str, worker: str, errors: Any,
                options: WorkerOptions = WorkerOptions()) -> None:
    """Entry point of a local worker process (started with the ``spawn`` method)."""
    # Ctrl-C reaches the whole process group; the parent decides how to stop us (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    limit_threads()
    try:
        experiment = Experiment.from_dict(config, source=source, base_dir=base_dir)
        workload = load_workload(experiment)
    except TunebookError as exc:
        errors.put(str(exc))
        sys.exit(EXIT_WORKLOAD_ERROR)
    limit_threads()
    store = Store(store_url)
    try:
        worker_loop(store, experiment, experiment_id, workload, root, worker, options)
    except Stop:
        pass
    finally:
        store.close()


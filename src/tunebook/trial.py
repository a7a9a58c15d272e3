"""The live trial a workload sees: its hyperparameters, a folder, ``report()`` and checkpoints.

``report()`` only appends to a buffer: measurements reach the store in bulk (every few thousand
points, every second, at every checkpoint and at the end). A checkpoint is published only after
every measurement up to its step is in the store, so a trial killed at any instant resumes from
its latest checkpoint with no measurement lost or duplicated.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from tunebook.errors import Infeasible

__all__ = ["Lost", "MeasurementSink", "Trial", "fsync_path"]

_CKPT_PREFIX = "step-"


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a directory on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush a checkpoint's files to disk before it is published (a power cut must not
    leave a published checkpoint with empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(folder)


class Lost(BaseException):
    """Raised in a trial whose claim the store gave to another worker: stop, write nothing."""


class MeasurementSink(Protocol):
    """Where a trial's measurements go (the store, in practice)."""

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        """Persist ``(step, metric, value)`` rows."""

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        """Remember the step of the latest complete checkpoint."""

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        """Delete measurements past ``after_step``."""


class Trial:
    """One running trial.

    Attributes:
        hparams: every hyperparameter value (scientific, nuisance and fixed).
        max_train_steps: how many steps to train for.
        eval_every: evaluate (and report) every this many steps.
        seed: this trial's training seed (distinct per trial, recorded in the store).
        dir: a folder of its own for files and checkpoints.
        start_step: the step of the checkpoint to resume from (0 for a fresh start).
        study, index, id: which trial this is.
        objective: the objective metric's name; a NaN or infinite value makes the trial
            infeasible.
        goal: ``"minimize"`` or ``"maximize"``, the objective's direction.
        cache_dir: a folder shared by every trial under the same root (generated data sets,
            tokenizers...); created on first use by whoever needs it.
        latest: the last ``(step, value)`` reported for each metric in this attempt.
        objective_points: every ``(step, value)`` of the objective reported in this attempt.
    """

    flush_every_points = 5000
    flush_every_seconds = 1.0
    keep_checkpoints = 2  # with the default pruning; at least 1 is always kept

    def __init__(
        self,
        *,
        hparams: Mapping[str, Any],
        max_train_steps: int,
        eval_every: int,
        seed: int,
        dir: str | Path,
        sink: MeasurementSink | None = None,
        trial_id: int = 0,
        study: str = "main",
        index: int = 0,
        objective: str | None = None,
        goal: str = "minimize",
        log: Callable[[str], None] | None = None,
        cache_dir: str | Path | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.hparams = dict(hparams)
        self.max_train_steps = max_train_steps
        self.eval_every = eval_every
        self.seed = seed
        self._dir = Path(dir)
        self._dir_made = False
        self.id = trial_id
        self.study = study
        self.index = index
        self.objective = objective
        self.goal = goal
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self._dir / "cache"
        self._sink = sink
        self._log = log
        self._cancelled = cancelled
        self._buffer: list[tuple[int, str, float]] = []
        self._last_flush = time.monotonic()
        self.reported_metrics: set[str] = set()
        self.latest: dict[str, tuple[int, float]] = {}
        self.objective_points: list[tuple[int, float]] = []
        self.last_step: int | None = None
        latest = self.latest_checkpoint()
        self.start_step = latest[0] if latest else 0

    @property
    def dir(self) -> Path:
        """The trial's own folder (created on first use)."""
        if not self._dir_made:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._dir_made = True
        return self._dir

    # ----------------------------------------------------------------- measurements
    def report(self, step: int, **metrics: float) -> None:
        """Record metrics measured at ``step`` (cheap: buffered, written in bulk).

        Raises:
            Infeasible: when the objective metric is NaN or infinite; the runner records the
                trial as infeasible with this step and reason.
            TypeError: for a non-integer step or a non-numeric value.
        """
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"report(step=...) must be an int, got {step!r}")
        if self._cancelled is not None and self._cancelled():
            raise Lost()
        for name, value in metrics.items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"report({name}=...) must be a number, got {value!r}") from None
            self._buffer.append((step, name, v))
            self.reported_metrics.add(name)
            self.latest[name] = (step, v)
            if name == self.objective:
                self.objective_points.append((step, v))
            if name == self.objective and not math.isfinite(v):
                self.flush()
                raise Infeasible(f"objective {name} is {v} at step {step}", step)
        self.last_step = step
        if (len(self._buffer) >= self.flush_every_points
                or time.monotonic() - self._last_flush >= self.flush_every_seconds):
            self.flush()

    def flush(self) -> None:
        """Write buffered measurements to the store now."""
        if self._buffer and self._sink is not None:
            rows, self._buffer = self._buffer, []
            self._sink.add_measurements(self.id, rows)
        self._last_flush = time.monotonic()

    def infeasible(self, reason: str, step: int | None = None) -> Infeasible:
        """Build the exception to raise when the trial diverged: ``raise trial.infeasible(...)``."""
        return Infeasible(reason, step if step is not None else self.last_step)

    def log(self, message: str) -> None:
        """Append a line to the trial's log (kept in the trial folder)."""
        if self._log is not None:
            self._log(message)

    # ----------------------------------------------------------------- checkpoints
    @property
    def checkpoint_root(self) -> Path:
        """The folder holding this trial's checkpoints."""
        return self._dir / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(step, folder)``, oldest first."""
        if not self.checkpoint_root.is_dir():
            return []
        out = []
        for p in self.checkpoint_root.iterdir():
            if p.is_dir() and p.name.startswith(_CKPT_PREFIX):
                with contextlib.suppress(ValueError):
                    out.append((int(p.name[len(_CKPT_PREFIX):]), p))
        return sorted(out)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint as ``(step, folder)``, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def rewind(self, step: int) -> None:
        """Resume from ``step`` instead of :attr:`start_step` (e.g. the latest checkpoint was
        corrupt and an older one was loaded): measurements past ``step`` are dropped, since
        training will produce them again."""
        self.flush()
        if self._sink is not None:
            self._sink.truncate_measurements(self.id, step)
            self._sink.set_checkpoint_step(self.id, step)
        self.start_step = step

    @contextlib.contextmanager
    def checkpoint(self, step: int, prune: bool = True) -> Iterator[Path]:
        """Write a checkpoint for ``step``: yields an empty folder to fill.

        On leaving the block the measurements reported so far are flushed, then the folder is
        renamed into place in one atomic step; a crash inside the block leaves no checkpoint.
        With ``prune``, checkpoints older than the newest ``keep_checkpoints`` are removed;
        a caller with its own retention policy (keep the N best) passes ``prune=False``.
        """
        if self._cancelled is not None and self._cancelled():
            raise Lost()
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_root / f".tmp-{_CKPT_PREFIX}{step:010d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.flush()
        _fsync_tree(tmp)
        final = self.checkpoint_root / f"{_CKPT_PREFIX}{step:010d}"
        if final.exists():
            # Move the old one aside first: at every instant one complete copy exists.
            aside = self.checkpoint_root / f".old-{_CKPT_PREFIX}{step:010d}-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(self.checkpoint_root)
        if self._sink is not None:
            self._sink.set_checkpoint_step(self.id, step)
        if prune:
            keep = max(1, self.keep_checkpoints)
            for _, old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    def save_state(self, step: int, state: Any) -> None:
        """Checkpoint any picklable object (convenience for workloads without torch)."""
        with self.checkpoint(step) as folder, open(folder / "state.pkl", "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load_state(self) -> Any | None:
        """The object saved by the latest :meth:`save_state`, or None for a fresh start."""
        latest = self.latest_checkpoint()
        if latest is None or not (latest[1] / "state.pkl").exists():
            return None
        with open(latest[1] / "state.pkl", "rb") as f:
            return pickle.load(f)

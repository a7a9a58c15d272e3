"""The live trial a workload sees: its hyperparameters, a folder, ``report()`` and checkpoints.

``report()`` only appends to a buffer: measurements reach the store in bulk (every few thousand
points, every second, at every checkpoint and at the end). A checkpoint is published only after
every measurement up to its step is in the store, so a trial killed at any instant resumes from
its latest checkpoint with no measurement lost or duplicated.

Every checkpoint, whoever wrote its files (a Python workload in :meth:`Trial.checkpoint`, a
command workload announcing a folder), is published by one function: measurements flushed,
optionally a checksum manifest (:data:`MANIFEST_FILE`) written, every file fsynced, the folder
renamed into place in one atomic step, its step recorded in the store, older ones pruned.
:meth:`Trial.restore_point` and :meth:`Trial.load_state` verify the manifest and fall back to the
newest intact older checkpoint when the latest is corrupt.

With shared checkpoints (``checkpoint_root``), a published checkpoint is also uploaded
(:mod:`tunebook.execution.ckptstore`) before its step is recorded in the store, only while the
store still gives this worker the trial; pruning removes the shared copies too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunebook.core.durable import file_digests, files_problem, fsync_path
from tunebook.core.limits import MAX_METRIC_LENGTH
from tunebook.core.paths import checkpoint_folder, checkpoint_folders, checkpoints_dir
from tunebook.errors import Infeasible, TunebookError

if TYPE_CHECKING:
    from tunebook.execution.ckptstore import RemoteCheckpoint, TrialCheckpoints

__all__ = ["MANIFEST_FILE", "MAX_METRIC_LENGTH", "META_FILE", "STATE_FILE", "Lost",
           "MeasurementSink", "Trial", "check_metric_name", "checkpoint_problem",
           "checkpoint_value", "fsync_path"]

_CORRUPT_PREFIX = "corrupt-"  # the same mark as tunebook.torch.Checkpointer's


STATE_FILE = "state.pkl"
"""The file :meth:`Trial.save_state` pickles into, inside a checkpoint folder."""

MANIFEST_FILE = "tunebook-manifest.json"
"""A checkpoint's checksums: ``{"format", "step", "files": {relative path: {"bytes",
"sha256"}}}``, written inside the folder before it is published. A reserved name: a workload's
own file of that name is replaced."""

_MANIFEST_FORMAT = 1

META_FILE = "meta.json"
"""A checkpoint's sidecar with the objective at its step: ``{"format", "step", "metric",
"goal", "value"}`` (``value`` None when the objective was not reported there), written by the
PyTorch ``Checkpointer`` and the framework callbacks; it ranks checkpoints
(:meth:`Trial.retain_checkpoints`, the final evaluation's choice)."""


def checkpoint_value(folder: Path, metric: str | None) -> float | None:
    """The finite value of ``metric`` that checkpoint ``folder``'s :data:`META_FILE` records,
    or None (no sidecar, another metric, no value)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        value = meta.get("value") if meta.get("metric") == metric else None
        out = None if value is None or isinstance(value, bool) else float(value)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return out if out is not None and math.isfinite(out) else None


def check_metric_name(name: object) -> str:
    """``name`` if every store backend keeps it as it is.

    Raises:
        TypeError: for a name that is not a string.
        ValueError: for an empty name, one longer than :data:`MAX_METRIC_LENGTH` characters, or
            one with a NUL or another control character (PostgreSQL rejects NUL, SQLite keeps
            it: the backends would disagree).
    """
    if not isinstance(name, str):
        raise TypeError(f"a metric name must be a string, got {name!r}")
    shown = repr(name) if len(name) <= 60 else repr(name[:60]) + f"... ({len(name)} characters)"
    if not name:
        raise ValueError("a metric name must not be empty")
    if len(name) > MAX_METRIC_LENGTH:
        raise ValueError(f"metric name {shown} is longer than {MAX_METRIC_LENGTH} characters")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        what = "NUL" if bad == "\0" else f"control character {bad!r}"
        raise ValueError(f"metric name {shown} contains {what}")
    return name


def _fsync_tree(folder: Path) -> None:
    """Flush a checkpoint's files to disk before it is published (a power cut must not
    leave a published checkpoint with empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(folder)


def _write_manifest(folder: Path, step: int) -> dict[str, dict[str, Any]]:
    """Record the size and sha256 of every file of ``folder`` in its manifest; returns them."""
    manifest = folder / MANIFEST_FILE
    manifest.unlink(missing_ok=True)
    files = file_digests(folder)
    manifest.write_text(json.dumps({"format": _MANIFEST_FORMAT, "step": step, "files": files},
                                   indent=1) + "\n", encoding="utf-8")
    return files


def checkpoint_problem(folder: Path) -> str | None:
    """What is wrong with a published checkpoint according to its manifest, or None.

    A checkpoint without a manifest (published without checksums) cannot be checked: None.
    """
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        assert isinstance(files, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return f"{MANIFEST_FILE} is unreadable"
    return files_problem(folder, files)


class _NoState(Exception):
    """The checkpoint holds no :data:`STATE_FILE` (it was not written by ``save_state``)."""


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

    ``shared`` (a :class:`~tunebook.execution.ckptstore.TrialCheckpoints`) also publishes every
    checkpoint to a checkpoint root, and ``holds_claim`` (the store's word that this worker still
    has the trial) is asked just before a shared copy becomes trusted: False raises
    :class:`Lost`. The worker sets both; without them checkpoints stay in :attr:`dir`.
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
        shared: TrialCheckpoints | None = None,
        holds_claim: Callable[[], bool] | None = None,
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
        # Shared checkpoints, and the store's word, asked just before a shared copy becomes
        # trusted, that this worker still has the trial.
        self._shared = shared
        self._holds_claim = holds_claim
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
            ValueError: for a metric name longer than :data:`MAX_METRIC_LENGTH` characters,
                empty, or with a NUL or another control character (see
                :func:`check_metric_name`); nothing of this call is recorded then.
        """
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"report(step=...) must be an int, got {step!r}")
        if self._cancelled is not None and self._cancelled():
            raise Lost()
        for name in metrics:
            if name not in self.reported_metrics:  # names already seen were checked then
                check_metric_name(name)
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

    def flush(self, *, confirm: bool = False) -> None:
        """Write buffered measurements to the store now; with ``confirm``, call the sink even
        with nothing buffered (a worker's sink then checks that it still holds the trial)."""
        if self._sink is not None and (self._buffer or confirm):
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
        return checkpoints_dir(self._dir)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(step, folder)``, oldest first."""
        return checkpoint_folders(self.checkpoint_root)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint as ``(step, folder)``, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def rewind(self, step: int) -> None:
        """Resume from ``step`` instead of :attr:`start_step` (e.g. the latest checkpoint was
        corrupt and an older one was loaded): measurements past ``step`` are dropped, since
        training will produce them again (from the store, and from :attr:`latest` and
        :attr:`objective_points`)."""
        self.flush()
        if self._sink is not None:
            self._sink.truncate_measurements(self.id, step)
            self._sink.set_checkpoint_step(self.id, step)
        self.objective_points = [(s, v) for s, v in self.objective_points if s <= step]
        self.latest = {name: point for name, point in self.latest.items() if point[0] <= step}
        self.start_step = step

    @contextlib.contextmanager
    def checkpoint(self, step: int, prune: bool = True, checksums: bool = False
                   ) -> Iterator[Path]:
        """Write a checkpoint for ``step``: yields an empty folder to fill.

        On leaving the block the measurements reported so far are flushed, then the folder is
        renamed into place in one atomic step; a crash inside the block leaves no checkpoint.
        With ``prune``, checkpoints older than the newest ``keep_checkpoints`` are removed;
        a caller with its own retention policy (keep the N best) passes ``prune=False``.
        With ``checksums``, the size and sha256 of every file are recorded in
        :data:`MANIFEST_FILE` first, and :meth:`restore_point` can tell a corrupt copy.
        """
        if self._cancelled is not None and self._cancelled():
            raise Lost()
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_root / f".tmp-{checkpoint_folder('', step).name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            self.publish_checkpoint(step, tmp, prune=prune, checksums=checksums)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def retain_checkpoints(self, current: int, *, keep_latest: int, keep_best: int,
                           metric: str | None, goal: str) -> None:
        """Keep the newest ``keep_latest`` checkpoints up to step ``current`` and the
        ``keep_best`` best of them by ``metric`` (:func:`checkpoint_value`; ``goal`` minimize or
        maximize; ties: the earliest step, as the store's best step); remove every other one
        (a checkpoint past ``current`` belongs to an abandoned attempt). The retention policy
        of the PyTorch ``Checkpointer`` and of the framework callbacks, which publish with
        ``prune=False``."""
        sign = -1.0 if goal == "maximize" else 1.0
        found = self.checkpoints()
        local = dict(found)
        listed = self._shared_checkpoints()
        shared = listed[0] if listed else {}
        # The shared copies count too: the best one may have been written on another machine.
        kept = sorted(step for step in set(local) | set(shared) if step <= current)
        keep = set(kept[len(kept) - keep_latest:]) if keep_latest > 0 else set()
        scored = [(sign * v, step) for step in kept
                  if (v := self._value(step, local, shared, metric)) is not None]
        keep |= {step for _, step in sorted(scored)[:keep_best]}
        for step, folder in found:
            if step not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        if listed is not None:  # unlisted, a shared-only best one could not be told apart
            self._prune_shared(keep, listed[1])

    def publish_checkpoint(self, step: int, folder: str | Path, prune: bool = True,
                           checksums: bool = False) -> Path:
        """Publish a complete ``folder`` (written by this process or by a command workload)
        as the checkpoint of ``step``; returns the published folder.

        The one publication path, also behind :meth:`checkpoint`: (with ``checksums``) the
        manifest is written, every file is fsynced, the measurements reported so far are
        flushed to the store and the folder is renamed into place in one atomic step; its step is
        recorded in the store, and (with ``prune``) checkpoints older than the newest
        ``keep_checkpoints`` are removed. ``folder`` must be on the trial folder's file system
        (inside it, in practice); it is moved, not copied.

        Raises:
            Lost: when the store gave the trial to another worker (nothing is published).
        """
        if self._cancelled is not None and self._cancelled():
            raise Lost()
        tmp = Path(folder)
        digests = _write_manifest(tmp, step) if checksums else None
        _fsync_tree(tmp)
        # Last before the rename (an fsync of large files takes a while): Lost here if the
        # store gave the trial to another worker meanwhile.
        self.flush(confirm=True)
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        final = checkpoint_folder(self.checkpoint_root, step)
        if final.exists():
            # Move the old one aside first: at every instant one complete copy exists.
            aside = self.checkpoint_root / f".old-{final.name}-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(self.checkpoint_root)
        if tmp.parent != self.checkpoint_root:
            fsync_path(tmp.parent)
        if self._shared is not None:
            self._share(step, final, digests)
        if self._sink is not None:
            self._sink.set_checkpoint_step(self.id, step)
        if prune:
            keep = max(1, self.keep_checkpoints)
            for _, old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
            if (listed := self._shared_checkpoints()) is not None:
                steps = sorted(set(dict(self.checkpoints())) | set(listed[0]))
                self._prune_shared(set(steps[-keep:]), listed[1])
        return final

    # ----------------------------------------------------------------- shared checkpoints
    def _share(self, step: int, final: Path, digests: dict[str, dict[str, Any]] | None) -> None:
        """Upload a published checkpoint to the shared store; a failed upload is logged and
        the checkpoint stays local (another machine resumes from an older shared one).

        Raises:
            Lost: when the store no longer gives this worker the trial (no manifest written).
        """
        assert self._shared is not None
        meta = None
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((final / META_FILE).read_text(encoding="utf-8"))
        try:
            # digests: the local manifest's, just computed (None without checksums): the
            # files are not hashed a second time.
            published = self._shared.publish(step, final, self._holds_claim,
                                              meta if isinstance(meta, dict) else None, digests)
        except TunebookError:
            raise  # the store unreachable past its bound: not an upload problem
        except Exception as exc:
            self.log(f"could not copy the checkpoint at step {step} to {self._shared.where} "
                     f"({type(exc).__name__}: {exc}); it is kept on this machine only")
            return
        if published is None:
            raise Lost()

    def _shared_checkpoints(self) -> tuple[dict[int, RemoteCheckpoint], list[str]] | None:
        """The shared checkpoints by step (the newest upload of each) and the listing they
        come from (for the pruning that follows: one listing each time); None without shared
        checkpoints or when they cannot be listed (logged)."""
        if self._shared is None:
            return None
        try:
            names = self._shared.names()
            return {c.step: c for c in self._shared.listing(names)}, names
        except Exception as exc:
            self.log(f"could not list {self._shared.where} ({type(exc).__name__}: {exc})")
            return None

    def _value(self, step: int, local: Mapping[int, Path],
               shared: Mapping[int, RemoteCheckpoint], metric: str | None) -> float | None:
        if step in local:
            return checkpoint_value(local[step], metric)
        if self._shared is None:
            return None
        try:
            value = self._shared.value(shared[step], metric)
        except Exception:
            return None
        return value if value is not None and math.isfinite(value) else None

    def _prune_shared(self, keep: set[int], names: list[str]) -> None:
        """Remove the shared checkpoints whose step is not in ``keep`` (manifests first);
        ``names``: the listing just read."""
        if self._shared is None:
            return
        try:
            self._shared.prune(keep, names)
        except Exception as exc:  # kept one more time: pruning is retried at the next publish
            self.log(f"could not prune {self._shared.where} ({type(exc).__name__}: {exc})")

    def restore_point(self) -> tuple[int, Path] | None:
        """The newest intact checkpoint as ``(step, folder)``, or None: start from scratch.

        A checkpoint whose files do not match its manifest is set aside (renamed
        ``corrupt-step-...``, kept for inspection), logged with the reason, and the previous one
        is tried; the trial is then rewound (:meth:`rewind`) to the step found, or to 0 when
        none is intact. A checkpoint without a manifest cannot be checked and is taken as is.
        """
        found = self._restore(lambda folder: None)
        return None if found is None else (found[0], found[1])

    def _restore(self, load: Callable[[Path], Any]) -> tuple[int, Path, Any] | None:
        """Walk the checkpoints newest first; ``load(folder)`` reads a verified one (raising
        :class:`_NoState` to stop without a rewind, another exception for a corrupt copy)."""
        skipped = False
        for step, folder in reversed(self.checkpoints()):
            problem = checkpoint_problem(folder)
            if problem is None:
                try:
                    value = load(folder)
                except _NoState:
                    return None
                except (EOFError, pickle.UnpicklingError) as exc:
                    if (folder / MANIFEST_FILE).exists():
                        raise  # the bytes are the ones written: not a corrupt copy
                    problem = f"{STATE_FILE} cannot be read ({type(exc).__name__}: {exc})"
                else:
                    if skipped or step < self.start_step:
                        self.log(f"resuming from the checkpoint at step {step}")
                        self.rewind(step)
                    return step, folder, value
            aside = folder.with_name(_CORRUPT_PREFIX + folder.name)
            self.log(f"checkpoint at step {step} is corrupt ({problem}): set aside as "
                     f"{aside.name}, trying the previous one")
            shutil.rmtree(aside, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.rename(aside)
            skipped = True
        if skipped:
            self.log("no intact checkpoint left: starting from step 0")
            self.rewind(0)
        return None

    def save_state(self, step: int, state: Any) -> None:
        """Checkpoint any picklable object (convenience for workloads without torch).

        Its sha256 is recorded beside it (:data:`MANIFEST_FILE`), so :meth:`load_state` can tell
        a truncated or corrupt copy and fall back to an older one.
        """
        with self.checkpoint(step, checksums=True) as folder, \
                open(folder / STATE_FILE, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load_state(self) -> Any | None:
        """The object saved by the latest intact :meth:`save_state`, or None for a fresh start.

        A latest copy that does not match its recorded sha256 (truncated, bytes flipped) is set
        aside and logged, and the newest intact older one is loaded; the trial is rewound to its
        step (:meth:`rewind`: the measurements past it are dropped and recomputed). With none
        intact the trial is rewound to 0 and None is returned. When the latest checkpoint holds
        no state (it was not written by :meth:`save_state`), None is returned.
        """
        def load(folder: Path) -> Any:
            path = folder / STATE_FILE
            if not path.exists():
                raise _NoState()
            with open(path, "rb") as f:
                return pickle.load(f)

        found = self._restore(load)
        return None if found is None else found[2]

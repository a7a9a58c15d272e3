"""Checkpoints that keep the N best by the objective, resume exactly and survive corruption.

The playbook ("Saving checkpoints and retrospectively selecting the best checkpoint"): train for
a fixed number of steps, keep track of the N best checkpoints seen so far, and choose the best
one retrospectively at the end; the best checkpoint is often not the last. Checkpoints also make
a trial resilient to interruptions, which only works if resuming continues *exactly* where the
run stopped: model, optimizer, learning rate schedule, every random number generator and the
position in the data.

:class:`Checkpointer` builds on :meth:`tunebook.execution.trial.Trial.checkpoint` (atomic
publication, measurements flushed first) and adds:

* retention: the ``keep_best`` best checkpoints by the experiment's objective (the value
  reported for ``trial.objective`` at the checkpoint's step) plus the latest one;
* exact resumption: Python's ``random``, numpy's global generator, torch's CPU generator and the
  CUDA generators are saved with the model, optimizer and scheduler; anything else (a data
  generator, a sampler, an EMA, an epoch counter) is passed by keyword and comes back;
* integrity: every file is loaded with ``torch.load(weights_only=True)`` (no arbitrary pickles)
  and checked against a sha256 recorded in ``meta.json``, written after the payload. A
  truncated or corrupt checkpoint is set aside (renamed ``corrupt-step-...``) and the previous
  one is used; the trial is then rewound so measurements past the restored step are dropped.

Layout of one checkpoint folder (``<trial dir>/checkpoints/step-<step>/``)::

    state.pt    torch.save({"format", "step", "model", "optimizer", "scheduler", "rng", "extra"})
    meta.json   {"format", "step", "metric", "goal", "value", "files": {"state.pt":
                 {"bytes", "sha256"}}}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from tunebook.objective import Objective

if TYPE_CHECKING:
    from tunebook.execution.trial import Trial

__all__ = ["META_FILE", "STATE_FILE", "CheckpointInfo", "Checkpointer", "rng_state",
           "set_rng_state"]

STATE_FILE = "state.pt"
"""The payload's file name inside a checkpoint folder."""

META_FILE = "meta.json"
"""The sidecar (step, objective value, checksums) written after the payload."""

_FORMAT = 1
_CORRUPT_PREFIX = "corrupt-"


class CheckpointInfo(NamedTuple):
    """One kept checkpoint: its step, its objective value (None when it has none) and folder."""

    step: int
    value: float | None
    path: Path


# --------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain lists (``weights_only``-loadable).

    Python's ``random``, numpy's legacy global generator (``np.random.*``), torch's CPU generator
    and, when CUDA is in use (available and initialized), every CUDA device's generator; a
    process that never touched CUDA has no CUDA random state worth saving, and asking for it
    would create a CUDA context on every device.
    """
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True always gives the MT19937 tuple
    algorithm, keys, pos, has_gauss, cached_gaussian = np_state
    return {
        "python": {"version": int(version), "state": [int(v) for v in internal],
                   "gauss_next": gauss_next},
        "numpy": {"algorithm": str(algorithm), "keys": [int(v) for v in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": (list(torch.cuda.get_rng_state_all())
                 if torch.cuda.is_available()
                 and torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
                 else []),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned.

    CUDA states are restored for the devices present (a checkpoint from a machine with more
    GPUs restores the first ones; with fewer, the remaining devices keep their state).
    """
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((str(npy["algorithm"]), np.asarray(npy["keys"], dtype=np.uint32),
                         int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for device in range(min(len(cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda[device], device)


# --------------------------------------------------------------------------- extras
def _check_plain(value: Any, where: str) -> None:
    """Refuse, at save time, what ``torch.load(weights_only=True)`` would refuse at restore."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor,
                                           torch.Size, torch.dtype, torch.device)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}: use str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    hint = " (convert with torch.from_numpy or .tolist())" if isinstance(value, np.ndarray) else ""
    raise TypeError(f"{where} is a {type(value).__name__}, which a weights_only load refuses: "
                    f"save tensors, numbers, strings and lists/dicts of them{hint}, or an object "
                    "with state_dict()/load_state_dict()")


def _pack(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, torch.Generator):
        return {"kind": "generator", "value": value.get_state()}
    if callable(getattr(value, "state_dict", None)) and callable(
            getattr(value, "load_state_dict", None)):
        state = value.state_dict()
        _check_plain(state, f"{name}.state_dict()")
        return {"kind": "state_dict", "value": state}
    _check_plain(value, name)
    return {"kind": "value", "value": value}


# --------------------------------------------------------------------------- files
def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be trusted, or None when every checksum matches."""
    meta = _read_meta(folder)
    if meta is None:
        return f"{META_FILE} is missing or unreadable"
    files = meta.get("files")
    if not isinstance(files, dict) or STATE_FILE not in files:
        return f"{META_FILE} lists no {STATE_FILE}"
    for name, expected in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected.get("bytes"):
            return f"{name} has {size} bytes, {expected.get('bytes')} were written"
        if _sha256(path) != expected.get("sha256"):
            return f"{name} does not match its sha256"
    return None


class Checkpointer:
    """Save, keep the N best, restore exactly, and select the best checkpoint of a trial.

    Typical use in a workload::

        ckpt = Checkpointer(trial, keep_best=3)
        step = ckpt.restore(model, optimizer, scheduler, data_rng=generator, ema=ema)
        epoch = ckpt.extra.get("epoch", 0)          # plain values come back in .extra
        while step < trial.max_train_steps:
            ...                                      # one training step
            step += 1
            if step % trial.eval_every == 0:
                trial.report(step, val_error=...)    # report *before* saving
                ckpt.save(step, model, optimizer, scheduler, data_rng=generator, ema=ema,
                          epoch=epoch)

    Keyword arguments of :meth:`save` are the "extra" state: a ``torch.Generator`` (its state
    is saved), an object with ``state_dict()``/``load_state_dict()`` (a sampler, a
    :class:`~tunebook.torch.ema.ParameterEMA`, a :class:`~tunebook.torch.clip.ClipTracker`), or
    a plain value (tensors, numbers, strings, lists and dicts of them). Objects passed under the
    same names to :meth:`restore` are restored in place; every saved entry is also returned in
    :attr:`extra` (a generator's state, an object's state dict, a plain value).

    Retention, after each save: the ``keep_best`` checkpoints with the best objective value
    (ties: the earliest step, as the store's ``best_step``) plus the newest ``keep_latest``.
    A checkpoint's value is what ``trial.latest`` holds for the objective *at that step*; a
    checkpoint saved at a step without such a report has no value and is kept only while it is
    among the newest. Checkpoints past the step being saved belong to an abandoned run and are
    removed. Save at every evaluation and :meth:`best` agrees with the trial's ``best_step`` and
    ``best_value`` in the store.

    Args:
        trial: the running trial (its folder, objective and goal).
        keep_best: how many of the best checkpoints to keep (0: only the latest).
        keep_latest: how many of the newest checkpoints to keep whatever their value (at least
            1: the one to resume from; 2 keeps a recent fallback should the newest be corrupt).
        metric: the metric that ranks checkpoints (default: ``trial.objective``).
        goal: ``"minimize"`` or ``"maximize"`` (default: ``trial.goal``).

    Attributes:
        extra: after :meth:`restore`, every extra entry of the restored checkpoint.
        restored_step: the step :meth:`restore` returned (None before it is called).
        skipped: ``(step, reason)`` of the corrupt checkpoints :meth:`restore` set aside.
    """

    def __init__(self, trial: Trial, keep_best: int = 3, *, keep_latest: int = 1,
                 metric: str | None = None, goal: str | None = None) -> None:
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise ValueError(f"keep_best must be a non-negative integer, got {keep_best!r}")
        if isinstance(keep_latest, bool) or not isinstance(keep_latest, int) or keep_latest < 1:
            raise ValueError(f"keep_latest must be a positive integer, got {keep_latest!r}")
        self.trial = trial
        self.keep_best = keep_best
        self.keep_latest = keep_latest
        self.metric = metric if metric is not None else trial.objective
        if self.metric is None and keep_best > 0:
            raise ValueError("keep_best needs a metric to rank checkpoints by: the trial has no "
                             "objective, pass metric=... (or keep_best=0)")
        wanted = goal if goal is not None else trial.goal
        if wanted not in ("minimize", "maximize"):
            raise ValueError(f"goal must be 'minimize' or 'maximize', got {wanted!r}")
        # The checkpoints are ranked by the one sign logic of tunebook.objective.
        self._objective = Objective(self.metric or "", "minimize" if wanted == "minimize"
                                    else "maximize")
        self.goal: str = self._objective.goal
        self.extra: dict[str, Any] = {}
        self.restored_step: int | None = None
        self.skipped: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ saving
    def value_at(self, step: int) -> float | None:
        """The objective value reported at exactly ``step`` in this attempt, or None."""
        if self.metric is None:
            return None
        latest = self.trial.latest.get(self.metric)
        if latest is None or latest[0] != step or not math.isfinite(latest[1]):
            return None
        return float(latest[1])

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any = None, **extra: Any) -> Path:
        """Checkpoint everything needed to continue exactly from ``step``; returns its folder.

        Report the evaluation of ``step`` first: its objective value ranks the checkpoint.
        The payload and the sidecar are fsynced before the folder is published atomically.

        Args:
            step: the number of training steps done.
            model, optimizer: saved through their ``state_dict()``.
            scheduler: a learning rate scheduler (anything with ``state_dict()``), or None.
            **extra: data position and other state (see the class docstring).

        Raises:
            TypeError: for an extra value a ``weights_only`` load could not read back.
        """
        payload = {
            "format": _FORMAT,
            "step": int(step),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
            "extra": {name: _pack(name, value) for name, value in extra.items()},
        }
        value = self.value_at(step)
        with self.trial.checkpoint(step, prune=False) as folder:
            state_path = folder / STATE_FILE
            torch.save(payload, state_path)
            # No fsync here: Trial.checkpoint flushes the whole folder before publishing it.
            meta = {"format": _FORMAT, "step": int(step), "metric": self.metric,
                    "goal": self.goal, "value": value, "saved_at": time.time(),
                    "files": {STATE_FILE: {"bytes": state_path.stat().st_size,
                                           "sha256": _sha256(state_path)}}}
            meta_path = folder / META_FILE
            meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        self._prune(step)
        return dict(self.trial.checkpoints())[step]

    def _prune(self, current: int) -> None:
        self.trial.retain_checkpoints(current, keep_latest=self.keep_latest,
                                      keep_best=self.keep_best, metric=self.metric,
                                      goal=self.goal)

    def _ranked(self, infos: Iterable[CheckpointInfo]) -> list[CheckpointInfo]:
        scored = [i for i in infos if i.value is not None]
        sign = self._objective.sign
        return sorted(scored, key=lambda i: (sign * float(i.value or 0.0), i.step))

    # ------------------------------------------------------------------ selection
    def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint of the trial with its objective value, oldest first.

        The value is None for a checkpoint saved without a report of the objective at its step,
        or ranked by another metric (the experiment's objective was changed since).
        """
        out = []
        for step, folder in self.trial.checkpoints():
            meta = _read_meta(folder) or {}
            value = meta.get("value") if meta.get("metric") == self.metric else None
            out.append(CheckpointInfo(step, float(value) if value is not None else None, folder))
        return out

    def best(self) -> CheckpointInfo | None:
        """The best kept checkpoint by the objective as ``(step, value, path)``, or None.

        Retrospective selection: ties go to the earliest step, like the store's ``best_step``.
        """
        ranked = self._ranked(self.checkpoints())
        return ranked[0] if ranked else None

    def load_state(self, step: int | None = None) -> dict[str, Any]:
        """The verified payload of the checkpoint at ``step`` (default: :meth:`best`).

        Raises:
            FileNotFoundError: when there is no such checkpoint.
            ValueError: when its checksum does not match.
        """
        if step is None:
            best = self.best()
            if best is None:
                raise FileNotFoundError("no checkpoint has an objective value")
            step = best.step
        folder = dict(self.trial.checkpoints()).get(step)
        if folder is None:
            raise FileNotFoundError(f"no checkpoint at step {step}")
        problem = _problem(folder)
        if problem is not None:
            raise ValueError(f"checkpoint at step {step} is corrupt: {problem}")
        state: dict[str, Any] = torch.load(folder / STATE_FILE, map_location="cpu",
                                           weights_only=True)
        return state

    def load_model(self, model: nn.Module, step: int | None = None) -> int:
        """Load the model weights of the checkpoint at ``step`` (default: the best); returns
        the step. For evaluating or exporting the retrospectively selected checkpoint."""
        state = self.load_state(step)
        model.load_state_dict(state["model"])
        return int(state["step"])

    # ------------------------------------------------------------------ restoring
    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any = None, **stateful: Any) -> int:
        """Restore the newest sound checkpoint; returns the step to resume from (0: none).

        Model, optimizer, scheduler and the global RNG states are restored; so is every object
        passed by keyword under the name it was saved with (a ``torch.Generator`` gets its
        state back, anything else its ``load_state_dict``). Every saved extra entry is
        available in :attr:`extra` afterwards.

        A checkpoint whose files do not match their recorded checksum is renamed
        ``corrupt-step-...`` (kept for inspection, ignored from then on), logged, and the
        previous one is tried. When the step restored is older than ``trial.start_step`` (or
        nothing sound is left), ``trial.rewind`` drops the measurements past it.

        Raises:
            KeyError: when an object passed by keyword (or a scheduler) was not saved in the
                checkpoint.
            ValueError: for a sound checkpoint written in another format version.
        """
        self.extra, self.skipped = {}, []
        restored = 0
        for step, folder in reversed(self.trial.checkpoints()):
            problem = _problem(folder)
            if problem is not None:
                self.skipped.append((step, problem))
                self.trial.log(f"checkpoint at step {step} is corrupt ({problem}): set aside")
                aside = folder.with_name(_CORRUPT_PREFIX + folder.name)
                shutil.rmtree(aside, ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.rename(aside)
                continue
            payload = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            if payload.get("format") != _FORMAT:
                raise ValueError(f"checkpoint at step {step} has format {payload.get('format')}, "
                                 f"this version reads format {_FORMAT}")
            self._apply(payload, model, optimizer, scheduler, stateful)
            restored = int(payload["step"])
            break
        if self.skipped or restored < self.trial.start_step:
            self.trial.log(f"rewinding to step {restored}")
            self.trial.rewind(restored)
        self.restored_step = restored
        return restored

    def _apply(self, payload: Mapping[str, Any], model: nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any,
               stateful: Mapping[str, Any]) -> None:
        saved = payload["extra"]
        missing = sorted(set(stateful) - set(saved))
        if missing:
            raise KeyError(f"not in the checkpoint at step {payload['step']}: {missing} "
                           f"(it has {sorted(saved)})")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            if payload["scheduler"] is None:
                raise KeyError(f"the checkpoint at step {payload['step']} has no scheduler")
            scheduler.load_state_dict(payload["scheduler"])
        for name, obj in stateful.items():
            entry = saved[name]
            if isinstance(obj, torch.Generator):
                obj.set_state(entry["value"])
            else:
                obj.load_state_dict(entry["value"])
        self.extra = {name: entry["value"] for name, entry in saved.items()}
        set_rng_state(payload["rng"])

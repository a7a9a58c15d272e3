"""Helpers for a command workload written in Python: standard library only, no torch or numpy.

A command workload (``command:`` in the experiment file) is any program that takes its
hyperparameters as ``--name=value`` arguments and prints JSON lines; this module writes and reads
that protocol for a Python script (``docs/command-workloads.md`` describes it for any language)::

    from tunebook import script

    hp = script.hparams()                       # {"learning_rate": 0.01, "depth": 3, ...}
    state = load(script.resume_dir()) if script.resume_dir() else fresh()
    for step in range(script.start_step() + 1, script.max_train_steps() + 1):
        ...
        if step % script.eval_every() == 0:
            script.report(step, loss=loss, accuracy=accuracy)
            with script.checkpoint(step) as folder:   # announced once the block succeeds
                save(state, folder)

Outside tunebook (the script started by hand) everything still works: :func:`hparams` reads the
command line, the lengths fall back to the defaults passed, and :func:`checkpoint` yields a
temporary folder that is deleted afterwards without any announcement.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["checkpoint", "eval_every", "final_eval", "hparams", "infeasible", "max_train_steps",
           "report", "resume_dir", "seed", "start_step", "trial_dir"]

_INT = re.compile(r"[+-]?\d+")
_counter = itertools.count()


def _typed(text: str) -> Any:
    """``true``/``false`` as bools, integers as ints, other numbers as floats, else the text."""
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def hparams(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The hyperparameters given as ``--name=value`` arguments (default: ``sys.argv[1:]``).

    Values are typed the way tunebook writes them: ``true``/``false`` become bools, integers
    ints, other numbers (``0.001``, ``1e-05``, ``nan``) floats, anything else stays a string
    (so a categorical value that looks like a number arrives as a number). A bare ``--name`` is
    True; arguments that do not start with ``--`` are ignored.
    """
    args = sys.argv[1:] if argv is None else argv
    out: dict[str, Any] = {}
    for arg in args:
        if not arg.startswith("--") or len(arg) == 2:
            continue
        name, sep, value = arg[2:].partition("=")
        out[name] = _typed(value) if sep else True
    return out


def _env_int(name: str, default: int | None) -> int:
    value = os.environ.get(name)
    if value:
        return int(value)
    if default is None:
        raise RuntimeError(f"{name} is not set: the script is not run by tunebook "
                           "(pass a default for running it by hand)")
    return default


def max_train_steps(default: int | None = None) -> int:
    """How many steps to train for (``TUNEBOOK_MAX_TRAIN_STEPS``, else ``default``)."""
    return _env_int("TUNEBOOK_MAX_TRAIN_STEPS", default)


def eval_every(default: int | None = None) -> int:
    """Evaluate every this many steps (``TUNEBOOK_EVAL_EVERY``, else ``default``)."""
    return _env_int("TUNEBOOK_EVAL_EVERY", default)


def seed(default: int = 0) -> int:
    """This trial's seed (``TUNEBOOK_SEED``, else ``default``)."""
    return _env_int("TUNEBOOK_SEED", default)


def start_step() -> int:
    """The step of the checkpoint to resume from (``TUNEBOOK_START_STEP``); 0 for a fresh start.
    """
    return _env_int("TUNEBOOK_START_STEP", 0)


def resume_dir() -> Path | None:
    """The folder of the checkpoint to resume from (``TUNEBOOK_RESUME_FROM``), or None for a
    fresh start. Read it at start-up: older checkpoints are pruned as new ones are published."""
    value = os.environ.get("TUNEBOOK_RESUME_FROM")
    return Path(value) if value else None


def final_eval() -> Path | None:
    """The checkpoint folder to evaluate on the test set when ``tunebook final-eval`` runs the
    script (``TUNEBOOK_MODE=final_eval``), else None (a training run). In that mode the script
    loads the folder, evaluates on its test split, reports ``test_*`` metrics with
    :func:`report` (at the folder's step, :func:`start_step`) and exits, training nothing
    (``docs/final-evaluation.md``)."""
    if os.environ.get("TUNEBOOK_MODE") != "final_eval":
        return None
    value = os.environ.get("TUNEBOOK_CHECKPOINT")
    return Path(value) if value else None


def trial_dir() -> Path | None:
    """The trial's own folder (``TUNEBOOK_TRIAL_DIR``), or None outside tunebook."""
    value = os.environ.get("TUNEBOOK_TRIAL_DIR")
    return Path(value) if value else None


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def report(step: int, **metrics: float) -> None:
    """Print the measurement line ``{"step": step, "name": value, ...}`` and flush it.

    NaN and infinities are written as JSON's usual ``NaN``/``Infinity`` extension (tunebook
    reads them; a non-finite objective makes the trial infeasible).

    Raises:
        TypeError: for a non-integer step or a non-numeric value.
    """
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"report(step=...) must be an int, got {step!r}")
    line: dict[str, Any] = {"step": step}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"report({name}=...) must be a number, got {value!r}") from None
        line[name] = value
    _emit(line)


def infeasible(reason: str, step: int | None = None) -> NoReturn:
    """Mark the trial infeasible (it diverged...): print ``{"infeasible": reason, "step":
    step}`` and exit with status 0. tunebook records the reason and the step."""
    line: dict[str, Any] = {"infeasible": str(reason)}
    if step is not None:
        line["step"] = int(step)
    _emit(line)
    raise SystemExit(0)


@contextlib.contextmanager
def checkpoint(step: int) -> Iterator[Path]:
    """Write the checkpoint of ``step``: yields a fresh, empty folder to fill.

    When the block ends normally (every file written and closed), the announcement
    ``{"checkpoint": step, "path": folder}`` is printed; tunebook then flushes the measurements
    printed before it and publishes the folder atomically. The folder is tunebook's from then
    on: do not touch it again. An exception inside the block removes the folder and announces
    nothing. Outside tunebook the folder is temporary and deleted after the block.

    Raises:
        TypeError: for a step that is not a non-negative integer.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TypeError(f"checkpoint(step) must be a non-negative int, got {step!r}")
    root = os.environ.get("TUNEBOOK_CHECKPOINT_DIR")
    if not root:
        with tempfile.TemporaryDirectory(prefix=f"checkpoint-{step}-") as tmp:
            yield Path(tmp)
        return
    folder = Path(root) / f"step-{step}-{os.getpid()}-{next(_counter)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _emit({"checkpoint": step, "path": str(folder)})

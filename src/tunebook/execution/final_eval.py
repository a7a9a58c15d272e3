"""Final evaluation: the test set, looked at once exploration has ended.

The playbook keeps validation and test apart: every choice during tuning (the best checkpoint of
a trial, the best trial of a study) is made on the validation set, and the test set is touched
only when exploration ends. ``tunebook final-eval`` is that moment; this module is its engine.

**The entry.** A Python workload ``module:function`` declares its final evaluation by defining
``function_final_eval`` in the same module (``train_mlp`` -> ``train_mlp_final_eval``)::

    def train_mlp_final_eval(hparams: dict, trial: FinalEvalTrial) -> dict[str, float]:
        model = build(hparams)
        Checkpointer(trial.trial).load_model(model, trial.step)   # the selected checkpoint
        return {"test_error": ..., "test_loss": ..., "test_examples": ...}

It is called with the selected trial's hyperparameters and a :class:`FinalEvalTrial` (its
folder, seed, the best checkpoint's folder and step), in a fresh process with one torch thread
like a trial's worker, and returns finite numbers by name.

**A command workload** (:func:`run_command`) is started as for training (its hyperparameters as
``--name=value``, in the experiment file's folder) with ``TUNEBOOK_MODE=final_eval`` and
``TUNEBOOK_CHECKPOINT`` (also ``TUNEBOOK_RESUME_FROM``) the best checkpoint's folder,
``TUNEBOOK_START_STEP`` and ``TUNEBOOK_MAX_TRAIN_STEPS`` both its step (a program unaware of
the mode resumes there and trains nothing), a scratch ``TUNEBOOK_CHECKPOINT_DIR``, and the
trial's ``TUNEBOOK_TRIAL_DIR``, ``TUNEBOOK_SEED``, ``TUNEBOOK_EVAL_EVERY``,
``TUNEBOOK_TRIAL_ID``. It answers with the usual measurement lines (``{"step": S, "test_error":
...}``); the numeric ``test_*`` values are the result (the last of each name), everything else
goes to the trial's log. None at all is an error: the program does not know the mode.

**The best checkpoint** of a trial (:func:`best_checkpoint`) is the checkpoint kept at the
trial's best step (the step of its best objective value, which the built-in workloads'
``Checkpointer`` keeps); when no checkpoint is kept there, the kept checkpoint whose
``meta.json`` records the best objective value. None when neither exists.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook.core.paths import TRIAL_LOG, checkpoint_folder, checkpoint_folders, checkpoints_dir
from tunebook.errors import WorkloadError
from tunebook.execution.trial import Trial, check_metric_name, checkpoint_value
from tunebook.objective import Objective

__all__ = ["ENTRY_SUFFIX", "FinalEvalTrial", "best_checkpoint", "check_entry", "checkpoint_at",
           "entry_for", "evaluate", "has_entry", "load_entry", "run_command", "run_final_eval"]

ENTRY_SUFFIX = "_final_eval"
"""The final-evaluation entry of workload ``module:function`` is ``module:function`` + this."""

@dataclass(frozen=True)
class FinalEvalTrial:
    """The selected trial as a final-evaluation entry sees it (read-only).

    Attributes:
        hparams: every hyperparameter value of the trial (as it trained).
        seed: its training seed.
        study, index, trial_id: which trial it is.
        dir: its folder (``<root>/runs/<experiment>/<study>/trial-NNNNN``).
        cache_dir: the folder shared by every trial under the root (generated data sets).
        checkpoint: the folder of the selected (best) checkpoint.
        step: that checkpoint's step.
        objective, goal: the experiment's objective, which ranked the checkpoints.
        max_train_steps, eval_every: the trial's lengths.
    """

    hparams: dict[str, Any]
    seed: int
    study: str
    index: int
    trial_id: int
    dir: Path
    cache_dir: Path
    checkpoint: Path
    step: int
    objective: str
    goal: str
    max_train_steps: int
    eval_every: int

    @property
    def trial(self) -> Trial:
        """A :class:`Trial` on the trial's folder that records nothing (no store behind it):
        what ``tunebook.torch.Checkpointer(trial.trial).load_model(model, trial.step)`` needs to
        load and verify the checkpoint."""
        return Trial(hparams=self.hparams, max_train_steps=self.max_train_steps,
                     eval_every=self.eval_every, seed=self.seed, dir=self.dir,
                     trial_id=self.trial_id, study=self.study, index=self.index,
                     objective=self.objective, goal=self.goal, cache_dir=self.cache_dir)

    def as_json(self) -> dict[str, Any]:
        """A JSON form (paths as strings) that :meth:`from_json` reads back."""
        return {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FinalEvalTrial:
        """The inverse of :meth:`as_json`."""
        paths = {"dir", "cache_dir", "checkpoint"}
        values: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in data.items()}
        return cls(**values)


# --------------------------------------------------------------------------- checkpoints
def checkpoint_at(trial_dir: str | Path, step: int | None) -> Path | None:
    """The checkpoint folder of ``step`` in a trial folder if it is kept, else None (one stat)."""
    if step is None:
        return None
    folder = checkpoint_folder(checkpoints_dir(trial_dir), step)
    return folder if folder.is_dir() else None


def best_checkpoint(trial_dir: str | Path, best_step: int | None,
                    objective: Objective) -> tuple[int, Path] | None:
    """The trial's best checkpoint as ``(step, folder)`` (see the module docstring), or None."""
    folder = checkpoint_at(trial_dir, best_step)
    if folder is not None and best_step is not None:
        return int(best_step), folder
    scored: list[tuple[float, int, Path]] = []
    for step, p in checkpoint_folders(checkpoints_dir(trial_dir)):
        if (value := checkpoint_value(p, objective.metric)) is not None:
            scored.append((objective.sign * value, step, p))
    if not scored:
        return None
    _, step, path = min(scored)  # ties: the earliest step, like the store's best_step
    return step, path


# --------------------------------------------------------------------------- the entry
def entry_for(config: Mapping[str, Any], name: str) -> str | None:
    """The ``module:function`` of the final-evaluation entry of a stored experiment's Python
    workload; None for a ``command:`` workload (:func:`run_command` is its protocol).

    Raises:
        WorkloadError: for a stored experiment with neither.
    """
    workload = config.get("workload")
    if workload:
        return f"{workload}{ENTRY_SUFFIX}"
    if config.get("command"):
        return None
    raise WorkloadError(f"experiment {name!r} has neither a workload nor a command stored")


def _missing(spec: str) -> WorkloadError:
    module_name, _, func_name = spec.partition(":")
    return WorkloadError(f"workload {spec.removesuffix(ENTRY_SUFFIX)} has no final-evaluation "
                         f"entry: define {func_name}(hparams, trial) in {module_name} "
                         "(see docs/final-evaluation.md)")


def check_entry(spec: str, base_dir: str = ".") -> None:
    """WorkloadError (one line) when :func:`has_entry` knows the entry is not defined."""
    if has_entry(spec, base_dir) is False:
        raise _missing(spec)


def has_entry(spec: str, base_dir: str = ".") -> bool | None:
    """Whether the entry's module defines it, read from the source without importing the
    module (which may import torch); None when that cannot be told (no source, a module that
    does not parse, a star import, a dotted name: the import in the evaluation's process
    reports it)."""
    module_name, _, func_name = spec.partition(":")
    if "." in func_name:
        return None
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        found = importlib.util.find_spec(module_name)
    except Exception:
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(found.origin).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    # Every name the module binds anywhere (a def under ``if``/``try`` included); a nested
    # def of the same name makes a false "yes", which the import in the evaluation's process
    # then refuses with the same message.
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None  # a star import may bring it: the import will tell
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return func_name in bound


def load_entry(spec: str, base_dir: str = ".") -> Callable[..., Any]:
    """Import the entry ``module:function``; WorkloadError, one line, when it is not there."""
    module_name, _, func_name = spec.partition(":")
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkloadError(f"final-eval: cannot import {module_name!r} "
                            f"({type(exc).__name__}: {exc})") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise _missing(spec)
    return fn  # type: ignore[no-any-return]


def _checked(result: Any, spec: str) -> dict[str, float]:
    """The entry's answer as finite floats by metric name; WorkloadError otherwise."""
    if not isinstance(result, Mapping) or not result:
        raise WorkloadError(f"final-eval: {spec} must return a non-empty dict of metric names "
                            f"to numbers, got {result!r}"[:300])
    out: dict[str, float] = {}
    for name, value in result.items():
        try:
            check_metric_name(name)
        except (TypeError, ValueError) as exc:
            raise WorkloadError(f"final-eval: {spec}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                float(value)):
            raise WorkloadError(f"final-eval: {spec}: metric {name!r} must be a finite number, "
                                f"got {value!r}")
        out[name] = float(value)
    return out


def evaluate(spec: str, view: FinalEvalTrial, base_dir: str = ".") -> dict[str, float]:
    """Call the entry in this process; its checked metrics."""
    fn = load_entry(spec, base_dir)
    return _checked(fn(dict(view.hparams), view), spec)


def _main() -> None:
    """``python -m tunebook.execution.final_eval REQUEST REPLY``: what :func:`run_final_eval`
    starts. Writes ``{"metrics": ...}`` or ``{"error": ...}`` to REPLY."""
    from tunebook.execution.worker import limit_threads

    request_path, reply_path = sys.argv[1], sys.argv[2]
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    limit_threads()  # before the entry imports torch, and again after (as a worker does)
    try:
        fn = load_entry(request["entry"], request["base_dir"])
        limit_threads()
        view = FinalEvalTrial.from_json(request["trial"])
        reply: dict[str, Any] = {"metrics": _checked(fn(dict(view.hparams), view),
                                                     request["entry"])}
    except WorkloadError as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # the entry's own failure: named, one line
        reply = {"error": f"final-eval: {request['entry']} raised {type(exc).__name__}: {exc}"}
    Path(reply_path).write_text(json.dumps(reply), encoding="utf-8")


def run_final_eval(entry: str, view: FinalEvalTrial, base_dir: str = ".",
                   timeout: float | None = None) -> dict[str, float]:
    """Run the entry on ``view`` in a fresh process (one torch thread, like a trial's worker);
    its output goes to the trial's log. Returns the metrics.

    Raises:
        WorkloadError: the entry is missing, failed, or returned something other than finite
            numbers by name (one line, the entry's error message included).
    """
    with tempfile.TemporaryDirectory(prefix="tunebook-final-eval-") as tmp:
        request, reply = Path(tmp) / "request.json", Path(tmp) / "reply.json"
        request.write_text(json.dumps({"entry": entry, "base_dir": str(base_dir),
                                       "trial": view.as_json()}), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        log = view.dir / TRIAL_LOG
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"--- final-eval: {entry} on the checkpoint at step {view.step}\n")
            out.flush()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "tunebook.execution.final_eval", str(request),
                     str(reply)], stdout=out, stderr=subprocess.STDOUT, env=env,
                    cwd=base_dir, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise WorkloadError(f"final-eval: {entry} ran past {timeout} s") from None
        try:
            answer = json.loads(reply.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise WorkloadError(f"final-eval: {entry} died (exit status {proc.returncode}); "
                                f"see {log}") from None
    if "error" in answer:
        raise WorkloadError(str(answer["error"]))
    return {str(k): float(v) for k, v in answer["metrics"].items()}


def _metrics_of(text: str, found: dict[str, float]) -> bool:
    """Take the ``test_*`` numbers of a measurement line into ``found``; False for any other
    line (it goes to the log)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    if not isinstance(obj, dict) or isinstance(obj.get("step"), bool) or not isinstance(
            obj.get("step"), int):
        return False
    for name, value in obj.items():
        if (name.startswith("test_") and not isinstance(value, bool)
                and isinstance(value, (int, float))):
            found[name] = float(value)
    return True


def run_command(argv: Sequence[str], view: FinalEvalTrial, base_dir: str = ".",
                timeout: float | None = None) -> dict[str, float]:
    """Run a command workload's final evaluation (module docstring); returns its metrics.

    Raises:
        WorkloadError: the program failed, ran past ``timeout``, reported no ``test_*`` metric
            or a non-finite one (one line; its last lines are in the trial's log).
    """
    args = list(argv)
    if args[0] in ("python", "python3"):
        args[0] = sys.executable  # as for training: the interpreter tunebook runs under
    args += [f"--{k}={'true' if v is True else 'false' if v is False else v}"
             for k, v in view.hparams.items()]
    found: dict[str, float] = {}
    log = view.dir / TRIAL_LOG
    with tempfile.TemporaryDirectory(prefix="tunebook-final-eval-") as scratch, \
            open(log, "a", encoding="utf-8", errors="replace") as out:
        env = {**os.environ, "TUNEBOOK_MODE": "final_eval",
               "TUNEBOOK_CHECKPOINT": str(view.checkpoint.absolute()),
               "TUNEBOOK_RESUME_FROM": str(view.checkpoint.absolute()),
               "TUNEBOOK_START_STEP": str(view.step), "TUNEBOOK_MAX_TRAIN_STEPS": str(view.step),
               "TUNEBOOK_EVAL_EVERY": str(view.eval_every),
               "TUNEBOOK_TRIAL_DIR": str(view.dir.absolute()), "TUNEBOOK_SEED": str(view.seed),
               "TUNEBOOK_TRIAL_ID": str(view.trial_id), "TUNEBOOK_CHECKPOINT_DIR": scratch,
               "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        out.write(f"--- final-eval: {' '.join(args)} on the checkpoint at step {view.step}\n")
        try:
            proc = subprocess.run(args, cwd=base_dir, env=env, capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise WorkloadError(f"final-eval: the command ran past {timeout} s") from None
        except OSError as exc:
            raise WorkloadError(f"final-eval: cannot start {args[0]!r}: {exc}") from None
        lines = proc.stdout.decode("utf-8", "replace").splitlines()
        for text in lines:
            if not _metrics_of(text.strip(), found):
                out.write(text + "\n")
        out.write(proc.stderr.decode("utf-8", "replace"))
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise WorkloadError(f"final-eval: the command exited with status {proc.returncode} "
                            f"({tail[0][:200]}); see {log}")
    if not found:
        raise WorkloadError("final-eval: the command reported no test_* metric: does it handle "
                            "TUNEBOOK_MODE=final_eval? (docs/final-evaluation.md)")
    return _checked(found, "the command")


if __name__ == "__main__":
    _main()

"""Workloads: what a trial runs.

* A Python workload is ``train(hparams: dict, trial: Trial) -> None``, named ``module:function``.
  It runs inside a long-lived worker process (imports are paid once per worker, not per trial).
* A command workload is any program. Hyperparameters arrive as ``--name=value`` arguments; the
  trial folder, seed and lengths as environment variables (``TUNEBOOK_TRIAL_DIR``,
  ``TUNEBOOK_SEED``, ``TUNEBOOK_MAX_TRAIN_STEPS``, ``TUNEBOOK_EVAL_EVERY``,
  ``TUNEBOOK_START_STEP``, ``TUNEBOOK_TRIAL_ID``); it runs in the experiment file's folder, and
  a leading ``python`` or ``python3`` means the interpreter tunebook itself runs under. Every
  line it prints that is a JSON object
  with an integer ``step`` is a measurement (its other numeric keys are metrics); a JSON object
  with an ``infeasible`` key marks the trial infeasible; every other line goes to the trial's log.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tunebook.errors import Infeasible, WorkloadError
from tunebook.experiment import Experiment
from tunebook.trial import Trial

__all__ = ["CommandWorkload", "PythonWorkload", "Workload", "WorkloadFailed", "load_workload"]


class WorkloadFailed(Exception):
    """A command workload exited with a non-zero status (message: the tail of its log)."""


class Workload(Protocol):
    """Something that can train one trial."""

    def run(self, trial: Trial) -> None:
        """Train ``trial`` to completion, reporting measurements through it."""


class PythonWorkload:
    """A ``module:function`` workload imported once per process."""

    def __init__(self, spec: str, source: str = "<python>", base_dir: str = ".") -> None:
        self.spec = spec
        module_name, _, func_name = spec.partition(":")
        # A workload module beside the experiment file is importable, as users expect.
        if base_dir not in sys.path:
            sys.path.insert(0, base_dir)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise WorkloadError(
                f"{source}: workload: cannot import {module_name!r} "
                f"({type(exc).__name__}: {exc})") from None
        fn = module
        for part in func_name.split("."):
            fn = getattr(fn, part, None)  # type: ignore[assignment]
            if fn is None:
                raise WorkloadError(f"{source}: workload: module {module_name!r} has no "
                                    f"attribute {func_name!r} (from {spec!r})")
        if not callable(fn):
            raise WorkloadError(f"{source}: workload: {spec!r} is not callable")
        self.fn: Callable[[dict[str, Any], Trial], Any] = fn

    def run(self, trial: Trial) -> None:
        """Call the function with the trial's hyperparameters and the trial."""
        self.fn(trial.hparams, trial)


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the worker dies, even by SIGKILL, so a
    re-queued trial never runs next to its orphaned previous attempt (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _format_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class CommandWorkload:
    """Any program; see the module docstring for its contract."""

    def __init__(self, argv: tuple[str, ...], source: str = "<python>",
                 base_dir: str = ".") -> None:
        self.argv = list(argv)
        self.cwd = base_dir
        if self.argv[0] in ("python", "python3"):
            # The interpreter tunebook runs under: same virtual environment, and no surprise
            # from a machine where only python3 (or neither) is on PATH.
            self.argv[0] = sys.executable
        program = self.argv[0]
        candidate = Path(base_dir) / program
        if os.sep in program or (os.altsep and os.altsep in program):
            found = candidate.exists() or Path(program).exists()
        else:
            found = shutil.which(program) is not None
        if not found:
            raise WorkloadError(f"{source}: command: program {program!r} not found "
                                "(not on PATH, nor relative to the experiment file)")

    def run(self, trial: Trial) -> None:
        """Run the program, turning its JSON lines into measurements."""
        args = self.argv + [f"--{k}={_format_arg(v)}" for k, v in trial.hparams.items()]
        env = dict(os.environ,
                   TUNEBOOK_TRIAL_DIR=str(trial.dir), TUNEBOOK_SEED=str(trial.seed),
                   TUNEBOOK_MAX_TRAIN_STEPS=str(trial.max_train_steps),
                   TUNEBOOK_EVAL_EVERY=str(trial.eval_every),
                   TUNEBOOK_START_STEP=str(trial.start_step), TUNEBOOK_TRIAL_ID=str(trial.id),
                   PYTHONUNBUFFERED="1")
        log_path = trial.dir / "log.txt"
        tail: deque[str] = deque(maxlen=20)
        with open(log_path, "a", encoding="utf-8", errors="replace") as log:
            proc = subprocess.Popen(
                args, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, errors="replace", start_new_session=True, bufsize=1,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            assert proc.stdout is not None and proc.stderr is not None
            lock = threading.Lock()

            def pump_stderr() -> None:
                assert proc.stderr is not None
                for line in proc.stderr:
                    with lock:
                        log.write(line)
                        tail.append(line.rstrip("\n"))

            err_thread = threading.Thread(target=pump_stderr, daemon=True)
            err_thread.start()
            try:
                for line in proc.stdout:
                    if not self._measure(line, trial):
                        with lock:
                            log.write(line)
                            tail.append(line.rstrip("\n"))
                code = proc.wait()
            except BaseException:
                # Infeasible, an interruption, anything: the program must not outlive its trial.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                err_thread.join(timeout=5)
        if code != 0:
            raise WorkloadFailed(f"command exited with status {code}; last lines:\n"
                                 + "\n".join(tail))

    @staticmethod
    def _measure(line: str, trial: Trial) -> bool:
        text = line.strip()
        if not text.startswith("{"):
            return False
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        if "infeasible" in obj:
            step = obj.get("step")
            raise Infeasible(str(obj["infeasible"]), step if isinstance(step, int) else None)
        step = obj.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            return False
        metrics = {k: v for k, v in obj.items() if k != "step"
                   and isinstance(v, int | float) and not isinstance(v, bool)}
        ignored = sorted(set(obj) - set(metrics) - {"step"})
        if ignored:
            trial.log(f"step {step}: ignored non-numeric keys {ignored}")
        trial.report(step, **metrics)
        return True


def load_workload(experiment: Experiment) -> Workload:
    """Load (import, or find the program of) the experiment's workload.

    Raises:
        WorkloadError: naming the experiment file, the key and the value.
    """
    if experiment.workload is not None:
        return PythonWorkload(experiment.workload, experiment.source, experiment.base_dir)
    return CommandWorkload(tuple(experiment.command or ()), experiment.source, experiment.base_dir)

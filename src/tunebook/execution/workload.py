"""Workloads: what a trial runs.

* A Python workload is ``train(hparams: dict, trial: Trial) -> None``, named ``module:function``.
  It runs inside a long-lived worker process (imports are paid once per worker, not per trial).
  A workload module may declare the packages it needs in a module-level literal
  ``REQUIRES = {"package": "extra"}`` (import name -> the tunebook extra that installs it):
  a missing one is reported when the workload is loaded, before any trial starts.
* A command workload is any program. Hyperparameters arrive as ``--name=value`` arguments; the
  trial folder, seed, lengths and checkpoints as environment variables (``TUNEBOOK_TRIAL_DIR``,
  ``TUNEBOOK_SEED``, ``TUNEBOOK_MAX_TRAIN_STEPS``, ``TUNEBOOK_EVAL_EVERY``,
  ``TUNEBOOK_START_STEP``, ``TUNEBOOK_TRIAL_ID``, ``TUNEBOOK_CHECKPOINT_DIR``,
  ``TUNEBOOK_RESUME_FROM``); it runs in the experiment file's folder, and a leading ``python``
  or ``python3`` means the interpreter tunebook itself runs under. Every line it prints that is
  a JSON object with an integer ``step`` is a measurement (its other numeric keys are metrics);
  a JSON object with an ``infeasible`` key marks the trial infeasible; one with a
  ``checkpoint`` key (``{"checkpoint": <step>, "path": "<folder>"}``) publishes the folder it
  wrote as the trial's checkpoint of that step; every other line goes to the trial's log (each
  line cut at :data:`LOG_LINE_BYTES`). ``docs/command-workloads.md`` is the full protocol, and
  :mod:`tunebook.script` a helper for Python scripts.

Checkpoints of a command: the program writes a complete folder under ``TUNEBOOK_CHECKPOINT_DIR``
(a staging folder tunebook empties before each start) or anywhere else inside the trial folder,
then prints the announcement. On reading it, tunebook flushes every measurement printed before
it to the store, records checksums of the folder's files and renames it into place
(:meth:`tunebook.execution.trial.Trial.publish_checkpoint`, the same path as a Python workload's
checkpoints). The next start of the trial gets the newest intact checkpoint in
``TUNEBOOK_RESUME_FROM`` and its step in ``TUNEBOOK_START_STEP``: the measurements past that step
were dropped, the program reports them again. A program killed by a signal (SIGKILL, SIGTERM,
SIGINT, SIGHUP) while its worker lives is started again from the latest checkpoint, up to
:attr:`CommandWorkload.max_restarts` times in a row without a new checkpoint.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from tunebook.core.interrupts import protected
from tunebook.core.paths import TRIAL_LOG
from tunebook.core.processes import die_with_parent_sigkill, pid_alive
from tunebook.errors import Infeasible, WorkloadError
from tunebook.execution.trial import Trial
from tunebook.experiment import Experiment

__all__ = ["LOG_LINE_BYTES", "TAIL_LINES", "TAIL_LINE_CHARS", "CommandWorkload",
           "PythonWorkload", "Workload", "WorkloadFailed", "load_workload", "missing_packages"]

LOG_LINE_BYTES = 64 * 1024
"""A command's output line longer than this is cut in the log (``... [N bytes cut]``) and never
read as a measurement."""

TAIL_LINES = 20
TAIL_LINE_CHARS = 1000
"""A failed command's error message quotes at most its last :data:`TAIL_LINES` lines of output,
each cut at this many characters."""

_KILL_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_STAGING = ".staging"


class WorkloadFailed(Exception):
    """A command workload exited with a non-zero status (message: the tail of its log)."""


class Workload(Protocol):
    """Something that can train one trial."""

    def run(self, trial: Trial) -> None:
        """Train ``trial`` to completion, reporting measurements through it."""


# --------------------------------------------------------------------------- Python workloads
def _declared_requirements(module_name: str) -> dict[str, str]:
    """The ``REQUIRES`` literal of a module, read from its source without importing it (an
    import would fail on the very package that is missing); {} when it declares none."""
    module = sys.modules.get(module_name)
    if module is not None:
        found = getattr(module, "REQUIRES", None)
        return dict(found) if isinstance(found, Mapping) else {}
    try:
        spec = importlib.util.find_spec(module_name)  # imports its parent packages
    except Exception:
        return {}  # the import reports it
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return {}
    try:
        tree = ast.parse(Path(spec.origin).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return {}  # the import reports it
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, expr = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, expr = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "REQUIRES":
            with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError,
                                     RecursionError):
                value = ast.literal_eval(expr)
                if isinstance(value, dict):
                    return {str(k): str(v) for k, v in value.items()}
    return {}


def missing_packages(module_name: str) -> list[tuple[str, str]]:
    """``(package, extra)`` of every package the module's ``REQUIRES`` names that cannot be
    found (``importlib.util.find_spec``), in the order declared."""
    missing = []
    for package, extra in _declared_requirements(module_name).items():
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append((package, extra))
    return missing


class PythonWorkload:
    """A ``module:function`` workload imported once per process."""

    def __init__(self, spec: str, source: str = "<python>", base_dir: str = ".") -> None:
        self.spec = spec
        module_name, _, func_name = spec.partition(":")
        # A workload module beside the experiment file is importable, as users expect.
        if base_dir not in sys.path:
            sys.path.insert(0, base_dir)
        missing = missing_packages(module_name)
        if missing:
            names = " and ".join(repr(package) for package, _ in missing)
            extras = ",".join(dict.fromkeys(extra for _, extra in missing))
            raise WorkloadError(f"{source}: workload: {spec} needs the package"
                                f"{'s' if len(missing) > 1 else ''} {names}: "
                                f"pip install 'tunebook[{extras}]'")
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


# --------------------------------------------------------------------------- command workloads
def _format_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lines(stream: IO[bytes], limit: int = LOG_LINE_BYTES) -> Iterator[tuple[str, int]]:
    """``(text, cut)`` for every line of ``stream``: at most ``limit`` bytes of it (without the
    line end) and how many bytes were dropped. Memory stays bounded whatever the line length."""
    while True:
        head = stream.readline(limit)
        if not head:
            return
        cut = 0
        if len(head) == limit and not head.endswith(b"\n"):
            while True:  # skip the rest of an over-long line, a megabyte at a time
                more = stream.readline(1 << 20)
                if not more:
                    break
                if more.endswith(b"\n"):
                    cut += len(more) - 1
                    break
                cut += len(more)
        yield head.rstrip(b"\r\n").decode("utf-8", "replace"), cut


def _log_text(text: str, cut: int) -> str:
    return f"{text} … [{cut} bytes cut]" if cut else text


def _tail_text(text: str, cut: int) -> str:
    if len(text) <= TAIL_LINE_CHARS and not cut:
        return text
    kept = text[:TAIL_LINE_CHARS]
    dropped = len(text.encode("utf-8", "replace")) - len(kept.encode("utf-8", "replace")) + cut
    return f"{kept} … [{dropped} bytes cut]"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Output:
    """Where a command's non-measurement lines go: the trial's log (each line once, cut at
    :data:`LOG_LINE_BYTES`) and the bounded tail quoted when the command fails."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.lock = threading.Lock()

    def line(self, text: str, cut: int) -> None:
        with self.lock:
            self._write(_log_text(text, cut) + "\n")
            self.tail.append(_tail_text(text, cut))

    def note(self, message: str) -> None:
        """A line of tunebook's own, in order with the command's lines."""
        with self.lock:
            self._write(message + "\n")

    def _write(self, text: str) -> None:
        # The stderr pump may outlive the log when the trial is stopped (SIGTERM) while it
        # waits for the pump: the program is killed already, its last words can go.
        with contextlib.suppress(ValueError):
            self.log.write(text)


def kill_leftovers(trial_dir: Path, wait: float = 5.0) -> list[int]:
    """SIGKILL every process still running for this trial folder; returns their pids.

    A command's own child dies with its worker (parent-death signal), but what that child
    started (a shell script's trainer, ``torchrun``'s processes) is re-parented and would go on
    writing next to the trial's next attempt. Each of them carries ``TUNEBOOK_TRIAL_DIR`` in
    its environment: that is how they are found (Linux ``/proc``; elsewhere nothing is found).
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    marker = f"TUNEBOOK_TRIAL_DIR={trial_dir.absolute()}".encode()
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                found.append(int(entry.name))
    deadline = time.monotonic() + wait
    while found and time.monotonic() < deadline and any(
            pid_alive(p) for p in found):
        time.sleep(0.02)
    return found


class CommandWorkload:
    """Any program; see the module docstring for its contract.

    Attributes:
        max_restarts: how many times in a row a program killed by a signal is started again
            from the latest checkpoint without having published a new one in between.
    """

    max_restarts = 3

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
        """Run the program, turning its JSON lines into measurements and checkpoints; start it
        again from the latest checkpoint when a signal killed it (see :attr:`max_restarts`)."""
        restarts = 0
        with open(trial.dir / TRIAL_LOG, "a", encoding="utf-8", errors="replace",
                  buffering=1) as log:
            out = _Output(log)
            while True:
                resume = trial.restore_point()
                if restarts:
                    # What the killed program reported past its checkpoint comes again.
                    trial.rewind(resume[0] if resume else 0)
                code, published = self._run_once(trial, resume, out)
                if code == 0:
                    return
                killed = code < 0 and -code in _KILL_SIGNALS
                restarts = 1 if published else restarts + 1
                if killed and restarts <= self.max_restarts:
                    latest = trial.latest_checkpoint()
                    out.note(f"--- the command was killed by {_signal_name(-code)}: "
                             f"starting it again from step {latest[0] if latest else 0} "
                             f"(restart {restarts} of at most {self.max_restarts} "
                             "without a new checkpoint)")
                    continue
                what = (f"was killed by {_signal_name(-code)}" if code < 0
                        else f"exited with status {code}")
                if killed:
                    what += f" ({restarts - 1} restarts without a new checkpoint)"
                raise WorkloadFailed(f"command {what}; last lines:\n" + "\n".join(out.tail))

    def _run_once(self, trial: Trial, resume: tuple[int, Path] | None, out: _Output
                  ) -> tuple[int, bool]:
        """One start of the program: its exit status (negative: killed by that signal) and
        whether it published a checkpoint."""
        # A previous attempt's processes that outlived their worker (SIGKILL) must be gone
        # before this one starts: one trial never runs in two processes at once.
        killed = kill_leftovers(trial.dir)
        if killed:
            out.note(f"--- killed {len(killed)} process(es) left by a previous attempt: "
                     f"{', '.join(map(str, killed))}")
        staging = (trial.checkpoint_root / _STAGING).absolute()
        # Whatever a previous start left half-written is garbage now: it never announced it.
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        args = self.argv + [f"--{k}={_format_arg(v)}" for k, v in trial.hparams.items()]
        env = dict(os.environ,
                   TUNEBOOK_TRIAL_DIR=str(trial.dir.absolute()), TUNEBOOK_SEED=str(trial.seed),
                   TUNEBOOK_MAX_TRAIN_STEPS=str(trial.max_train_steps),
                   TUNEBOOK_EVAL_EVERY=str(trial.eval_every),
                   TUNEBOOK_START_STEP=str(resume[0] if resume else 0),
                   TUNEBOOK_RESUME_FROM=str(resume[1].absolute()) if resume else "",
                   TUNEBOOK_CHECKPOINT_DIR=str(staging),
                   TUNEBOOK_TRIAL_ID=str(trial.id), PYTHONUNBUFFERED="1")
        # A stop during the fork waits for its end (see tunebook.core.interrupts); raised after
        # it, the program dies with this process (parent-death signal).
        with protected():
            proc = subprocess.Popen(
                args, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent_sigkill if sys.platform == "linux" else None)
        assert proc.stdout is not None and proc.stderr is not None
        stderr = proc.stderr

        def pump_stderr() -> None:
            for text, cut in _lines(stderr):
                out.line(text, cut)

        err_thread = threading.Thread(target=pump_stderr, daemon=True)
        err_thread.start()
        published = False
        try:
            for text, cut in _lines(proc.stdout):
                kind = None if cut else self._handle(text, trial, out)
                if kind is None:
                    out.line(text, cut)
                published = published or kind == "checkpoint"
            code = proc.wait()
        except BaseException:
            # Infeasible, an interruption, anything: the program must not outlive its trial.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            err_thread.join(timeout=5)
            proc.stdout.close()
            if not err_thread.is_alive():  # else a grandchild holds it open: leave it be
                stderr.close()
        if code < 0:
            # Killed: whatever it started must not outlive it (and write into the next start).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        return code, published

    def _handle(self, text: str, trial: Trial, out: _Output) -> str | None:
        """Act on one line of output: ``"measurement"``, ``"checkpoint"``, or None for a line
        that goes to the log."""
        text = text.strip()
        if not text.startswith("{"):
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if "infeasible" in obj:
            step = obj.get("step")
            raise Infeasible(str(obj["infeasible"]), step if isinstance(step, int) else None)
        if "checkpoint" in obj:
            step, folder = self._announced(obj, trial)
            trial.publish_checkpoint(step, folder, checksums=True)
            return "checkpoint"
        step = obj.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            return None
        metrics = {k: v for k, v in obj.items() if k != "step"
                   and isinstance(v, int | float) and not isinstance(v, bool)}
        ignored = sorted(set(obj) - set(metrics) - {"step"})
        if ignored:
            out.note(f"step {step}: ignored non-numeric keys {ignored}")
        trial.report(step, **metrics)
        return "measurement"

    def _announced(self, obj: dict[str, Any], trial: Trial) -> tuple[int, Path]:
        """The step and folder of a checkpoint announcement, checked.

        Raises:
            WorkloadError: for a step that is not a non-negative integer, or a path that is not
                a folder inside the trial folder (outside every published checkpoint).
        """
        step, path = obj["checkpoint"], obj.get("path")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise WorkloadError(f"checkpoint announcement {obj!r}: 'checkpoint' must be the "
                                "step, a non-negative integer")
        if not isinstance(path, str) or not path:
            raise WorkloadError(f"checkpoint announcement {obj!r}: 'path' must be the folder "
                                "written")
        given = Path(path) if Path(path).is_absolute() else Path(self.cwd) / path
        folder = given.resolve()
        trial_dir = trial.dir.resolve()
        root = trial.checkpoint_root.resolve()
        problem = None
        if given.is_symlink() or not folder.is_dir():
            problem = "is not a folder"
        elif folder == trial_dir or not folder.is_relative_to(trial_dir):
            problem = f"is not inside the trial folder {trial_dir}"
        elif root.is_relative_to(folder) or folder == root / _STAGING:
            problem = "holds the trial's checkpoints"
        elif folder.is_relative_to(root) and folder.relative_to(root).parts[0].startswith(
                ("step-", "corrupt-")):
            problem = "is a published checkpoint"
        if problem is not None:
            raise WorkloadError(f"checkpoint announcement for step {step}: {path!r} {problem}")
        return step, folder


def load_workload(experiment: Experiment) -> Workload:
    """Load (import, or find the program of) the experiment's workload.

    Raises:
        WorkloadError: naming the experiment file, the key and the value (a module, a program,
            or a package the workload declares it needs that is not installed).
    """
    if experiment.workload is not None:
        return PythonWorkload(experiment.workload, experiment.source, experiment.base_dir)
    return CommandWorkload(tuple(experiment.command or ()), experiment.source, experiment.base_dir)

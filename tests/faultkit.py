"""What the fault tests share: processes found in /proc, the executions a ``toy.lifecycle`` trial
recorded, stand-in machines (``tunebook run`` processes with their own ``TUNEBOOK_HOST``), an
uninterrupted reference run, and the exactly-once check every fault test ends with."""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.store.sql import Store

from conftest import cli_env, write_experiment

__all__ = ["Host", "Outcome", "Reference", "Span", "assert_exactly_once", "children",
           "executions", "kill", "spans", "wait_for"]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def executions(folder: Path) -> dict[int, list[tuple[str, float]]]:
    """pid -> [(kind, time)] from a ``toy.lifecycle`` trial folder."""
    out: dict[int, list[tuple[str, float]]] = {}
    path = folder / "executions"
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, pid, t = line.split()
        out.setdefault(int(pid), []).append((kind, float(t)))
    return out


@dataclass(frozen=True)
class Span:
    """One execution of a trial's workload: its process, first and last mark, its marks."""

    pid: int
    start: float
    end: float
    marks: tuple[tuple[str, float], ...]


def spans(folder: Path) -> list[Span]:
    """Every execution of a ``toy.lifecycle`` trial, by start time (a process that ran the
    trial twice has two: each ``start`` mark begins one)."""
    out = []
    for pid, marks in executions(folder).items():
        current: list[tuple[str, float]] = []
        for mark in [*marks, ("start", math.inf)]:
            if mark[0] == "start" and current:
                out.append(Span(pid, current[0][1], current[-1][1], tuple(current)))
                current = []
            current.append(mark)
    return sorted(out, key=lambda s: s.start)


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 120,
             alive: Callable[[], None] | None = None) -> Any:
    """Poll ``condition`` until it returns something true (returned); ``alive`` raises when a
    process the wait depends on died. AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if alive is not None:
            alive()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Host:
    """A stand-in for a machine: ``tunebook ARGV`` (``run FILE ...`` or ``worker NAME ...``)
    with ``TUNEBOOK_HOST=name``, in a process group of its own (so the whole "machine" can be
    stopped or killed at once); its output goes to ``<log_dir>/<name>-<n>.txt``."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name, self.argv, self.log_dir = name, argv, log_dir
        self.starts = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        self.log = self.log_dir / f"{self.name}-{self.starts}.txt"
        with open(self.log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tunebook.cli", *self.argv],
                env={**cli_env(), "TUNEBOOK_HOST": self.name}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def restart(self) -> None:
        """Start the command again (as a scheduler restarts a job whose node died)."""
        self.proc.wait(timeout=60)
        self.proc = self._start()

    def workers(self) -> list[int]:
        """The run's live worker processes (spawned Python children; not their sentinels)."""
        out = []
        for pid in children(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            except OSError:
                continue
            if "spawn_main" in cmdline:
                out.append(pid)
        return sorted(out)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole machine: the run and every process it started."""
        os.killpg(self.proc.pid, sig)

    def running(self) -> bool:
        """Whether the run process is still going."""
        return self.proc.poll() is None

    def output(self) -> str:
        """What every start of this run printed."""
        return "".join((self.log_dir / f"{self.name}-{n}.txt").read_text(errors="replace")
                       for n in range(1, self.starts + 1))

    def finish(self, timeout: float = 120) -> int:
        """Wait for the run to end; its exit status."""
        return self.proc.wait(timeout=timeout)


@dataclass
class Reference:
    """An uninterrupted run of the same trials: curves and summaries by (study, index)."""

    curves: dict[tuple[str, int], dict[str, list[tuple[int, float]]]]
    summaries: dict[tuple[str, int], tuple[Any, ...]]
    params: dict[tuple[str, int], dict[str, Any]]

    @classmethod
    def run(cls, folder: Path, **doc: Any) -> Reference:
        """Run the experiment ``doc`` (``write_experiment``'s keys, sleeping 0) in-process,
        one trial after another, nothing interrupted."""
        from tunebook.execution.runner import run
        from tunebook.experiment import Experiment

        folder.mkdir(parents=True)
        fixed = {**doc.pop("fixed", {}), "sleep": 0.0}
        path = write_experiment(folder, fixed=fixed, **doc)
        result = run(Experiment.from_yaml(path), root=folder / "root", workers=0)
        store = Store.at_root(folder / "root")
        try:
            return cls(*_curves(store, result.experiment_id))
        finally:
            store.close()


def _curves(store: Store, exp_id: int) -> tuple[dict[tuple[str, int], Any],
                                                dict[tuple[str, int], tuple[Any, ...]],
                                                dict[tuple[str, int], dict[str, Any]]]:
    """Curves, summaries and hyperparameters (the sleep left out) by (study, index)."""
    trials = store.trials(exp_id)
    by_id = {t.id: (t.study, t.index) for t in trials}
    curves: dict[tuple[str, int], dict[str, list[tuple[int, float]]]] = {
        key: {} for key in by_id.values()}
    for tid, step, metric, value in store.measurements(experiment_id=exp_id):
        curves[by_id[tid]].setdefault(metric, []).append((step, value))
    summaries = {(t.study, t.index): (t.status, t.best_step, t.best_value, t.final_step,
                                      t.final_value) for t in trials}
    params = {(t.study, t.index): {k: v for k, v in t.params.items() if k != "sleep"}
              for t in trials}
    return curves, summaries, params


_ATTEMPT = re.compile(r"^--- attempt (\d+) by (\S+), start_step=(\d+)$")


@dataclass(frozen=True)
class Outcome:
    """What the exactly-once check read: the trials, each one's executions and the resumed
    attempts its log recorded ``(attempt, worker, start_step)``."""

    trials: list[Any]
    spans: dict[int, list[Span]]
    resumes: dict[int, list[tuple[int, str, int]]]
    logs: dict[int, str]


def assert_exactly_once(url: str, name: str, root: Path, reference: Reference,
                        eval_every: int, frozen: frozenset[int] = frozenset()) -> Outcome:
    """Every trial of experiment ``name`` completed exactly once: completed, its curves and
    summary equal to the reference run's, the last execution of its workload ran to its end
    and none trained a step after an earlier one ended, no two executions overlapped in time,
    every resumed attempt started from a checkpoint step, no trial left running and every
    run's record closed.

    Executions of the processes in ``frozen`` (stopped with SIGSTOP, then continued) are left
    out of the overlap check: the test checks what they did once continued."""
    store = Store(url)
    try:
        exp = store.require_experiment(name)
        trials = store.trials(exp.id)
        curves, summaries, params = _curves(store, exp.id)
        records = store.runs(exp.id)
    finally:
        store.close()
    assert len(trials) == len(reference.curves)
    assert [t.status for t in trials] == ["completed"] * len(trials)
    assert curves == reference.curves  # every point, exact, none twice, none missing
    assert params == reference.params  # the same trials, slower
    assert summaries == reference.summaries
    found: dict[int, list[Span]] = {}
    resumes: dict[int, list[tuple[int, str, int]]] = {}
    logs: dict[int, str] = {}
    for t in trials:
        folder = trial_dir(root, name, t.study, t.index)
        runs = found[t.id] = spans(folder)
        ends = [i for i, s in enumerate(runs) if s.marks[-1][0] == "end"]
        assert ends and ends[-1] == len(runs) - 1, f"trial {t.index}: {runs}"
        # A worker killed after its workload's end, before the store recorded the trial
        # completed, leaves it to an execution that resumes from the final checkpoint: one
        # that trains no step again.
        assert not [s for s in runs[ends[0] + 1:] if any(k == "tick" for k, _ in s.marks)], (
            f"trial {t.index} trained again after an execution ran to its end: {runs}")
        for a, b in itertools.pairwise([s for s in runs if s.pid not in frozen]):
            assert a.end < b.start, f"trial {t.index}: two executions overlapped: {a} {b}"
        log = (folder / TRIAL_LOG).read_text() if (folder / TRIAL_LOG).exists() else ""
        logs[t.id] = log
        resumes[t.id] = [(int(m[1]), m[2], int(m[3]))
                         for m in map(_ATTEMPT.match, log.splitlines()) if m]
        assert all(step % eval_every == 0 for _, _, step in resumes[t.id])
    assert all(r.finished_at is not None for r in records), records
    return Outcome(trials, found, resumes, logs)


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid``; False when it was already gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False

"""Preemption of a command workload, for real: SIGKILL the command (or the worker running it) at
random steps, let tunebook resume it from the checkpoints the command published, and get exactly
the curves of an uninterrupted run.

The command is ``counter_command.py`` (in this folder): plain Python with
:mod:`tunebook.script`, a seeded running sum checkpointed every 10 steps and evaluated every 5,
so a resume recomputes the evaluations between its checkpoint and the kill. Each case runs the
same one-trial experiment twice on two fresh roots: through the CLI (``tunebook run --workers
1``) while the test kills, as soon as the command has passed each of 2-3 steps drawn by a seeded
``random.Random``,

* ``command``: the command's own process. Its worker lives on and starts the command again from
  the latest checkpoint, in the same attempt;
* ``worker``: the worker process (the command dies with it). The runner starts a new worker,
  which claims the trial again and resumes it;

then undisturbed in this process (the reference). Every evaluation must be stored exactly once,
with the same value as in the reference, bit for bit.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import tunebook
from tunebook.execution.runner import run
from tunebook.experiment import Experiment

from conftest import cli_env
from conftest import single_trial_curves as _curves

HERE = Path(__file__).parent
STEPS, EVERY, CHECKPOINT_EVERY = 60, 5, 10


def _experiment(folder: Path, case: str) -> Path:
    doc = {
        "name": f"command-preempt-{case}",
        "goal": "resuming a command after SIGKILL reproduces the uninterrupted run",
        "command": ["python", str(HERE / "counter_command.py")],
        "objective": {"metric": "loss", "goal": "minimize"},
        "max_train_steps": STEPS,
        "eval_every": EVERY,
        "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
        "scientific": {},
        "nuisance": {"learning_rate": {"type": "float", "low": 0.1, "high": 1.0}},
        "fixed": {"checkpoint_every": CHECKPOINT_EVERY, "sleep": 0.03},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _progress(folder: Path) -> tuple[int, int, int] | None:
    try:
        pid, parent, step = (folder / "progress").read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid), int(parent), int(step)


def _kill_at(folder: Path, target: int, delay: float, victim: str, dead: list[int],
             proc: subprocess.Popen[str]) -> int:
    """SIGKILL the live command (``victim="command"``) or its worker ``delay`` seconds after the
    command passed ``target``; returns the step it had reached."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the kill"
        seen = _progress(folder)
        if seen is not None:
            pid = seen[0] if victim == "command" else seen[1]
            if pid not in dead and seen[2] >= target:
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
                dead.append(pid)
                return seen[2]
        time.sleep(0.005)
    raise AssertionError(f"the command never reached step {target}")


def same_tunebook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands (run in the experiment's folder) import the tunebook under test: a relative
    PYTHONPATH such as ``src`` would mean another folder there."""
    paths = [str(Path(tunebook.__file__).resolve().parents[1]), str(HERE.parent)]
    paths += [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


@pytest.mark.parametrize(("victim", "kills"), [("command", 3), ("worker", 2)])
def test_sigkill_at_random_steps_resumes_to_identical_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str, kills: int) -> None:
    same_tunebook(monkeypatch)
    rng = random.Random(f"command-preempt-{victim}")
    # One kill step in each of `kills` equal parts of the range after the first checkpoint.
    low, high = CHECKPOINT_EVERY + 3, STEPS - 8
    bounds = [low + (high - low) * i // kills for i in range(kills + 1)]
    targets = [rng.randrange(a, b) for a, b in itertools.pairwise(bounds)]
    path = _experiment(tmp_path / "exp", victim)
    name = f"command-preempt-{victim}"
    folder = tmp_path / "killed" / "runs" / name / "main" / "trial-00000"

    killed = subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
         str(tmp_path / "killed"), "--workers", "1", "--max-attempts", "10", "--quiet",
         "--no-report"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    dead: list[int] = []
    try:
        reached = [_kill_at(folder, target, rng.uniform(0.0, 0.04), victim, dead, killed)
                   for target in targets]
        _, err = killed.communicate(timeout=120)
    finally:
        killed.kill()
    assert killed.returncode == 0, err
    run(Experiment.from_yaml(path), root=tmp_path / "reference", workers=0)

    ref_trial, ref = _curves(tmp_path / "reference", name)
    got_trial, got = _curves(tmp_path / "killed", name)
    assert ref_trial.status == got_trial.status == "completed", got_trial.error
    log = (folder / "log.txt").read_text()
    # The command is started again by its worker (same attempt); a dead worker's trial is
    # claimed again by a new worker (one attempt per worker).
    attempts = [[int(x) for x in line.split()]
                for line in (folder / "attempts").read_text().splitlines()]
    assert len(attempts) == kills + 1
    if victim == "command":
        assert got_trial.attempts == 1
        assert [pid for pid, _, _ in attempts[:-1]] == dead
        assert len({parent for _, parent, _ in attempts}) == 1
        assert log.count("the command was killed by SIGKILL: starting it again") == kills
    else:
        assert got_trial.attempts == kills + 1
        assert [parent for _, parent, _ in attempts[:-1]] == dead
    starts = [start for _, _, start in attempts]
    assert starts[0] == 0
    last: dict[int, int] = {}  # the last step each command process finished
    for line in (folder / "steps").read_text().splitlines():
        pid, step = map(int, line.split())
        last[pid] = step
    for (pid, _, _), start, seen in zip(attempts[:-1], starts[1:], reached, strict=True):
        # Each start resumes from the latest checkpoint published when the kill landed: one
        # the killed process had written, and at least the one before the step the test saw
        # (a worker killed may not have read the announcement of the last one).
        floor = (seen - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        if victim == "worker":
            floor -= CHECKPOINT_EVERY
        assert max(floor, 1) <= start <= last[pid] // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        assert start % CHECKPOINT_EVERY == 0

    evals = list(range(EVERY, STEPS + 1, EVERY))
    assert set(ref) == set(got) == {"loss", "total"}
    for metric in ("loss", "total"):
        # Every evaluation exactly once, with the very values of the uninterrupted run.
        assert [s for s, _ in ref[metric]] == evals, metric
        assert got[metric] == ref[metric], metric
    # The checkpoints were published by tunebook, with checksums, and nothing is left staged.
    published = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert published == [".staging", "step-0000000050", "step-0000000060"]
    assert (folder / "checkpoints" / "step-0000000060" / "tunebook-manifest.json").exists()

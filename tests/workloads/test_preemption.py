"""Preemption, for real: SIGKILL a built-in workload's worker at random steps, let tunebook
resume it, and get exactly the curves of an uninterrupted run.

Each case runs the same one-trial experiment twice on two fresh roots: through the CLI
(``tunebook run --workers 1``) while the test kills the worker with SIGKILL as soon as it has
passed each of 2-3 steps drawn by a seeded ``random.Random``, then undisturbed in this process
(the reference; pytest's process has torch imported already, a worker would import it again).
The runner replaces each dead worker, and the new one resumes the trial from its latest
checkpoint. The workload runs through ``preempt_wrapper`` (in this folder), which only adds a
per-step sleep and publishes ``<pid> <step>`` after every step; the kill lands wherever the
worker is at that moment (training, evaluating, writing measurements or a checkpoint).

The configurations switch on everything whose state a resume must restore: dropout (torch's
generator), warmup and a decaying schedule, clipping (its counts), weight decay, label
smoothing, Adam's moments.
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
from typing import Any

import pytest
import yaml

from tunebook.execution.runner import run
from tunebook.experiment import Experiment

from conftest import cli_env
from conftest import single_trial_curves as _curves

HERE = Path(__file__).parent

CASES: dict[str, dict[str, Any]] = {
    "digits": {
        "workload": "preempt_wrapper:digits_mlp",
        "max_train_steps": 60,
        "eval_every": 6,
        "kills": 3,
        "fixed": {"num_layers": 2, "width": 32, "dropout": 0.1, "label_smoothing": 0.1,
                  "weight_decay": 1e-4, "schedule": "cosine", "warmup_steps": 10,
                  "grad_clip": 1.0, "batch_size": 32, "sleep": 0.01},
    },
    "transformer": {
        "workload": "preempt_wrapper:transformer",
        "max_train_steps": 40,
        "eval_every": 5,
        "kills": 2,
        "fixed": {"num_layers": 1, "width": 32, "num_heads": 2, "context_length": 16,
                  "dropout": 0.1, "schedule": "linear", "warmup_steps": 5, "grad_clip": 0.5,
                  "batch_size": 8, "sleep": 0.015},
    },
}


def _experiment(folder: Path, case: str) -> Path:
    spec = CASES[case]
    doc = {
        "name": f"preempt-{case}",
        "goal": "resuming after SIGKILL reproduces the uninterrupted run",
        "workload": spec["workload"],
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": spec["max_train_steps"],
        "eval_every": spec["eval_every"],
        "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
        "scientific": {},
        "nuisance": {"learning_rate": {"type": "float", "low": 2e-3, "high": 4e-3,
                                       "scale": "log"}},
        "fixed": spec["fixed"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _start(path: Path, root: Path) -> subprocess.Popen[str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    return subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root", str(root),
         "--workers", "1", "--max-attempts", "10", "--quiet", "--no-report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _progress(folder: Path) -> tuple[int, int] | None:
    try:
        pid, step = (folder / "progress").read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid), int(step)


def _kill_at(folder: Path, target: int, delay: float, dead: list[int],
             proc: subprocess.Popen[str]) -> int:
    """SIGKILL the live worker ``delay`` seconds after it has passed ``target`` (so the kill lands
    anywhere in the next step: training, evaluating, reporting, checkpointing); returns the step
    it had reached."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the worker could be killed"
        seen = _progress(folder)
        if seen is not None and seen[0] not in dead and seen[1] >= target:
            time.sleep(delay)
            os.kill(seen[0], signal.SIGKILL)
            dead.append(seen[0])
            return seen[1]
        time.sleep(0.005)
    raise AssertionError(f"the worker never reached step {target}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_sigkill_at_random_steps_resumes_to_identical_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # preempt_wrapper, for the in-process reference
    spec = CASES[case]
    steps, every = spec["max_train_steps"], spec["eval_every"]
    rng = random.Random(f"preempt-{case}")
    # One kill step drawn in each of `kills` equal parts of the range that starts after the
    # first checkpoint (so every resume is a real one) and ends well before the last step.
    kills, low, high = spec["kills"], every + 1, steps - 8
    bounds = [low + (high - low) * i // kills for i in range(kills + 1)]
    targets = [rng.randrange(a, b) for a, b in itertools.pairwise(bounds)]
    path = _experiment(tmp_path / "exp", case)
    name = f"preempt-{case}"
    folder = tmp_path / "killed" / "runs" / name / "main" / "trial-00000"

    killed = _start(path, tmp_path / "killed")
    dead: list[int] = []
    try:
        reached = [_kill_at(folder, target, rng.uniform(0.0, 0.03), dead, killed)
                   for target in targets]
        _, err = killed.communicate(timeout=120)
    finally:
        killed.kill()
    assert killed.returncode == 0, err
    # The reference: the same experiment undisturbed, in this process (a worker of its own).
    run(Experiment.from_yaml(path), root=tmp_path / "reference", workers=0)

    ref_trial, ref = _curves(tmp_path / "reference", name)
    got_trial, got = _curves(tmp_path / "killed", name)
    assert ref_trial.status == got_trial.status == "completed"
    assert (ref_trial.attempts, got_trial.attempts) == (1, len(targets) + 1)

    # Each killed worker ran one attempt; every later attempt resumed from the checkpoint that
    # was the latest when its predecessor died (the kill lands a few steps after `reached`).
    attempts = [line.split() for line in (folder / "attempts").read_text().splitlines()]
    assert [int(pid) for pid, _ in attempts[:-1]] == dead
    starts = [int(start) for _, start in attempts]
    assert starts[0] == 0
    for start, kill_step in zip(starts[1:], reached, strict=True):
        assert (kill_step - 1) // every * every <= start <= kill_step + every
        assert start > 0 and start % every == 0

    evals = [*range(every, steps + 1, every)]
    if evals[-1] != steps:
        evals.append(steps)
    required = {"train_loss", "train_error", "val_loss", "val_error", "grad_norm",
                "learning_rate", "clip_fraction"}
    once = {"train_examples", "val_examples", "val_error_chance", "val_loss_chance"}
    # Per-class counts (digits: 10 classes) are results like the others; data_share is a
    # timing of this machine: the same steps, not the same values.
    required |= {m for m in ref if m.startswith("val_class")}
    assert set(ref) == set(got) == required | once | {"data_share"}
    assert [s for s, _ in got["data_share"]] == [s for s, _ in ref["data_share"]] == evals
    for metric in sorted(once):  # with the first evaluation only, never again after a resume
        assert [s for s, _ in got[metric]] == [s for s, _ in ref[metric]] == [every], metric
    for metric in sorted(required):
        # No evaluation (or, for grad_norm, no update) lost or duplicated, and the same values
        # as the uninterrupted run.
        want = [*range(1, steps + 1)] if metric == "grad_norm" else evals
        assert [s for s, _ in ref[metric]] == want, metric
        assert [s for s, _ in got[metric]] == want, metric
        for (step, want), (_, value) in zip(ref[metric], got[metric], strict=True):
            assert value == pytest.approx(want, rel=1e-6, abs=1e-6), (metric, step)

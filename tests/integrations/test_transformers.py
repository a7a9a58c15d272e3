"""The Hugging Face Trainer integration, for real: the example through ``tunebook run``, a trial
killed with SIGKILL and resumed to identical curves, a diverging loss, the install hint.

Every test uses the real Trainer (transformers and accelerate, ``tunebook[transformers]``) on
tiny models for a few dozen steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import tunebook
from tunebook.analysis.results import trial_records
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial, checkpoint_problem
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import MemorySink, cli_env, run_cli, single_trial_curves

pytest.importorskip("transformers")  # tunebook[transformers]; `make test` installs it
pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
NAME = "transformers-tiny"
PER_UPDATE = {"train_loss", "grad_norm", "learning_rate", "epoch"}
PER_EVAL = {"eval_loss", "eval_error"}


def _experiment(folder: Path, steps: int, every: int, trials: int, **fixed: object) -> Path:
    """The example's experiment file, shrunk, beside a copy of its module."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "transformers_tiny.py", folder)
    doc = yaml.safe_load((EXAMPLES / "transformers_tiny.yaml").read_text())
    doc.update(max_train_steps=steps, eval_every=every)
    doc["search"]["trials"] = trials
    doc["fixed"].update(fixed)
    path = folder / "transformers_tiny.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.slow
def test_example_runs_through_tunebook_run(tmp_path: Path) -> None:
    # grad_clip far below the norms: the reported grad_norm must be the norm before clipping.
    path = _experiment(tmp_path / "ex", steps=24, every=8, trials=2, grad_clip=0.01)
    root = tmp_path / "r"
    run_cli("run", str(path), "--root", str(root), "--workers", "2", check=True)
    store = Store.at_root(root)
    try:
        records = trial_records(store, NAME)
        assert len(records) == 2 and all(r.status == "completed" for r in records), records
        for r in records:
            curves: dict[str, list[tuple[int, float]]] = {}
            for _, step, metric, value in store.measurements([r.trial_id]):
                curves.setdefault(metric, []).append((step, value))
            # Every update's log, every evaluation, nothing else (no wall-clock values).
            assert set(curves) == PER_UPDATE | PER_EVAL
            for metric in PER_UPDATE:
                assert sorted(s for s, _ in curves[metric]) == list(range(1, 25)), metric
            for metric in PER_EVAL:
                assert sorted(s for s, _ in curves[metric]) == [8, 16, 24], metric
            norms = [v for _, v in curves["grad_norm"]]
            assert min(norms) > 0.01  # unclipped: clipping would cap them at 0.01
            assert all(0 <= v <= 1 for _, v in curves["eval_error"])
            # The best checkpoint is kept, intact, in the Trainer's own format, at the best step.
            best = tunebook.best_checkpoint(NAME, root=root, trial=f"main#{r.index}")
            assert best.name == f"step-{r.best_step:010d}"
            assert checkpoint_problem(best) is None
            assert (best / "model.safetensors").is_file()
            state = json.loads((best / "trainer_state.json").read_text())
            assert state["global_step"] == r.best_step
            meta = json.loads((best / "meta.json").read_text())
            assert (meta["metric"], meta["step"]) == ("eval_error", r.best_step)
            assert meta["value"] == pytest.approx(r.best_value)
            # The Trainer's staging folder holds nothing left behind.
            folder = best.parent.parent
            assert not list((folder / "trainer").glob("checkpoint-*"))
            kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
            assert kept == sorted({best.name, "step-0000000024"})
    finally:
        store.close()


# --------------------------------------------------------------------------- kill and resume
WRAPPER = '''
"""The example, slowed down, publishing "<pid> <step>" after every update."""
import os
import time

from transformers import TrainerCallback

import transformers_tiny
from tunebook.integrations.transformers import TunebookCallback


class Progress(TrainerCallback):
    def __init__(self, trial):
        self.file = trial.dir / "progress"

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.05)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()} {state.global_step}")
        os.replace(tmp, self.file)


def train(hparams, trial):
    callback = TunebookCallback(trial)
    trainer = transformers_tiny.make_trainer(hparams, trial, [callback, Progress(trial)])
    callback.train(trainer)
'''


def _kill_at(progress: Path, target: int, dead: list[int], proc: subprocess.Popen[str]) -> int:
    """SIGKILL the live worker once it has passed update ``target``; returns the update it had
    reached."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the worker could be killed"
        try:
            pid, step = map(int, progress.read_text().split())
        except (OSError, ValueError):
            pid, step = 0, 0
        if pid and pid not in dead and step >= target:
            os.kill(pid, signal.SIGKILL)
            dead.append(pid)
            return step
        time.sleep(0.005)
    raise AssertionError(f"the worker never reached update {target}")


@pytest.mark.slow
def test_sigkill_mid_trial_resumes_to_identical_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps, every = 30, 6
    # Dropout: torch's generator must come back from the checkpoint too.
    path = _experiment(tmp_path / "ex", steps=steps, every=every, trials=1, grad_clip=0.5,
                       dropout=0.1)
    (tmp_path / "ex" / "slow_tiny.py").write_text(textwrap.dedent(WRAPPER))
    doc = yaml.safe_load(path.read_text())
    doc["workload"] = "slow_tiny:train"
    doc["nuisance"]["learning_rate"].update(low=2.9e-3, high=3.1e-3)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    env = cli_env()
    killed = subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root", str(tmp_path / "k"),
         "--workers", "1", "--max-attempts", "10", "--quiet", "--no-report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = tmp_path / "k" / "runs" / NAME / "main" / "trial-00000" / "progress"
    dead: list[int] = []
    try:
        # Mid-interval, after the checkpoints of 6 and 18.
        reached = [_kill_at(progress, target, dead, killed) for target in (9, 20)]
        _, err = killed.communicate(timeout=180)
    finally:
        killed.kill()
    assert killed.returncode == 0, err

    # The reference: the same experiment undisturbed, in this process.
    monkeypatch.syspath_prepend(str(tmp_path / "ex"))
    run(Experiment.from_yaml(path), root=tmp_path / "ref", workers=0)
    ref_trial, ref = single_trial_curves(tmp_path / "ref", NAME)
    got_trial, got = single_trial_curves(tmp_path / "k", NAME)
    assert ref_trial.status == got_trial.status == "completed"
    assert (ref_trial.attempts, got_trial.attempts) == (1, 3)
    # Each new worker resumed from the latest checkpoint published before its predecessor's
    # death (the kill lands within an update of `reached`: 6 and 18 unless the machine stalls).
    log = (progress.parent / "log.txt").read_text()
    mark = "resuming the Trainer from the checkpoint at step "
    starts = [int(line.split(mark)[1]) for line in log.splitlines() if mark in line]
    assert len(starts) == 2
    for start, step in zip(starts, reached, strict=True):
        assert start % every == 0 and step // every * every <= start <= step + every
    assert set(ref) == set(got) == PER_UPDATE | PER_EVAL
    for metric in sorted(ref):
        want = range(1, steps + 1) if metric in PER_UPDATE else range(every, steps + 1, every)
        # No step lost or duplicated, and the values of the uninterrupted run.
        assert [s for s, _ in ref[metric]] == [s for s, _ in got[metric]] == [*want], metric
        for (step, expected), (_, value) in zip(ref[metric], got[metric], strict=True):
            assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), (metric, step)


# --------------------------------------------------------------------------- in process
def _regression(trial: Trial, **overrides: Any) -> tuple[Any, Any]:
    """A Trainer fitting y = w.x + b by mean squared error (64 seeded points), with a
    TunebookCallback: ``(trainer, callback)``."""
    import torch
    from torch import nn
    from transformers import Trainer

    from tunebook.integrations.transformers import TunebookCallback, training_arguments

    class Regression(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}

    gen = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(64, 4, generator=gen), torch.randn(64, generator=gen)
    data = [{"x": xs[i], "labels": ys[i]} for i in range(64)]
    callback = TunebookCallback(trial, keep_latest=2)
    args = training_arguments(trial, optim="sgd", per_device_train_batch_size=8, use_cpu=True,
                              **overrides)
    torch.manual_seed(0)
    trainer = Trainer(model=Regression(), args=args, train_dataset=data, eval_dataset=data,
                      callbacks=[callback])
    return trainer, callback


def test_nan_loss_makes_the_trial_infeasible(tmp_path: Path) -> None:
    from tunebook.errors import Infeasible

    sink = MemorySink()
    trial = Trial(hparams={}, max_train_steps=200, eval_every=50, seed=1, dir=tmp_path / "t",
                  sink=sink, objective="eval_loss")
    # Plain SGD at a huge rate without clipping diverges geometrically.
    trainer, callback = _regression(trial, learning_rate=1e3, max_grad_norm=0.0)
    with pytest.raises(Infeasible) as caught:
        callback.train(trainer)
    step = caught.value.step
    assert step is not None and 1 < step < 50
    assert f"at step {step}" in str(caught.value)
    assert str(caught.value).startswith(("train_loss is", "grad_norm is"))
    trial.flush()
    losses = [v for s, m, v in sink.rows if m == "train_loss"]
    assert losses == sorted(losses) and len(losses) in (step - 1, step)  # finite, rising


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    sink = MemorySink()

    def trial() -> Trial:
        return Trial(hparams={}, max_train_steps=20, eval_every=5, seed=1, dir=tmp_path / "t",
                     sink=sink, objective="eval_loss")

    first = trial()
    trainer, callback = _regression(first, learning_rate=0.05)
    callback.train(trainer)
    assert [s for s, _ in first.checkpoints()] == [15, 20]  # the best is the latest: 2 kept
    first.flush()
    before = sorted(sink.rows)
    weights = first.checkpoints()[-1][1] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    again = trial()
    trainer, callback = _regression(again, learning_rate=0.05)
    assert callback.resume_from == str(again.checkpoint_root / "step-0000000015")
    assert (again.checkpoint_root / "corrupt-step-0000000020").is_dir()
    callback.train(trainer)
    assert [s for s, _ in again.checkpoints()] == [15, 20]
    # The store's view: the rewind to 15 dropped the first run's 16-20, which came back once.
    again.flush()
    steps = sorted(s for s, m, _ in sink.rows if m == "grad_norm")
    assert steps == list(range(1, 21))
    assert sorted(s for s, m, _ in sink.rows if m == "eval_loss") == [5, 10, 15, 20]
    after = sorted(sink.rows)
    assert [(s, m) for s, m, _ in after] == [(s, m) for s, m, _ in before]
    # The same values as the first time.
    assert [v for *_, v in after] == pytest.approx([v for *_, v in before], rel=1e-6)


# --------------------------------------------------------------------------- arguments
def test_training_arguments_follow_the_trial(tmp_path: Path) -> None:
    from tunebook.integrations.transformers import training_arguments

    trial = Trial(hparams={}, max_train_steps=40, eval_every=10, seed=2**40 + 7,
                  dir=tmp_path / "t")
    args = training_arguments(trial, learning_rate=0.5, use_cpu=True)
    assert (args.max_steps, args.eval_steps, args.save_steps, args.logging_steps) == (40, 10, 10, 1)
    assert (args.eval_strategy, args.save_strategy) == ("steps", "steps")
    assert args.seed == args.data_seed == (2**40 + 7) % 2**32
    assert args.learning_rate == 0.5 and args.report_to == [] and args.disable_tqdm
    assert not args.logging_nan_inf_filter
    assert Path(args.output_dir).parent == trial.dir
    for bad in ({"max_steps": 5}, {"output_dir": "x"}, {"load_best_model_at_end": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            training_arguments(trial, **bad)


# --------------------------------------------------------------------------- imports
def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(), timeout=120)


def test_import_tunebook_stays_light() -> None:
    proc = _python("import sys, tunebook, tunebook.integrations\n"
                   "print(sorted(m for m in ('transformers', 'torch', 'accelerate')"
                   " if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_transformers_gives_the_install_line() -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    proc = _python("import sys; sys.modules['transformers'] = None\n"
                   "try:\n"
                   "    import tunebook.integrations.transformers\n"
                   "except ImportError as exc:\n"
                   "    print(exc)\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("tunebook.integrations.transformers needs Hugging Face")
    assert lines[0].endswith("pip install 'tunebook[transformers]'")


def test_evaluating_a_test_set_after_training_reports_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    trial = Trial(hparams={}, max_train_steps=20, eval_every=10, seed=1, dir=tmp_path / "t",
                  sink=sink, objective="eval_loss")
    trainer, callback = _regression(trial, learning_rate=1e-2)
    callback.train(trainer)
    trial.flush()
    during = sorted(sink.rows)
    # What a user does next with a held-out set: a final evaluation, never a validation point.
    trainer.evaluate()
    trainer.evaluate(metric_key_prefix="test")
    trial.flush()
    assert sorted(sink.rows) == during
    assert any(m == "eval_loss" for _, m, _ in during)

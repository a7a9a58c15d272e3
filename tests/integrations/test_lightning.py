"""tunebook.integrations.lightning with the real PyTorch Lightning: the example experiment through
``tunebook run``, the unclipped gradient norm, kill-and-resume, NaN -> infeasible, the hint."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.analysis.results import trial_records
from tunebook.errors import Infeasible
from tunebook.execution.final_eval import best_checkpoint
from tunebook.execution.trial import Trial
from tunebook.objective import Objective
from tunebook.store.sql import Store

from conftest import MemorySink, cli_env, run_cli

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

import lightning.pytorch as pl
import torch

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
NAME = "lightning-digits"

SLOW = '''
import os
import time
from pathlib import Path

import lightning.pytorch as pl

from lightning_digits import fit


class Slow(pl.Callback):
    """A per-step sleep, and "<worker pid> <global step>" in the trial folder's progress file."""

    def on_train_batch_end(self, trainer, *args):
        progress = Path(trainer.default_root_dir).parent / "progress"
        progress.with_suffix(".tmp").write_text(f"{os.getpid()} {trainer.global_step}")
        progress.with_suffix(".tmp").replace(progress)
        time.sleep(0.05)


def train(hparams, trial):
    fit(hparams, trial, callbacks=[Slow()])
'''


def _experiment(dest: Path, *, steps: int, eval_every: int, trials: int,
                workload: str = "lightning_digits:train") -> Path:
    """The example experiment, shrunk, in a copy of examples/ (with the slow variant)."""
    doc = yaml.safe_load((EXAMPLES / "lightning_digits.yaml").read_text())
    doc.update(max_train_steps=steps, eval_every=eval_every, workload=workload)
    doc["search"]["trials"] = trials
    dest.mkdir(parents=True)
    shutil.copy(EXAMPLES / "lightning_digits.py", dest)
    (dest / "slow_digits.py").write_text(SLOW)
    path = dest / "lightning_digits.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _curves(root: Path) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """Every trial's curves: index -> metric -> sorted points (duplicates kept)."""
    store = Store.at_root(root)
    try:
        trials = store.trials(store.require_experiment(NAME).id)
        out: dict[int, dict[str, list[tuple[int, float]]]] = {t.id: {} for t in trials}
        for trial_id, step, metric, value in store.measurements([t.id for t in trials]):
            out[trial_id].setdefault(metric, []).append((step, value))
        index = {t.id: t.index for t in trials}
    finally:
        store.close()
    return {index[i]: {m: sorted(p) for m, p in c.items()} for i, c in out.items()}


def test_the_example_runs_through_tunebook_run(tmp_path: Path) -> None:
    # 45 steps, validation every 10: Lightning validates at 10..40, the callback adds 45.
    path = _experiment(tmp_path / "ex", steps=45, eval_every=10, trials=2)
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--workers", "1", check=True)
    records = trial_records(Store.at_root(tmp_path / "r"), NAME)
    assert len(records) == 2 and all(r.status == "completed" for r in records), records
    for r in records:
        assert r.best_step in (10, 20, 30, 40, 45) and 0 <= (r.best_value or -1) < 1
    for curves in _curves(tmp_path / "r").values():
        assert [s for s, _ in curves["val_loss"]] == [10, 20, 30, 40, 45]
        assert [s for s, _ in curves["val_error"]] == [10, 20, 30, 40, 45]
        assert [s for s, _ in curves["train_loss"]] == list(range(1, 46))
        assert [s for s, _ in curves["grad_norm"]] == list(range(1, 46))
        assert all(v > 0 for _, v in curves["grad_norm"])
    # Each trial keeps its newest two checkpoints and its best (the one final-eval selects):
    # Lightning's own file, the objective's value, checksums.
    objective = Objective("val_error", "minimize")
    for r in records:
        trial_dir = tmp_path / "r" / "runs" / NAME / "main" / f"trial-{r.index:05d}"
        kept = sorted(p.name for p in (trial_dir / "checkpoints").iterdir())
        assert kept[-2:] == ["step-0000000040", "step-0000000045"]
        assert set(kept) <= {f"step-{s:010d}" for s in (10, 20, 30, 40, 45)}
        assert len(kept) == 2 + (r.best_step not in (40, 45))
        step, folder = best_checkpoint(trial_dir, r.best_step, objective) or (None, None)
        assert step == r.best_step and folder is not None
        assert {p.name for p in folder.iterdir()} == {
            "lightning.ckpt", "meta.json", "tunebook-manifest.json"}
        assert json.loads((folder / "meta.json").read_text())["value"] == r.best_value
        # Without the store's best step, the recorded values lead to the same checkpoint.
        assert best_checkpoint(trial_dir, None, objective) == (step, folder)
    # tunebook final-eval loads the best trial's selected Lightning checkpoint (the example's
    # train_final_eval) and scores it on the test set.
    best = min(records, key=lambda r: (r.best_value or 1.0, r.index))
    out = run_cli("final-eval", NAME, "--root", str(tmp_path / "r"), check=True).stdout
    assert f"trial main #{best.index} (best trial by val_error), checkpoint at step " \
           f"{best.best_step}" in out
    assert "test_examples  359" in out


def _trial(tmp_path: Path, steps: int = 12, eval_every: int = 4) -> tuple[Trial, MemorySink]:
    sink = MemorySink()
    return Trial(hparams={}, max_train_steps=steps, eval_every=eval_every, seed=7,
                 dir=tmp_path / "trial", sink=sink, objective="val_error"), sink


def _example() -> Any:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import lightning_digits
    finally:
        sys.path.remove(str(EXAMPLES))
    return lightning_digits


def test_grad_norm_is_the_norm_before_lightnings_clipping(tmp_path: Path) -> None:
    example = _example()
    before: list[float] = []
    after: list[float] = []

    class Clipped(example.DigitsMLP):  # type: ignore[misc, name-defined]
        def configure_gradient_clipping(self, optimizer: Any, *args: Any, **kw: Any) -> None:
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            before.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
            super().configure_gradient_clipping(optimizer, *args, **kw)
            after.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))

    trial, sink = _trial(tmp_path)
    example.DigitsMLP, original = Clipped, example.DigitsMLP
    try:
        example.fit({"learning_rate": 0.01}, trial, gradient_clip_val=0.05)
    finally:
        example.DigitsMLP = original
    trial.flush()
    norms = [v for s, m, v in sorted(sink.rows) if m == "grad_norm"]
    assert len(norms) == len(before) == 12
    assert norms == pytest.approx(before, rel=1e-5)
    # Lightning did clip (every norm was above 0.05), and what the callback reported is not that.
    assert all(a == pytest.approx(0.05, rel=1e-4) for a in after)
    assert min(norms) > 0.1


def test_a_nan_training_loss_makes_the_trial_infeasible(tmp_path: Path) -> None:
    example = _example()

    class Diverges(example.DigitsMLP):  # type: ignore[misc, name-defined]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.global_step >= 5 else loss

    trial, _ = _trial(tmp_path)
    example.DigitsMLP, original = Diverges, example.DigitsMLP
    try:
        with pytest.raises(Infeasible) as caught:
            example.fit({"learning_rate": 0.01}, trial)
    finally:
        example.DigitsMLP = original
    # The sixth update (global_step 5 before it) is the first with a NaN loss.
    assert caught.value.step == 6 and "training loss is nan" in str(caught.value)


@pytest.mark.parametrize("victim", ["worker", "run"])
def test_a_killed_trial_resumes_with_identical_curves(tmp_path: Path, victim: str) -> None:
    # "worker": SIGKILL the trial's worker process after step 25 (checkpoint at 20, mid-epoch:
    # 16 steps per epoch); the runner replaces it and the trial resumes in the same run.
    # "run": SIGKILL the runner and its worker together, then `tunebook run` again.
    whole = _experiment(tmp_path / "whole", steps=60, eval_every=10, trials=1,
                        workload="slow_digits:train")
    run_cli("run", str(whole), "--root", str(tmp_path / "whole-r"), "--workers", "1", check=True)
    want = _curves(tmp_path / "whole-r")

    cut = _experiment(tmp_path / "cut", steps=60, eval_every=10, trials=1,
                      workload="slow_digits:train")
    root = tmp_path / "cut-r"
    proc = subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(cut), "--root",
                             str(root), "--workers", "1"], env=cli_env(),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    progress = root / "runs" / NAME / "main" / "trial-00000" / "progress"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the trial never reached step 25"
        with contextlib.suppress(OSError, ValueError):
            pid, step = map(int, progress.read_text().split())
            if step >= 25:
                break
        time.sleep(0.01)
    assert step < 60, "the trial finished before it was killed"
    if victim == "worker":
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        run_cli("run", str(cut), "--root", str(root), "--workers", "1", check=True)
    (record,) = trial_records(Store.at_root(root), NAME)
    assert record.status == "completed"
    log = (progress.parent / "log.txt").read_text()
    assert log.count("resuming from Lightning's checkpoint at step 20") == 1, log
    got = _curves(root)
    assert got == want  # every metric, every step, once, bit for bit
    assert [s for s, _ in got[0]["grad_norm"]] == list(range(1, 61))


def test_importing_tunebook_does_not_import_lightning() -> None:
    code = ("import sys, tunebook, tunebook.integrations; "
            "print(sorted(m for m in ('lightning', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_lightning_the_error_says_what_to_install() -> None:
    code = ("import sys; sys.modules['lightning'] = None; "
            "import tunebook.integrations.lightning")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: tunebook.integrations.lightning needs PyTorch Lightning "
                    "(lightning is missing): pip install 'tunebook[lightning]'")


class _Crash(Exception):
    pass


class _CrashAt(pl.Callback):
    """Stop the process's training abruptly after ``step`` updates (as a kill would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise _Crash()


@pytest.mark.parametrize(("eval_every", "crash"), [(10, 27), (16, 35)],
                         ids=["mid-epoch", "epoch-end"])
def test_resuming_in_process_repeats_the_curves(tmp_path: Path, eval_every: int,
                                                crash: int) -> None:
    # 16 steps per epoch (1,079 examples, batches of 64): checkpoints at 20 (mid-epoch) or 32
    # (an epoch's last step), and the run that crashed resumes from there.
    example = _example()
    whole, whole_sink = _trial(tmp_path / "whole", steps=48, eval_every=eval_every)
    example.fit({"learning_rate": 0.01}, whole)
    whole.flush()

    trial, sink = _trial(tmp_path / "cut", steps=48, eval_every=eval_every)
    with pytest.raises(_Crash):
        example.fit({"learning_rate": 0.01}, trial, callbacks=[_CrashAt(crash)])
    trial.flush()
    resumed = Trial(hparams={}, max_train_steps=48, eval_every=eval_every, seed=7,
                    dir=tmp_path / "cut" / "trial", sink=sink, objective="val_error")
    assert resumed.start_step == crash // eval_every * eval_every
    sink.truncate_measurements(0, resumed.start_step)  # what the worker does on a restart
    example.fit({"learning_rate": 0.01}, resumed)
    resumed.flush()
    assert sorted(sink.rows) == sorted(whole_sink.rows)
    assert len({(s, m) for s, m, _ in sink.rows}) == len(sink.rows)  # nothing twice


def test_each_metric_is_reported_where_it_was_logged(tmp_path: Path) -> None:
    example = _example()

    class Logs(example.DigitsMLP):  # type: ignore[misc, name-defined]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("epoch_loss", loss, on_step=False, on_epoch=True)
            self.log("both_loss", loss, on_step=True, on_epoch=True)
            return loss

    trial, sink = _trial(tmp_path, steps=40, eval_every=10)
    example.DigitsMLP, original = Logs, example.DigitsMLP
    try:
        example.fit({"learning_rate": 0.01}, trial)
    finally:
        example.DigitsMLP = original
    trial.flush()
    steps: dict[str, list[int]] = {}
    for step, metric, _ in sorted(sink.rows):
        steps.setdefault(metric, []).append(step)
    every = list(range(1, 41))
    # 16 steps per epoch; training stops in the third, whose end is at step 40.
    assert steps == {"train_loss": every, "both_loss_step": every, "grad_norm": every,
                     "epoch_loss": [16, 32, 40], "both_loss_epoch": [16, 32, 40],
                     "val_loss": [10, 20, 30, 40], "val_error": [10, 20, 30, 40]}


def test_validating_on_the_test_set_after_fit_reports_nothing(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from tunebook.integrations.lightning import TunebookCallback, trainer_kwargs
    from tunebook.workloads.digits import load_digits_test

    example = _example()
    trial, sink = _trial(tmp_path)
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val = example.load_digits_split()
    model = example.DigitsMLP(learning_rate=0.01)
    callback = TunebookCallback(trial)
    trainer = pl.Trainer(callbacks=[callback], **trainer_kwargs(trial, accelerator="cpu"))
    trainer.fit(model, example.trial_loader(trial, TensorDataset(x_train, y_train), 64),
                DataLoader(TensorDataset(x_val, y_val), batch_size=len(x_val)))
    trial.flush()
    during = sorted(sink.rows)
    x_test, y_test = load_digits_test()
    trainer.validate(model, DataLoader(TensorDataset(x_test, y_test), batch_size=len(x_test)))
    trial.flush()
    # A test number never enters the validation curves (the playbook keeps them apart).
    assert sorted(sink.rows) == during
    assert any(m.startswith("val_") for _, m, _ in during)

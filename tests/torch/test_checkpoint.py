"""Checkpointer: N best + latest, exact resumption, corruption fallback, best selection."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunebook.execution.trial import Trial
from tunebook.objective import summarize
from tunebook.store.sql import Store, StudySpec
from tunebook.torch.checkpoint import META_FILE, STATE_FILE, Checkpointer

torch.set_num_threads(1)


class Run:
    """A real store with one trial row; ``attempt()`` builds the Trial a worker would."""

    def __init__(self, root: Path, goal: str = "minimize") -> None:
        self.root = root
        self.goal = goal
        self.store = Store.at_root(root / "store")
        exp_id = self.store.register("e", "i", {}, [StudySpec("s", 0, {}, "grid", 0, 1)],
                                     {"s": [(0, {}, 1)]})
        self.tid = self.store.trials(exp_id)[0].id

    def attempt(self) -> Trial:
        trial = Trial(hparams={}, max_train_steps=50, eval_every=5, seed=7,
                      dir=self.root / "trial", sink=self.store, trial_id=self.tid,
                      objective="loss", goal=self.goal)
        # what worker.run_trial does before calling the workload
        self.store.truncate_measurements(self.tid, trial.start_step)
        return trial

    def steps(self) -> list[int]:
        return sorted({s for _, s, _, _ in self.store.measurements([self.tid])})

    def summary(self) -> tuple[int | None, float | None]:
        points = [(s, v) for _, s, _, v in self.store.measurements([self.tid], metric="loss")]
        best = summarize(points, self.goal)  # type: ignore[arg-type]
        return best.best_step, best.best_value


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    r.store.close()


def tiny() -> tuple[nn.Linear, torch.optim.Optimizer]:
    model = nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def expected_kept(values: list[float], keep_best: int, goal: str) -> set[int]:
    steps = [10 * (i + 1) for i in range(len(values))]
    sign = 1 if goal == "minimize" else -1
    ranked = sorted(zip(values, steps, strict=True), key=lambda vs: (sign * vs[0], vs[1]))
    return {s for _, s in ranked[:keep_best]} | {steps[-1]}


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_keeps_exactly_the_n_best_plus_the_latest(tmp_path: Path, goal: str) -> None:
    run = Run(tmp_path, goal)
    trial = run.attempt()
    ckpt = Checkpointer(trial, keep_best=3)
    model, opt = tiny()
    values = [5.0, 3.0, 8.0, 1.0, 9.0, 3.0, 7.0, 0.5, 6.0, 4.0, 9.5, 2.0]
    for i, v in enumerate(values):
        step = 10 * (i + 1)
        trial.report(step, loss=v)
        ckpt.save(step, model, opt)
        kept = {s for s, _ in trial.checkpoints()}
        assert kept == expected_kept(values[: i + 1], 3, goal), (step, kept)
    best = ckpt.best()
    assert best is not None
    if goal == "minimize":  # the latest (2.0) is also among the 3 best
        assert [s for s, _ in trial.checkpoints()] == [40, 80, 120]
        assert (best.step, best.value) == (80, 0.5)
    else:
        assert [s for s, _ in trial.checkpoints()] == [30, 50, 110, 120]
        assert (best.step, best.value, best.path) == (
            110, 9.5, trial.checkpoint_root / "step-0000000110")
    # Retrospective selection agrees with what the runner stores from the measurements.
    trial.flush()
    assert run.summary() == (best.step, best.value)
    run.store.close()


def test_ties_keep_the_earliest_like_the_store(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial, keep_best=1)
    model, opt = tiny()
    for step, v in [(10, 2.0), (20, 1.0), (30, 1.0), (40, 3.0)]:
        trial.report(step, loss=v)
        ckpt.save(step, model, opt)
    assert [s for s, _ in trial.checkpoints()] == [20, 40]
    trial.flush()
    best = ckpt.best()
    assert best is not None and run.summary() == (best.step, best.value) == (20, 1.0)


def test_checkpoint_without_a_value_is_kept_only_while_latest(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial, keep_best=2)
    model, opt = tiny()
    trial.report(10, loss=1.0)
    ckpt.save(10, model, opt)
    ckpt.save(15, model, opt)  # no evaluation at step 15: no value
    assert [(i.step, i.value) for i in ckpt.checkpoints()] == [(10, 1.0), (15, None)]
    trial.report(20, loss=2.0)
    ckpt.save(20, model, opt)
    assert [s for s, _ in trial.checkpoints()] == [10, 20]
    meta = json.loads((trial.checkpoint_root / "step-0000000020" / META_FILE).read_text())
    assert meta["value"] == 2.0 and meta["metric"] == "loss" and len(
        meta["files"][STATE_FILE]["sha256"]) == 64


def test_values_of_another_objective_do_not_rank(run: Run) -> None:
    trial = run.attempt()
    model, opt = tiny()
    trial.report(10, loss=0.1, acc=0.2)
    Checkpointer(trial, metric="acc").save(10, model, opt)  # ranked by another metric
    ckpt = Checkpointer(trial, keep_best=1)
    assert [(i.step, i.value) for i in ckpt.checkpoints()] == [(10, None)]
    trial.report(20, loss=0.5)
    ckpt.save(20, model, opt)
    assert [s for s, _ in trial.checkpoints()] == [20]


def corrupt(path: Path, how: str) -> None:
    data = (path / STATE_FILE).read_bytes()
    if how == "truncate":
        (path / STATE_FILE).write_bytes(data[: len(data) // 2])
    elif how == "flip":
        i = len(data) // 2
        (path / STATE_FILE).write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif how == "no-meta":
        (path / META_FILE).unlink()
    else:
        (path / STATE_FILE).write_bytes(b"")


@pytest.mark.parametrize("how", ["truncate", "flip", "no-meta", "empty"])
def test_corrupt_latest_falls_back_to_the_previous_and_rewinds(run: Run, how: str) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial, keep_best=3)
    model, opt = tiny()
    weights = {}
    for step in (10, 20, 30):
        with torch.no_grad():
            model.weight.add_(1.0)
        weights[step] = model.weight.detach().clone()
        trial.report(step, loss=1.0 / step)
        ckpt.save(step, model, opt, epoch=step // 10)
    trial.report(33, loss=0.01)  # measured after the last checkpoint, then killed
    trial.flush()
    corrupt(trial.checkpoint_root / "step-0000000030", how)

    resumed = run.attempt()
    assert resumed.start_step == 30 and run.steps() == [10, 20, 30]
    model2, opt2 = tiny()
    ckpt2 = Checkpointer(resumed, keep_best=3)
    assert ckpt2.restore(model2, opt2) == 20
    assert torch.equal(model2.weight, weights[20]) and ckpt2.extra == {"epoch": 2}
    assert [s for s, _ in ckpt2.skipped] == [30]
    assert resumed.start_step == 20 and run.steps() == [10, 20]  # rewound: 30 is dropped
    assert [s for s, _ in resumed.checkpoints()] == [10, 20]
    assert (resumed.checkpoint_root / "corrupt-step-0000000030").is_dir()  # set aside
    assert run.summary() == (20, 0.05)


def test_nothing_sound_left_restarts_from_zero(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial)
    model, opt = tiny()
    trial.report(10, loss=1.0)
    ckpt.save(10, model, opt)
    corrupt(trial.checkpoint_root / "step-0000000010", "flip")
    resumed = run.attempt()
    assert Checkpointer(resumed).restore(*tiny()) == 0
    assert run.steps() == [] and resumed.start_step == 0


def test_fresh_start_restores_nothing(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial)
    model, opt = tiny()
    before = model.weight.detach().clone()
    assert ckpt.restore(model, opt) == 0 and ckpt.extra == {} and ckpt.restored_step == 0
    assert torch.equal(model.weight, before)


# ----------------------------------------------------------------------------- exact resume
N, BATCH, TOTAL, SAVE_AT = 48, 8, 50, 27  # 6 steps per epoch: step 27 is mid-epoch
X = torch.randn(N, 4, generator=torch.Generator().manual_seed(1))
Y = torch.randn(N, 1, generator=torch.Generator().manual_seed(2))


def build(init_seed: int, data_seed: int) -> tuple[nn.Module, torch.optim.Optimizer, object,
                                                   torch.Generator]:
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    return model, opt, sched, torch.Generator().manual_seed(data_seed)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(model: nn.Module, opt: torch.optim.Optimizer, sched: object, g: torch.Generator,
          start: int, stop: int, perm: torch.Tensor | None) -> torch.Tensor | None:
    per_epoch = N // BATCH
    for step in range(start, stop):
        k = step % per_epoch
        if k == 0:
            perm = torch.randperm(N, generator=g)  # data order from the data generator
        assert perm is not None
        idx = perm[k * BATCH:(k + 1) * BATCH]
        # dropout (torch RNG), numpy and python random all shape the update
        noise = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()
        loss = F.mse_loss(model(X[idx]), Y[idx]) * noise
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()  # type: ignore[attr-defined]
    return perm


def test_save_and_restore_continue_bit_identically(run: Run) -> None:
    # Uninterrupted reference.
    seed_all(7)
    model, opt, sched, g = build(0, 123)
    train(model, opt, sched, g, 0, TOTAL, None)
    reference = [p.detach().clone() for p in model.parameters()]
    after = (random.random(), float(np.random.rand()), float(torch.rand(())))

    # Interrupted at a mid-epoch step, checkpointed, then resumed in a "new process".
    seed_all(7)
    model, opt, sched, g = build(0, 123)
    perm = train(model, opt, sched, g, 0, SAVE_AT, None)
    trial = run.attempt()
    trial.report(SAVE_AT, loss=0.5)
    Checkpointer(trial).save(SAVE_AT, model, opt, sched, data_rng=g, perm=perm)

    seed_all(99)  # whatever state the new process starts in
    model2, opt2, sched2, g2 = build(5, 456)
    resumed = run.attempt()
    ckpt = Checkpointer(resumed)
    assert ckpt.restore(model2, opt2, sched2, data_rng=g2) == SAVE_AT
    assert torch.equal(g2.get_state(), g.get_state())
    train(model2, opt2, sched2, g2, SAVE_AT, TOTAL, ckpt.extra["perm"])
    for p, q in zip(model2.parameters(), reference, strict=True):
        assert torch.equal(p, q)
    assert sched2.last_epoch == TOTAL  # type: ignore[attr-defined]
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == after


def test_restore_without_the_rng_would_differ(run: Run) -> None:
    """The bit-identity test above can fail: skipping the data position changes the result."""
    seed_all(7)
    model, opt, sched, g = build(0, 123)
    train(model, opt, sched, g, 0, TOTAL, None)
    reference = [p.detach().clone() for p in model.parameters()]
    seed_all(7)
    model, opt, sched, g = build(0, 123)
    train(model, opt, sched, g, 0, SAVE_AT, None)
    trial = run.attempt()
    Checkpointer(trial).save(SAVE_AT, model, opt, sched)
    model2, opt2, sched2, g2 = build(5, 456)
    Checkpointer(run.attempt()).restore(model2, opt2, sched2)
    train(model2, opt2, sched2, g2, SAVE_AT, TOTAL, torch.randperm(N, generator=g2))
    assert not all(torch.equal(p, q) for p, q in zip(model2.parameters(), reference,
                                                     strict=True))


def test_extra_values_are_checked_at_save_time(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial)
    model, opt = tiny()
    with pytest.raises(TypeError, match="numpy"):
        ckpt.save(10, model, opt, bad=np.zeros(3))
    with pytest.raises(TypeError, match="weights_only"):
        ckpt.save(10, model, opt, bad=object())
    assert trial.checkpoints() == []  # nothing half-written
    ckpt.save(10, model, opt, nested={"a": [1, 2.5, "x", None, torch.ones(2)]})
    with pytest.raises(KeyError, match="sampler"):
        Checkpointer(run.attempt()).restore(*tiny(), sampler=torch.Generator())


def test_load_model_loads_the_best(run: Run) -> None:
    trial = run.attempt()
    ckpt = Checkpointer(trial, keep_best=1)
    model, opt = tiny()
    for step, v in [(10, 3.0), (20, 1.0), (30, 2.0)]:
        with torch.no_grad():
            model.weight.fill_(v)
        trial.report(step, loss=v)
        ckpt.save(step, model, opt)
    fresh, _ = tiny()
    assert ckpt.load_model(fresh) == 20
    assert torch.all(fresh.weight == 1.0)
    assert ckpt.load_model(fresh, step=30) == 30 and torch.all(fresh.weight == 2.0)
    with pytest.raises(FileNotFoundError):
        ckpt.load_model(fresh, step=10)  # pruned


def test_argument_validation(run: Run) -> None:
    trial = run.attempt()
    with pytest.raises(ValueError, match="keep_best"):
        Checkpointer(trial, keep_best=-1)
    with pytest.raises(ValueError, match="keep_latest"):
        Checkpointer(trial, keep_latest=0)
    with pytest.raises(ValueError, match="goal"):
        Checkpointer(trial, goal="up")


def test_keep_best_needs_a_metric(tmp_path: Path) -> None:
    trial = Trial(hparams={}, max_train_steps=10, eval_every=1, seed=0, dir=tmp_path / "t")
    with pytest.raises(ValueError, match="keep_best needs a metric"):
        Checkpointer(trial, keep_best=3)
    assert Checkpointer(trial, keep_best=0).keep_best == 0
    assert Checkpointer(trial, keep_best=2, metric="loss").metric == "loss"

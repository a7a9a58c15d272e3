"""The trial context: buffered reports, infeasibility, atomic checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunebook.errors import Infeasible
from tunebook.summary import summarize
from tunebook.trial import Trial


class Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []
        self.flushes = 0
        self.checkpoint_steps: list[int] = []

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        self.rows.extend(rows)
        self.flushes += 1

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        self.checkpoint_steps.append(step)

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r[0] <= after_step]
        return before - len(self.rows)


def make(tmp_path: Path, sink: Sink, **kw: object) -> Trial:
    args: dict[str, object] = dict(hparams={"lr": 0.1}, max_train_steps=100, eval_every=10,
                                   seed=7, dir=tmp_path / "t", sink=sink, objective="loss")
    args.update(kw)
    return Trial(**args)  # type: ignore[arg-type]


def test_report_buffers_and_flushes_in_bulk(tmp_path: Path) -> None:
    sink = Sink()
    t = make(tmp_path, sink)
    t.flush_every_seconds = 3600
    t.flush_every_points = 1000
    for step in range(1, 400):
        t.report(step, loss=1 / step, acc=step / 400, lr=0.1)
    # one bulk write once 1000 points are buffered (checked after each whole report call)
    assert sink.flushes == 1 and len(sink.rows) == 1002
    t.flush()
    assert len(sink.rows) == 399 * 3
    assert t.reported_metrics == {"loss", "acc", "lr"} and t.last_step == 399


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_objective_is_infeasible(tmp_path: Path, bad: float) -> None:
    sink = Sink()
    t = make(tmp_path, sink)
    t.report(10, loss=1.0, other=math.nan)  # a NaN elsewhere is just recorded
    with pytest.raises(Infeasible) as info:
        t.report(20, loss=bad)
    assert info.value.step == 20 and "loss" in info.value.reason
    assert (20, "loss", bad) in sink.rows or math.isnan(sink.rows[-1][2])  # flushed


def test_report_type_errors(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    with pytest.raises(TypeError, match="step"):
        t.report(1.5, loss=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss"):
        t.report(1, loss="high")  # type: ignore[arg-type]


def test_checkpoint_is_atomic_flushes_first_and_keeps_two(tmp_path: Path) -> None:
    sink = Sink()
    t = make(tmp_path, sink)
    t.flush_every_seconds = 3600
    assert t.start_step == 0 and t.latest_checkpoint() is None
    for step in (10, 20, 30):
        t.report(step, loss=1.0 / step)
        with t.checkpoint(step) as folder:
            (folder / "w.txt").write_text(str(step))
            assert len(sink.rows) == step // 10 - 1  # not yet flushed inside the block
        assert len(sink.rows) == step // 10  # flushed before the checkpoint is published
    assert [s for s, _ in t.checkpoints()] == [20, 30]
    assert sink.checkpoint_steps == [10, 20, 30]
    with pytest.raises(RuntimeError), t.checkpoint(40) as folder:
        (folder / "w.txt").write_text("partial")
        raise RuntimeError("killed mid-write")
    assert t.latest_checkpoint() is not None and t.latest_checkpoint()[0] == 30  # type: ignore[index]
    assert not [p for p in t.checkpoint_root.iterdir() if p.name.startswith(".tmp")]
    resumed = make(tmp_path, Sink())
    assert resumed.start_step == 30


def test_save_and_load_state(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    assert t.load_state() is None
    t.save_state(5, {"w": [1, 2, 3]})
    assert make(tmp_path, Sink()).load_state() == {"w": [1, 2, 3]}


def test_infeasible_helper_uses_last_step(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    t.report(30, loss=1.0)
    exc = t.infeasible("diverged")
    assert isinstance(exc, Infeasible) and exc.step == 30


def test_summarize_best_is_retrospective() -> None:
    s = summarize([(10, 0.5), (20, 0.2), (30, math.nan), (40, 0.3)], "minimize")
    assert (s.best_step, s.best_value, s.final_step, s.final_value) == (20, 0.2, 40, 0.3)
    s = summarize([(10, 0.5), (20, 0.2), (30, 0.5)], "maximize")
    assert (s.best_step, s.best_value) == (10, 0.5)  # ties keep the earliest step
    s = summarize([(10, math.nan)], "minimize")
    assert s.best_value is None and s.final_value is None and s.final_step == 10
    assert summarize([], "minimize").best_step is None


def test_rewind_drops_measurements_past_the_step(tmp_path: Path) -> None:
    from tunebook.store import Store

    store = Store.at_root(tmp_path / "root")
    exp_id = store.register("e", "i", {}, [{"name": "s", "position": 0, "scientific": {},
                                           "algorithm": "grid", "seed": 0, "budget": 1}],
                            {"s": [(0, {}, 1)]})
    tid = store.trials(exp_id)[0].id
    t = make(tmp_path, store, trial_id=tid)  # type: ignore[arg-type]
    for step in (10, 20, 30):
        t.report(step, loss=1.0)
    t.rewind(10)
    assert t.start_step == 10
    assert [s for _, s, _, _ in store.measurements([tid])] == [10]


def test_checkpoint_without_pruning_keeps_everything(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    for step in (1, 2, 3, 4):
        with t.checkpoint(step, prune=False) as folder:
            (folder / "x").write_text("x")
    assert [s for s, _ in t.checkpoints()] == [1, 2, 3, 4]


def test_guess_goal() -> None:
    from tunebook.summary import guess_goal

    for m in ("val_accuracy", "acc", "top1_acc", "eval_auc", "bleu", "mean-reward"):
        assert guess_goal(m) == "maximize", m
    for m in ("val_loss", "val_error", "perplexity", "accurate_loss_x"[:0] or "wer", "lost"):
        assert guess_goal(m) == "minimize", m

"""The trial context: buffered reports, infeasibility, atomic checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunebook.errors import Infeasible
from tunebook.execution.trial import Trial
from tunebook.objective import summarize

from conftest import MemorySink as Sink


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
    from tunebook.store.sql import Store, StudySpec

    store = Store.at_root(tmp_path / "root")
    exp_id = store.register("e", "i", {}, [StudySpec("s", 0, {}, "grid", 0, 1)],
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
    from tunebook.objective import guess_goal

    for m in ("val_accuracy", "acc", "top1_acc", "eval_auc", "bleu", "mean-reward"):
        assert guess_goal(m) == "maximize", m
    for m in ("val_loss", "val_error", "perplexity", "accurate_loss_x"[:0] or "wer", "lost"):
        assert guess_goal(m) == "minimize", m


# ----------------------------------------------------------------- metric names
@pytest.mark.parametrize(("name", "why"), [
    ("m" * 129, "longer than 128 characters"),
    ("val\x00loss", "NUL"),
    ("val\nloss", "control character"),
    ("loss\x7f", "control character"),
    ("\x85x", "control character"),
    ("bad\ud800", "control character"),
    ("", "must not be empty"),
])
def test_metric_names_every_backend_keeps_or_refused(tmp_path: Path, name: str, why: str
                                                     ) -> None:
    sink = Sink()
    t = make(tmp_path, sink)
    with pytest.raises(ValueError, match=why) as info:
        t.report(10, loss=1.0, **{name: 2.0})
    assert not name or repr(name[:60]) in str(info.value)  # the message names the metric
    t.flush()
    assert sink.rows == [] and t.reported_metrics == set()  # nothing of the call is kept


def test_metric_name_at_the_limit_and_unicode_are_fine(tmp_path: Path) -> None:
    from tunebook.execution.trial import MAX_METRIC_LENGTH

    sink = Sink()
    t = make(tmp_path, sink)
    t.report(1, **{"m" * MAX_METRIC_LENGTH: 1.0, "précision/val": 0.5, "a b": 2.0})
    t.report(2, **{"m" * MAX_METRIC_LENGTH: 1.0})  # a known name is not checked again
    t.flush()
    assert len(sink.rows) == 4


def test_long_metric_names_are_shown_cut(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    with pytest.raises(ValueError, match=r"\.\.\. \(100000 characters\)") as info:
        t.report(1, **{"x" * 100_000: 1.0})
    assert len(str(info.value)) < 200


# ----------------------------------------------------------------- save_state integrity
def counter(trial: Trial, stop_at: int | None = None) -> None:
    """A deterministic workload on save_state: a seeded running sum, checkpointed every 20
    steps, evaluated every 10; ``stop_at`` simulates a kill after that step."""
    import random

    state = trial.load_state() or {"step": 0, "total": 0.0,
                                   "rng": random.Random(trial.seed).getstate()}
    rng = random.Random()
    rng.setstate(state["rng"])
    step, total = state["step"], state["total"]
    while step < trial.max_train_steps:
        step += 1
        total += rng.random()
        if step % trial.eval_every == 0:
            trial.report(step, loss=1.0 / (1.0 + total), total=total)
        if step % 20 == 0:
            trial.save_state(step, {"step": step, "total": total, "rng": rng.getstate()})
        if step == stop_at:
            trial.flush()
            return


def _reference(tmp_path: Path) -> list[tuple[int, str, float]]:
    sink = Sink()
    counter(make(tmp_path / "ref", sink))
    sink.rows.sort()
    return sink.rows


def _state(trial: Trial, step: int) -> Path:
    return dict(trial.checkpoints())[step] / "state.pkl"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_corrupt_latest_state_resumes_from_the_older_one(tmp_path: Path, damage: object
                                                         ) -> None:
    reference = _reference(tmp_path)
    sink, lines = Sink(), []
    first = make(tmp_path, sink)
    counter(first, stop_at=65)  # checkpoints at 20, 40 and 60 (20 pruned), evaluations to 60
    assert [s for s, _ in first.checkpoints()] == [40, 60]
    assert (dict(first.checkpoints())[60] / "tunebook-manifest.json").exists()
    damage(_state(first, 60))  # type: ignore[operator]

    resumed = make(tmp_path, sink, log=lines.append)
    assert resumed.start_step == 60
    sink.truncate_measurements(0, 60)  # what the worker does before resuming
    counter(resumed)
    assert resumed.start_step == 40
    assert sink.checkpoint_steps == [20, 40, 60, 40, 60, 80, 100]  # rewound to 40 first
    assert sorted(sink.rows) == reference  # every evaluation exactly once, same values
    assert len(sink.rows) == len(set((s, m) for s, m, _ in sink.rows))
    assert any("checkpoint at step 60 is corrupt" in line and "state.pkl" in line
               for line in lines), lines
    names = sorted(p.name for p in resumed.checkpoint_root.iterdir())
    assert "corrupt-step-0000000060" in names  # kept for inspection, never resumed from


def test_no_intact_state_starts_over(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    sink, lines = Sink(), []
    first = make(tmp_path, sink)
    counter(first, stop_at=45)
    for step, _ in first.checkpoints():
        _flip(_state(first, step))
    resumed = make(tmp_path, sink, log=lines.append)
    sink.truncate_measurements(0, resumed.start_step)
    assert resumed.load_state() is None
    assert resumed.start_step == 0 and sink.rows == [] and sink.checkpoint_steps[-1] == 0
    assert any("no intact checkpoint" in line for line in lines)
    counter(resumed)
    assert sorted(sink.rows) == reference


def test_state_without_checksums_still_loads(tmp_path: Path) -> None:
    """Checkpoints written before checksums existed: loaded, or skipped when unreadable."""
    t = make(tmp_path, Sink())
    for step in (10, 20):
        t.save_state(step, {"step": step})
        (dict(t.checkpoints())[step] / "tunebook-manifest.json").unlink()
    assert make(tmp_path, Sink()).load_state() == {"step": 20}
    _truncate(_state(t, 20))
    again = make(tmp_path, Sink())
    assert again.load_state() == {"step": 10} and again.start_step == 10


def test_checkpoint_without_state_is_not_corrupt(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    t.save_state(10, {"step": 10})
    with t.checkpoint(20) as folder:
        (folder / "weights.bin").write_bytes(b"w")
    resumed = make(tmp_path, Sink())
    assert resumed.load_state() is None and resumed.start_step == 20
    assert [s for s, _ in resumed.checkpoints()] == [10, 20]  # nothing set aside


def test_a_folder_written_elsewhere_is_published_the_same_way(tmp_path: Path) -> None:
    sink = Sink()
    t = make(tmp_path, sink)
    t.flush_every_seconds = 3600
    t.report(10, loss=0.5)
    folder = t.dir / "incoming" / "anything"
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("w")
    (folder / "sub").mkdir()
    (folder / "sub" / "opt.txt").write_text("o")
    published = t.publish_checkpoint(10, folder, checksums=True)
    assert sink.rows == [(10, "loss", 0.5)] and sink.checkpoint_steps == [10]
    assert not folder.exists() and published == t.checkpoint_root / "step-0000000010"
    assert (published / "sub" / "opt.txt").read_text() == "o"
    assert t.restore_point() == (10, published)
    (published / "sub" / "opt.txt").write_text("x")
    lines: list[str] = []
    resumed = make(tmp_path, sink, log=lines.append)
    assert resumed.restore_point() is None and resumed.start_step == 0
    assert "sub/opt.txt does not match its sha256" in lines[0]


def test_rewind_forgets_this_attempts_points_past_the_step(tmp_path: Path) -> None:
    t = make(tmp_path, Sink())
    for step in (10, 20, 30):
        t.report(step, loss=1.0 / step, acc=0.5)
    t.rewind(10)
    assert t.objective_points == [(10, 0.1)]
    assert t.latest == {}  # only the last point per metric is kept, and it is gone
    t.report(20, loss=0.05)
    assert t.objective_points == [(10, 0.1), (20, 0.05)] and t.latest == {"loss": (20, 0.05)}

"""Evaluation: exact means over zero-weight-padded fixed-size batches, modes, predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from tunebook.execution.trial import Trial
from tunebook.torch.evaluation import (
    DEFAULT_EVAL_BATCH_SIZE,
    classification_metrics,
    evaluate,
    regression_metrics,
)

torch.set_num_threads(1)


class Recorder(nn.Module):
    """A classifier that records what it saw: batch sizes, its mode, grad mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4)
        self.dropout = nn.Dropout(0.5)
        self.seen: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[0], self.training, torch.is_grad_enabled()))
        out: torch.Tensor = self.linear(self.dropout(x))
        return out


Data = tuple["Recorder", torch.Tensor, torch.Tensor]


@pytest.fixture
def data() -> Data:
    torch.manual_seed(0)
    model = Recorder()
    x = torch.randn(103, 5)
    y = torch.randint(0, 4, (103,))
    return model, x, y


def exact(model: Recorder, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int]:
    with torch.no_grad():
        logits = model.linear(x)
    losses = F.cross_entropy(logits.double(), y, reduction="none")
    wrong = int((logits.argmax(1) != y).sum())
    return float(losses.mean()), wrong / len(y), wrong


def test_mean_over_real_examples_is_exact_with_a_partial_batch(data: Data) -> None:
    model, x, y = data
    loss, error, wrong = exact(model, x, y)
    result = evaluate(model, (x, y), 16)
    assert result.count == 103 and result.batch_size == 16
    assert result["loss"] == pytest.approx(loss, abs=1e-6)
    assert result["error"] == pytest.approx(error, abs=1e-6)
    assert result.sums["error"] == wrong  # counts, for imbalanced data
    # Fixed-size batches: 7 batches of 16, the last one padded (103 = 6 * 16 + 7).
    assert [s for s, _, _ in model.seen] == [16] * 7
    # The result does not depend on the batch size.
    for size in (1, 7, 103, 500):
        other = evaluate(model, (x, y), size)
        assert other["loss"] == pytest.approx(loss, abs=1e-6)
        assert other["error"] == pytest.approx(error, abs=1e-6)


def test_padding_is_weighted_zero_even_when_it_would_dominate(data: Data) -> None:
    model, x, y = data
    # 1 real example in a batch of 64: 63 copies of it are padding and must not count.
    result = evaluate(model, (x[:1], y[:1]), 64)
    loss, _, _ = exact(model, x[:1], y[:1])
    assert result["loss"] == pytest.approx(loss, abs=1e-6) and result.count == 1
    assert result.sums["loss"] == pytest.approx(loss, abs=1e-6)
    # 65 examples: 2 batches of 64, the second padded with 63 copies of example 64.
    result = evaluate(model, (x[:65], y[:65]), 64)
    assert result["loss"] == pytest.approx(exact(model, x[:65], y[:65])[0], abs=1e-6)


def test_no_padding_option(data: Data) -> None:
    model, x, y = data
    result = evaluate(model, (x, y), 16, pad=False)
    assert [s for s, _, _ in model.seen] == [16] * 6 + [7]
    assert result["loss"] == pytest.approx(exact(model, x, y)[0], abs=1e-6)


def test_eval_mode_no_grad_and_every_module_mode_restored(data: Data) -> None:
    model, x, y = data
    model.train()
    model.dropout.eval()  # a partly frozen model stays partly frozen
    first = evaluate(model, (x, y), 32)
    assert all(not training and not grad for _, training, grad in model.seen)
    assert model.training and model.linear.training and not model.dropout.training
    assert evaluate(model, (x, y), 32).metrics == first.metrics  # no dropout noise
    model.eval()
    evaluate(model, (x, y), 32)
    assert not model.training


def test_mode_restored_after_an_exception(data: Data) -> None:
    model, x, y = data
    model.train()

    def broken(outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, (x, y), 16, broken)
    assert model.training and model.dropout.training


def test_batch_size_is_at_least_the_training_batch_size(data: Data) -> None:
    model, x, y = data
    assert evaluate(model, (x, y)).batch_size == DEFAULT_EVAL_BATCH_SIZE
    assert evaluate(model, (x, y), train_batch_size=512).batch_size == 512
    assert evaluate(model, (x, y), 16, train_batch_size=64).batch_size == 64
    assert evaluate(model, (x, y), 128, train_batch_size=64).batch_size == 128
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, (x, y), 0)


def test_metrics_must_be_per_example(data: Data) -> None:
    model, x, y = data

    def mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(logits, labels)}  # reduction="mean": refused

    with pytest.raises(ValueError, match="reduction='none'"):
        evaluate(model, (x, y), 16, mean_loss)


def test_custom_metrics_and_several_inputs() -> None:
    class Add(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    a, b = torch.arange(10.0).unsqueeze(1), torch.ones(10, 1)
    target = torch.zeros(10, 1)
    result = evaluate(Add(), (a, b, target), 4, regression_metrics, inputs=2)
    assert result["loss"] == pytest.approx(sum((i + 1.0) ** 2 for i in range(10)) / 10)


def test_dataset_input_matches_tensor_input(data: Data) -> None:
    model, x, y = data
    from_tensors = evaluate(model, (x, y), 16)
    from_dataset = evaluate(model, TensorDataset(x, y), 16)
    assert from_dataset.metrics == pytest.approx(from_tensors.metrics, abs=1e-9)
    assert from_dataset.count == 103
    pairs = [(x[i], y[i]) for i in range(len(y))]  # a list of examples is a dataset too
    assert evaluate(model, pairs, 16).metrics == pytest.approx(from_tensors.metrics, abs=1e-9)


def test_kept_predictions_are_returned_and_written(tmp_path: Path, data: Data) -> None:
    model, x, y = data
    keep = [102, 0, 40]
    result = evaluate(model, (x, y), 16, keep_predictions=keep)
    assert [p.index for p in result.predictions] == keep
    with torch.no_grad():
        logits = model.linear(x)
    per_example = classification_metrics(logits, y)
    for p in result.predictions:
        assert p.output == pytest.approx(logits[p.index].tolist(), abs=1e-6)
        assert p.targets == [int(y[p.index])]
        assert p.metrics["loss"] == pytest.approx(float(per_example["loss"][p.index]), abs=1e-6)
    trial = Trial(hparams={}, max_train_steps=10, eval_every=5, seed=0, dir=tmp_path / "t")
    path = result.write_predictions(trial, step=5, name="val")
    assert path == tmp_path / "t" / "predictions" / "val" / "step-0000000005.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["step"], d["index"]) for d in lines] == [(5, 102), (5, 0), (5, 40)]
    assert lines[0]["output"] == pytest.approx(result.predictions[0].output)
    # Writing the same step again (a resumed trial) replaces the file.
    evaluate(model, (x, y), 16, keep_predictions=[1]).write_predictions(trial, 5, "val")
    assert len(path.read_text().splitlines()) == 1
    with pytest.raises(ValueError, match="out of range"):
        evaluate(model, (x, y), 16, keep_predictions=[103])


def test_prefixed_and_empty() -> None:
    model = nn.Linear(2, 3)
    x, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1])
    assert set(evaluate(model, (x, y), 4).prefixed("val_")) == {"val_loss", "val_error"}
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, (x[:0], y[:0]), 4)


def test_diverged_outputs_give_a_nan_error_not_a_random_one() -> None:
    from tunebook.torch.evaluation import classification_metrics

    logits = torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [float("inf"), 1.0]])
    out = classification_metrics(logits, torch.tensor([1, 0, 0]))
    assert out["error"][0].item() == 0.0
    assert torch.isnan(out["error"][1:]).all()


def test_per_class_counts_exclude_the_padding_and_add_up() -> None:
    from tunebook.workloads.timing import DataShare

    torch.manual_seed(0)
    x = torch.randn(37, 3)
    y = torch.tensor([i % 3 for i in range(37)])
    model = nn.Linear(3, 3)
    r = evaluate(model, (x, y), 16, per_class=10)
    pred = model(x).argmax(dim=-1)
    for k in range(3):
        assert r.classes[k] == (int((y == k).sum()), int(((y == k) & (pred == k)).sum()))
    assert sum(ok for _, ok in r.classes.values()) == round(37 * (1 - r["error"]))
    assert r.class_counts("val_")["val_class1_examples"] == 12.0
    assert evaluate(model, (x, y), 16, per_class=2).classes == {}  # 3 classes: over the cap
    assert evaluate(model, (x, y), 16).classes == {}
    timer = DataShare()
    assert timer.take() is None
    timer.begin()
    timer.fetched()
    timer.end()
    share = timer.take()
    assert share is not None and 0.0 <= share <= 1.0 and timer.step_seconds == 0.0

"""Periodic evaluation with exact means over fixed-size, zero-weight-padded batches.

The playbook ("Evaluating model performance"):

* run evaluation at batch sizes at least as large as training (no activations are kept for a
  backward pass, so more examples fit);
* partial batches occur when the evaluation set does not divide the batch size; the padded
  examples must be weighted so they do not bias the loss, "often ... a weight of zero";
* save predictions on a selection of individual examples, "invaluable for debugging";
* on imbalanced data, log counts (how many examples were right), not only rates.

:func:`evaluate` does this for a PyTorch model. Every batch has the same size (static shapes
suit compiled models and cuDNN autotuning); the last one is padded with copies of a real example
(copies rather than zeros, so the padding cannot produce a NaN that would leak into a sum) and
the padding is masked out of every sum, so a metric is exactly the mean over the real examples
whatever the batch size. Metrics are *per-example*: a function of the model's outputs and the
batch's targets that returns one value per example; a mean-reduced loss is refused, because it
would silently weight the padding. Sums stay on the device in float64 and are read once at the
end (no host synchronisation per batch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, default_collate

from tunebook.execution.trial import Trial

__all__ = [
    "DEFAULT_EVAL_BATCH_SIZE",
    "EvalResult",
    "MetricFn",
    "Prediction",
    "classification_metrics",
    "evaluate",
    "regression_metrics",
]

DEFAULT_EVAL_BATCH_SIZE = 256
"""The evaluation batch size when neither ``batch_size`` nor ``train_batch_size`` is given."""

MetricFn = Callable[..., Mapping[str, torch.Tensor]]
"""``metrics(outputs, *targets) -> {name: per-example tensor of shape [batch]}``."""

Data = torch.Tensor | Sequence[Any] | Dataset[Any]
"""Evaluation data: a tensor, a tuple/list of tensors (columns) or a map-style dataset."""


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example cross-entropy ``loss`` and 0/1 ``error`` (the default metrics).

    ``logits`` is ``[batch, classes]`` and ``labels`` ``[batch]`` class indices. The mean of
    ``error`` is the error rate; its sum (:attr:`EvalResult.sums`) the number of mistakes.
    An example whose logits are not finite has a NaN error, not an arbitrary argmax: a diverged
    model must not look like a 50%-error model (the objective turns NaN: infeasible).
    """
    error = (logits.argmax(dim=-1) != labels).to(torch.float32)
    finite = torch.isfinite(logits).all(dim=-1)
    error = torch.where(finite, error, torch.full_like(error, float("nan")))
    return {"loss": F.cross_entropy(logits, labels, reduction="none"), "error": error}


def regression_metrics(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example squared error ``loss`` (summed over any trailing dimensions)."""
    err = (predictions - targets.to(predictions.dtype)) ** 2
    return {"loss": err.reshape(err.shape[0], -1).sum(dim=1)}


@dataclass(frozen=True)
class Prediction:
    """The model's output on one kept example, for debugging.

    Attributes:
        index: the example's position in the evaluation set.
        output: the model's output for it, as nested lists (a dict/tuple output keeps its shape).
        targets: the example's target tensors (everything after the model inputs), as lists.
        metrics: its per-example metric values.
    """

    index: int
    output: Any
    targets: list[Any]
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"index": self.index, "output": self.output, "targets": self.targets,
                "metrics": self.metrics}


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: each metric's mean over the real examples (padding excluded).
        sums: each metric's sum over the real examples (e.g. the number of errors: the playbook
            suggests counts on imbalanced data).
        count: how many real examples were evaluated.
        batch_size: the (fixed) batch size used.
        predictions: the kept examples, in the order they were asked for.
        classes: with ``per_class``, ``{class: (examples, correct)}`` for every class that
            occurs among the targets (the playbook: on imbalanced data, log counts per class).
    """

    metrics: dict[str, float]
    sums: dict[str, float]
    count: int
    batch_size: int
    predictions: list[Prediction] = field(default_factory=list)
    classes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def class_counts(self, prefix: str) -> dict[str, float]:
        """The per-class counts as metrics: ``PREFIXclassK_correct`` and
        ``PREFIXclassK_examples`` for each class K (``val_class3_correct``): counts, not
        rates, as the playbook suggests; the class_imbalance check reads them."""
        out: dict[str, float] = {}
        for k, (examples, correct) in sorted(self.classes.items()):
            out[f"{prefix}class{k}_correct"] = float(correct)
            out[f"{prefix}class{k}_examples"] = float(examples)
        return out

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def prefixed(self, prefix: str) -> dict[str, float]:
        """The means with ``prefix`` prepended: ``trial.report(step, **r.prefixed("val_"))``."""
        return {prefix + k: v for k, v in self.metrics.items()}

    def write_predictions(self, where: Trial | str | Path, step: int, name: str = "eval") -> Path:
        """Write :attr:`predictions` as JSON lines, one file per evaluation step.

        The file is ``<trial dir>/predictions/<name>/step-<step>.jsonl`` (or under ``where``
        when it is a folder), one object per kept example with ``step``, ``index``, ``output``,
        ``targets`` and ``metrics``. One file per step makes a resumed trial that evaluates the
        same step again overwrite it instead of appending duplicates; the write is atomic.
        Returns the file's path.
        """
        root = where.dir if isinstance(where, Trial) else Path(where)
        folder = root / "predictions" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{step:010d}.jsonl"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for p in self.predictions:
                f.write(json.dumps({"step": step, **p.as_dict()}) + "\n")
        os.replace(tmp, path)
        return path


# --------------------------------------------------------------------------- data access
class _Source:
    """Uniform access to tensors or a map-style dataset: ``batch(indices) -> tuple``."""

    def __init__(self, data: Data) -> None:
        if isinstance(data, torch.Tensor):
            data = (data,)
        if isinstance(data, (tuple, list)) and data and all(
                isinstance(t, torch.Tensor) for t in data):
            n = data[0].shape[0]
            if any(t.shape[0] != n for t in data):
                raise ValueError("every tensor must have the same first (example) dimension, got "
                                 f"{[t.shape[0] for t in data]}")
            self.tensors: tuple[torch.Tensor, ...] | None = tuple(data)
            self.dataset: Any = None
            self.n = int(n)
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.tensors = None
            self.dataset = data
            self.n = len(data)
        else:
            raise TypeError("evaluate() needs a tensor, a sequence of tensors or a map-style "
                            f"Dataset (with __len__ and __getitem__), got {type(data).__name__}")

    def batch(self, idx: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
        if self.tensors is not None:
            index = torch.tensor(idx, dtype=torch.long, device=self.tensors[0].device)
            cols: Any = tuple(t.index_select(0, index.to(t.device)) for t in self.tensors)
        else:
            cols = default_collate([self.dataset[i] for i in idx])
            if isinstance(cols, torch.Tensor):
                cols = (cols,)
            if not isinstance(cols, (tuple, list)):
                raise TypeError("dataset items must be tensors or tuples of tensors, got a batch "
                                f"of type {type(cols).__name__}")
        return tuple(c.to(device, non_blocking=True) for c in cols)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _take(output: Any, row: int) -> Any:
    """One example of a (possibly nested) model output, still as tensors."""
    if isinstance(output, torch.Tensor):
        return output[row].detach()
    if isinstance(output, Mapping):
        return {k: _take(v, row) for k, v in output.items()}
    if isinstance(output, (tuple, list)):
        return [_take(v, row) for v in output]
    return output


def _plain(value: Any) -> Any:
    """Tensors to (nested) Python lists/numbers, for JSON."""
    if isinstance(value, torch.Tensor):
        return value.cpu().tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _effective_batch_size(batch_size: int | None, train_batch_size: int | None) -> int:
    for name, v in (("batch_size", batch_size), ("train_batch_size", train_batch_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    size = DEFAULT_EVAL_BATCH_SIZE if batch_size is None else batch_size
    return max(size, train_batch_size or 0)


def evaluate(
    model: nn.Module,
    data: Data,
    batch_size: int | None = None,
    metrics: MetricFn = classification_metrics,
    *,
    train_batch_size: int | None = None,
    inputs: int = 1,
    keep_predictions: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    pad: bool = True,
    per_class: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``data``: exact per-metric means over the real examples.

    Every batch holds ``batch_size`` examples; the last one is padded with copies of its last
    real example, which get weight 0 (masked out of the sums), so the result does not depend on
    the batch size. The model is put in eval mode and every submodule's previous mode is
    restored afterwards (a partly frozen model stays partly frozen); gradients are off.

    Args:
        model: called as ``model(*batch[:inputs])``.
        data: a tensor, a tuple or list of tensors sharing their first (example) dimension
            (columns, e.g. ``(x_val, y_val)``), or a map-style dataset (anything with
            ``__len__`` and ``__getitem__``, a list of ``(x, y)`` pairs included) whose items are
            tensors or tuples of tensors, collated with ``torch.utils.data.default_collate``.
        batch_size: the evaluation batch size; it is never below ``train_batch_size`` (the
            playbook: at least as large as training). Default: :data:`DEFAULT_EVAL_BATCH_SIZE`,
            or the training batch size when that is larger.
        metrics: ``metrics(outputs, *batch[inputs:])`` returning ``{name: tensor[batch]}``, one
            value per example (e.g. ``F.cross_entropy(..., reduction="none")``). Default:
            :func:`classification_metrics` (``loss`` and ``error``).
        train_batch_size: the training batch size, the floor for ``batch_size``.
        inputs: how many leading tensors of a batch are model inputs; the rest are targets.
        keep_predictions: indices of examples whose outputs, targets and metric values are
            returned in :attr:`EvalResult.predictions` (keep the same selection at every
            evaluation so they can be compared over training; see
            :meth:`EvalResult.write_predictions`).
        device: where to run; default: the device of the model's first parameter.
        pad: pad the last batch to the full size (default). With False it is simply smaller.
        per_class: for classification, count the examples and the correct argmax predictions
            of each class (:attr:`EvalResult.classes`), when the output's last dimension (the
            classes) is at most ``per_class``; the first target holds class indices of the
            output's shape without that dimension (``[batch]`` or ``[batch, positions]``).
            Default None: not counted.

    Raises:
        ValueError: for an empty evaluation set, an index out of range, or a metric that is not
            one value per example.
    """
    size = _effective_batch_size(batch_size, train_batch_size)
    source = _Source(data)
    n = source.n
    if n == 0:
        raise ValueError("the evaluation set is empty")
    if inputs < 1:
        raise ValueError(f"inputs must be at least 1, got {inputs}")
    kept = list(dict.fromkeys(int(i) for i in (keep_predictions or ())))
    bad = [i for i in kept if not 0 <= i < n]
    if bad:
        raise ValueError(f"keep_predictions indices out of range [0, {n}): {bad}")
    run_on = torch.device(device) if device is not None else _model_device(model)
    acc_dtype = torch.float32 if run_on.type == "mps" else torch.float64

    sums: dict[str, torch.Tensor] = {}
    class_sums: tuple[torch.Tensor, torch.Tensor] | None = None
    found: dict[int, tuple[Any, list[Any], dict[str, torch.Tensor]]] = {}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, size):
                real = min(size, n - start)
                idx = list(range(start, start + real))
                if pad and real < size:
                    idx += [start + real - 1] * (size - real)
                batch = source.batch(idx, run_on)
                if len(batch) < inputs:
                    raise ValueError(
                        f"a batch has {len(batch)} tensors, fewer than inputs={inputs}")
                outputs = model(*batch[:inputs])
                values = metrics(outputs, *batch[inputs:])
                mask = (torch.arange(len(idx), device=run_on) < real) if real < len(idx) else None
                for name, v in values.items():
                    if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.shape[0] != len(idx):
                        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                        raise ValueError(
                            f"metric {name!r} must be one value per example (shape "
                            f"[{len(idx)}]), got {shape}; use reduction='none'")
                    v = v.detach().to(run_on, acc_dtype)
                    if mask is not None:
                        v = torch.where(mask, v, torch.zeros((), dtype=acc_dtype, device=run_on))
                    total = v.sum()
                    sums[name] = sums[name] + total if name in sums else total
                if per_class is not None:
                    counted = _count_classes(outputs, batch[inputs:], real, per_class)
                    if counted is not None:
                        per_ex, per_ok = counted
                        if class_sums is None:
                            class_sums = (per_ex, per_ok)
                        else:
                            class_sums = (_add(class_sums[0], per_ex), _add(class_sums[1], per_ok))
                for i in kept:
                    if start <= i < start + real:
                        row = i - start
                        found[i] = (_take(outputs, row),
                                    [t[row].detach() for t in batch[inputs:]],
                                    {k: v[row].detach() for k, v in values.items()})
    finally:
        for m, was_training in modes:
            m.training = was_training
    sums_f = {k: float(v.item()) for k, v in sums.items()}
    predictions = [
        Prediction(index=i, output=_plain(found[i][0]), targets=_plain(found[i][1]),
                   metrics={k: float(v.item()) for k, v in found[i][2].items()})
        for i in kept]
    classes: dict[int, tuple[int, int]] = {}
    if class_sums is not None:
        ex, ok = (t.tolist() for t in class_sums)
        classes = {k: (int(ex[k]), int(ok[k])) for k in range(len(ex)) if ex[k] > 0}
    return EvalResult(metrics={k: v / n for k, v in sums_f.items()}, sums=sums_f, count=n,
                      batch_size=size, predictions=predictions, classes=classes)


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of two count vectors of possibly different lengths."""
    if len(a) < len(b):
        a, b = b, a
    return torch.cat([a[:len(b)] + b, a[len(b):]])


def _count_classes(outputs: Any, targets: Sequence[Any], real: int, limit: int
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-class examples and correct argmax predictions among the first ``real`` examples
    (the padding excluded), or None when the outputs are not ``[..., classes]`` logits with at
    most ``limit`` classes and matching integer targets."""
    if not targets or not isinstance(outputs, torch.Tensor) or outputs.dim() < 2:
        return None
    labels = targets[0]
    n_classes = outputs.shape[-1]
    if (not isinstance(labels, torch.Tensor) or labels.is_floating_point()
            or n_classes > limit or tuple(labels.shape) != tuple(outputs.shape[:-1])):
        return None
    labels = labels[:real].reshape(-1).to(torch.int64)
    correct = (outputs[:real].reshape(-1, n_classes).argmax(dim=-1) == labels).to(torch.int64)
    valid = (labels >= 0) & (labels < n_classes)  # e.g. an ignore index of -100
    labels, correct = labels[valid], correct[valid]
    return (torch.bincount(labels, minlength=n_classes),
            torch.bincount(labels, weights=correct.to(torch.float64),
                           minlength=n_classes).to(torch.int64))


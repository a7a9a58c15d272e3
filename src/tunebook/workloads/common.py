r"""The training loop every built-in workload shares, read top to bottom.

:func:`train_classifier` trains any model whose output is class logits (``[batch, classes]``,
or ``[batch, positions, classes]`` for a language model) with the toolkit: the playbook's
optimizers (:func:`tunebook.torch.make_optimizer`), a learning-rate schedule with prepended
warmup (:func:`tunebook.schedules.from_hparams`), gradient clipping that logs the unclipped norm
(:class:`tunebook.torch.ClipTracker`), padded evaluation (:func:`tunebook.torch.evaluate`) and
exact-resume checkpoints that keep the best (:class:`tunebook.torch.Checkpointer`).

Training hyperparameters (every built-in workload accepts these; its own module adds the model's
and may change the default ``batch_size``):

=====================  ============  ==============================================================
name                   default       meaning
=====================  ============  ==============================================================
``optimizer``          ``adam``      ``sgd``, ``momentum``, ``nesterov``, ``rmsprop``, ``adam`` or
                                     ``nadam``, with the playbook's update rules
``learning_rate``      1e-3 or 0.01  base (peak) rate; 0.01 for sgd, momentum and nesterov
``beta1``, ``beta2``   0.9, 0.999    adam and nadam (or ``one_minus_beta1``, ``one_minus_beta2``)
``momentum``           0.9           momentum and nesterov (0.0 for rmsprop); or
                                     ``one_minus_momentum``
``rho``                0.9           rmsprop (or ``one_minus_rho``)
``epsilon``            1e-8          rmsprop, adam and nadam
``weight_decay``       0.0           coupled L2 on every parameter (biases and norms included)
``schedule``           ``constant``  ``constant``, ``linear``, ``cosine`` or ``rsqrt`` decay
``warmup_steps``       0             linear ramp from 0 to ``learning_rate``, prepended to the
                                     decay (see below)
``decay_steps``        the rest      length of the decay after warmup (default:
                                     ``max_train_steps - warmup_steps``)
``end_learning_rate``  0.0           final rate of ``linear``/``cosine`` (or ``end_factor``, a
                                     fraction of ``learning_rate``)
``rsqrt_timescale``    warmup        timescale of ``rsqrt`` (default ``max(warmup_steps, 1)``)
``grad_clip``          none          clip the global gradient norm to this value (none: only
                                     measure it)
``label_smoothing``    0.0           label smoothing of the training loss, in [0, 1)
``batch_size``         workload's    training batch size
``step_timing``        false         also report the step-time metrics below (the batch-size probe)
=====================  ============  ==============================================================

Warmup and ``max_train_steps``: warmup steps count towards ``max_train_steps``. A trial runs
exactly ``max_train_steps`` updates; the first ``warmup_steps`` ramp the rate linearly from 0
(the playbook's prepended warmup: ``lr(warmup_steps + k) = decay(k)``) and the decay spans the
remaining ``max_train_steps - warmup_steps`` (``decay_steps``' default), ending at
``end_learning_rate`` exactly at the last step. To follow the playbook's "10,000 steps plus 1,000
of warmup" literally, set ``max_train_steps`` to 11,000. Update ``s`` (0, 1, ...) uses
``schedule(s)``, so the very first update of a warmup has rate 0.

What is reported at every evaluation (every ``eval_every`` steps and at ``max_train_steps``):

* ``train_loss``, ``train_error``: cross-entropy (without label smoothing) and error rate of the
  model in eval mode (no dropout) on a fixed subset of the training set: ``train_eval_size``
  examples evenly spaced through it (all of it by default);
* ``val_loss``, ``val_error``: the same on the validation set; for a language model, the mean
  over every predicted position (the error is the next-token error rate);
* ``grad_norm``: the unclipped global gradient norm (the norm the playbook asks to log, before
  clipping) of **every** update, not only at evaluations: step ``s`` holds the norm of update
  ``s`` (1-based, the step count after it). The norms of an evaluation interval are reported
  together at its evaluation, so a resumed trial re-reports exactly the steps after its
  checkpoint (the store keeps one value per step: nothing is duplicated); a diverged trial's
  norms after its last evaluation are not reported. Before this version
  ``grad_norm`` was the *mean* norm over each evaluation interval, one point per evaluation;
  the report's per-study clipping threshold (the 90th percentile of the best trials' per-step
  norms) needs every step;
* ``learning_rate``: the rate of the last update before the evaluation, ``schedule(step - 1)``;
* ``clip_fraction``, only with ``grad_clip``: the share of all updates so far that were clipped
  (the ``clipping`` check warns when it exceeds one half at the last evaluation);
* ``val_full_loss``, ``val_full_error``, ``val_full_examples``, only with
  ``val_subset_size`` and only at ``max_train_steps``: the full validation set, while ``val_*``
  is then the periodic subset (the ``eval_subset`` check);
* ``data_share``: the share of the training steps' time since the previous evaluation spent
  fetching the batch (:class:`tunebook.workloads.timing.DataShare`; the ``input_bound`` check);
* ``val_classK_correct``, ``val_classK_examples`` for each class K (at most ``per_class``, 100,
  classes): per-class counts of the validation set (the ``class_imbalance`` check).

With ``step_timing: true`` (off by default: wall-clock values differ between runs, and a
resumed trial would not reproduce them), also at every evaluation, over the updates since the
previous one: ``step_seconds``, the mean wall time of an update (batch selection through
``optimizer.step()``); ``data_seconds``, the mean part of it spent selecting and indexing the
batch (the input pipeline); ``examples_per_second``, ``batch_size / step_seconds``; and
``peak_memory_mb``, on CUDA the peak allocated memory since the trial started, on CPU the growth
of the process's peak resident set size since it started (``ru_maxrss``; 0 when an earlier
trial of the same process peaked higher). On CUDA the clock is read after a synchronize.

Reported once, with the first evaluation (constants that describe the metrics, so that the
report knows their resolution and their chance level; see ``docs/reading-your-report.md``):

* ``train_examples``, ``val_examples``: how many predicted labels each evaluation covers (the
  error rates move in steps of one over these);
* ``val_error_chance``, ``val_loss_chance``: the validation error and cross-entropy of always
  predicting the class frequencies of the validation set (one minus the most frequent class's
  share, and the entropy of the class distribution): a trial no better than these learned
  nothing.

The batch of step ``s`` is a pure function of ``(trial.seed, s)`` (a seeded permutation of the
training set per epoch; the last incomplete batch of an epoch is dropped), so resuming needs no
data state. Dropout draws from torch's global generator, which the checkpoint saves. A
non-finite training loss or gradient norm raises ``trial.infeasible``: the trial is recorded as
diverged, not failed. A checkpoint is saved at every evaluation, after the report; the best
``keep_best`` by the objective and the latest are kept, and a restarted trial continues from the
latest one bit for bit.
"""

from __future__ import annotations

import difflib
import math
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunebook.execution.trial import Trial
from tunebook.schedules import from_hparams
from tunebook.search.rng import derive_seed
from tunebook.torch import Checkpointer, ClipTracker, evaluate, make_optimizer, set_lr
from tunebook.workloads.timing import DataShare

__all__ = [
    "ACTIVATIONS",
    "TRAINING_HPARAMS",
    "BatchOrder",
    "check_hparams",
    "cross_entropy_metrics",
    "describe_labels",
    "even_subset",
    "float_hparam",
    "int_hparam",
    "mlp",
    "str_hparam",
    "train_classifier",
]

TRAINING_HPARAMS = frozenset({
    "optimizer", "learning_rate", "beta1", "beta2", "momentum", "rho", "epsilon",
    "one_minus_beta1", "one_minus_beta2", "one_minus_momentum", "one_minus_rho",
    "weight_decay", "schedule", "warmup_steps", "decay_steps", "end_learning_rate", "end_factor",
    "rsqrt_timescale", "grad_clip", "label_smoothing", "batch_size", "step_timing",
})
"""Hyperparameter names :func:`train_classifier` reads (the table in the module docstring)."""

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
}
"""Activation functions by hyperparameter value."""

Data = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- hyperparameters
def check_hparams(hparams: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a hyperparameter the workload does not read: a typo must not silently run a
    whole study at the default.

    Raises:
        ValueError: naming the unknown hyperparameter (and the closest known name).
    """
    names = set(known)
    for name in sorted(set(hparams) - names):
        close = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown hyperparameter {name!r}{hint}; this workload reads "
                         f"{', '.join(sorted(names))}")


def int_hparam(hparams: Mapping[str, Any], name: str, default: int, minimum: int = 1) -> int:
    """``hparams[name]`` (or ``default``) as an int >= ``minimum``; 64.0 is accepted as 64."""
    value = hparams.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def float_hparam(hparams: Mapping[str, Any], name: str, default: float, low: float = 0.0,
                 high: float = math.inf) -> float:
    """``hparams[name]`` (or ``default``) as a float in ``[low, high)``."""
    value = hparams.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
    return float(value)


def str_hparam(hparams: Mapping[str, Any], name: str, default: str,
               choices: Iterable[str]) -> str:
    """``hparams[name]`` (or ``default``), lower-cased, one of ``choices``."""
    value = hparams.get(name, default)
    allowed = sorted(choices)
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value.lower()


# --------------------------------------------------------------------------- models and data
def mlp(n_in: int, n_out: int, num_layers: int, width: int, activation: str,
        dropout: float = 0.0) -> nn.Sequential:
    """``num_layers`` hidden layers of ``width`` units (each Linear, activation, then Dropout
    when ``dropout > 0``) and a linear output layer."""
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(num_layers):
        layers += [nn.Linear(d, width), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class BatchOrder:
    """The examples of each step's batch: a pure function of ``(seed, step)``.

    Epoch ``e`` visits the ``n`` examples in a permutation seeded by ``(seed, e)``; step ``s``
    takes the ``s % steps_per_epoch``-th slice of ``batch_size`` of it (the incomplete remainder
    is dropped). Only the current epoch's permutation is kept, so asking for consecutive steps
    is cheap and a resumed run needs nothing but the step.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (the training set's size), "
                             f"got {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.steps_per_epoch = n // batch_size
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        """Indices of the examples in the batch of ``step`` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(derive_seed("batches", self.seed, epoch))
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm[k * self.batch_size:(k + 1) * self.batch_size]


def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)


def cross_entropy_metrics(logits: torch.Tensor, targets: torch.Tensor
                          ) -> dict[str, torch.Tensor]:
    """Per-example ``loss`` (cross-entropy) and ``error`` (argmax is wrong), for
    :func:`tunebook.torch.evaluate`. With ``[batch, positions, classes]`` logits each example's
    value is its mean over positions."""
    n = targets.shape[0]
    flat_logits, flat_targets = _flat(logits, targets)
    loss = F.cross_entropy(flat_logits, flat_targets, reduction="none")
    error = (flat_logits.argmax(dim=-1) != flat_targets).to(torch.float32)
    return {"loss": loss.reshape(n, -1).mean(dim=1), "error": error.reshape(n, -1).mean(dim=1)}


def even_subset(data: Data, size: int | None) -> Data:
    """``size`` examples evenly spaced through ``data`` (all of them when None or larger)."""
    n = data[0].shape[0]
    if size is None or size >= n:
        return data
    index = torch.arange(size) * n // size
    return data[0][index], data[1][index]


def describe_labels(targets: torch.Tensor, prefix: str, *, chance: bool = True
                    ) -> dict[str, float]:
    """``PREFIX_examples`` (how many labels an evaluation on ``targets`` covers) and, with
    ``chance``, ``PREFIX_error_chance`` and ``PREFIX_loss_chance``: the error and cross-entropy
    (nats) of predicting the class frequencies of ``targets``."""
    flat = targets.reshape(-1).to(torch.int64)
    out = {f"{prefix}examples": float(flat.numel())}
    if chance and flat.numel():
        freq = torch.bincount(flat).to(torch.float64) / flat.numel()
        freq = freq[freq > 0]
        out[f"{prefix}error_chance"] = float(1.0 - freq.max())
        out[f"{prefix}loss_chance"] = float(-(freq * freq.log()).sum())
    return out


# --------------------------------------------------------------------------- the loop
def _report_norms(trial: Trial, first: int, norms: list[float]) -> None:
    """Report ``norms[i]`` as ``grad_norm`` at step ``first + 1 + i``."""
    for i, norm in enumerate(norms):
        trial.report(first + 1 + i, grad_norm=norm)


class _StepTimer:
    """Interval sums of update and data time, and peak memory (``step_timing``)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.step = self.data = 0.0
        self.count = 0
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()  # CUDA kernels run asynchronously: wait before reading
        return time.perf_counter()

    def metrics(self, batch_size: int) -> dict[str, float]:
        """The interval's means; resets the sums."""
        step, data = self.step / self.count, self.data / self.count
        if self.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:  # ru_maxrss is in KiB on Linux
            peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss0) / 1024
        self.step = self.data = 0.0
        self.count = 0
        return {"step_seconds": step, "data_seconds": data,
                "examples_per_second": batch_size / step, "peak_memory_mb": float(peak)}


def train_classifier(
    trial: Trial,
    model: nn.Module,
    train_data: Data,
    val_data: Data,
    hparams: Mapping[str, Any],
    *,
    default_batch_size: int = 64,
    train_eval_size: int | None = None,
    eval_batch_size: int | None = None,
    keep_best: int = 1,
    on_step: Callable[[int], None] | None = None,
    per_class: int | None = 100,
    val_subset_size: int | None = None,
) -> None:
    """Train ``model`` for ``trial.max_train_steps`` steps, reporting and checkpointing at every
    evaluation; resume from the trial's latest checkpoint if there is one.

    Args:
        trial: the running trial (lengths, seed, reports, checkpoints).
        model: maps a batch of ``train_data[0]`` to logits, ``[batch, classes]`` or
            ``[batch, positions, classes]``; freshly initialised (seed it before building it).
        train_data, val_data: ``(inputs, targets)`` tensors sharing their first dimension;
            targets are class indices of the logits' shape without the last dimension.
        hparams: the training hyperparameters of the module docstring's table (others are
            ignored here: the caller checks names and builds the model).
        default_batch_size: the batch size when ``hparams`` has no ``batch_size``.
        train_eval_size: evaluate ``train_*`` on this many training examples, evenly spaced
            (default: all).
        eval_batch_size: batch size of evaluation (default: the toolkit's, never below the
            training batch size).
        keep_best: how many of the best checkpoints to keep besides the latest.
        on_step: called with the number of steps done after every update (progress, tests).
        per_class: report ``val_classK_correct`` and ``val_classK_examples`` at every
            evaluation when there are at most this many classes (None: never).
        val_subset_size: evaluate ``val_*`` periodically on this many validation examples,
            evenly spaced, and on all of them too at ``max_train_steps`` as ``val_full_*``
            (with ``val_full_examples``): the ``eval_subset`` check compares the two.

    Raises:
        tunebook.errors.Infeasible: when the training loss or the gradient norm is not finite.
        ValueError: for an invalid hyperparameter value.
    """
    x_train, y_train = train_data
    batch_size = int_hparam(hparams, "batch_size", default_batch_size)
    label_smoothing = float_hparam(hparams, "label_smoothing", 0.0, high=1.0)
    grad_clip = None if hparams.get("grad_clip") is None else float_hparam(hparams, "grad_clip", 0)
    optimizer = make_optimizer(str(hparams.get("optimizer", "adam")), model.parameters(), hparams)
    # The optimizer knows its default learning rate; the schedule starts from the same one.
    base_lr = float(optimizer.param_groups[0]["lr"])
    schedule = from_hparams(hparams, trial.max_train_steps, default_learning_rate=base_lr)
    clipper = ClipTracker(grad_clip, keep_norms=1000)  # its counts cover every step
    batches = BatchOrder(len(x_train), batch_size, trial.seed)
    train_eval = even_subset(train_data, train_eval_size)
    val_eval = even_subset(val_data, val_subset_size)  # val_data itself when None
    checkpointer = Checkpointer(trial, keep_best=keep_best)
    step = checkpointer.restore(model, optimizer, clip=clipper)  # 0 on a fresh start
    if step:
        trial.log(f"resumed from the checkpoint at step {step}")

    # Unclipped norms of the updates since the previous evaluation: updates first+1, first+2...
    # They are reported at the evaluation, not update by update, so that a checkpoint (saved
    # right after the report) always covers exactly the norms in the store.
    first = step
    norms: list[float] = []
    timer = (_StepTimer(x_train.is_cuda) if str(hparams.get("step_timing", False)).lower()
             in ("true", "1") else None)
    described = step > 0  # the constants went with the first evaluation of an earlier attempt
    share = DataShare()  # the input pipeline's share of the step time: data_share
    model.train()
    while step < trial.max_train_steps:
        start = timer.now() if timer is not None else 0.0
        lr = schedule(step)
        set_lr(optimizer, lr)
        share.begin()
        index = batches(step)
        x_batch, y_batch = x_train[index], y_train[index]
        if timer is not None:
            fetched = timer.now()
            timer.data += fetched - start
        share.fetched()
        logits = model(x_batch)
        loss = F.cross_entropy(*_flat(logits, y_batch), label_smoothing=label_smoothing)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise trial.infeasible(f"training loss is {loss_value}", step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        norm = clipper.clip(model.parameters()).norm
        if not math.isfinite(norm):
            raise trial.infeasible(f"gradient norm is {norm}", step + 1)
        optimizer.step()
        if timer is not None:
            timer.step += timer.now() - start
            timer.count += 1
        share.end()
        step += 1
        norms.append(norm)
        if on_step is not None:
            on_step(step)

        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            train = evaluate(model, train_eval, eval_batch_size, cross_entropy_metrics,
                             train_batch_size=batch_size)
            val = evaluate(model, val_eval, eval_batch_size, cross_entropy_metrics,
                           train_batch_size=batch_size, per_class=per_class)
            extra = {"clip_fraction": clipper.fraction_clipped} if grad_clip is not None else {}
            if timer is not None:
                extra.update(timer.metrics(batch_size))
            extra.update(val.class_counts("val_"))
            if (data_share := share.take()) is not None:
                extra["data_share"] = data_share
            if val_eval is not val_data and step == trial.max_train_steps:
                full = evaluate(model, val_data, eval_batch_size, cross_entropy_metrics,
                                train_batch_size=batch_size)
                extra.update(full.prefixed("val_full_"),
                             **describe_labels(val_data[1], "val_full_", chance=False))
            if not described:
                extra.update(describe_labels(train_eval[1], "train_", chance=False))
                extra.update(describe_labels(val_eval[1], "val_"))
                described = True
            _report_norms(trial, first, norms[:-1])
            trial.report(step, **train.prefixed("train_"), **val.prefixed("val_"),
                         grad_norm=norms[-1], learning_rate=lr, **extra)
            first, norms = step, []
            checkpointer.save(step, model, optimizer, clip=clipper)

    if clipper.norms:
        # This trial's own late-training norms, for reading its log; the threshold to use is the
        # report's, per study over the best trials' whole training (it says so, to not
        # contradict it: late norms at a near-zero training loss can be tiny).
        trial.log(f"this trial's last {len(clipper.norms)} unclipped gradient norms: 90th "
                  f"percentile {clipper.threshold(0.9):.4g} (late training only; for grad_clip "
                  f"use the report's per-study threshold, the 90th percentile over the best "
                  f"trials' whole training)")
    if (finding := clipper.finding()) is not None:
        trial.log(finding)

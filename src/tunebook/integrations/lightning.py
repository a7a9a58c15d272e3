"""PyTorch Lightning in a tunebook trial: :class:`TunebookCallback` and :func:`trainer_kwargs`.

A Lightning training loop becomes a tunebook workload in about five lines::

    from tunebook.integrations.lightning import TunebookCallback, trainer_kwargs

    def train(hparams, trial):
        callback = TunebookCallback(trial)
        trainer = lightning.Trainer(callbacks=[callback], **trainer_kwargs(trial))
        trainer.fit(MyModule(**hparams), datamodule, ckpt_path=callback.ckpt_path)

What the callback does:

* every metric the module logs (``self.log("val_loss", ...)``) is reported under the name it was
  logged with, at the trainer's ``global_step``: validation metrics at the end of each validation
  run, training metrics logged on the step at every optimizer step, those logged on the epoch
  at each epoch's end (both: ``NAME_step`` and ``NAME_epoch``, as Lightning's loggers name them);
* ``grad_norm``: the global L2 norm of the gradients of **every** update, at step ``s`` for
  update ``s`` (1-based), read in ``on_before_optimizer_step``, the hook Lightning calls after the
  backward pass (and after unscaling in mixed precision) and before its own gradient clipping
  (``gradient_clip_val``): the unclipped norm the playbook asks to log;
* a checkpoint at every validation run, after its report: Lightning's own file
  (``trainer.save_checkpoint``) written inside a folder of :meth:`tunebook.Trial.checkpoint`, so
  it is published like every tunebook checkpoint (measurements flushed first, checksummed,
  renamed into place atomically); the newest two and the best by the objective are kept.
  :attr:`TunebookCallback.ckpt_path` is the newest intact one, for ``trainer.fit(...,
  ckpt_path=...)``: a killed trial resumes there, and the measurements past it (dropped when the
  trial restarts) are reported again, once;
* a training loss (``outputs["loss"]``) or gradient norm that is NaN or infinite stops training
  with ``trial.infeasible(...)``: the trial is recorded as diverged, not failed, like the
  built-in workloads' trials. A NaN or infinite objective is infeasible too (``Trial.report``).

Lightning restores the model, optimizer, schedulers and loop counters from its checkpoint, but not
the position inside a shuffled epoch: use :func:`trial_loader` for the training data (its batch
of step ``s`` is a pure function of the trial's seed and ``s``) and a resumed trial repeats its
uninterrupted curves exactly.

Lightning is imported only here (``pip install 'tunebook[lightning]'``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tunebook.execution.trial import Trial

try:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset, Sampler
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    missing = (exc.name or "lightning").split(".")[0]
    raise ImportError(f"tunebook.integrations.lightning needs PyTorch Lightning ({missing} is "
                      f"missing): pip install 'tunebook[lightning]'") from None

from tunebook.workloads.common import BatchOrder

__all__ = ["CHECKPOINT_FILE", "META_FILE", "TunebookCallback", "trainer_kwargs", "trial_loader"]

CHECKPOINT_FILE = "lightning.ckpt"
"""The name of Lightning's checkpoint file inside each of the trial's checkpoint folders."""

META_FILE = "meta.json"
"""Beside it: ``{"format", "step", "metric", "goal", "value"}``, the objective's value at the
checkpoint's step (None without a report there), as :class:`tunebook.torch.Checkpointer` writes
it: ``tunebook final-eval`` and retention rank checkpoints by it."""


def trainer_kwargs(trial: Trial, **overrides: Any) -> dict[str, Any]:
    """The ``lightning.Trainer`` arguments that make it follow the trial.

    ``max_steps=trial.max_train_steps``; validation every ``trial.eval_every`` optimizer steps
    counted across epochs (``val_check_interval``, ``check_val_every_n_epoch=None``; the
    callback also validates at ``max_steps`` when it is not a multiple); no epoch limit; no
    sanity validation before training (it would report nothing useful); no progress bar, no
    logger and no model summary (the trial's store and log are the record); Lightning's own
    checkpointing off (:class:`TunebookCallback` checkpoints into the trial's folder);
    ``default_root_dir`` inside the trial's folder; deterministic algorithms where PyTorch has
    them (``deterministic="warn"``: a warning, not an error, for an op without one).
    ``overrides`` replace or add any of them (``logger=TensorBoardLogger(...)`` to also log
    elsewhere). A step is one batch: with ``accumulate_grad_batches`` Lightning would count
    ``val_check_interval`` in batches and ``max_steps`` in optimizer steps.
    """
    kwargs: dict[str, Any] = {
        "max_steps": trial.max_train_steps,
        "max_epochs": -1,
        "val_check_interval": trial.eval_every,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "default_root_dir": str(trial.dir / "lightning"),
        "deterministic": "warn",
    }
    kwargs.update(overrides)
    return kwargs


class _StepBatches(Sampler[list[int]]):
    """Batch indices as a pure function of ``(seed, step)`` (:class:`BatchOrder`).

    Each iteration is one Lightning epoch of ``len(self)`` steps; the first one starts at
    ``trial.start_step`` (the step Lightning resumes at), so a resumed epoch gets the batches the
    uninterrupted run had there, not the epoch's first ones again.
    """

    def __init__(self, trial: Trial, n: int, batch_size: int) -> None:
        self.order = BatchOrder(n, batch_size, trial.seed)
        self.trial = trial
        self.position: int | None = None  # the step of the next batch

    def __len__(self) -> int:
        return self.order.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        if self.position is None:
            self.position = self.trial.start_step
        per_epoch = self.order.steps_per_epoch
        end = (self.position // per_epoch + 1) * per_epoch
        while self.position < end:
            step = self.position
            self.position += 1
            yield self.order(step).tolist()


class _TrialLoader(DataLoader[Any]):
    """A DataLoader whose position is the trial's step (see :func:`trial_loader`)."""

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save: the position is the global step, which Lightning restores."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to load (see :meth:`state_dict`)."""


def trial_loader(trial: Trial, dataset: Dataset[Any], batch_size: int,
                 **kwargs: Any) -> DataLoader[Any]:
    """A training DataLoader that resumes mid-epoch exactly.

    The batch of step ``s`` holds the examples of :class:`tunebook.workloads.common.BatchOrder`
    (a permutation of ``dataset`` per epoch seeded by the trial's seed, the incomplete last batch
    dropped), so it depends on nothing but ``s``: a trial resumed from a checkpoint at step ``s``
    continues with the very batches an uninterrupted run had. ``kwargs`` go to ``DataLoader``
    (``num_workers``, ``collate_fn``...; not ``shuffle``, ``sampler`` or ``batch_size``). It
    assumes one batch per optimizer step (no ``accumulate_grad_batches``): the step it resumes
    at is the trainer's ``global_step``.
    """
    sampler = _StepBatches(trial, len(dataset), batch_size)  # type: ignore[arg-type]
    return _TrialLoader(dataset, batch_sampler=sampler, **kwargs)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number metrics of a Lightning metrics mapping, as floats."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _loop_metrics(trainer: pl.Trainer, on_step: bool) -> dict[str, float]:
    """What the running loop (training or validation) logged: its step-level values with
    ``on_step``, else its epoch-level (aggregated) ones. ``trainer.callback_metrics`` mixes every
    loop's latest values, so it would report stale validation values at training steps.

    A metric logged both on the step and on the epoch is reported as Lightning logs it,
    ``NAME_step`` and ``NAME_epoch``, not also as ``NAME`` (which is either, depending on when it
    is read: two different values at one step)."""
    results = getattr(trainer, "_results", None)  # the active loop's result collection
    if results is None or not hasattr(results, "metrics"):
        metrics = _scalars(trainer.callback_metrics)
    else:
        metrics = _scalars(results.metrics(on_step)["callback"])
    suffix = "_step" if on_step else "_epoch"
    return {name: value for name, value in metrics.items() if name + suffix not in metrics}


class TunebookCallback(pl.Callback):
    """Report, checkpoint and resume a Lightning run through a tunebook ``trial``.

    Args:
        trial: the running trial the workload was given.
        checksums: record the sha256 of each checkpoint (:meth:`tunebook.Trial.checkpoint`), so
            a corrupt latest copy is set aside and the previous one used.
        keep_best: how many of the best checkpoints by the experiment's objective to keep (the
            playbook selects the best checkpoint retrospectively; ``tunebook final-eval`` uses
            the one at the trial's best step).
        keep_latest: how many of the newest to keep (2: a fallback should the newest be
            corrupt).
        quiet: silence Lightning's informational messages (hardware found, tips, "max_steps
            reached"), which would otherwise print over ``tunebook run``'s progress for every
            trial; its warnings still show.
    """

    def __init__(self, trial: Trial, *, checksums: bool = True, quiet: bool = True,
                 keep_best: int = 1, keep_latest: int = 2) -> None:
        if quiet:
            logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        if keep_best < 0 or keep_latest < 1:
            raise ValueError(f"keep_best must be >= 0 and keep_latest >= 1, got {keep_best} "
                             f"and {keep_latest}")
        self.trial = trial
        self.checksums = checksums
        self.keep_best = keep_best
        self.keep_latest = keep_latest
        self._validated_at: int | None = None
        self._resume_logged = False
        self._checkpointed_at: int | None = None

    @property
    def ckpt_path(self) -> str | None:
        """Lightning's checkpoint file of the trial's newest intact checkpoint, or None for a
        fresh start: pass it as ``trainer.fit(..., ckpt_path=callback.ckpt_path)``."""
        found = self.trial.restore_point()  # verifies checksums, rewinds past a corrupt one
        if found is None:
            return None
        path = Path(found[1]) / CHECKPOINT_FILE
        if not path.is_file():
            return None
        if not self._resume_logged:
            self._resume_logged = True
            self.trial.log(f"resuming from Lightning's checkpoint at step {found[0]}")
        return str(path)

    # ----------------------------------------------------------------- training steps
    def _check_loss(self, loss: Any, step: int) -> None:
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            value = float(loss.detach().item())
            if not math.isfinite(value):
                raise self.trial.infeasible(f"training loss is {value}", step)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        """Stop a diverged trial before its NaN loss reaches the gradients."""
        self._check_loss(loss, trainer.global_step + 1)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        """Record the unclipped global gradient norm: Lightning clips after this hook."""
        grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        norm = (float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
            if grads else 0.0)
        step = trainer.global_step + 1  # the update about to be applied, 1-based
        if not math.isfinite(norm):
            if getattr(trainer.precision_plugin, "scaler", None) is not None:
                return  # float16's loss scaler skips this update and lowers its scale
            raise self.trial.infeasible(f"gradient norm is {norm}", step)
        self.trial.report(step, grad_norm=norm)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Report the step's training metrics; stop a diverged trial; ask Lightning to validate
        at ``max_steps`` when it is not a multiple of the validation interval."""
        step = trainer.global_step
        self._check_loss(outputs.get("loss") if isinstance(outputs, Mapping) else outputs, step)
        metrics = _loop_metrics(trainer, on_step=True)
        if metrics:
            self.trial.report(step, **metrics)
        if trainer.max_steps > 0 and step >= trainer.max_steps and self._validated_at != step:
            # Lightning validates on its interval only; stopping asks it for one more run.
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report what the training step logged with ``on_epoch=True`` (``NAME_epoch``)."""
        metrics = _loop_metrics(trainer, on_step=False)
        if metrics:
            self.trial.report(trainer.global_step, **metrics)

    # ----------------------------------------------------------------- validation
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the validation metrics at the global step, then checkpoint (after the report,
        so the checkpoint covers every measurement up to its step)."""
        if trainer.sanity_checking or trainer.state.fn != "fit":
            # trainer.validate(model, test_loader) after fit must not land in the val_ curves:
            # a test number shown as validation is what the playbook forbids.
            return
        step = trainer.global_step
        self._validated_at = step
        metrics = _loop_metrics(trainer, on_step=False)
        if metrics:
            self.trial.report(step, **metrics)
        if step > 0 and self._checkpointed_at != step:
            self._checkpointed_at = step
            self._save(trainer, step)

    # ----------------------------------------------------------------- checkpoints
    def _save(self, trainer: pl.Trainer, step: int) -> None:
        """Publish Lightning's checkpoint of ``step`` with its objective value, then prune."""
        metric = self.trial.objective
        latest = self.trial.latest.get(metric) if metric is not None else None
        value = latest[1] if latest is not None and latest[0] == step else None
        with self.trial.checkpoint(step, prune=False, checksums=self.checksums) as folder:
            trainer.save_checkpoint(folder / CHECKPOINT_FILE, weights_only=False)
            meta = {"format": 1, "step": step, "metric": metric, "goal": self.trial.goal,
                    "value": value if value is not None and math.isfinite(value) else None}
            (folder / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        self._prune(step)

    def _prune(self, current: int) -> None:
        """Keep the newest ``keep_latest`` and the ``keep_best`` best by the objective."""
        self.trial.retain_checkpoints(current, keep_latest=self.keep_latest,
                                      keep_best=self.keep_best, metric=self.trial.objective,
                                      goal=self.trial.goal)

"""Hugging Face ``Trainer`` inside a tunebook trial: metrics, gradient norms, checkpoints.

A workload whose training loop is ``transformers.Trainer`` needs five lines::

    from tunebook.integrations.transformers import TunebookCallback, training_arguments

    def train(hparams, trial):
        args = training_arguments(trial, learning_rate=hparams["learning_rate"])
        callback = TunebookCallback(trial)
        trainer = Trainer(model=..., args=args, train_dataset=..., eval_dataset=...,
                          callbacks=[callback])
        callback.train(trainer)  # trainer.train(resume_from_checkpoint=callback.resume_from)

What the callback reports, at ``state.global_step`` (the number of optimizer updates done):

* every training log (``on_log``), under the Trainer's names except ``loss``, which becomes
  ``train_loss`` (the name tunebook's checks read): with :func:`training_arguments`' logging
  every update, ``train_loss`` is the loss of each update and ``grad_norm`` its gradient norm
  *before clipping* (the Trainer computes it on every update, unclipped, and logs the last one
  at each logging step: with ``logging_steps`` above 1 it is the norm of every
  ``logging_steps``-th update only, and ``train_loss`` the mean over the interval);
  ``learning_rate`` and ``epoch`` as logged;
* every evaluation metric (``on_evaluate``) under the Trainer's own names: ``eval_loss`` and
  ``eval_<name>`` for each value of ``compute_metrics``. The experiment's objective names them
  (``objective: {metric: eval_loss, goal: minimize}``);
* never wall-clock values (``*_runtime``, ``*_per_second``: a resumed trial would not reproduce
  them; ``TunebookCallback(trial, timing=True)`` keeps them) nor the end-of-training summary
  (its ``train_loss`` averages only the current attempt). A metric already reported at the
  same step (an evaluation reaches ``on_log`` too) is not reported twice.

A training loss or gradient norm that is NaN or infinite raises ``trial.infeasible``: the trial
is recorded as diverged (:func:`training_arguments` turns off the Trainer's
``logging_nan_inf_filter``, which would hide a NaN loss). A NaN objective does the same through
:meth:`tunebook.Trial.report`.

Checkpoints: the Trainer writes its own checkpoint (weights, optimizer, scheduler, RNG states,
``trainer_state.json``) in ``output_dir``; ``on_save`` publishes that folder as the trial's
checkpoint of its step with :meth:`tunebook.Trial.publish_checkpoint` (measurements flushed
first, sha256 manifest, fsync, one atomic rename), adding ``meta.json`` with the objective's
value at that step. The ``keep_best`` best checkpoints by the objective and the newest
``keep_latest`` are kept (so :func:`tunebook.best_checkpoint` finds the best one).
:attr:`TunebookCallback.resume_from` is the newest intact checkpoint (a corrupt copy is set
aside and the trial rewound to an older one), the value to pass to
``trainer.train(resume_from_checkpoint=...)``; the Trainer restores everything from it and the
curves continue exactly where the killed attempt's checkpoint left them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from tunebook.execution.trial import Trial

_HINT = "pip install 'tunebook[transformers]'"
try:
    from transformers import TrainerCallback, TrainingArguments
except ImportError as exc:  # one line, with the install command
    raise ImportError(f"tunebook.integrations.transformers needs Hugging Face Transformers "
                      f"({exc}): {_HINT}") from None
if importlib.util.find_spec("accelerate") is None:  # the Trainer needs it on PyTorch
    raise ImportError(f"tunebook.integrations.transformers needs accelerate (the Trainer's "
                      f"PyTorch backend): {_HINT}")

__all__ = ["META_FILE", "STAGING_DIR", "TunebookCallback", "training_arguments"]

STAGING_DIR = "trainer"
"""The Trainer's ``output_dir`` inside the trial folder: where it writes a checkpoint before the
callback publishes it."""

META_FILE = "meta.json"
"""Written in each published checkpoint: ``{"format", "step", "metric", "goal", "value"}``, the
objective's value at the checkpoint's step (how the best checkpoint is found)."""

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")  # the Trainer's folder name (PREFIX_CHECKPOINT_DIR)
_TIMING = re.compile(r"(_runtime|_per_second)$")
_TRIAL_KEYS = ("max_steps", "output_dir")  # belong to the trial: not overridable


def training_arguments(trial: Trial, **overrides: Any) -> TrainingArguments:
    """``TrainingArguments`` that run the trial as the experiment says; ``overrides`` win.

    Set here: ``max_steps = trial.max_train_steps``; evaluation and checkpoints every
    ``trial.eval_every`` updates (``eval_strategy="steps"``, ``save_strategy="steps"``; the
    Trainer also evaluates and saves at ``max_steps``); a log of every update
    (``logging_steps=1``: per-update ``train_loss`` and unclipped ``grad_norm``) without its
    NaN filter; ``seed`` and ``data_seed`` from ``trial.seed``; ``output_dir`` in the trial
    folder (:data:`STAGING_DIR`); no reporting integrations (``report_to=[]``), no progress
    bars, warnings only, data loading in the training process (``dataloader_num_workers=0``;
    tunebook's worker already runs torch on one CPU thread).

    Raises:
        ValueError: for an override of ``max_steps`` or ``output_dir`` (the trial's), or of
            ``load_best_model_at_end`` to True (tunebook selects the best checkpoint
            retrospectively; the Trainer would look for it where it no longer is).
    """
    for key in _TRIAL_KEYS:
        if key in overrides:
            raise ValueError(f"training_arguments: {key} is set by the trial (max_train_steps, "
                             f"its folder); got {key}={overrides[key]!r}")
    if overrides.get("load_best_model_at_end"):
        raise ValueError("training_arguments: load_best_model_at_end=True is not supported: "
                         "tunebook keeps the best checkpoint (tunebook.best_checkpoint)")
    seed = trial.seed % 2**32  # numpy's seed range; trial seeds are 63-bit
    kwargs: dict[str, Any] = {
        "output_dir": str(trial.dir / STAGING_DIR),
        "max_steps": trial.max_train_steps,
        "eval_strategy": "steps",
        "eval_steps": trial.eval_every,
        "save_strategy": "steps",
        "save_steps": trial.eval_every,
        "logging_strategy": "steps",
        "logging_steps": 1,
        "logging_nan_inf_filter": False,
        "seed": seed,
        "data_seed": seed,
        "report_to": [],
        "disable_tqdm": True,
        "log_level": "warning",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (a tensor's item included), else None."""
    if isinstance(value, bool):
        return None
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return float(value) if isinstance(value, int | float) else None


class TunebookCallback(TrainerCallback):
    """Report a ``Trainer``'s metrics to a tunebook trial and keep its checkpoints in the trial.

    See the module docstring for what is reported under which name, and how checkpoints are
    published and restored.

    Args:
        trial: the running trial (the workload's second argument).
        keep_best: how many of the best checkpoints by the objective to keep (0: none beyond
            the newest).
        keep_latest: how many of the newest checkpoints to keep (at least 1: the one to resume
            from).
        timing: also report wall-clock metrics (``eval_runtime``, ``*_per_second``).

    Attributes:
        resume_from: the folder of the newest intact checkpoint (as a string), or None for a
            fresh start: pass it to ``trainer.train(resume_from_checkpoint=...)``.
    """

    def __init__(self, trial: Trial, *, keep_best: int = 1, keep_latest: int = 1,
                 timing: bool = False) -> None:
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise ValueError(f"keep_best must be a non-negative integer, got {keep_best!r}")
        if isinstance(keep_latest, bool) or not isinstance(keep_latest, int) or keep_latest < 1:
            raise ValueError(f"keep_latest must be a positive integer, got {keep_latest!r}")
        self.trial = trial
        self.keep_best = keep_best
        self.keep_latest = keep_latest
        self.timing = timing
        self._sign = 1.0 if trial.goal == "minimize" else -1.0  # lower is better after it
        self._reported: dict[str, int] = {}  # metric -> last step it was reported at
        # Reports only between on_train_begin and on_train_end: trainer.evaluate(test_set)
        # after training logs and evaluates too, and a test number must never enter the
        # validation curves.
        self._training = False
        found = trial.restore_point()  # verified; rewinds past a corrupt newest copy
        self.resume_from: str | None = str(found[1]) if found is not None else None
        if found is not None:
            trial.log(f"resuming the Trainer from the checkpoint at step {found[0]}")

    def train(self, trainer: Any) -> Any:
        """``trainer.train(resume_from_checkpoint=self.resume_from)``, quietly; returns its
        result.

        With ``disable_tqdm`` (as :func:`training_arguments` sets it) the Trainer prints every
        log line instead of a bar: that printer is removed (the store has the values). This
        callback is added if ``trainer`` does not have it.
        """
        from transformers.trainer_callback import PrinterCallback

        if trainer.args.disable_tqdm:
            trainer.remove_callback(PrinterCallback)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return trainer.train(resume_from_checkpoint=self.resume_from)

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any,
                       **kwargs: Any) -> None:
        """Refuse what cannot work, and clear checkpoints a killed attempt left unpublished."""
        self._training = True
        if args.load_best_model_at_end:
            raise ValueError("TunebookCallback: load_best_model_at_end=True is not supported: "
                             "tunebook keeps the best checkpoint (tunebook.best_checkpoint)")
        if args.logging_steps != 1:
            self.trial.log(f"logging_steps={args.logging_steps}: grad_norm is the unclipped "
                           f"norm of every {args.logging_steps}th update only")
        if args.disable_tqdm:  # nor the bars of writing a checkpoint's shards
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        staging = Path(args.output_dir or ".").resolve()
        if staging.is_relative_to(self.trial.dir.resolve()) and staging.is_dir():
            for folder in staging.iterdir():
                if folder.is_dir() and _CHECKPOINT.match(folder.name):
                    shutil.rmtree(folder, ignore_errors=True)

    def on_log(self, args: TrainingArguments, state: Any, control: Any,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Report a training log; a non-finite loss or gradient norm makes the trial
        infeasible."""
        if not logs or "train_runtime" in logs or not self._training:
            return  # the end-of-training summary, or an evaluation after training: no curve
        step = int(state.global_step)
        metrics = {("train_loss" if name == "loss" else name): value
                   for name, value in logs.items()}
        for name in ("train_loss", "grad_norm"):
            value = _number(metrics.get(name))
            if value is not None and not math.isfinite(value):
                raise self.trial.infeasible(f"{name} is {value} at step {step}", step)
        self._report(step, metrics)

    def on_evaluate(self, args: TrainingArguments, state: Any, control: Any,
                    metrics: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Report an evaluation's metrics under the Trainer's names (``eval_loss``...), during
        training only: ``trainer.evaluate(test_set)`` afterwards is a final evaluation and must
        not land in the validation curves."""
        if metrics and self._training:
            self._report(int(state.global_step), metrics)

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any,
                     **kwargs: Any) -> None:
        """Training is over: later evaluations (a test set) are not reported."""
        self._training = False

    def on_save(self, args: TrainingArguments, state: Any, control: Any,
                **kwargs: Any) -> None:
        """Publish the checkpoint the Trainer has just written, then apply the retention."""
        step = int(state.global_step)
        folder = Path(args.output_dir or ".") / f"checkpoint-{step}"
        if not folder.is_dir():
            return
        value = self._value_at(step)
        meta = {"format": 1, "step": step, "metric": self.trial.objective,
                "goal": self.trial.goal, "value": value}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        self.trial.publish_checkpoint(step, folder, prune=False, checksums=True)
        self._prune(step)

    # ------------------------------------------------------------------ helpers
    def _report(self, step: int, metrics: dict[str, Any]) -> None:
        values: dict[str, float] = {}
        for name, value in metrics.items():
            number = _number(value)
            if number is None or self._reported.get(name) == step:
                continue
            if not self.timing and _TIMING.search(name):
                continue
            values[name] = number
        if values:
            self._reported.update(dict.fromkeys(values, step))
            self.trial.report(step, **values)

    def _value_at(self, step: int) -> float | None:
        """The objective reported at exactly ``step`` in this attempt, if finite."""
        latest = self.trial.latest.get(self.trial.objective or "")
        if latest is None or latest[0] != step or not math.isfinite(latest[1]):
            return None
        return latest[1]

    def _prune(self, current: int) -> None:
        """Keep the newest ``keep_latest`` and the ``keep_best`` best checkpoints up to
        ``current``; later ones belong to an abandoned attempt."""
        self.trial.retain_checkpoints(current, keep_latest=self.keep_latest,
                                      keep_best=self.keep_best, metric=self.trial.objective,
                                      goal=self.trial.goal)

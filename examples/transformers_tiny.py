"""A Hugging Face ``Trainer`` workload: a tiny BERT classifies scikit-learn's digits.

Nothing is downloaded: the model is built from a ``BertConfig`` (2 layers, hidden size 32,
randomly initialised) and the data ship with scikit-learn. Each 8x8 digit is read as a
sequence of 65 tokens: a classification token (id 17), then one per pixel, its intensity 0-16
the token id (a vocabulary of 18); the label is the digit. The experiment
(``transformers_tiny.yaml``) tunes the learning rate.

Hyperparameters: ``learning_rate`` (required), ``batch_size`` (32), ``warmup_steps`` (0),
``schedule`` (the Trainer's ``lr_scheduler_type``, ``linear``), ``grad_clip`` (its
``max_grad_norm``, 1.0; 0 for none) and ``dropout`` (0.0).

The tunebook part is :func:`train` and the first line of :func:`make_trainer`
(``training_arguments``); the rest is ordinary Transformers code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, EvalPrediction, Trainer
from transformers import set_seed as hf_set_seed

from tunebook import Trial
from tunebook.integrations.transformers import TunebookCallback, training_arguments

# tunebook names the extra to install when one of these is missing.
REQUIRES = {"transformers": "transformers", "sklearn": "demo"}

VALIDATION = 360  # the last 360 of the 1,797 digits
CLS = 17  # the token whose final state the classifier reads (BERT's pooler takes position 0)


class Digits(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Digits as token sequences: ``{"input_ids": [65], "labels": []}``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        tokens = torch.as_tensor(images, dtype=torch.long)  # intensities 0..16
        cls = torch.full((len(tokens), 1), CLS, dtype=torch.long)
        self.input_ids = torch.cat([cls, tokens], dim=1)
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def datasets() -> tuple[Digits, Digits]:
    """The training and validation sets (a fixed split)."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = images.astype(np.int64)
    return (Digits(images[:-VALIDATION], labels[:-VALIDATION]),
            Digits(images[-VALIDATION:], labels[-VALIDATION:]))


def error_rate(prediction: EvalPrediction) -> dict[str, float]:
    """``eval_error``: the share of validation digits misclassified."""
    logits = prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"error": float(np.mean(np.argmax(logits, axis=-1) != prediction.label_ids))}


def make_trainer(hparams: dict[str, Any], trial: Trial, callbacks: list[Any]) -> Trainer:
    """The Trainer of one trial: the model, its arguments (the learning rate from
    ``hparams``) and the data."""
    args = training_arguments(
        trial, learning_rate=float(hparams["learning_rate"]),
        per_device_train_batch_size=int(hparams.get("batch_size", 32)),
        per_device_eval_batch_size=VALIDATION, warmup_steps=int(hparams.get("warmup_steps", 0)),
        lr_scheduler_type=str(hparams.get("schedule", "linear")),
        max_grad_norm=float(hparams.get("grad_clip", 1.0)), use_cpu=True)
    hf_set_seed(args.seed)  # the initial weights depend on the trial's seed only
    dropout = float(hparams.get("dropout", 0.0))  # BERT's default 0.1 slows this tiny one
    # Initial weights of std 0.2, not BERT's 0.02: at hidden size 32 the small ones learn
    # several times slower (eval_error 0.66 instead of 0.24 after 300 steps at 3e-3).
    config = BertConfig(vocab_size=18, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=65, num_labels=10, initializer_range=0.2,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    train_set, val_set = datasets()
    return Trainer(model=BertForSequenceClassification(config), args=args,
                   train_dataset=train_set, eval_dataset=val_set,
                   compute_metrics=error_rate, callbacks=callbacks)


def train(hparams: dict[str, Any], trial: Trial) -> None:
    """The workload: ``workload: transformers_tiny:train``."""
    callback = TunebookCallback(trial)
    trainer = make_trainer(hparams, trial, [callback])
    callback.train(trainer)  # trainer.train(resume_from_checkpoint=callback.resume_from), quiet

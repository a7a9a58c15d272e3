"""A PyTorch Lightning workload: a small MLP on scikit-learn's digits, tuned by tunebook.

The training code is ordinary Lightning (a ``LightningModule`` that logs ``train_loss``,
``val_loss`` and ``val_error``); :func:`train` hands it to tunebook with
:class:`tunebook.integrations.lightning.TunebookCallback`: metrics at the trainer's global step,
the unclipped gradient norm of every update, checkpoints in the trial's folder (a killed trial
resumes), NaN loss -> infeasible. ``lightning_digits.yaml`` searches the learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tunebook.integrations.lightning import (
    CHECKPOINT_FILE,
    TunebookCallback,
    trainer_kwargs,
    trial_loader,
)
from tunebook.workloads.digits import load_digits_split, load_digits_test

REQUIRES = {"lightning": "lightning", "sklearn": "demo"}


class DigitsMLP(pl.LightningModule):
    """One hidden layer of ``width`` ReLU units; Adam at ``learning_rate``."""

    def __init__(self, learning_rate: float = 1e-3, width: int = 64) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_error", (logits.argmax(dim=1) != y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


def fit(hparams: dict[str, Any], trial: Any, callbacks: Sequence[pl.Callback] = (),
        **overrides: Any) -> None:
    """Train :class:`DigitsMLP` for the trial (extra ``callbacks`` and Trainer ``overrides``
    are for tests)."""
    torch.set_num_threads(1)
    pl.seed_everything(trial.seed, verbose=False)
    x_train, y_train, x_val, y_val = load_digits_split()
    hparams = dict(hparams)
    batch_size = int(hparams.pop("batch_size", 64))
    model = DigitsMLP(**hparams)
    train_data = trial_loader(trial, TensorDataset(x_train, y_train), batch_size)
    val_data = DataLoader(TensorDataset(x_val, y_val), batch_size=len(x_val))

    callback = TunebookCallback(trial)
    trainer = pl.Trainer(callbacks=[callback, *callbacks],
                         **trainer_kwargs(trial, accelerator="cpu", **overrides))
    trainer.fit(model, train_data, val_data, ckpt_path=callback.ckpt_path)


def train(hparams: dict[str, Any], trial: Any) -> None:
    """The workload ``lightning_digits:train``."""
    fit(hparams, trial)


def train_final_eval(hparams: dict[str, Any], trial: Any) -> dict[str, float]:
    """``tunebook final-eval``: the trial's selected checkpoint on the digits test set."""
    torch.set_num_threads(1)
    hparams = dict(hparams)
    hparams.pop("batch_size", None)
    model = DigitsMLP(**hparams)
    ckpt = torch.load(trial.checkpoint / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    x_test, y_test = load_digits_test()
    with torch.no_grad():
        logits = model.net(x_test)
    return {"test_loss": float(F.cross_entropy(logits, y_test)),
            "test_error": float((logits.argmax(dim=1) != y_test).float().mean()),
            "test_examples": float(len(y_test))}

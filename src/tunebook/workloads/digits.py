"""An MLP on scikit-learn's digits (8x8 images, 10 classes, bundled with scikit-learn).

Hyperparameters (all optional, defaults in brackets):
    num_layers [1]        hidden layers
    width [128]           units per hidden layer
    activation [relu]     relu, gelu or tanh
    learning_rate [1e-3]  Adam's learning rate
    beta1 [0.9]           Adam's beta1
    beta2 [0.999]         Adam's beta2
    batch_size [64]       training batch size

Reports ``train_loss``, ``train_error``, ``val_loss``, ``val_error`` and ``learning_rate`` every
``eval_every`` steps, and checkpoints at each evaluation so a killed trial resumes exactly where
it stopped (the batch order is a function of the step, the RNG state is saved).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from tunebook.trial import Trial

__all__ = ["load_digits_split", "train_mlp"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@functools.cache
def load_digits_split(val_fraction: float = 1 / 3) -> tuple[torch.Tensor, ...]:
    """Standardised train/validation tensors; the split is fixed (seed 0) for every trial."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def build_mlp(num_layers: int, width: int, activation: str, n_in: int = 64,
              n_out: int = 10) -> nn.Module:
    """A plain MLP."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(int(num_layers)):
        layers += [nn.Linear(d, int(width)), _ACTIVATIONS[activation]()]
        d = int(width)
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


def _batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    # The batch of a step is a pure function of (seed, step): resuming needs no data state.
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[k * batch_size:(k + 1) * batch_size]


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    error = (logits.argmax(1) != y).float().mean().item()
    model.train()
    return loss, error


def train_mlp(hparams: dict[str, Any], trial: Trial) -> None:
    """Train the MLP for ``trial.max_train_steps`` steps, evaluating every ``eval_every``."""
    x_train, y_train, x_val, y_val = load_digits_split()
    torch.manual_seed(trial.seed)
    model = build_mlp(hparams.get("num_layers", 1), hparams.get("width", 128),
                      hparams.get("activation", "relu"))
    lr = float(hparams.get("learning_rate", 1e-3))
    opt = torch.optim.Adam(model.parameters(), lr=lr,
                           betas=(float(hparams.get("beta1", 0.9)),
                                  float(hparams.get("beta2", 0.999))))
    batch_size = int(hparams.get("batch_size", 64))
    step = 0
    latest = trial.latest_checkpoint()
    if latest is not None:
        state = torch.load(latest[1] / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step = latest[0]
    while step < trial.max_train_steps:
        idx = _batch_indices(len(x_train), batch_size, step, trial.seed)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        step += 1
        if not torch.isfinite(loss):
            raise trial.infeasible(f"training loss is {loss.item()}", step)
        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            train_loss, train_error = _evaluate(model, x_train, y_train)
            val_loss, val_error = _evaluate(model, x_val, y_val)
            trial.report(step, train_loss=train_loss, train_error=train_error,
                         val_loss=val_loss, val_error=val_error, learning_rate=lr)
            with trial.checkpoint(step) as folder:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "rng": torch.get_rng_state()}, folder / "state.pt")

"""A tiny character-level transformer on text that ships with Python (``pydoc_data.topics``).

The text is the interpreter's own help topics (``help("if")`` and friends: about 460 KB of
English prose about Python), joined in sorted topic order and encoded as UTF-8 bytes, so the
vocabulary is the 256 byte values whatever the Python version (the text itself changes between
Python versions: compare trials run under one). The first 90% is the training text, the last 10%
the validation text. A training example is any window of ``context_length`` bytes (every offset
is one example) with the next byte at each position as its target; the validation set is 256
non-overlapping windows evenly spaced through the validation text, and ``train_*`` metrics use
256 training windows evenly spaced through the training text. Loading is cached per process.

The model is a decoder-only, pre-LayerNorm transformer: learned token and position embeddings,
``num_layers`` blocks of causal multi-head self-attention and a GELU MLP with residual
connections, a final LayerNorm and a linear read-out to 256 logits. Small enough to train a few
hundred steps in seconds on one CPU thread, and the kind of model that needs learning-rate
warmup (see ``examples/text_warmup.yaml``).

Hyperparameters of the model:

==================  =======  ============================================================
name                default  meaning
==================  =======  ============================================================
``num_layers``      2        transformer blocks
``width``           64       model dimension (``d_model``); a multiple of ``num_heads``
``num_heads``       4        attention heads
``mlp_ratio``       4        hidden units of each block's MLP, as a multiple of ``width``
``context_length``  64       bytes per window (positions predicted per example)
``dropout``         0.0      dropout on embeddings, attention weights and residual branches
``batch_size``      16       training batch size (windows)
==================  =======  ============================================================

and every training hyperparameter of :mod:`tunebook.workloads.common` (``optimizer`` [adam],
``learning_rate``, ``warmup_steps``, ``schedule``, ``weight_decay``, ``grad_clip``,
``label_smoothing``...); any other name is refused.

Reports ``train_loss``, ``train_error``, ``val_loss``, ``val_error`` (cross-entropy per byte in
nats and the next-byte error rate, i.e. the next-character error rate for the mostly ASCII
text) and ``learning_rate`` at every evaluation, ``grad_norm`` (unclipped) at every update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunebook.execution.trial import Trial
from tunebook.workloads.common import (
    TRAINING_HPARAMS,
    check_hparams,
    even_subset,
    float_hparam,
    int_hparam,
    train_classifier,
)

__all__ = ["EVAL_WINDOWS", "HPARAMS", "VOCAB_SIZE", "CharTransformer", "load_text",
           "train_transformer", "windows"]

REQUIRES = {"torch": "torch"}
"""Packages this workload needs (import name -> the tunebook extra that installs them), checked
when it is loaded, before any trial starts."""

HPARAMS = TRAINING_HPARAMS | {"num_layers", "width", "num_heads", "mlp_ratio", "context_length",
                              "dropout"}
"""Every hyperparameter name :func:`train_transformer` reads."""

VOCAB_SIZE = 256
"""Tokens are bytes."""

EVAL_WINDOWS = 256
"""How many windows the validation set and the training-set evaluation hold."""


@functools.cache
def load_text(val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation byte streams (int64 tensors of byte values)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics)).encode("utf-8")
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8).to(torch.int64)
    split = int(len(data) * (1 - val_fraction))
    return data[:split], data[split:]


def windows(stream: torch.Tensor, context_length: int, stride: int = 1
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of every window of ``context_length`` tokens starting at a multiple
    of ``stride``; the targets are the inputs shifted by one token. Views, not copies."""
    inputs = stream[:-1].unfold(0, context_length, stride)
    targets = stream[1:].unfold(0, context_length, stride)
    return inputs, targets


class _SelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)
                   for t in self.qkv(x).split(width, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(batch, length, width))
        return out


class _Block(nn.Module):
    def __init__(self, width: int, num_heads: int, mlp_ratio: int, dropout: float,
                 residual_std: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = _SelfAttention(width, num_heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        mlp_out = nn.Linear(mlp_ratio * width, width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), mlp_out)
        self.drop = nn.Dropout(dropout)
        # Residual branches start small, so that depth does not inflate the residual stream.
        for layer in (self.attention.out, mlp_out):
            nn.init.normal_(layer.weight, std=residual_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        out: torch.Tensor = x + self.drop(self.mlp(self.norm2(x)))
        return out


class CharTransformer(nn.Module):
    """A decoder-only transformer over bytes: ``[batch, length]`` tokens to
    ``[batch, length, 256]`` next-token logits."""

    def __init__(self, num_layers: int = 2, width: int = 64, num_heads: int = 4,
                 mlp_ratio: int = 4, context_length: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width must be a multiple of num_heads, got width={width} and "
                             f"num_heads={num_heads}")
        self.token = nn.Embedding(VOCAB_SIZE, width)
        self.position = nn.Embedding(context_length, width)
        self.drop = nn.Dropout(dropout)
        residual_std = 0.02 / math.sqrt(2 * num_layers)
        self.blocks = nn.Sequential(*(_Block(width, num_heads, mlp_ratio, dropout, residual_std)
                                      for _ in range(num_layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB_SIZE)
        for embedding in (self.token, self.position):
            nn.init.normal_(embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every position of ``tokens``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.token(tokens) + self.position(positions))
        logits: torch.Tensor = self.head(self.norm(self.blocks(x)))
        return logits


def train_transformer(hparams: dict[str, Any], trial: Trial, *,
                      on_step: Callable[[int], None] | None = None) -> None:
    """Train the transformer for ``trial.max_train_steps`` steps (see the module docstring)."""
    check_hparams(hparams, HPARAMS)
    context_length = int_hparam(hparams, "context_length", 64, minimum=2)
    train_stream, val_stream = load_text()
    train_data = windows(train_stream, context_length)
    val_data = even_subset(windows(val_stream, context_length, stride=context_length),
                           EVAL_WINDOWS)
    torch.manual_seed(trial.seed)
    model = CharTransformer(num_layers=int_hparam(hparams, "num_layers", 2),
                            width=int_hparam(hparams, "width", 64),
                            num_heads=int_hparam(hparams, "num_heads", 4),
                            mlp_ratio=int_hparam(hparams, "mlp_ratio", 4),
                            context_length=context_length,
                            dropout=float_hparam(hparams, "dropout", 0.0, high=1.0))
    train_classifier(trial, model, train_data, val_data, hparams, default_batch_size=16,
                     train_eval_size=EVAL_WINDOWS, on_step=on_step)

"""An MLP and a 1-D CNN on MNIST-1D (Greydanus & Steinbach), generated offline.

The data set is built by the ``mnist1d`` package's ``make_dataset`` with its default arguments,
pinned in :data:`DATASET_ARGS` (5,000 signals of length 40, 10 classes, seed 42): the package's
4,000 training signals are split once, with a fixed seed (:data:`VAL_SEED`), into 3,000 for
training and 1,000 for validation (:data:`VAL_SIZE`); the package's 1,000 test signals are kept
for the final evaluation only (:func:`train_mlp_final_eval`, :func:`train_cnn_final_eval`,
called by ``tunebook final-eval`` once exploration has ended), so the ``val_*`` metrics of
training are truly validation numbers. Nothing is downloaded (the
package's downloading ``get_dataset`` is never called). The generated arrays are cached in
``trial.cache_dir`` (``<root>/cache/``) as ``mnist1d-<hash of the arguments and the package
version>.npz``, written to a temporary file and renamed into place, so worker processes racing
to create it are harmless; loading is also cached per process (the ``mnist1d`` package, slow to
import, is only imported to generate the file).

Hyperparameters of :func:`train_mlp`:

================  ========  =========================================================
name              default   meaning
================  ========  =========================================================
``num_layers``    2         hidden layers (0: a linear classifier)
``width``         256       units per hidden layer
``activation``    ``relu``  ``relu``, ``gelu``, ``tanh`` or ``silu``
``dropout``       0.0       dropout after each hidden activation (in [0, 1))
``batch_size``    128       training batch size (at most 3,000)
================  ========  =========================================================

Hyperparameters of :func:`train_cnn` (each layer halves the length: 40, 20, 10, 5, ...; the
features are flattened into a linear classifier):

================  ========  =========================================================
name              default   meaning
================  ========  =========================================================
``num_layers``    3         convolutional layers (stride 2), at least 1
``width``         32        channels of every convolutional layer
``kernel_size``   5         odd kernel size of every convolution ("same" padding)
``activation``    ``relu``  ``relu``, ``gelu``, ``tanh`` or ``silu``
``dropout``       0.0       dropout after each activation (in [0, 1))
``batch_size``    128       training batch size (at most 3,000)
================  ========  =========================================================

Both also take every training hyperparameter of :mod:`tunebook.workloads.common`
(``optimizer`` [adam], ``learning_rate``, ``weight_decay``, ``schedule``, ``warmup_steps``,
``grad_clip``, ``label_smoothing``...); any other name is refused. They report ``train_loss``,
``train_error`` (on the whole training set, in eval mode), ``val_loss``, ``val_error``,
``learning_rate`` at every evaluation and ``grad_norm`` (unclipped) at every update; their
final evaluations give ``test_error``, ``test_loss`` and ``test_examples`` of a trial's best
checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import random
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunebook.execution.final_eval import FinalEvalTrial
from tunebook.execution.trial import Trial
from tunebook.workloads.common import (
    ACTIVATIONS,
    TRAINING_HPARAMS,
    check_hparams,
    float_hparam,
    int_hparam,
    mlp,
    str_hparam,
    train_classifier,
)
from tunebook.workloads.final import test_metrics

__all__ = ["CNN_HPARAMS", "DATASET_ARGS", "MLP_HPARAMS", "VAL_SEED", "VAL_SIZE", "ConvNet",
           "cache_file", "load_mnist1d", "load_mnist1d_test", "train_cnn", "train_cnn_final_eval",
           "train_mlp", "train_mlp_final_eval"]

REQUIRES = {"torch": "workloads", "mnist1d": "workloads"}
"""Packages these workloads need (import name -> the tunebook extra that installs them), checked
when one is loaded, before any trial starts."""

MLP_HPARAMS = TRAINING_HPARAMS | {"num_layers", "width", "activation", "dropout"}
"""Every hyperparameter name :func:`train_mlp` reads."""

CNN_HPARAMS = MLP_HPARAMS | {"kernel_size"}
"""Every hyperparameter name :func:`train_cnn` reads."""

LENGTH = 40
"""The length of an MNIST-1D signal (the package's ``final_seq_length``)."""


DATASET_ARGS: dict[str, Any] = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
    "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": LENGTH, "seed": 42,
}
"""The arguments given to ``make_dataset``: the package's defaults, pinned here."""

VAL_SIZE = 1000
"""How many of the 4,000 training signals are held out for validation."""

VAL_SEED = 0
"""The seed of the permutation (``numpy.random.default_rng``) that picks them."""

_CACHE_LAYOUT = 2  # 1 held the test split under the validation's keys: never read it again


def cache_file(cache_dir: str | Path) -> Path:
    """Where the generated data set is cached: named after a hash of :data:`DATASET_ARGS` and
    the ``mnist1d`` version (whose generator could change), so that nothing else shares it.
    Finding the name does not import ``mnist1d`` (whose imports take a second or more)."""
    version = importlib.metadata.version("mnist1d")
    key = json.dumps({"args": DATASET_ARGS, "mnist1d": version, "layout": _CACHE_LAYOUT},
                     sort_keys=True)
    return Path(cache_dir) / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _generate() -> dict[str, np.ndarray]:
    """Run ``make_dataset`` without disturbing the global generators it reseeds."""
    # Imported by name so that no type stubs are needed for this untyped package.
    make_dataset = importlib.import_module("mnist1d.data").make_dataset
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(types.SimpleNamespace(**DATASET_ARGS))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
            "x_test": data["x_test"].astype(np.float32),
            "y_test": data["y_test"].astype(np.int64)}


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"],
                     y_test=arrays["y_test"])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # another process may have won the race: same content
    finally:
        tmp.unlink(missing_ok=True)


_KEYS = ("x", "y", "x_test", "y_test")


@functools.cache
def _arrays(cache_dir: str) -> dict[str, torch.Tensor]:
    """The package's training and test arrays, from the cache file (generated on first use)."""
    path = cache_file(cache_dir)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _KEYS}
    except (OSError, KeyError, ValueError):  # missing (or unreadable): generate it
        arrays = _generate()
        _write_atomically(path, arrays)
    return {k: torch.from_numpy(arrays[k]) for k in _KEYS}


@functools.cache
def load_mnist1d(cache_dir: str) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_val, y_val)`` as float32 signals ``[n, 40]`` and int64 labels:
    the package's 4,000 training signals split into 3,000 and :data:`VAL_SIZE` held out (a
    fixed permutation seeded :data:`VAL_SEED`), from the cache file in ``cache_dir``
    (generated and written there on first use). The test split is not among them."""
    arrays = _arrays(cache_dir)
    x, y = arrays["x"], arrays["y"]
    order = torch.from_numpy(np.random.default_rng(VAL_SEED).permutation(len(x)))
    val, train = order[:VAL_SIZE], order[VAL_SIZE:]
    return x[train], y[train], x[val], y[val]


def load_mnist1d_test(cache_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_test, y_test)``: the package's 1,000 test signals, for the final evaluation only."""
    arrays = _arrays(cache_dir)
    return arrays["x_test"], arrays["y_test"]


class ConvNet(nn.Module):
    """Stride-2 1-D convolutions, each followed by an activation (and dropout), then a linear
    classifier of the flattened features."""

    def __init__(self, num_layers: int, width: int, kernel_size: int, activation: str,
                 dropout: float = 0.0, length: int = LENGTH, n_out: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(num_layers):
            layers += [nn.Conv1d(channels, width, kernel_size, stride=2,
                                 padding=kernel_size // 2), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            channels, length = width, (length - 1) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * length, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, 10]`` of signals ``[batch, length]``."""
        logits: torch.Tensor = self.classifier(self.features(x.unsqueeze(1)).flatten(1))
        return logits


def _common(hparams: dict[str, Any]) -> tuple[str, float]:
    return (str_hparam(hparams, "activation", "relu", ACTIVATIONS),
            float_hparam(hparams, "dropout", 0.0, high=1.0))


def _mlp(hparams: dict[str, Any]) -> nn.Module:
    activation, dropout = _common(hparams)
    return mlp(LENGTH, 10, num_layers=int_hparam(hparams, "num_layers", 2, minimum=0),
               width=int_hparam(hparams, "width", 256), activation=activation, dropout=dropout)


def _cnn(hparams: dict[str, Any]) -> Callable[[], nn.Module]:
    activation, dropout = _common(hparams)
    kernel_size = int_hparam(hparams, "kernel_size", 5)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    layers, width = int_hparam(hparams, "num_layers", 3), int_hparam(hparams, "width", 32)
    return lambda: ConvNet(layers, width, kernel_size, activation, dropout)


def train_mlp(hparams: dict[str, Any], trial: Trial, *,
              on_step: Callable[[int], None] | None = None) -> None:
    """Train the MLP for ``trial.max_train_steps`` steps (see the module docstring)."""
    check_hparams(hparams, MLP_HPARAMS)
    x_train, y_train, x_val, y_val = load_mnist1d(str(trial.cache_dir))
    torch.manual_seed(trial.seed)
    model = _mlp(hparams)
    train_classifier(trial, model, (x_train, y_train), (x_val, y_val), hparams,
                     default_batch_size=128, on_step=on_step)


def train_cnn(hparams: dict[str, Any], trial: Trial, *,
              on_step: Callable[[int], None] | None = None) -> None:
    """Train the CNN for ``trial.max_train_steps`` steps (see the module docstring)."""
    check_hparams(hparams, CNN_HPARAMS)
    x_train, y_train, x_val, y_val = load_mnist1d(str(trial.cache_dir))
    model_fn = _cnn(hparams)  # checked before the seed is drawn on, as before
    torch.manual_seed(trial.seed)
    model = model_fn()
    train_classifier(trial, model, (x_train, y_train), (x_val, y_val), hparams,
                     default_batch_size=128, on_step=on_step)


def train_mlp_final_eval(hparams: dict[str, Any], trial: FinalEvalTrial) -> dict[str, float]:
    """The final evaluation of :func:`train_mlp`: the trial's selected checkpoint on the test
    split (``test_error``, ``test_loss``, ``test_examples``)."""
    check_hparams(hparams, MLP_HPARAMS)
    return test_metrics(trial, _mlp(hparams), load_mnist1d_test(str(trial.cache_dir)))


def train_cnn_final_eval(hparams: dict[str, Any], trial: FinalEvalTrial) -> dict[str, float]:
    """The final evaluation of :func:`train_cnn` (see :func:`train_mlp_final_eval`)."""
    check_hparams(hparams, CNN_HPARAMS)
    return test_metrics(trial, _cnn(hparams)(), load_mnist1d_test(str(trial.cache_dir)))

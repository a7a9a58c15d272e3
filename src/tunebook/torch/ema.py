"""Polyak (exponential moving) averaging of a model's parameters, for evaluation.

The playbook names Polyak averaging among the remedies for high step-to-step variance of the
training or validation error late in training (with a larger batch, more validation data and
learning rate decay): when each trial "randomly ends on a lucky or unlucky step", comparisons
between hyperparameter settings get noisy. Evaluating an average of recent weights smooths that.

:class:`ParameterEMA` keeps ``ema = decay * ema + (1 - decay) * θ`` after each optimizer step
and swaps the averaged weights into the model only for evaluation (:meth:`ParameterEMA.averaged`),
so training continues on the raw weights, bit for bit.

Buffers: floating-point buffers (batch norm's running mean and variance) are averaged with the
same decay by default, because the running statistics of the raw model describe the raw weights'
activations over the last few steps, not those of the averaged weights; their average over the
same horizon is the usual approximation. Integer buffers (``num_batches_tracked``) are counters
and are not averaged. With ``average_buffers=False`` the model's own buffers are used as they are
(then consider recomputing batch norm statistics for the averaged weights, as in SWA's
``update_bn``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ParameterEMA"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _shadow_of(t: torch.Tensor) -> torch.Tensor:
    # Averages of half-precision weights are kept in float32: with decay 0.999 the increments
    # (1 - decay) * θ are below bfloat16's resolution of the average and would vanish.
    dtype = torch.float32 if t.dtype in _LOW_PRECISION else t.dtype
    return t.detach().to(dtype=dtype, copy=True)


class ParameterEMA:
    """An exponential moving average of a model's floating-point parameters (and buffers).

    Call :meth:`update` after every ``optimizer.step()``; evaluate inside :meth:`averaged`::

        ema = ParameterEMA(model, decay=0.999)
        ...
        optimizer.step()
        ema.update()
        ...
        with ema.averaged():
            result = evaluate(model, (x_val, y_val))

    Update rule, with ``d = decay``: ``ema ← d · ema + (1 - d) · θ``; the average starts at the
    weights the model has when the EMA is created. With ``warmup=True`` the decay of the
    ``n``-th update (``n`` = 1, 2, ...) is ``min(decay, (1 + n) / (10 + n))`` (as in
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) so the initial weights are
    forgotten quickly early in training.

    Its :meth:`state_dict` holds only tensors and numbers: pass the EMA to
    :meth:`tunebook.torch.checkpoint.Checkpointer.save` by keyword (``ema=ema``) and to
    ``restore`` under the same name.

    Create it after moving the model to its device: the averages live where the weights are.

    Args:
        model: the model whose parameters are averaged (its structure must not change).
        decay: in [0, 1); the average covers roughly the last ``1 / (1 - decay)`` steps.
        average_buffers: also average floating-point buffers (see the module docstring).
        warmup: use the warmed-up decay above.

    Raises:
        ValueError: for a decay outside [0, 1) or not a number.
    """

    def __init__(self, model: nn.Module, decay: float, *, average_buffers: bool = True,
                 warmup: bool = False) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)):
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        if not (math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.model = model
        self.decay = float(decay)
        self.average_buffers = average_buffers
        self.warmup = warmup
        self.num_updates = 0
        self._params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
        self._buffers = ({n: b for n, b in model.named_buffers() if b.is_floating_point()}
                         if average_buffers else {})
        self.shadow: dict[str, torch.Tensor] = {
            n: _shadow_of(t) for n, t in (*self._params.items(), *self._buffers.items())}

    def _live(self) -> dict[str, torch.Tensor]:
        return {**self._params, **self._buffers}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (after ``optimizer.step()``)."""
        d = self.current_decay()
        self.num_updates += 1
        if not self.shadow:
            return
        live = self._live()
        shadows = list(self.shadow.values())
        values = [live[n].detach() for n in self.shadow]
        if all(s.dtype == v.dtype and s.device == v.device for s, v in zip(shadows, values,
                                                                           strict=True)):
            torch._foreach_mul_(shadows, d)
            torch._foreach_add_(shadows, values, alpha=1.0 - d)
        else:
            for s, v in zip(shadows, values, strict=True):
                s.mul_(d).add_(v.to(device=s.device, dtype=s.dtype), alpha=1.0 - d)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[nn.Module]:
        """Temporarily put the averaged weights into the model (yields the model).

        The raw weights are copied aside and copied back on exit, even on an exception, so
        training resumes on exactly the same bits.
        """
        live = self._live()
        with torch.no_grad():
            saved = {n: t.detach().clone() for n, t in live.items()}
            for n, t in live.items():
                t.copy_(self.shadow[n])
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for n, t in live.items():
                    t.copy_(saved[n])

    swap = averaged
    """Alias of :meth:`averaged`."""

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Write the averaged weights into ``model`` (default: the averaged model) for good,
        e.g. before exporting it."""
        target = model if model is not None else self.model
        params = dict(target.named_parameters())
        buffers = dict(target.named_buffers())
        for n, s in self.shadow.items():
            (params[n] if n in params else buffers[n]).copy_(s)

    def state_dict(self) -> dict[str, Any]:
        """Decay, update count and the averages (tensors), for a checkpoint."""
        return {"decay": self.decay, "num_updates": self.num_updates, "warmup": self.warmup,
                "shadow": {n: s.detach().clone() for n, s in self.shadow.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the names must match this model's).

        Raises:
            KeyError: when the saved averages do not cover the same tensors.
        """
        saved = state["shadow"]
        if set(saved) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(saved))
            unexpected = sorted(set(saved) - set(self.shadow))
            raise KeyError(f"EMA state does not match the model: missing {missing}, "
                           f"unexpected {unexpected}")
        for n, s in self.shadow.items():
            s.copy_(saved[n])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.warmup = bool(state.get("warmup", self.warmup))

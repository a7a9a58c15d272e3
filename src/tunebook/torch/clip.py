"""Gradient clipping by global norm, done the way the tuning playbook describes it.

The playbook ("Gradient clipping"): if the norm of the gradient ``||g||`` is greater than the
threshold ``λ``, replace it by ``g' = λ g / ||g||``; log the *unclipped* norm every step; choose
``λ`` near the 90th percentile of the logged norms ("just above the typical gradient norm"); and
treat clipping more than 50% of the updates as "extremely aggressive", which is in essence a
strange way of reducing the learning rate, so lower the learning rate instead.

This module gives each piece of that advice a name:

* :func:`clip_grad_norm` measures the global L2 norm and applies the playbook's rule exactly
  (gradients below the threshold are not touched at all, not even multiplied by 1.0);
* :func:`clip_threshold` turns logged unclipped norms into a threshold (a quantile);
* :class:`ClipTracker` clips, remembers the norms and the fraction of clipped steps, and states
  the playbook's finding when that fraction exceeds one half. It only returns data; reporting it
  (``trial.report``, a log line) is the caller's choice.

Report the unclipped norm of *every* step (``trial.report(step, grad_norm=norm)``, as
:func:`tunebook.workloads.common.train_classifier` does), not a mean per evaluation: the
report's threshold is :func:`clip_threshold` applied per study to the norms of its best trials'
whole training (:func:`tunebook.analysis.checks.clipping.study_thresholds`), and the
``clipping`` check turns a reported ``clip_fraction`` above one half into a finding. A
:class:`ClipTracker`'s own :meth:`~ClipTracker.threshold` covers only the norms it kept (the
latest ``keep_norms``): late in training, at a near-zero loss, they can be far below the typical
norm, so it describes one trial's recent steps, not the threshold to use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from tunebook.analysis import stats

__all__ = [
    "AGGRESSIVE_CLIPPING",
    "ClipResult",
    "ClipTracker",
    "clip_grad_norm",
    "clip_threshold",
    "grad_norm",
]

AGGRESSIVE_CLIPPING = "extremely aggressive: lower the learning rate instead"
"""The playbook's advice when more than half of the updates are clipped."""

Params = torch.Tensor | Iterable[torch.Tensor]


class ClipResult(NamedTuple):
    """What one call to :func:`clip_grad_norm` did.

    Attributes:
        norm: the global L2 norm of the gradients *before* clipping (log this one).
        clipped: whether the gradients were rescaled.
    """

    norm: float
    clipped: bool


def _grads(params: Params) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


_FULL = (torch.float32, torch.float64)


def _global_norm(grads: Sequence[torch.Tensor]) -> float:
    if not grads:
        return 0.0
    # Per-tensor norms are computed in at least float32 (half-precision squares overflow early),
    # then combined on the first gradient's device: one host sync, for the final ``.item()``.
    device = grads[0].device
    if all(g.dtype in _FULL and g.device == device for g in grads):
        # The common case, on the hot path of every step: no casts, no copies.
        norms = [torch.linalg.vector_norm(g) for g in grads]
    else:
        norms = [torch.linalg.vector_norm(g.detach(), 2.0,
                                          dtype=torch.promote_types(g.dtype, torch.float32))
                 .to(device) for g in grads]
    return float(torch.linalg.vector_norm(torch.stack(norms), 2.0).item())


def grad_norm(params: Params) -> float:
    """The global L2 norm of the gradients of ``params`` (parameters without a gradient are
    skipped; 0.0 when none has one)."""
    return _global_norm(_grads(params))


def _check_max_norm(max_norm: float | None) -> float | None:
    if max_norm is None:
        return None
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise TypeError(f"max_norm must be a number or None, got {max_norm!r}")
    if math.isnan(max_norm) or max_norm <= 0:
        raise ValueError(f"max_norm must be positive (or None/inf to only measure), got {max_norm}")
    return None if math.isinf(max_norm) else float(max_norm)


def clip_grad_norm(params: Params, max_norm: float | None) -> ClipResult:
    """Clip the gradients of ``params`` in place by their global L2 norm.

    The playbook's rule, exactly: with ``λ = max_norm`` and ``||g||`` the norm over every
    gradient taken together, when ``||g|| > λ`` each gradient is multiplied by ``λ / ||g||``
    (so the new global norm is ``λ``); otherwise nothing is touched. Unlike
    ``torch.nn.utils.clip_grad_norm_`` there is no ``+ 1e-6`` in the denominator and no
    multiplication by 1.0 below the threshold.

    Args:
        params: a tensor or an iterable of tensors (typically ``model.parameters()``);
            those whose ``.grad`` is None are ignored.
        max_norm: the threshold ``λ``; None or ``inf`` only measures the norm.

    Returns:
        ``ClipResult(norm, clipped)`` where ``norm`` is the *unclipped* norm. A non-finite norm
        (a diverged step) is returned as is and the gradients are left untouched: rescaling by
        ``λ / inf`` would only turn the infinities into NaNs. Treat it as divergence
        (``raise trial.infeasible(...)``).

    Raises:
        ValueError: for a threshold that is zero, negative or NaN.
    """
    threshold = _check_max_norm(max_norm)
    grads = _grads(params)
    norm = _global_norm(grads)
    if threshold is None or not math.isfinite(norm) or norm <= threshold:
        return ClipResult(norm, False)
    scale = threshold / norm
    with torch.no_grad():
        for g in grads:
            g.mul_(scale)
    return ClipResult(norm, True)


def clip_threshold(norms: Iterable[float], quantile: float = 0.9) -> float:
    """A clipping threshold from logged *unclipped* gradient norms: their ``quantile``.

    The playbook's starting point is the 90th percentile ("just above the typical gradient
    norm"); if instabilities remain, clip harder (a lower quantile).

    The quantile is :func:`tunebook.analysis.stats.quantile`, the one the report's per-study
    gradient-norm histograms mark: linear interpolation between order statistics (Hyndman &
    Fan's type 7, numpy's default). With the ``n`` finite norms sorted as
    ``x[0] <= ... <= x[n-1]`` and ``h = (n - 1) * quantile``, the result is
    ``x[⌊h⌋] + (h - ⌊h⌋) * (x[⌊h⌋+1] - x[⌊h⌋])``. So ``norms = 1, 2, ..., 11`` gives exactly
    10.0 at 0.9. Non-finite norms (diverged steps) are ignored.

    Raises:
        ValueError: when there is no finite norm or ``quantile`` is outside [0, 1].
    """
    return stats.quantile(norms, quantile)


class ClipTracker:
    """Clips every step and keeps the evidence the playbook asks for.

    ``tracker.clip(model.parameters())`` between ``backward()`` and ``optimizer.step()`` clips by
    :attr:`max_norm` (None: only measure) and records the unclipped norm. Then:

    * :attr:`norms` is the per-step unclipped norm (for the norm-vs-step plot and the
      histogram), :meth:`threshold` the playbook's 90th-percentile threshold from them;
    * :attr:`fraction_clipped` is the share of steps clipped and :meth:`finding` returns the
      playbook's warning (:data:`AGGRESSIVE_CLIPPING`) once *more than* half of the steps were
      clipped (51% fires, exactly 50% does not), else None;
    * :meth:`metrics` gives ``{"grad_norm": ..., "clip_fraction": ...}`` for ``trial.report``.

    Its :meth:`state_dict` holds only plain numbers, so a :class:`~tunebook.torch.checkpoint.
    Checkpointer` can save it (``ckpt.save(..., clip=tracker)``) and the counts survive a
    resume.

    Args:
        max_norm: the clipping threshold ``λ``; None (or inf) to only measure.
        aggressive_fraction: clipping more than this share of steps is "extremely aggressive"
            (the playbook's one half).
        keep_norms: keep at most this many recent norms (default 10,000: enough for a stable
            90th percentile, small enough to checkpoint at every evaluation; None keeps all;
            the counts used by :attr:`fraction_clipped` always cover every step).
    """

    def __init__(self, max_norm: float | None = None, *, aggressive_fraction: float = 0.5,
                 keep_norms: int | None = 10_000) -> None:
        self.max_norm = _check_max_norm(max_norm)
        if not 0.0 <= aggressive_fraction < 1.0:
            raise ValueError(f"aggressive_fraction must be in [0, 1), got {aggressive_fraction}")
        if keep_norms is not None and keep_norms < 1:
            raise ValueError(f"keep_norms must be positive or None, got {keep_norms}")
        self.aggressive_fraction = aggressive_fraction
        self.keep_norms = keep_norms
        self.steps = 0
        self.clipped_steps = 0
        self.norms: list[float] = []

    def clip(self, params: Params) -> ClipResult:
        """Clip ``params``' gradients by :attr:`max_norm` and record the step."""
        result = clip_grad_norm(params, self.max_norm)
        self.record(result)
        return result

    def record(self, result: ClipResult) -> None:
        """Record a step clipped elsewhere (e.g. by :func:`clip_grad_norm` directly)."""
        self.steps += 1
        self.clipped_steps += int(result.clipped)
        self.norms.append(float(result.norm))
        if self.keep_norms is not None and len(self.norms) > self.keep_norms:
            del self.norms[: len(self.norms) - self.keep_norms]

    @property
    def last_norm(self) -> float | None:
        """The latest unclipped norm, or None before the first step."""
        return self.norms[-1] if self.norms else None

    @property
    def fraction_clipped(self) -> float:
        """The share of recorded steps that were clipped (0.0 before the first step)."""
        return self.clipped_steps / self.steps if self.steps else 0.0

    @property
    def aggressive(self) -> bool:
        """True when more than :attr:`aggressive_fraction` of the steps were clipped."""
        # Integer comparison: exactly half of the steps is not "more than 50%".
        return self.steps > 0 and self.clipped_steps > self.aggressive_fraction * self.steps

    def finding(self) -> str | None:
        """The playbook's warning when clipping is extremely aggressive, else None."""
        if not self.aggressive:
            return None
        at = "" if self.max_norm is None else f" at max_norm={self.max_norm:g}"
        return (f"gradient clipping{at} clipped {self.clipped_steps} of {self.steps} steps "
                f"({self.fraction_clipped:.0%}, more than {self.aggressive_fraction:.0%}): "
                f"{AGGRESSIVE_CLIPPING}")

    def threshold(self, quantile: float = 0.9) -> float:
        """:func:`clip_threshold` of the recorded norms (only the latest ``keep_norms``: this
        trial's recent steps, not the per-study threshold of the report)."""
        return clip_threshold(self.norms, quantile)

    def metrics(self) -> dict[str, float]:
        """``grad_norm`` (latest unclipped norm) and ``clip_fraction``, for ``trial.report``."""
        out = {"clip_fraction": self.fraction_clipped}
        if self.last_norm is not None:
            out["grad_norm"] = self.last_norm
        return out

    def state_dict(self) -> dict[str, Any]:
        """Counts and norms as plain numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {"steps": self.steps, "clipped_steps": self.clipped_steps,
                "norms": list(self.norms)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.steps = int(state["steps"])
        self.clipped_steps = int(state["clipped_steps"])
        self.norms = [float(v) for v in state["norms"]]

"""Ghost batch normalization: batch statistics over virtual batches smaller than the batch.

The playbook ("Batch normalization implementation details"): computing the normalizing
statistics over only ~64 examples reportedly works better in practice (Ghost Batch Norm, Hoffer,
Hubara & Soudry, 2017, "Train longer, generalize better"), and decoupling the batch size from
the number of examples behind the statistics is particularly useful when comparing batch sizes:
the batch size can change while the normalization stays the same. It also warns that
implementations often mishandle a per-device batch larger than the virtual batch; here the
local batch is always split, so each virtual batch has exactly ``virtual_batch_size`` examples
(a virtual batch spanning several devices would need synchronized statistics, which this module
does not do).

Training mode: the batch is cut, in order, into virtual batches of ``virtual_batch_size``
examples (a remainder forms a last, smaller virtual batch); each is normalized with its own mean
and biased variance, exactly as ``nn.BatchNorm`` would normalize it alone. The running
statistics are updated as in Hoffer et al.'s algorithm: once per virtual batch, in order, with
the usual momentum rule and the unbiased variance, i.e. exactly what calling ``nn.BatchNorm``
on each chunk in turn does (so ``num_batches_tracked`` grows by the number of virtual batches,
and with ``momentum=0.1`` the running averages cover fewer *steps* than with plain batch norm).
Evaluation mode is plain ``nn.BatchNorm``: the running statistics, whatever the batch.

The modules subclass ``nn.BatchNorm1d``/``2d``/``3d``: same parameters, buffers and state dict
(checkpoints are interchangeable), and code that special-cases batch norm (weight-decay
exclusions, ``torch.optim.swa_utils.update_bn``) still recognizes them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "GhostBatchNorm1d",
    "GhostBatchNorm2d",
    "GhostBatchNorm3d",
    "convert_ghost_batch_norm",
]

DEFAULT_VIRTUAL_BATCH_SIZE = 64
"""The playbook's anecdotal sweet spot: statistics over ~64 examples."""


def _check_virtual_batch_size(virtual_batch_size: int) -> int:
    if (isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int)
            or virtual_batch_size < 1):
        raise ValueError("virtual_batch_size must be a positive integer, got "
                         f"{virtual_batch_size!r}")
    return virtual_batch_size


def _update_factors(bn: _BatchNorm, count: int) -> tuple[float, list[float]]:
    """Sequential updates ``r ← (1 - f_l) r + f_l s_l`` for l = 1..count, in closed form:
    ``r ← a r + Σ c_l s_l``. Returns ``(a, [c_1, ..., c_count])``."""
    if bn.momentum is None:  # cumulative moving average, as nn.BatchNorm with momentum=None
        assert bn.num_batches_tracked is not None
        done = int(bn.num_batches_tracked.item())
        factors = [1.0 / (done + i) for i in range(1, count + 1)]
    else:
        factors = [float(bn.momentum)] * count
    coefs = []
    for i, f in enumerate(factors):
        c = f
        for later in factors[i + 1:]:
            c *= 1.0 - later
        coefs.append(c)
    return math.prod(1.0 - f for f in factors), coefs


def _ghost_forward(bn: _BatchNorm, x: torch.Tensor, virtual_batch_size: int,
                   plain: Any) -> torch.Tensor:
    bn._check_input_dim(x)  # type: ignore[no-untyped-call]
    n = x.shape[0]
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if not use_batch_stats or n <= virtual_batch_size:
        out: torch.Tensor = plain(x)
        return out
    v = virtual_batch_size
    k, rem = divmod(n, v)
    full = k * v
    channels, spatial = x.shape[1], tuple(x.shape[2:])
    # Fold the k virtual batches into the channel dimension: [k*v, C, *S] -> [v, k*C, *S], so a
    # single batch_norm call normalizes each (virtual batch, channel) pair on its own.
    folded = (x[:full].reshape(k, v, channels, *spatial).transpose(0, 1)
              .reshape(v, k * channels, *spatial))
    weight = bn.weight.repeat(k) if bn.weight is not None else None
    bias = bn.bias.repeat(k) if bn.bias is not None else None
    y = F.batch_norm(folded, None, None, weight, bias, True, 0.0, bn.eps)
    pieces = [y.reshape(v, k, channels, *spatial).transpose(0, 1).reshape(full, channels,
                                                                          *spatial)]
    if rem:
        pieces.append(F.batch_norm(x[full:], None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
    if bn.training and bn.track_running_stats:
        _update_running_stats(bn, x.detach(), k, v)
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


@torch.no_grad()
def _update_running_stats(bn: _BatchNorm, x: torch.Tensor, k: int, v: int) -> None:
    assert bn.running_mean is not None and bn.running_var is not None
    dtype = bn.running_mean.dtype
    n, channels = x.shape[0], x.shape[1]
    means, variances = [], []

    def stats(chunks: torch.Tensor) -> None:  # [chunks, examples, C, *S] -> [chunks, C] each
        dims = (1, *range(3, chunks.dim()))
        var, mean = torch.var_mean(chunks.to(dtype), dim=dims, correction=0)
        per_channel = chunks[0].numel() // channels
        means.append(mean)
        variances.append(var * (per_channel / (per_channel - 1)))

    stats(x[: k * v].reshape(k, v, *x.shape[1:]))
    if n > k * v:
        stats(x[k * v:].unsqueeze(0))
    mean_all, var_all = torch.cat(means), torch.cat(variances)
    keep, coefs = _update_factors(bn, mean_all.shape[0])
    c = torch.tensor(coefs, dtype=dtype, device=mean_all.device).unsqueeze(1)
    bn.running_mean.mul_(keep).add_((c * mean_all).sum(0))
    bn.running_var.mul_(keep).add_((c * var_all).sum(0))
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(mean_all.shape[0])


class _Ghost(_BatchNorm):
    """What the three ghost batch norms share (the dimension checks come from nn.BatchNormNd)."""

    def __init__(self, num_features: int, virtual_batch_size: int = DEFAULT_VIRTUAL_BATCH_SIZE,
                 eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.virtual_batch_size = _check_virtual_batch_size(virtual_batch_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalize ``input`` (per virtual batch in training mode)."""
        return _ghost_forward(self, input, self.virtual_batch_size, super().forward)

    def extra_repr(self) -> str:
        """The batch norm's description plus the virtual batch size."""
        base = super().extra_repr()  # type: ignore[no-untyped-call]
        return f"{base}, virtual_batch_size={self.virtual_batch_size}"


class GhostBatchNorm1d(_Ghost, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics come from virtual batches.

    Input ``[N, C]`` or ``[N, C, L]``. In training mode each run of ``virtual_batch_size``
    examples is normalized with its own statistics (see the module docstring); in evaluation
    mode it is exactly ``nn.BatchNorm1d``. A batch of at most ``virtual_batch_size`` examples is
    plain batch norm. Other arguments are ``nn.BatchNorm1d``'s.
    """


class GhostBatchNorm2d(_Ghost, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics come from virtual batches.

    Input ``[N, C, H, W]``. In training mode each run of ``virtual_batch_size`` examples is
    normalized with its own statistics (see the module docstring); in evaluation mode it is
    exactly ``nn.BatchNorm2d``. A batch of at most ``virtual_batch_size`` examples is plain
    batch norm. Other arguments are ``nn.BatchNorm2d``'s.
    """


class GhostBatchNorm3d(_Ghost, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` whose training statistics come from virtual batches (see
    :class:`GhostBatchNorm2d`). Input ``[N, C, D, H, W]``."""


_GHOST: dict[type[nn.Module],
             type[GhostBatchNorm1d] | type[GhostBatchNorm2d] | type[GhostBatchNorm3d]] = {
    nn.BatchNorm1d: GhostBatchNorm1d,
    nn.BatchNorm2d: GhostBatchNorm2d,
    nn.BatchNorm3d: GhostBatchNorm3d,
}


def convert_ghost_batch_norm(module: nn.Module,
                             virtual_batch_size: int = DEFAULT_VIRTUAL_BATCH_SIZE) -> nn.Module:
    """Replace every plain ``nn.BatchNorm1d/2d/3d`` in ``module`` by its ghost version.

    Parameters, running statistics and train/eval mode are carried over; the replacement happens
    in place and the (possibly new, when ``module`` itself is a batch norm) root is returned.
    Subclasses (``SyncBatchNorm``, ghost modules) are left alone.
    """
    _check_virtual_batch_size(virtual_batch_size)
    ghost_type = _GHOST.get(type(module))
    if ghost_type is not None:
        assert isinstance(module, _BatchNorm)
        ghost = ghost_type(module.num_features, virtual_batch_size, eps=module.eps,
                           momentum=module.momentum, affine=module.affine,
                           track_running_stats=module.track_running_stats)
        ref = next(iter(module.parameters()), None)
        if ref is not None:  # buffers and parameters move with the parameters' device and dtype
            ghost.to(device=ref.device, dtype=ref.dtype)
        elif module.running_mean is not None:
            ghost.to(device=module.running_mean.device, dtype=module.running_mean.dtype)
        ghost.load_state_dict(module.state_dict())
        ghost.train(module.training)
        return ghost
    for name, child in module.named_children():
        new = convert_ghost_batch_norm(child, virtual_batch_size)
        if new is not child:
            setattr(module, name, new)
    return module

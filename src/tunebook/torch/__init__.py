"""PyTorch helpers, exactly as the playbook's appendix and training-pipeline sections describe.

``import tunebook`` does not import this package; ``import tunebook.torch`` imports torch.

- :mod:`tunebook.torch.optim`: SGD, Momentum, Nesterov, RMSProp, Adam, NAdam with the appendix's
  update rules, and :func:`make_optimizer` from hyperparameter names;
- :mod:`tunebook.torch.clip`: :func:`clip_grad_norm` (returns the unclipped norm),
  :func:`clip_threshold` (the 90th percentile) and :class:`ClipTracker`;
- :mod:`tunebook.torch.evaluation`: :func:`evaluate` with padded fixed-size batches whose
  padding has weight 0;
- :mod:`tunebook.torch.checkpoint`: :class:`Checkpointer` (keep the N best plus the latest,
  checksums, exact resume);
- :mod:`tunebook.torch.ema`: :class:`ParameterEMA` (Polyak averaging);
- :mod:`tunebook.torch.ghost_bn`: ghost batch norm.

Learning-rate schedules are framework-free, in :mod:`tunebook.schedules`.
"""

from __future__ import annotations

from tunebook.torch.checkpoint import Checkpointer as Checkpointer
from tunebook.torch.checkpoint import CheckpointInfo as CheckpointInfo
from tunebook.torch.clip import ClipResult as ClipResult
from tunebook.torch.clip import ClipTracker as ClipTracker
from tunebook.torch.clip import clip_grad_norm as clip_grad_norm
from tunebook.torch.clip import clip_threshold as clip_threshold
from tunebook.torch.ema import ParameterEMA as ParameterEMA
from tunebook.torch.evaluation import EvalResult as EvalResult
from tunebook.torch.evaluation import evaluate as evaluate
from tunebook.torch.ghost_bn import GhostBatchNorm1d as GhostBatchNorm1d
from tunebook.torch.ghost_bn import GhostBatchNorm2d as GhostBatchNorm2d
from tunebook.torch.ghost_bn import GhostBatchNorm3d as GhostBatchNorm3d
from tunebook.torch.ghost_bn import convert_ghost_batch_norm as convert_ghost_batch_norm
from tunebook.torch.optim import SGD as SGD
from tunebook.torch.optim import Adam as Adam
from tunebook.torch.optim import Momentum as Momentum
from tunebook.torch.optim import NAdam as NAdam
from tunebook.torch.optim import Nesterov as Nesterov
from tunebook.torch.optim import RMSProp as RMSProp
from tunebook.torch.optim import make_optimizer as make_optimizer
from tunebook.torch.optim import set_lr as set_lr

__all__ = [
    "SGD",
    "Adam",
    "CheckpointInfo",
    "Checkpointer",
    "ClipResult",
    "ClipTracker",
    "EvalResult",
    "GhostBatchNorm1d",
    "GhostBatchNorm2d",
    "GhostBatchNorm3d",
    "Momentum",
    "NAdam",
    "Nesterov",
    "ParameterEMA",
    "RMSProp",
    "clip_grad_norm",
    "clip_threshold",
    "convert_ghost_batch_norm",
    "evaluate",
    "make_optimizer",
    "set_lr",
]

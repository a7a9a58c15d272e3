"""PyTorch helpers (imports torch): the playbook's optimizers.

``import tunebook`` does not import this package; ``import tunebook.torch`` does import torch.
See :mod:`tunebook.torch.optim`. Learning rate schedules are framework-free, in
:mod:`tunebook.schedules`.
"""

from __future__ import annotations

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
    "Momentum",
    "NAdam",
    "Nesterov",
    "RMSProp",
    "make_optimizer",
    "set_lr",
]

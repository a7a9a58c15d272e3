"""The final evaluation every built-in classifier shares: the selected checkpoint on the test set.

See :mod:`tunebook.execution.final_eval` for the protocol and ``docs/final-evaluation.md`` for
why the test set waits until exploration has ended.
"""

from __future__ import annotations

import torch
from torch import nn

from tunebook.execution.final_eval import FinalEvalTrial
from tunebook.torch import Checkpointer, evaluate
from tunebook.workloads.common import cross_entropy_metrics

__all__ = ["test_metrics"]


def test_metrics(trial: FinalEvalTrial, model: nn.Module,
                 test_data: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Load the selected checkpoint (``trial.step``, checksums verified) into ``model`` and
    evaluate it in eval mode on ``test_data``: ``test_error``, ``test_loss`` (cross-entropy,
    without label smoothing) and ``test_examples``, like the ``val_*`` metrics of training."""
    Checkpointer(trial.trial).load_model(model, trial.step)
    result = evaluate(model, test_data, metrics=cross_entropy_metrics)
    return {"test_error": float(result["error"]), "test_loss": float(result["loss"]),
            "test_examples": float(test_data[1].shape[0])}

"""Clipping scenarios: healthy objective curves, per-step unclipped gradient norms, and a
``clip_fraction`` where the trials clip. Only the clipping check may react."""

from __future__ import annotations

from typing import Any

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import ExperimentData
from tunebook.search.space import Float

N, EVERY = 20, 10  # evaluations, and steps between them: 200 steps


def _trials(grad_clip: float | None, seed: int) -> list[dict[str, Any]]:
    """12 healthy trials over a learning-rate range, with per-step norms of typical size 1 and
    (with ``grad_clip``) the share of the norms above it as ``clip_fraction``."""
    rng = np.random.default_rng(seed)
    space_lr = np.geomspace(2e-3, 0.5, 12)
    out = []
    for lr in space_lr:
        steps = np.arange(1, N * EVERY + 1)
        norm = (1.0 + 3.0 * np.exp(-steps / 20)) * rng.lognormal(0.0, 0.25, len(steps))
        extra: dict[str, tuple[list[int], list[float]]] = {
            "grad_norm": ([int(s) for s in steps], [float(v) for v in norm])}
        params: dict[str, Any] = {"lr": float(lr)}
        if grad_clip is not None:
            params["grad_clip"] = grad_clip
            evals = [EVERY * (i + 1) for i in range(N)]
            extra["clip_fraction"] = (evals, [float(np.mean(norm[:s] > grad_clip))
                                              for s in evals])
        out.append(tr(healthy_curve(0.3 + 0.1 * abs(np.log10(lr) + 1.5), rng),
                      params=params, extra=extra))
    return out


def _data(trials: list[dict[str, Any]]) -> ExperimentData:
    return make_data(trials, nuisance={"lr": Float(1e-3, 1.0, "log")},
                     max_train_steps=N * EVERY, eval_every=EVERY)


def _every_trial_listed(findings: list[object]) -> bool:
    return len(findings) == 1 and len(getattr(findings[0], "trials", [])) == 12


@scenario("clipping_extremely_aggressive", fires={"clipping"},
          expect={"clipping": _every_trial_listed})
def clipping_extremely_aggressive() -> ExperimentData:
    # grad_clip=0.5, half the typical norm: nearly every update is clipped.
    return _data(_trials(0.5, seed=1))


@scenario("clipping_moderate")
def clipping_moderate() -> ExperimentData:
    # grad_clip=1.6, below the 90th percentile (2.1): about a fifth of the updates are clipped.
    return _data(_trials(1.6, seed=2))


@scenario("clipping_not_used_norms_recorded")
def clipping_not_used_norms_recorded() -> ExperimentData:
    # Norms logged every step, no clipping: the threshold is the report's, no finding.
    return _data(_trials(None, seed=3))

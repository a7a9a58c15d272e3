"""Pairing the trials of two studies by nuisance point: the paired evidence of a comparison.

The studies of an experiment search the same nuisance points, so trial ``i`` of study A and
trial ``i`` of study B (the same :attr:`TrialData.index <tunebook.analysis.data.TrialData.
index>`) differ only in the scientific hyperparameters. :func:`pairing` counts, over the pairs,
how often A is better and runs :func:`~tunebook.analysis.stats.paired_best_of_k` on them; the
verdict itself is :mod:`tunebook.analysis.comparison`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tunebook.analysis import stats

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData

__all__ = ["Pairing", "pairing", "pools_by_index"]

#: Relative tolerance under which two paired values are a tie, not a win (float rounding).
_TIE = 1e-9


@dataclass(frozen=True)
class Pairing:
    """Paired evidence of study ``a`` against study ``b`` over their shared nuisance points.

    Attributes:
        n_pairs: trial indices finished (completed or infeasible) in both studies.
        share: the share of paired best-of-``n_pairs`` resamples in which ``a``'s best beats
            ``b``'s, ties half (None without a pair).
        n_feasible: pairs feasible (a finite value) in both.
        wins, losses, ties: among those, how often ``a`` is better, worse, equal.
        top, top_wins: the same for the pairs whose better member ranks in its study's top
            half.
        only_a, only_b: pairs where only ``a`` (only ``b``) is feasible: the other diverged
            or produced nothing on that nuisance point.
    """

    n_pairs: int
    share: float | None
    n_feasible: int
    wins: int
    losses: int
    ties: int
    top: int
    top_wins: int
    only_a: int = 0
    only_b: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The evidence form."""
        return {"n_pairs": self.n_pairs, "share": self.share, "n_feasible": self.n_feasible,
                "wins": self.wins, "losses": self.losses, "ties": self.ties,
                "top_half": self.top, "top_half_wins": self.top_wins,
                "only_a_feasible": self.only_a, "only_b_feasible": self.only_b}


def pools_by_index(data: ExperimentData, study: str) -> dict[int, float]:
    """A study's finished trials by index, loss-like (``inf``: infeasible or no value), as
    :func:`~tunebook.analysis.stats.study_pool` counts them."""
    factor = data.objective.sign
    out: dict[int, float] = {}
    for t in data.trials:
        if t.study != study or t.status not in ("completed", "infeasible"):
            continue
        v = data.value(t)
        ok = t.feasible and v is not None and math.isfinite(v)
        out[t.index] = factor * v if ok and v is not None else math.inf
    return out


def _top_half(pool: dict[int, float]) -> set[int]:
    """Indices whose value ranks in the study's top half (finite values only)."""
    values = np.sort(np.asarray(list(pool.values()), dtype=np.float64))
    cut = math.ceil(values.size / 2)
    return {i for i, v in pool.items()
            if math.isfinite(v) and int(np.searchsorted(values, v, "left")) < cut}


def pairing(a: dict[int, float], b: dict[int, float]) -> Pairing:
    """Paired evidence of pool ``a`` against pool ``b`` (``{index: loss-like value}``)."""
    shared = sorted(set(a) & set(b))
    va = np.asarray([a[i] for i in shared], dtype=np.float64)
    vb = np.asarray([b[i] for i in shared], dtype=np.float64)
    share = stats.paired_best_of_k(va, vb, len(shared)) if shared else None
    top_a, top_b = _top_half(a), _top_half(b)
    wins = losses = ties = top = top_wins = only_a = only_b = 0
    for i, x, y in zip(shared, va, vb, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            only_a += int(math.isfinite(x))
            only_b += int(math.isfinite(y))
            continue
        tie = abs(x - y) <= _TIE * max(abs(x), abs(y), 1e-300)
        wins += int(x < y and not tie)
        losses += int(x > y and not tie)
        ties += int(tie)
        # the better member of the pair (A's on a tie) ranks in its study's top half
        if (i in top_a) if x <= y else (i in top_b):
            top += 1
            top_wins += int(x < y and not tie)
    return Pairing(len(shared), share, wins + losses + ties, wins, losses, ties, top, top_wins,
                   only_a, only_b)

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

__all__ = ["Pairing", "pairing", "pools_by_index", "sign_test"]

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
        top_losses: top-half pairs in which ``b`` is better.
        sign_p, top_sign_p: one-sided sign-test p-values (:func:`sign_test`) of ``a`` being
            better, over all feasible pairs and over the top-half pairs (ties left out).
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
    top_losses: int = 0

    @property
    def sign_p(self) -> float:
        """One-sided sign test over every feasible pair (ties left out)."""
        return sign_test(self.wins, self.losses)

    @property
    def top_sign_p(self) -> float:
        """One-sided sign test over the top-half pairs (ties left out)."""
        return sign_test(self.top_wins, self.top_losses)

    def as_dict(self) -> dict[str, Any]:
        """The evidence form."""
        return {"n_pairs": self.n_pairs, "share": self.share, "n_feasible": self.n_feasible,
                "wins": self.wins, "losses": self.losses, "ties": self.ties,
                "top_half": self.top, "top_half_wins": self.top_wins,
                "only_a_feasible": self.only_a, "only_b_feasible": self.only_b,
                "top_half_losses": self.top_losses, "sign_p": self.sign_p,
                "top_half_sign_p": self.top_sign_p}


def sign_test(wins: int, losses: int) -> float:
    """The one-sided sign-test p-value of ``wins`` against ``losses``: the chance of at least
    ``wins`` successes in ``wins + losses`` fair coin tosses (1.0 without a decisive pair).

    Under "the scientific value makes no difference" the two members of a pair are two runs
    of one configuration, equally likely to be the better one, whatever the distribution of
    the values: the test is exact and needs no model of the spread."""
    n = wins + losses
    if n == 0:
        return 1.0
    # Integers throughout, each binomial coefficient from the previous one: exact at any n
    # (2.0 ** n overflows a float past 1,023 pairs) and linear in n.
    term = math.comb(n, wins)
    total = 0
    for k in range(wins, n + 1):
        total += term
        term = term * (n - k) // (k + 1)
    return float(total / 2 ** n)


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


def pairing(a: dict[int, float], b: dict[int, float], tie: float = 0.0) -> Pairing:
    """Paired evidence of pool ``a`` against pool ``b`` (``{index: loss-like value}``); two
    values closer than ``tie`` (the step noise or the metric's resolution: a difference no
    evaluation can tell) are a tie, not a win."""
    shared = sorted(set(a) & set(b))
    va = np.asarray([a[i] for i in shared], dtype=np.float64)
    vb = np.asarray([b[i] for i in shared], dtype=np.float64)
    share = stats.paired_best_of_k(va, vb, len(shared)) if shared else None
    top_a, top_b = _top_half(a), _top_half(b)
    wins = losses = ties = top = top_wins = top_losses = only_a = only_b = 0
    for i, x, y in zip(shared, va.tolist(), vb.tolist(), strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            only_a += int(math.isfinite(x))
            only_b += int(math.isfinite(y))
            continue
        even = abs(x - y) <= max(tie, _TIE * max(abs(x), abs(y), 1e-300))
        wins += int(x < y and not even)
        losses += int(x > y and not even)
        ties += int(even)
        # the better member of the pair (A's on a tie) ranks in its study's top half
        if (i in top_a) if x <= y else (i in top_b):
            top += 1
            top_wins += int(x < y and not even)
            top_losses += int(x > y and not even)
    return Pairing(len(shared), share, wins + losses + ties, wins, losses, ties, top, top_wins,
                   only_a, only_b, top_losses)

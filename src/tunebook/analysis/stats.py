"""The statistics behind every verdict: one definition of each, seeded and vectorised.

Every number the checks, the plots, the isolation verdict and :mod:`tunebook.torch.clip` compute
from noisy data comes from here, so that two parts of a report cannot disagree about the same
curve:

* :func:`quantile` — the percentile (linear interpolation between order statistics, numpy's
  default, Hyndman & Fan type 7). The playbook's clipping threshold is its 90th percentile of
  the unclipped gradient norms, and the report's histogram marks exactly that value.
* :func:`noise` / :func:`late_noise` — the step-to-step noise of a curve: the interquartile
  range of its first differences divided by ``sqrt(2) * 1.349`` (:data:`DIFF_IQR_TO_STD`).
  Differences remove a steady trend, the IQR ignores a few jumps, and the scale turns it into
  the standard deviation of independent evaluation noise.
* :func:`bootstrap_best` — the best-of-k bootstrap (the playbook's "How many trials are needed
  to get good results with quasi-random search?"): ``draws`` resamples of ``k`` values with
  replacement, each reduced to its best, from a generator seeded per call so that a study's
  result never depends on which studies came before it.
* :func:`paired_best_of_k` — the same bootstrap over *pairs* of trials (two studies search
  the same nuisance points, so trial ``i`` of one and trial ``i`` of the other are a pair):
  the share of resamples in which one study's best beats the other's.
* :func:`best_of_n_iqr`, :func:`spread` and :func:`separated` — the parts of the "spread"
  :mod:`tunebook.analysis.comparison` uses to judge whether a difference between studies is
  real.

Values are "loss-like" throughout: lower is better (negate a maximised metric first) and
``inf`` marks a trial that produced nothing (infeasible: never the best).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tunebook.core.numeric import finite

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData

__all__ = [
    "BOOTSTRAP_DRAWS",
    "BOOTSTRAP_SEED",
    "DIFF_IQR_TO_STD",
    "best_of_k_quantiles",
    "best_of_n_iqr",
    "bootstrap_best",
    "late_noise",
    "noise",
    "paired_best_of_k",
    "quantile",
    "separated",
    "spread",
    "study_pool",
    "tail_length",
]

Array = npt.NDArray[np.float64]

#: Standard deviation of independent noise from the interquartile range of its first
#: differences: a difference of two independent N(0, s^2) draws has standard deviation
#: s*sqrt(2), and a normal IQR is 1.349 std. (The IQR rather than the MAD: the MAD is 0 for
#: alternating noise with an odd number of differences, the IQR is not.)
DIFF_IQR_TO_STD = math.sqrt(2.0) * 1.349
#: Resamples per bootstrap: the quartiles of a best-of-k distribution are stable to about 1%.
BOOTSTRAP_DRAWS = 1000
#: Fixed seed: the same data always gives the same report.
BOOTSTRAP_SEED = 0
#: The late part of training: the last 20% of the evaluations ...
LATE_FRACTION = 0.2
#: ... but never fewer than 3 points (two differences, the least an IQR can be taken of).
LATE_MIN_POINTS = 3


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q``-quantile (``0 <= q <= 1``) of the finite ``values``.

    Linear interpolation between order statistics: with the ``n`` finite values sorted as
    ``x[0] <= ... <= x[n-1]`` and ``h = (n - 1) * q``, the result is
    ``x[⌊h⌋] + (h - ⌊h⌋) * (x[⌊h⌋+1] - x[⌊h⌋])``; so ``1, 2, ..., 11`` gives 10.0 at 0.9.
    Non-finite values (diverged steps) are ignored.

    Raises:
        ValueError: when there is no finite value or ``q`` is outside [0, 1].
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    xs = np.asarray([float(v) for v in values], dtype=np.float64)
    xs = xs[np.isfinite(xs)]
    if xs.size == 0:
        raise ValueError("a quantile needs at least one finite value")
    return float(np.quantile(xs, q))


def tail_length(n: int, fraction: float, minimum: int) -> int:
    """How many trailing points make the last ``fraction`` of ``n`` (at least ``minimum``)."""
    return min(n, max(minimum, math.ceil(fraction * n)))


def noise(y: Sequence[float] | Array) -> float | None:
    """Noise standard deviation of a curve's values; None under 3 points.

    The interquartile range of the first differences over :data:`DIFF_IQR_TO_STD`.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.size < 3:
        return None
    diffs = np.diff(arr)
    if arr.size > _SMALL or not np.isfinite(diffs).all():
        q25, q75 = np.percentile(diffs, [25, 75])
    else:
        # A report checks every trial's curve: numpy's percentile costs ~60 us a call
        # whatever the size, this the same arithmetic on a sorted list ~5 us.
        d = sorted(diffs.tolist())
        q25, q75 = _linear_percentile(d, 0.25), _linear_percentile(d, 0.75)
    return float(q75 - q25) / DIFF_IQR_TO_STD


# Curves up to this many points take the pure-Python percentile in :func:`noise`.
_SMALL = 200


def _linear_percentile(d: Sequence[float], q: float) -> float:
    """``np.percentile(d, 100 * q)`` of the sorted finite ``d`` (numpy's default "linear"
    method, the same floating-point operations: identical results)."""
    index = q * (len(d) - 1)
    lo = math.floor(index)
    if lo >= len(d) - 1:
        return d[-1]
    t = index - lo
    a, b = d[lo], d[lo + 1]
    diff = b - a
    # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly.
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def late_noise(y: Sequence[float] | Array, fraction: float = LATE_FRACTION,
               minimum: int = LATE_MIN_POINTS) -> float | None:
    """:func:`noise` of the last ``fraction`` of a curve (at least ``minimum`` points).

    None when the curve has fewer than ``minimum`` (or 3) points.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.size < max(minimum, 3):
        return None
    return noise(arr[-tail_length(arr.size, fraction, minimum):])


def study_pool(data: ExperimentData, study: str) -> Array:
    """A study's finished trials as a loss-like bootstrap pool.

    Completed trials give their objective value (negated when maximised); infeasible ones, and
    completed ones without a finite value, give ``inf``: they stay in the pool as failures (never
    best), so a study that often diverges needs more trials to be equally sure. Failed and
    unfinished trials are left out (they say nothing about the space).
    """
    factor = data.objective.sign
    pool = []
    for t in data.trials:
        if t.study != study or t.status not in ("completed", "infeasible"):
            continue
        v = data.value(t)
        ok = t.feasible and finite(v) is not None
        pool.append(factor * v if ok and v is not None else math.inf)
    return np.asarray(pool, dtype=np.float64)


def bootstrap_best(pool: Sequence[float] | Array, k: int, *, draws: int = BOOTSTRAP_DRAWS,
                   seed: int = BOOTSTRAP_SEED) -> Array:
    """``draws`` values of the best (lowest) of ``k`` values drawn from ``pool`` with replacement.

    ``pool`` is loss-like (lower is better, ``inf`` for a trial that produced nothing); the
    generator is ``numpy.random.default_rng(seed)``, fresh on every call. One ``(draws, k)``
    index matrix, so the cost is one vectorised gather.

    Raises:
        ValueError: for an empty pool or ``k < 1``.
    """
    values = np.asarray(pool, dtype=np.float64)
    if values.size == 0 or k < 1:
        raise ValueError(f"bootstrap_best needs a non-empty pool and k >= 1, got "
                         f"{values.size} values and k={k}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(draws, k))
    best: Array = values[idx].min(axis=1)
    return best


def paired_best_of_k(pool_a: Sequence[float] | Array, pool_b: Sequence[float] | Array, k: int,
                     *, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> float:
    """The share of paired best-of-``k`` resamples in which A's best beats B's (ties count half).

    ``pool_a[i]`` and ``pool_b[i]`` are a pair (the same nuisance point in two studies),
    loss-like (lower is better, ``inf`` for a trial that produced nothing). Each of ``draws``
    resamples picks ``k`` pair indices with replacement (``numpy.random.default_rng(seed)``,
    fresh on every call) and compares the best of A's values with the best of B's over those
    same pairs: sampling the nuisance space moves both studies together, so a difference that
    holds on every nuisance point wins every resample even when the points themselves vary far
    more than the difference. Identical pools give exactly 0.5.

    Raises:
        ValueError: for pools of different or zero length, or ``k < 1``.
    """
    a = np.asarray(pool_a, dtype=np.float64)
    b = np.asarray(pool_b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0 or k < 1:
        raise ValueError(f"paired_best_of_k needs two pools of one non-zero length and k >= 1, "
                         f"got {a.size} and {b.size} values and k={k}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(draws, k))
    best_a, best_b = a[idx].min(axis=1), b[idx].min(axis=1)
    # inf == inf: two resamples without a feasible trial are a tie, not a win
    return float(np.mean(best_a < best_b) + 0.5 * np.mean(best_a == best_b))


def best_of_k_quantiles(pool: Sequence[float] | Array, k: int, qs: Sequence[float], *,
                        draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED
                        ) -> tuple[float, ...] | None:
    """Percentiles ``qs`` (0-100) of the best-of-``k`` distribution, or None.

    None when fewer than half of the draws have any finite value (most draws of ``k`` trials
    then hold no feasible trial at all, and their quantiles say nothing); the draws without one
    count as the worst finite draw, so they push the quantiles up without making them infinite.
    """
    best = bootstrap_best(pool, k, draws=draws, seed=seed)
    finite = best[np.isfinite(best)]
    if finite.size == 0 or finite.size < best.size / 2:
        return None
    filled = np.where(np.isfinite(best), best, finite.max())
    return tuple(float(v) for v in np.percentile(filled, list(qs)))


def best_of_n_iqr(pool: Sequence[float] | Array, *, draws: int = BOOTSTRAP_DRAWS,
                  seed: int = BOOTSTRAP_SEED) -> float | None:
    """How much a study's best value moves by chance: the interquartile range of its best-of-n
    bootstrap (``n`` = the pool's size), or None (fewer than 2 trials, or mostly infeasible)."""
    if len(pool) < 2:
        return None
    qs = best_of_k_quantiles(pool, len(pool), (25, 75), draws=draws, seed=seed)
    return None if qs is None else qs[1] - qs[0]


def spread(noises: Sequence[float], iqrs: Sequence[float]) -> float | None:
    """The spread between equally good runs: the median late-training noise of the best trials
    or the median best-of-n bootstrap IQR of the studies, whichever is larger (None without
    either). Both are ways a study's best value could have come out differently by chance."""
    candidates = [float(np.median(noises))] if len(noises) else []
    candidates += [float(np.median(iqrs))] if len(iqrs) else []
    return max(candidates) if candidates else None


def separated(gap: float, spread: float | None) -> bool:
    """Whether a difference ``gap`` between two values is larger than ``spread`` (a real
    difference, as far as this data can tell); False when the spread is unknown."""
    return spread is not None and gap > spread

"""Is a candidate better than the baseline? The playbook's launch decision on replicates.

The playbook ("Determining whether to adopt a training pipeline change or hyperparameter
configuration"): re-run the best trial(s) with several training seeds to measure the trial
variance, and adopt a change only when it beats the baseline by more than that variance.

:func:`compare_replicates` judges two sets of replicates (the objective values of the same
configuration trained with different seeds) with **Welch's t interval** on the difference of
the means (unequal variances, Welch-Satterthwaite degrees of freedom, two-sided 95%):

* ``better``: the whole interval lies on the candidate's better side (the effect is larger than
  the trial variance explains);
* ``worse``: the whole interval lies on the baseline's better side;
* ``not proven``: the interval contains zero, or a side has a single replicate (its variance is
  unknown: retrain it with seeds first). For a nonzero effect, :attr:`Comparison.needed_seeds`
  is how many seeds per side a two-sided test at 5% would need to detect an effect of the
  observed size with 80% power at the observed variances (Welch's t, iterated on the degrees
  of freedom).

When both sides' variances are exactly zero (a deterministic workload) any nonzero difference
is decided by its sign. Only Python's standard library is used: the t quantiles come from the
regularised incomplete beta function.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Comparison", "Verdict", "compare_replicates", "needed_seeds", "t_quantile",
           "welch"]

Verdict = Literal["better", "not proven", "worse"]

LEVEL = 0.95  #: two-sided confidence of the interval
POWER = 0.80  #: the power the seed count is sized for
MAX_SEEDS = 10_000  #: past this, "more seeds" is not an answer: the effect is negligible


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (Lentz's method).
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (0 < p < 1) of Student's t with ``df`` degrees of freedom, by
    bisection on :func:`t_cdf` (accurate to about 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def welch(var_a: float, n_a: int, var_b: float, n_b: int) -> tuple[float, float]:
    """Standard error of the difference of two means and its Welch-Satterthwaite degrees of
    freedom (``inf`` when both variances are zero)."""
    qa, qb = var_a / n_a, var_b / n_b
    se = math.sqrt(qa + qb)
    denom = (qa * qa / (n_a - 1) if n_a > 1 else 0.0) + (qb * qb / (n_b - 1) if n_b > 1 else 0.0)
    return se, ((qa + qb) ** 2 / denom if denom > 0 else math.inf)


def needed_seeds(effect: float, var_a: float, var_b: float, level: float = LEVEL,
                 power: float = POWER) -> int | None:
    """Seeds per side for a two-sided Welch test at ``1 - level`` to detect ``effect`` with
    ``power`` at these variances; None when the effect is zero or more than
    :data:`MAX_SEEDS` would be needed."""
    if effect == 0 or not math.isfinite(effect):
        return None
    # The normal approximation is a lower bound of the t answer: start there.
    z = statistics.NormalDist()
    start = math.ceil((z.inv_cdf(1 - (1 - level) / 2) + z.inv_cdf(power)) ** 2
                      * (var_a + var_b) / effect ** 2)
    if start > MAX_SEEDS:
        return None
    for n in range(max(2, start), MAX_SEEDS + 1):
        se, df = welch(var_a, n, var_b, n)
        if se == 0:
            return n
        df = min(df, 1e6)
        if abs(effect) / se >= (t_quantile(1 - (1 - level) / 2, df) + t_quantile(power, df)):
            return n
    return None


@dataclass(frozen=True)
class Comparison:
    """The verdict on a candidate against a baseline and the numbers it rests on.

    ``effect`` is candidate mean minus baseline mean, in the metric's units (its sign follows
    the metric, not the goal: for a minimised loss a better candidate has a negative effect).
    ``low``/``high`` bound its 95% Welch interval (None when a side has one replicate).
    """

    verdict: Verdict
    goal: str
    effect: float
    se: float | None
    low: float | None
    high: float | None
    df: float | None
    candidate_n: int
    baseline_n: int
    candidate_mean: float
    baseline_mean: float
    candidate_sd: float | None
    baseline_sd: float | None
    needed_seeds: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``tunebook compare --format json``)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def compare_replicates(candidate: Sequence[float], baseline: Sequence[float],
                       goal: str) -> Comparison:
    """The verdict on ``candidate``'s replicates against ``baseline``'s (finite values, at
    least one each) under ``goal`` (``"minimize"`` or ``"maximize"``); see the module."""
    if not candidate or not baseline:
        raise ValueError("each side needs at least one replicate")
    sign = 1.0 if goal == "maximize" else -1.0  # effect * sign > 0: candidate better
    ma, mb = statistics.fmean(candidate), statistics.fmean(baseline)
    sa_, sb_ = _sd(candidate), _sd(baseline)
    na, nb = len(candidate), len(baseline)
    effect = ma - mb
    common: dict[str, Any] = dict(
        goal=goal, effect=effect, candidate_n=na, baseline_n=nb, candidate_mean=ma,
        baseline_mean=mb, candidate_sd=sa_, baseline_sd=sb_)
    if sa_ is None or sb_ is None:
        sides = [s for s, sd in (("candidate", sa_), ("baseline", sb_)) if sd is None]
        return Comparison(
            verdict="not proven", se=None, low=None, high=None, df=None, needed_seeds=None,
            reason=(f"the {' and the '.join(sides)} {'has' if len(sides) == 1 else 'have'} a "
                    "single replicate: the trial variance is unknown; retrain with several "
                    "seeds (tunebook retrain NAME --trial REF --seeds 5)"), **common)
    se, df = welch(sa_ ** 2, na, sb_ ** 2, nb)
    if se == 0:
        verdict: Verdict = ("not proven" if effect == 0
                            else "better" if effect * sign > 0 else "worse")
        return Comparison(verdict=verdict, se=0.0, low=effect, high=effect, df=None,
                          needed_seeds=None,
                          reason="both sides have zero variance over their seeds", **common)
    half = t_quantile(1 - (1 - LEVEL) / 2, df) * se
    low, high = effect - half, effect + half
    if low > 0 or high < 0:
        verdict = "better" if effect * sign > 0 else "worse"
        reason = (f"the 95% interval of the difference excludes zero: the effect is "
                  f"{abs(effect) / se:.1f} standard errors")
        need = None
    else:
        verdict = "not proven"
        need = needed_seeds(effect, sa_ ** 2, sb_ ** 2)
        reason = ("the 95% interval of the difference contains zero: the effect is within "
                  "the trial variance; " + (
                      f"about {need} seeds per side would resolve an effect of this size "
                      f"(80% power)" if need is not None else
                      "no practical number of seeds would resolve an effect this small"))
    return Comparison(verdict=verdict, se=se, low=low, high=high, df=df, needed_seeds=need,
                      reason=reason, **common)

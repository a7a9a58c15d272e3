"""The one set of statistics: known values, seeded reproducibility, vectorised == loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunebook.analysis import stats


# ----------------------------------------------------------------------------- quantile
def test_quantile_known_values() -> None:
    assert stats.quantile(range(1, 12), 0.9) == pytest.approx(10.0)  # h = 9 -> x[9]
    assert stats.quantile([4.0, 1.0, 3.0, 2.0], 0.9) == pytest.approx(3.7)  # h = 2.7
    # The report's marker and clip_threshold used to give 9.0 and 9.1 here (nearest rank vs
    # interpolation): both are this function now.
    assert stats.quantile(range(1, 11), 0.9) == pytest.approx(9.1)
    assert stats.quantile([2.0], 0.5) == 2.0
    assert stats.quantile([1.0, 2.0, math.nan, math.inf, -math.inf], 1.0) == 2.0


def test_quantile_is_numpys_linear_interpolation() -> None:
    data = np.random.default_rng(3).lognormal(size=101)
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert stats.quantile(data.tolist(), q) == pytest.approx(float(np.quantile(data, q)))


def test_quantile_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        stats.quantile([math.nan], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.quantile([1.0], 1.5)


# ----------------------------------------------------------------------------- noise
ALTERNATING = [0.5 + (0.1 if k % 2 else -0.1) for k in range(10)]


def test_noise_known_values() -> None:
    # Differences alternate +0.2/-0.2: IQR 0.4 over sqrt(2) * 1.349. (This curve was
    # tests/analysis/test_plots.py's test_late_noise, pinned at 0.2 / (sqrt(2) * 0.6745) = 0.2097
    # by the report's own median-|difference| estimator, dropped for this one; the
    # residual-of-a-line estimator of the late-variance check is dropped too.)
    assert stats.noise(ALTERNATING) == pytest.approx(0.4 / (math.sqrt(2) * 1.349))
    assert stats.noise([1.0 - 0.1 * i for i in range(10)]) == pytest.approx(0.0)  # a trend
    assert stats.noise([1.0, 2.0]) is None


def test_noise_estimates_the_standard_deviation_of_independent_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.linspace(1.0, 0.2, 20_000) + rng.normal(0.0, 0.05, 20_000)
    assert stats.noise(y) == pytest.approx(0.05, rel=0.05)


def test_late_noise_looks_at_the_tail_only() -> None:
    quiet_then_noisy = [1.0 - 0.01 * i for i in range(40)] + ALTERNATING
    # The last 20% of 50 points are the last 10: the alternating part.
    assert stats.late_noise(quiet_then_noisy) == pytest.approx(stats.noise(ALTERNATING))
    noisy_then_quiet = ALTERNATING * 4 + [0.3] * 10
    assert stats.late_noise(noisy_then_quiet) == 0.0
    # Never fewer than ``minimum`` points: 3 of 5 here (20% would be 1).
    assert stats.late_noise([5.0, 5.0, 1.0, 2.0, 1.0]) == pytest.approx(
        stats.noise([1.0, 2.0, 1.0]))
    assert stats.late_noise([1.0, 2.0]) is None


def test_tail_length() -> None:
    assert stats.tail_length(10, 0.2, 3) == 3
    assert stats.tail_length(100, 0.2, 3) == 20
    assert stats.tail_length(2, 0.2, 3) == 2
    assert stats.tail_length(11, 0.25, 1) == 3  # rounds up


# ----------------------------------------------------------------------------- bootstrap
POOL = [0.3, 0.1, 0.7, math.inf, 0.5, 0.2]


def test_bootstrap_is_seeded_and_reproducible() -> None:
    a = stats.bootstrap_best(POOL, 3)
    assert a.shape == (stats.BOOTSTRAP_DRAWS,)
    assert np.array_equal(a, stats.bootstrap_best(POOL, 3))
    assert not np.array_equal(a, stats.bootstrap_best(POOL, 3, seed=1))
    assert set(stats.bootstrap_best(POOL, 1, draws=200).tolist()) <= set(POOL)


def test_bootstrap_vectorised_equals_a_loop() -> None:
    draws, k = 500, 4
    got = stats.bootstrap_best(POOL, k, draws=draws, seed=7)
    idx = np.random.default_rng(7).integers(0, len(POOL), size=(draws, k))
    expected = [min(POOL[int(i)] for i in row) for row in idx]
    assert got.tolist() == expected


def test_bootstrap_rejects_an_empty_pool() -> None:
    with pytest.raises(ValueError):
        stats.bootstrap_best([], 2)
    with pytest.raises(ValueError):
        stats.bootstrap_best([1.0], 0)


def test_best_of_k_quantiles() -> None:
    qs = stats.best_of_k_quantiles(POOL, 6, (5, 50, 95))
    assert qs is not None and qs[0] <= qs[1] <= qs[2]
    assert qs[0] == pytest.approx(0.1)  # with 6 draws from 6, the best is usually drawn
    # Drawn one at a time, one in six is infinite: filled with the worst finite draw.
    one = stats.best_of_k_quantiles(POOL, 1, (100,))
    assert one == (0.7,)
    # Mostly infeasible: a quantile of "no feasible trial" says nothing.
    assert stats.best_of_k_quantiles([0.1, math.inf, math.inf, math.inf, math.inf], 1,
                                     (50,)) is None
    assert stats.best_of_k_quantiles([math.inf], 3, (50,)) is None


def test_best_of_n_iqr() -> None:
    assert stats.best_of_n_iqr([0.4]) is None
    assert stats.best_of_n_iqr([0.4, 0.4, 0.4]) == 0.0
    iqr = stats.best_of_n_iqr([0.1, 0.2, 0.3, 0.4])
    qs = stats.best_of_k_quantiles([0.1, 0.2, 0.3, 0.4], 4, (25, 75))
    assert qs is not None and iqr == pytest.approx(qs[1] - qs[0]) and iqr > 0


# ----------------------------------------------------------------------------- spread
def test_spread_is_the_larger_median() -> None:
    assert stats.spread([0.1, 0.3, 0.2], [0.05]) == pytest.approx(0.2)
    assert stats.spread([0.01], [0.1, 0.5]) == pytest.approx(0.3)
    assert stats.spread([], [0.4]) == 0.4
    assert stats.spread([], []) is None


def test_separated() -> None:
    assert stats.separated(0.2, 0.1)
    assert not stats.separated(0.1, 0.1)  # equal to the spread: not shown to differ
    assert not stats.separated(0.05, 0.1)
    assert not stats.separated(1.0, None)  # unknown spread: nothing is shown


def test_noise_of_short_curves_is_numpys_percentile_exactly() -> None:
    # The pure-Python percentile of short curves gives the very floats numpy gives.
    from tunebook.analysis.stats import DIFF_IQR_TO_STD, noise

    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 7, 10, 33, 150):
        for _ in range(50):
            y = rng.normal(size=n) * 10 ** rng.uniform(-4, 4)
            if rng.random() < 0.3:
                y = np.round(y, 2)
            q25, q75 = np.percentile(np.diff(y), [25, 75])
            assert noise(y) == float(q75 - q25) / DIFF_IQR_TO_STD
            assert noise(list(y)) == noise(y)
    assert noise([1.0, 2.0]) is None
    assert math.isnan(noise([1.0, float("nan"), 2.0, 3.0]) or 0.0)  # numpy's NaN path

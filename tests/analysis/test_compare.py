"""The launch verdict on constructed replicates: better, within variance, worse, one replicate."""

from __future__ import annotations

import math

import pytest

from tunebook.analysis.compare import (
    compare_replicates,
    needed_seeds,
    t_cdf,
    t_quantile,
    welch,
)

# Student's t quantiles from the printed tables (two-sided 95% and one-sided 80%).
TABLE = [(1, 0.975, 12.706), (2, 0.975, 4.303), (4, 0.975, 2.776), (10, 0.975, 2.228),
         (30, 0.975, 2.042), (5, 0.8, 0.920), (20, 0.8, 0.860)]


@pytest.mark.parametrize(("df", "p", "expected"), TABLE)
def test_t_quantiles_match_the_tables(df: int, p: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-3)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-3)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-9)


def test_welch_degrees_of_freedom() -> None:
    # Equal variances and sizes: Welch's df is the pooled test's 2n - 2.
    se, df = welch(4.0, 5, 4.0, 5)
    assert se == pytest.approx(math.sqrt(8 / 5))
    assert df == pytest.approx(8.0)


def test_clearly_better_when_maximising() -> None:
    c = compare_replicates([0.950, 0.951, 0.949, 0.952, 0.950],
                           [0.900, 0.910, 0.905, 0.900, 0.903], "maximize")
    assert c.verdict == "better"
    assert c.effect == pytest.approx(0.0468)
    assert c.low is not None and c.high is not None and 0 < c.low < c.effect < c.high
    assert (c.candidate_n, c.baseline_n) == (5, 5)
    assert c.needed_seeds is None


def test_lower_is_better_when_minimising() -> None:
    low, high = [0.10, 0.11, 0.09, 0.10], [0.20, 0.21, 0.19, 0.20]
    assert compare_replicates(low, high, "minimize").verdict == "better"
    assert compare_replicates(high, low, "minimize").verdict == "worse"
    assert compare_replicates(low, high, "maximize").verdict == "worse"


def test_within_the_trial_variance_is_not_proven_and_says_how_many_seeds() -> None:
    cand = [0.950, 0.960, 0.940, 0.955, 0.945]
    base = [0.945, 0.955, 0.935, 0.950, 0.940]
    c = compare_replicates(cand, base, "maximize")
    assert c.verdict == "not proven"
    assert c.low is not None and c.high is not None and c.low < 0 < c.high
    assert c.needed_seeds is not None and c.needed_seeds > 5
    assert f"about {c.needed_seeds} seeds per side" in c.reason
    # The seed count is the smallest with the power it promises: at that count an effect of
    # this size would be resolved with these spreads, one fewer would not.
    sd = c.candidate_sd or 0.0
    n = c.needed_seeds
    for k, resolves in ((n, True), (n - 1, False)):
        se, df = welch(sd ** 2, k, sd ** 2, k)
        assert (c.effect / se >= t_quantile(0.975, df) + t_quantile(0.8, df)) is resolves


def test_clearly_worse() -> None:
    c = compare_replicates([0.80, 0.81, 0.79], [0.90, 0.91, 0.89], "maximize")
    assert c.verdict == "worse"
    assert c.high is not None and c.high < 0


def test_one_replicate_means_unknown_variance() -> None:
    c = compare_replicates([0.99], [0.90, 0.91, 0.89], "maximize")
    assert c.verdict == "not proven"
    assert c.se is None and c.low is None and c.candidate_sd is None
    assert "single replicate" in c.reason and "candidate" in c.reason
    assert "retrain" in c.reason
    both = compare_replicates([0.99], [0.5], "maximize")
    assert "candidate and the baseline have" in both.reason


def test_zero_variance_decides_by_sign() -> None:
    assert compare_replicates([1.0, 1.0], [2.0, 2.0], "minimize").verdict == "better"
    assert compare_replicates([1.0, 1.0], [1.0, 1.0], "minimize").verdict == "not proven"


def test_no_replicates_is_an_error() -> None:
    with pytest.raises(ValueError):
        compare_replicates([], [1.0], "minimize")


def test_needed_seeds_grows_as_the_effect_shrinks() -> None:
    a = needed_seeds(0.02, 1e-4, 1e-4)
    b = needed_seeds(0.01, 1e-4, 1e-4)
    assert a is not None and b is not None and b > a
    assert needed_seeds(0.0, 1e-4, 1e-4) is None
    assert needed_seeds(1e-9, 1.0, 1.0) is None  # beyond any practical number

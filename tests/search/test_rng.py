"""Tests for tunebook.search.rng: frozen streams, seed derivation, derived draws."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tunebook.search.rng import SplitMix64, derive_seed

# SplitMix64 seeded with 0; the first value is the published reference output of Vigna's
# splitmix64.c (0xe220a8397b1dcdaf).
GOLDEN_SPLITMIX64_0 = [
    16294208416658607535,
    7960286522194355700,
    487617019471545679,
    17909611376780542444,
    1961750202426094747,
]


def test_splitmix64_golden_first_values() -> None:
    rng = SplitMix64(0)
    assert [rng.next_u64() for _ in range(5)] == GOLDEN_SPLITMIX64_0
    assert GOLDEN_SPLITMIX64_0[0] == 0xE220A8397B1DCDAF


def test_derived_draws_golden() -> None:
    rng = SplitMix64(12345)
    assert [rng.uniform() for _ in range(3)] == [
        0.1330796686614273,
        0.20481663336165912,
        0.11954258300911547,
    ]
    assert [rng.randbelow(10) for _ in range(10)] == [2, 8, 5, 1, 6, 7, 2, 6, 6, 8]
    assert rng.permutation(10) == [3, 7, 0, 4, 5, 9, 1, 8, 2, 6]


def test_same_seed_same_stream_and_seed_reduced_mod_2_64() -> None:
    a, b = SplitMix64(987654321), SplitMix64(987654321)
    assert [a.next_u64() for _ in range(100)] == [b.next_u64() for _ in range(100)]
    c, d = SplitMix64(-1), SplitMix64(2**64 - 1)
    assert [c.next_u64() for _ in range(10)] == [d.next_u64() for _ in range(10)]
    e, f = SplitMix64(1), SplitMix64(2)
    assert [e.next_u64() for _ in range(10)] != [f.next_u64() for _ in range(10)]


def test_outputs_are_64_bit() -> None:
    rng = SplitMix64(3)
    values = [rng.next_u64() for _ in range(2000)]
    assert all(0 <= v < 2**64 for v in values)
    assert max(values) >= 2**63  # the top bit is used


def test_derive_seed_golden_values() -> None:
    assert derive_seed("halton", 0, 0) == 611157469419406972
    assert derive_seed("a", 1) == 4009308802097640099
    assert derive_seed() == 555969478955876434
    assert derive_seed(-5) == 5769058912037138330


def test_derive_seed_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; derive_seed must not be."""
    code = "from tunebook.search.rng import derive_seed; print(derive_seed('study', 42, 'lr'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        ).stdout.strip()
        for salt in ("1", "2", "3")
    }
    assert outputs == {str(derive_seed("study", 42, "lr"))}


def test_derive_seed_range_and_distinct_parts() -> None:
    cases: list[tuple[int | str, ...]] = [
        (),
        (0,),
        (1,),
        ("1",),
        ("",),
        ("", ""),
        (0, 0),
        ("a", "b"),
        ("ab",),
        ("a", "bc"),
        ("ab", "c"),
        ("b", "a"),
        (-1,),
        (2**64,),
        ("halton", 0, 0),
        ("halton", 0, 1),
        ("halton", 1, 0),
        ("\x00",),
        ("é",),
    ]
    seeds = [derive_seed(*parts) for parts in cases]
    assert len(set(seeds)) == len(cases)
    assert all(0 <= s < 2**63 for s in seeds)


def test_derive_seed_accepts_numpy_ints_and_rejects_other_types() -> None:
    assert derive_seed("x", np.int64(5)) == derive_seed("x", 5)  # type: ignore[arg-type]
    assert derive_seed("x", np.uint8(5)) == derive_seed("x", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        derive_seed(True)
    with pytest.raises(TypeError):
        derive_seed(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        derive_seed(b"bytes")  # type: ignore[arg-type]


def test_uniform_in_unit_interval_and_uniform() -> None:
    rng = SplitMix64(11)
    xs = np.array([rng.uniform() for _ in range(20000)])
    assert xs.min() >= 0.0
    assert xs.max() < 1.0
    assert stats.kstest(xs, "uniform").pvalue > 1e-3
    # 53-bit resolution: every value is an integer multiple of 2**-53.
    assert all(math.ldexp(x, 53).is_integer() for x in xs[:1000])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 17, 100])
def test_permutation_is_a_permutation(n: int) -> None:
    rng = SplitMix64(n)
    for _ in range(20):
        assert sorted(rng.permutation(n)) == list(range(n))


def test_permutation_is_uniform_over_small_n() -> None:
    rng = SplitMix64(5)
    counts: dict[tuple[int, ...], int] = {}
    trials = 24000
    for _ in range(trials):
        key = tuple(rng.permutation(4))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 24
    assert stats.chisquare(list(counts.values())).pvalue > 1e-4


@pytest.mark.parametrize("n", [3, 7, 10, 1000])
def test_randbelow_range_and_unbiased(n: int) -> None:
    rng = SplitMix64(100 + n)
    draws = np.array([rng.randbelow(n) for _ in range(30 * n if n < 100 else 50000)])
    assert draws.min() >= 0
    assert draws.max() < n
    counts = np.bincount(draws, minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_randbelow_chi_square_detects_modulo_bias() -> None:
    """The chi-square check used above is strong enough to catch a biased sampler."""
    rng = SplitMix64(1)
    # `bits % 6` over 3-bit draws: 0 and 1 come up twice as often as the rest.
    biased = [(rng.next_u64() >> 61) % 6 for _ in range(6000)]
    assert stats.chisquare(np.bincount(biased, minlength=6)).pvalue < 1e-4


def test_randbelow_edge_cases() -> None:
    rng = SplitMix64(0)
    state = rng._state
    assert rng.randbelow(1) == 0
    assert rng._state == state  # n == 1 consumes nothing
    assert 0 <= rng.randbelow(2**64) < 2**64
    for bad in (0, -3, 2**64 + 1):
        with pytest.raises(ValueError):
            rng.randbelow(bad)
    with pytest.raises(ValueError):
        rng.permutation(-1)

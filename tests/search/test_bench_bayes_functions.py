"""bench/bench_bayes.py: its test functions, their minima, the regret and the simulated runs."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tunebook.search.designers import (
    Designer,
    QuasiRandomDesigner,
    designer,
    designer_names,
)
from tunebook.search.space import Value

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench: Any = importlib.import_module("bench_bayes")


@pytest.mark.parametrize("name", ["diverging", "log_valley", "categorical"])
def test_each_function_has_its_stated_minimum(name: str) -> None:
    fn = bench.FUNCTIONS[name]
    assert fn(fn.optimum) == pytest.approx(fn.minimum, abs=1e-12)
    points = QuasiRandomDesigner(fn.space, 7).suggest(range(500))
    values = [fn(p) for p in points]
    # Nothing the search can reach beats the minimum; some of it diverges, most does not.
    assert min(v for v in values if math.isfinite(v)) > fn.minimum
    assert name == "log_valley" or 0 < sum(map(math.isnan, values)) < len(values) / 3


def test_the_diverging_optimum_borders_the_region_of_nan() -> None:
    fn = bench.FUNCTIONS["diverging"]
    assert fn({**fn.optimum, "lr": bench.LR_MAX}) < 0.1  # the edge is still feasible
    assert math.isnan(fn({**fn.optimum, "lr": bench.LR_MAX * 1.01}))
    # Every point with a high learning rate diverges, whatever the other values.
    for p in QuasiRandomDesigner(fn.space, 3).suggest(range(200)):
        assert math.isnan(fn(p)) == (float(p["lr"]) > bench.LR_MAX)


def test_the_timing_function_is_diverging_without_its_nan_region() -> None:
    fn, bowl = bench.FUNCTIONS["diverging"], bench.BOWL6
    assert bowl.space == fn.space and bowl(bowl.optimum) == bowl.minimum == 0.0
    for p in QuasiRandomDesigner(fn.space, 5).suggest(range(100)):
        assert math.isfinite(bowl(p)) and (math.isnan(fn(p)) or fn(p) == bowl(p))


def test_simple_regret_and_quartiles() -> None:
    assert bench.simple_regret([math.nan, 3.0, 1.5, 2.0], 0.5) == 1.0
    assert bench.simple_regret([math.nan, math.nan], 0.0) == math.inf
    assert bench.quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == (2.0, 3.0, 4.0)
    assert bench.quartiles([1.0, 2.0, 3.0, math.inf, math.inf]) == (2.0, 3.0, math.inf)
    assert bench.quartiles([0.5]) == (0.5, 0.5, 0.5)


def test_a_serial_run_evaluates_the_designers_points_in_order() -> None:
    fn = bench.FUNCTIONS["categorical"]
    values = bench.run_serial("quasi_random", fn, 12, seed=4)
    want = [fn(p) for p in QuasiRandomDesigner(fn.space, 4).suggest(range(12))]
    assert [repr(v) for v in values] == [repr(v) for v in want]  # NaN included
    refined = bench.run_serial("refine", fn, 12, seed=4)
    assert refined[:6] == pytest.approx(want[:6], nan_ok=True)  # refine's quasi-random start
    assert bench.simple_regret(refined, fn.minimum) <= bench.simple_regret(want, fn.minimum)


def test_the_parallel_check_counts_suggestions_equal_to_pending_ones() -> None:
    if "bench-test-constant" not in designer_names():
        @designer("bench-test-constant")
        class Constant(Designer):  # one point, again and again: every pending one collides
            adaptive = True

            def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
                return [self.space.from_unit([0.5] * len(self.space)) for _ in indices]

    fn = bench.FUNCTIONS["diverging"]
    assert bench.parallel_check("bench-test-constant", fn, 6, 0, workers=2) == (5, 0)
    assert bench.parallel_check("quasi_random", fn, 16, 0, workers=8) == (0, 0)
    a = fn.optimum
    assert bench._close(fn.space, a, {**a, "x1": 0.304}, 0.005)
    assert not bench._close(fn.space, a, {**a, "x1": 0.31}, 0.005)
    assert not bench._close(fn.space, a, {**a, "layers": 4}, 0.005)  # an int is a slice


def test_an_algorithm_that_cannot_run_is_skipped_with_a_message(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.available("quasi_random@2") == ("quasi_random", 2)
    assert bench.available("no-such-designer") is None
    assert bench.available("optuna:Nope") is None
    assert bench.available("refine", {"refine": {"initial": 3}}) is None
    out = capsys.readouterr().out
    assert "skipping refine: search.options.initial: 'refine' takes no options" in out
    assert "skipping no-such-designer: unknown search algorithm" in out
    assert "skipping optuna:Nope: unknown Optuna sampler 'Nope'" in out

"""Hyperparameter kinds and the mapping between the unit cube and values."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from tunebook.search.space import (
    Categorical,
    Discrete,
    Float,
    Hyperparameter,
    HyperparameterError,
    Int,
    SearchSpace,
)

JUST_BELOW_ONE = math.nextafter(1.0, 0.0)


def unit_grid(n: int) -> list[float]:
    """``n`` evenly spaced points of [0, 1), each in the middle of its cell."""
    return [(k + 0.5) / n for k in range(n)]


def probe_points(seed: int = 0, n: int = 2000) -> list[float]:
    rng = random.Random(seed)
    return [0.0, 1e-300, 0.5, JUST_BELOW_ONE, 1 - 1e-12] + [rng.random() for _ in range(n)]


# ----------------------------------------------------------------------------- Float
class TestFloatLinear:
    def test_endpoints_and_midpoint(self) -> None:
        hp = Float(-2.0, 6.0)
        assert hp.from_unit(0.0) == -2.0
        assert hp.from_unit(0.5) == pytest.approx(2.0)
        assert hp.from_unit(0.25) == pytest.approx(0.0)
        assert hp.from_unit(JUST_BELOW_ONE) == pytest.approx(6.0)

    def test_to_unit_is_the_inverse(self) -> None:
        hp = Float(-2.0, 6.0)
        assert hp.to_unit(-2.0) == 0.0
        assert hp.to_unit(6.0) == 1.0
        assert hp.to_unit(0.0) == pytest.approx(0.25)
        for u in (0.0, 0.1, 0.37, 0.5, 0.99):
            assert hp.to_unit(hp.from_unit(u)) == pytest.approx(u)

    def test_linear_means_equal_steps(self) -> None:
        hp = Float(10.0, 20.0)
        values = [hp.from_unit(u) for u in (0.0, 0.1, 0.2, 0.3)]
        steps = [b - a for a, b in itertools.pairwise(values)]
        assert steps == pytest.approx([1.0, 1.0, 1.0])

    def test_ints_become_floats(self) -> None:
        # Float(1, 10) must describe the same thing as YAML's 1.0 and 10.0 (same identity).
        hp = Float(1, 10)
        assert type(hp.low) is float and type(hp.high) is float
        assert type(hp.from_unit(0.0)) is float


class TestFloatLog:
    def test_endpoints(self) -> None:
        hp = Float(1e-4, 1.0, "log")
        assert hp.from_unit(0.0) == pytest.approx(1e-4, rel=1e-12)
        assert hp.from_unit(JUST_BELOW_ONE) == pytest.approx(1.0, rel=1e-12)
        assert hp.from_unit(JUST_BELOW_ONE) <= 1.0

    def test_midpoint_is_the_geometric_mean(self) -> None:
        hp = Float(1e-4, 1.0, "log")
        assert hp.from_unit(0.5) == pytest.approx(1e-2, rel=1e-12)
        hp = Float(2.0, 32.0, "log")
        assert hp.from_unit(0.5) == pytest.approx(math.sqrt(2.0 * 32.0), rel=1e-12)
        # Not the arithmetic mean: that is what linear gives.
        assert hp.from_unit(0.5) != pytest.approx(17.0)

    def test_each_decade_gets_equal_room(self) -> None:
        hp = Float(1e-4, 1.0, "log")
        for k in range(5):
            assert hp.from_unit(k / 4) == pytest.approx(10.0 ** (k - 4), rel=1e-9)

    def test_to_unit_is_the_inverse(self) -> None:
        hp = Float(1e-4, 1.0, "log")
        assert hp.to_unit(1e-4) == pytest.approx(0.0, abs=1e-12)
        assert hp.to_unit(1.0) == pytest.approx(1.0)
        assert hp.to_unit(1e-2) == pytest.approx(0.5)
        for u in (0.0, 0.13, 0.5, 0.77, 0.999):
            assert hp.to_unit(hp.from_unit(u)) == pytest.approx(u, abs=1e-12)


class TestFloatOneMinusLog:
    def test_endpoints(self) -> None:
        hp = Float(0.5, 0.999, "one_minus_log")
        assert hp.from_unit(0.0) == pytest.approx(0.5, rel=1e-12)
        assert hp.from_unit(JUST_BELOW_ONE) == pytest.approx(0.999, rel=1e-12)
        assert hp.from_unit(JUST_BELOW_ONE) <= 0.999

    def test_one_minus_value_is_log_uniform(self) -> None:
        hp = Float(0.5, 0.999, "one_minus_log")
        lo, hi = math.log(1 - 0.5), math.log(1 - 0.999)
        for u in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9):
            assert math.log(1 - hp.from_unit(u)) == pytest.approx(lo + u * (hi - lo), rel=1e-9)

    def test_midpoint(self) -> None:
        hp = Float(0.9, 0.999, "one_minus_log")
        # 1 - value runs from 0.1 to 0.001: its geometric mean is 0.01, so the value is 0.99.
        assert hp.from_unit(0.5) == pytest.approx(0.99, rel=1e-12)

    def test_to_unit_is_the_inverse(self) -> None:
        hp = Float(0.9, 0.999, "one_minus_log")
        assert hp.to_unit(0.9) == pytest.approx(0.0, abs=1e-12)
        assert hp.to_unit(0.999) == pytest.approx(1.0)
        assert hp.to_unit(0.99) == pytest.approx(0.5)
        for u in (0.0, 0.2, 0.5, 0.8, 0.999):
            assert hp.to_unit(hp.from_unit(u)) == pytest.approx(u, abs=1e-9)

    def test_negative_low_is_allowed(self) -> None:
        hp = Float(-1.0, 0.5, "one_minus_log")
        assert hp.from_unit(0.0) == pytest.approx(-1.0)
        assert hp.from_unit(0.5) == pytest.approx(1 - math.sqrt(2.0 * 0.5))


@pytest.mark.parametrize("hp", [
    Float(0.1, 0.3),
    Float(-7.25, 1e6),
    Float(1e-8, 1e-7, "log"),
    Float(1e-4, 1.0, "log"),
    Float(0.5, 0.999, "one_minus_log"),
    Float(0.9, 0.9999999, "one_minus_log"),
    Float(-3.0, 0.0, "one_minus_log"),
], ids=repr)
def test_float_stays_within_bounds(hp: Float) -> None:
    for u in probe_points():
        v = hp.from_unit(u)
        assert hp.low <= v <= hp.high, (u, v)


def test_float_stays_within_random_bounds() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        low = rng.uniform(-100, 100)
        high = low + 10 ** rng.uniform(-9, 3)
        for hp in (Float(low, high), Float(abs(low) + 1e-9, abs(low) + 1e-9 + high - low, "log")):
            for u in (0.0, JUST_BELOW_ONE, rng.random()):
                assert hp.low <= hp.from_unit(u) <= hp.high, (hp, u)


def test_float_is_monotone_in_u() -> None:
    for hp in (Float(0.0, 1.0), Float(1e-5, 10.0, "log"), Float(0.0, 0.99, "one_minus_log")):
        values = [hp.from_unit(u) for u in unit_grid(500)]
        assert values == sorted(values)
        assert len(set(values)) == len(values)


# ----------------------------------------------------------------------------- Int
class TestIntLinear:
    def test_both_ends_reachable(self) -> None:
        hp = Int(3, 7)
        assert hp.from_unit(0.0) == 3
        assert hp.from_unit(JUST_BELOW_ONE) == 7
        assert {hp.from_unit(u) for u in unit_grid(1000)} == {3, 4, 5, 6, 7}

    def test_every_integer_equally_likely(self) -> None:
        hp = Int(3, 7)
        counts = Counter(hp.from_unit(u) for u in unit_grid(1000))
        assert counts == dict.fromkeys(range(3, 8), 200)

    def test_two_values(self) -> None:
        hp = Int(0, 1)
        counts = Counter(hp.from_unit(u) for u in unit_grid(100))
        assert counts == {0: 50, 1: 50}

    def test_negative_range(self) -> None:
        hp = Int(-5, -2)
        counts = Counter(hp.from_unit(u) for u in unit_grid(400))
        assert counts == dict.fromkeys(range(-5, -1), 100)

    def test_returns_int(self) -> None:
        assert all(type(Int(1, 9).from_unit(u)) is int for u in unit_grid(20))

    def test_to_unit_is_the_centre_of_the_slice(self) -> None:
        hp = Int(3, 7)
        assert hp.to_unit(3) == pytest.approx(0.1)
        assert hp.to_unit(5) == pytest.approx(0.5)
        assert hp.to_unit(7) == pytest.approx(0.9)
        for v in range(3, 8):
            assert hp.from_unit(hp.to_unit(v)) == v


class TestIntLog:
    def test_both_ends_reachable(self) -> None:
        hp = Int(32, 512, "log")
        assert hp.from_unit(0.0) == 32
        assert hp.from_unit(JUST_BELOW_ONE) == 512

    def test_every_integer_reachable_and_log_weighted(self) -> None:
        hp = Int(1, 10, "log")
        n = 100_000
        counts = Counter(hp.from_unit(u) for u in unit_grid(n))
        assert set(counts) == set(range(1, 11))
        total = math.log(11 / 1)
        for k in range(1, 11):
            # k owns [log k, log(k + 1)) of the log range: 1 gets ~29%, 10 gets ~4%.
            assert counts[k] / n == pytest.approx(math.log((k + 1) / k) / total, abs=1e-3)
        assert counts[1] > counts[2] > counts[10]

    def test_to_unit_round_trips(self) -> None:
        hp = Int(1, 10, "log")
        for v in range(1, 11):
            assert 0 < hp.to_unit(v) < 1
            assert hp.from_unit(hp.to_unit(v)) == v


@pytest.mark.parametrize("hp", [Int(0, 1), Int(3, 7), Int(-100, 100), Int(1, 2, "log"),
                                Int(32, 512, "log"), Int(1, 10**9, "log")], ids=repr)
def test_int_stays_within_bounds(hp: Int) -> None:
    values = [hp.from_unit(u) for u in probe_points()]
    assert all(hp.low <= v <= hp.high for v in values)
    assert all(isinstance(v, int) for v in values)
    ordered = [hp.from_unit(u) for u in unit_grid(1000)]
    assert ordered == sorted(ordered)


# ----------------------------------------------------------------------------- Discrete
class TestDiscrete:
    def test_each_value_equally_likely_in_given_order(self) -> None:
        hp = Discrete((32, 64, 128, 256))
        counts = Counter(hp.from_unit(u) for u in unit_grid(400))
        assert counts == {32: 100, 64: 100, 128: 100, 256: 100}
        assert hp.from_unit(0.0) == 32
        assert hp.from_unit(JUST_BELOW_ONE) == 256
        assert hp.from_unit(0.3) == 64

    def test_to_unit_inverts_from_unit(self) -> None:
        for values in ((32, 64, 128), (128, 32, 64), (0.1, 1e-3, 0.5, 2)):
            hp = Discrete(values)
            for v in values:
                assert 0 < hp.to_unit(v) < 1
                assert hp.from_unit(hp.to_unit(v)) == v

    def test_stays_within_values(self) -> None:
        hp = Discrete((1, 2.5, 10))
        assert {hp.from_unit(u) for u in probe_points()} == {1, 2.5, 10}


class TestCategorical:
    def test_each_value_equally_likely(self) -> None:
        hp = Categorical(("relu", "gelu", "tanh"))
        counts = Counter(hp.from_unit(u) for u in unit_grid(300))
        assert counts == {"relu": 100, "gelu": 100, "tanh": 100}
        assert hp.from_unit(0.0) == "relu"
        assert hp.from_unit(JUST_BELOW_ONE) == "tanh"

    def test_mixed_scalars(self) -> None:
        hp = Categorical((True, "auto", 3))
        assert {hp.from_unit(u) for u in probe_points()} == {True, "auto", 3}


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: Float(1.0, 1.0), r"^low must be < high.*low=1\.0.*high=1\.0"),
    (lambda: Float(2.0, 1.0), r"^low must be < high.*low=2\.0"),
    (lambda: Float(0.0, 1.0, "log"), r"^low must be > 0 for log scale, got 0\.0"),
    (lambda: Float(-1.0, 1.0, "log"), r"^low must be > 0 for log scale, got -1\.0"),
    (lambda: Float(0.5, 1.0, "one_minus_log"), r"^high must be < 1 .*one_minus_log.*1\.0"),
    (lambda: Float(0.0, 1.0, "cubic"), r"^scale must be one of .*'cubic'"),
    (lambda: Float("0", 1.0), r"^low must be a number, got '0'"),
    (lambda: Float(True, 2.0), r"^low must be a number, got True"),
    (lambda: Float(0.0, math.inf), r"^high must be finite, got inf"),
    (lambda: Float(math.nan, 1.0), r"^low must be finite, got nan"),
    (lambda: Int(1.0, 5), r"^low must be an integer, got 1\.0"),
    (lambda: Int(1, "5"), r"^high must be an integer, got '5'"),
    (lambda: Int(False, 5), r"^low must be an integer, got False"),
    (lambda: Int(5, 5), r"^low must be < high, got low=5, high=5"),
    (lambda: Int(0, 10, "log"), r"^low must be > 0 for log scale, got 0"),
    (lambda: Int(1, 10, "one_minus_log"), r"^scale must be linear or log .*'one_minus_log'"),
    (lambda: Discrete((1,)), r"^values must list at least 2 numbers, got \[1\]"),
    (lambda: Discrete((1, "a")), r"^each value must be a number, got 'a'"),
    (lambda: Discrete((1, math.inf)), r"^each value must be finite, got inf"),
    (lambda: Discrete((2, 2)), r"^values must be distinct, got \[2, 2\]"),
    (lambda: Categorical(("a",)), r"^values must list at least 2 choices, got \['a'\]"),
    (lambda: Categorical(("a", None)), r"^each value must be .*got None"),
    (lambda: Categorical(("a", "a")), r"^values must be distinct, got \['a', 'a'\]"),
    # Every sample of a range whose width overflows would be inf.
    (lambda: Float(-1.7e308, 1.7e308), r"^high - low must be a finite number.*width of inf"),
    (lambda: Float(0.0, 10**400), r"^high must be finite"),
    (lambda: Discrete((1, 10**400)), r"^each value must be finite"),
    (lambda: Int(0, 2**60), r"^high must be within \+-2\*\*53"),
    (lambda: Categorical((math.nan, 1.0)), r"^each value must be finite, got nan"),
    (lambda: Categorical(("a", -math.inf)), r"^each value must be finite, got -inf"),
])
def test_validation_names_field_and_value(make, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=pattern):
        make()


def test_valid_edge_cases_are_accepted() -> None:
    assert Int(1, 2, "log").from_unit(0.0) == 1
    assert Float(1e-300, 1e300, "log").from_unit(0.5) == pytest.approx(1.0)
    assert Float(-5.0, 0.0, "one_minus_log").high == 0.0
    assert math.isfinite(Float(-8e307, 8e307).from_unit(0.999))
    assert Int(-(2**53), 2**53).from_unit(0.0) == -(2**53)


# ----------------------------------------------------------------------------- SearchSpace
class TestSearchSpace:
    def test_dimensions_are_ordered_by_name(self) -> None:
        space = SearchSpace({"width": Int(1, 9), "beta1": Float(0.5, 0.9),
                             "activation": Categorical(("a", "b"))})
        assert space.names == ("activation", "beta1", "width")
        assert list(space) == ["activation", "beta1", "width"]
        assert len(space) == 3

    def test_insertion_order_does_not_matter(self) -> None:
        a = SearchSpace({"x": Float(0.0, 1.0), "y": Int(0, 9)})
        b = SearchSpace({"y": Int(0, 9), "x": Float(0.0, 1.0)})
        assert a == b
        assert hash(a) == hash(b)
        assert a.from_unit([0.25, 0.95]) == b.from_unit([0.25, 0.95])
        assert a != SearchSpace({"x": Float(0.0, 2.0), "y": Int(0, 9)})

    def test_from_unit_maps_coordinates_by_sorted_name(self) -> None:
        space = SearchSpace({"zeta": Float(100.0, 200.0), "alpha": Float(0.0, 1.0),
                             "mid": Categorical(("p", "q"))})
        point = space.from_unit([0.5, 0.9, 0.1])
        assert point == {"alpha": pytest.approx(0.5), "mid": "q", "zeta": pytest.approx(110.0)}
        assert list(point) == ["alpha", "mid", "zeta"]

    @pytest.mark.parametrize("point", [[], [0.5], [0.1, 0.2, 0.3]])
    def test_from_unit_with_wrong_length_raises(self, point: list[float]) -> None:
        space = SearchSpace({"x": Float(0.0, 1.0), "y": Int(0, 9)})
        with pytest.raises(ValueError, match=rf"expected 2 coordinates, got {len(point)}"):
            space.from_unit(point)

    def test_is_a_read_only_mapping(self) -> None:
        space = SearchSpace({"x": Float(0.0, 1.0)})
        assert space["x"] == Float(0.0, 1.0)
        assert "x" in space and "y" not in space
        with pytest.raises(KeyError):
            space["y"]
        with pytest.raises(TypeError):
            space["y"] = Float(0.0, 1.0)  # type: ignore[index]


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize(("make", "field"), [
    (lambda: Float(1.0, 0.5), "low"),
    (lambda: Float(0.0, 1.0, "cubic"), "scale"),  # type: ignore[arg-type]
    (lambda: Float(0.5, 2.0, "one_minus_log"), "high"),
    (lambda: Float(-1.7e308, 1.7e308), "high"),
    (lambda: Int(0, 2**60), "high"),
    (lambda: Int(1.5, 3), "low"),  # type: ignore[arg-type]
    (lambda: Discrete((1,)), "values"),
    (lambda: Discrete((1, 1)), "values"),
    (lambda: Categorical(("a", math.nan)), "values"),
])
def test_errors_name_the_field_as_data(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HyperparameterError) as info:
        make()
    assert info.value.field == field
    assert str(info.value).startswith(field if field != "values" else ("values", "each"))


@pytest.mark.parametrize(("hp", "json"), [
    (Float(1e-4, 1e-1, "log"), {"type": "float", "low": 1e-4, "high": 0.1, "scale": "log"}),
    (Int(1, 8), {"type": "int", "low": 1, "high": 8, "scale": "linear"}),
    (Discrete((32, 64)), {"type": "discrete", "values": [32, 64]}),
    (Categorical(("relu", True)), {"type": "categorical", "values": ["relu", True]}),
])
def test_to_json_describes_the_kind(hp: Hyperparameter, json: dict[str, object]) -> None:
    assert hp.to_json() == json
    assert hp.kind == json["type"]


def test_ranges_and_choices_answer_for_themselves() -> None:
    rate, width = Float(0.1, 0.9, "one_minus_log"), Int(2, 5, "log")
    batch, act = Discrete((64, 32)), Categorical(("relu", "gelu"))
    assert rate.bounds == (0.1, 0.9) and width.bounds == (2.0, 5.0)
    assert batch.bounds is None and act.bounds is None
    assert rate.choices is None and batch.choices == (64, 32) and act.choices == ("relu", "gelu")
    assert rate.as_range() is rate and width.as_range() is width and batch.as_range() is None
    assert [hp.axis_scale for hp in (rate, width, batch, act)] == [
        "one_minus_log", "log", "categorical", "categorical"]
    assert [hp.ordered for hp in (rate, width, batch, act)] == [True, True, True, False]
    assert [hp.integer for hp in (rate, width, batch, act)] == [False, True, False, False]


def test_describe_formats_numbers_but_not_categories() -> None:
    def fmt(v: object) -> str:
        return f"<{v}>"

    assert Float(0.001, 1.0, "log").describe(fmt) == "float [<0.001>, <1.0>], log"
    assert Int(1, 9).describe() == "int [1, 9], linear"
    assert Discrete((32, 64)).describe(fmt) == "discrete <32>, <64>"
    assert Categorical((1, "a")).describe(fmt) == "categorical 1, a"


def test_grid_units_cover_a_range_end_to_end_and_every_choice_once() -> None:
    rate = Float(1e-3, 1.0, "log")
    units = rate.grid_units(4)
    assert units[0] == 0.0 and units[1:3] == pytest.approx([1 / 3, 2 / 3])
    assert [rate.from_unit(u) for u in units] == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    last = Int(0, 4).grid_units(5)[-1]
    assert last < 1.0 and Int(0, 4).from_unit(last) == 4
    act = Categorical(("a", "b", "c"))
    assert [act.from_unit(u) for u in act.grid_units(7)] == ["a", "b", "c"]


@pytest.mark.parametrize("hp", [Discrete((1, 2.5, 7)), Categorical(("x", 3, False))])
def test_choices_to_unit_inverts_from_unit(hp: Discrete | Categorical) -> None:
    for value in hp.values:
        assert hp.from_unit(hp.to_unit(value)) == value


"""Hyperparameters, their scales, and the mapping between the unit cube and values.

A search designer works in the unit cube ``[0, 1)^d``; :class:`SearchSpace` turns a point of the
cube into hyperparameter values. Dimensions are ordered by hyperparameter name, so the order in
which keys are written in an experiment file never changes which point a trial gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "Categorical",
    "Discrete",
    "Float",
    "Hyperparameter",
    "Int",
    "Scale",
    "SearchSpace",
    "Value",
]

Scale: TypeAlias = Literal["linear", "log", "one_minus_log"]
Value: TypeAlias = float | int | str | bool
SCALES: tuple[str, ...] = ("linear", "log", "one_minus_log")


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # OverflowError: an int beyond the largest float
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Float:
    """A real-valued hyperparameter searched between ``low`` and ``high``.

    ``scale="log"`` searches uniformly in ``log(value)`` (learning rates, weight decay);
    ``scale="one_minus_log"`` searches uniformly in ``log(1 - value)`` (momentum, Adam's beta1).
    """

    low: float
    high: float
    scale: Scale = "linear"

    def __post_init__(self) -> None:
        low = _check_number("low", self.low)
        high = _check_number("high", self.high)
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if low >= high:
            raise ValueError(f"low must be < high, got low={self.low!r}, high={self.high!r}")
        if not math.isfinite(high - low):
            # Every sample would be inf: low + u * (high - low) overflows.
            raise ValueError(f"high - low must be a finite number, got low={self.low!r}, "
                             f"high={self.high!r} (a width of {high - low!r})")
        if self.scale == "log" and low <= 0:
            raise ValueError(f"low must be > 0 for log scale, got {self.low!r}")
        if self.scale == "one_minus_log" and high >= 1:
            raise ValueError(f"high must be < 1 for one_minus_log scale, got {self.high!r}")
        # Store plain floats: Float(1, 10) and YAML's 1.0/10.0 must describe (and hash) alike.
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def from_unit(self, u: float) -> float:
        """Map ``u`` in ``[0, 1)`` to a value in ``[low, high]``."""
        if self.scale == "log":
            lo, hi = math.log(self.low), math.log(self.high)
            return min(max(math.exp(lo + u * (hi - lo)), self.low), self.high)
        if self.scale == "one_minus_log":
            # u = 0 gives low, like the other scales: 1 - value runs from 1 - low down to 1 - high.
            lo, hi = math.log1p(-self.low), math.log1p(-self.high)
            return min(max(-math.expm1(lo + u * (hi - lo)), self.low), self.high)
        return self.low + u * (self.high - self.low)

    def to_unit(self, value: float) -> float:
        """Position of ``value`` in the scaled space, 0 at ``low`` and 1 at ``high``."""
        if self.scale == "log":
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(value) - lo) / (hi - lo)
        if self.scale == "one_minus_log":
            lo, hi = math.log1p(-self.low), math.log1p(-self.high)
            return (math.log1p(-value) - lo) / (hi - lo)
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]``, both ends included."""

    low: int
    high: int
    scale: Literal["linear", "log"] = "linear"

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"scale must be linear or log for int, got {self.scale!r}")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low!r}, high={self.high!r}")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"low must be > 0 for log scale, got {self.low!r}")
        for name in ("low", "high"):
            # Sampling goes through floats: beyond 2**53 integers are skipped, beyond ~1e308
            # there is no float at all.
            if abs(getattr(self, name)) > 2**53:
                raise ValueError(f"{name} must be within +-2**53 (integers are sampled through "
                                 f"floats), got {getattr(self, name)!r}")

    def _bounds(self) -> tuple[float, float]:
        # Each integer owns an equal slice of [low, high + 1) in the scaled space, so both
        # ends are as likely as any interior value.
        if self.scale == "log":
            return math.log(self.low), math.log(self.high + 1)
        return float(self.low), float(self.high + 1)

    def from_unit(self, u: float) -> int:
        """Map ``u`` in ``[0, 1)`` to an integer in ``[low, high]``."""
        lo, hi = self._bounds()
        x = lo + u * (hi - lo)
        value = math.floor(math.exp(x) if self.scale == "log" else x)
        return min(max(value, self.low), self.high)

    def to_unit(self, value: float) -> float:
        """Position of the centre of ``value``'s slice in the scaled space."""
        lo, hi = self._bounds()
        x = (math.log(value) + math.log(value + 1)) / 2 if self.scale == "log" else value + 0.5
        return (x - lo) / (hi - lo)


@dataclass(frozen=True)
class Discrete:
    """A hyperparameter taking one of an ordered list of numbers (e.g. batch sizes)."""

    values: tuple[float | int, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError(f"values must list at least 2 numbers, got {list(self.values)!r}")
        for v in self.values:
            _check_number("each value", v)
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"values must be distinct, got {list(self.values)!r}")

    def from_unit(self, u: float) -> float | int:
        """Map ``u`` in ``[0, 1)`` to one of the values, each with equal probability."""
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def to_unit(self, value: float) -> float:
        """Centre of ``value``'s slice of ``[0, 1)`` (the inverse of :meth:`from_unit`)."""
        return (self.values.index(value) + 0.5) / len(self.values)


@dataclass(frozen=True)
class Categorical:
    """A hyperparameter taking one of an unordered set of values (e.g. activation)."""

    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError(f"values must list at least 2 choices, got {list(self.values)!r}")
        for v in self.values:
            if not isinstance(v, str | int | float | bool):
                raise ValueError(f"each value must be a string, number or boolean, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"each value must be finite, got {v!r}")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"values must be distinct, got {list(self.values)!r}")

    def from_unit(self, u: float) -> Value:
        """Map ``u`` in ``[0, 1)`` to one of the values, each with equal probability."""
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


Hyperparameter: TypeAlias = Float | Int | Discrete | Categorical


class SearchSpace(Mapping[str, Hyperparameter]):
    """An immutable mapping of hyperparameter names to their definitions.

    Iteration order (and so the dimension order of the unit cube) is sorted by name.
    """

    def __init__(self, params: Mapping[str, Hyperparameter]) -> None:
        self._params = {name: params[name] for name in sorted(params)}

    def __getitem__(self, name: str) -> Hyperparameter:
        return self._params[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"SearchSpace({self._params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._params == other._params

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """Hyperparameter names in dimension order."""
        return tuple(self._params)

    def from_unit(self, point: Sequence[float]) -> dict[str, Value]:
        """Turn one point of the unit cube (one coordinate per dimension) into values."""
        if len(point) != len(self._params):
            raise ValueError(f"expected {len(self._params)} coordinates, got {len(point)}")
        pairs = zip(self._params.items(), point, strict=True)
        return {name: hp.from_unit(float(u)) for (name, hp), u in pairs}

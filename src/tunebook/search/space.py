"""Hyperparameters, their scales, and the mapping between the unit cube and values.

A search designer works in the unit cube ``[0, 1)^d``; :class:`SearchSpace` turns a point of the
cube into hyperparameter values. Dimensions are ordered by hyperparameter name, so the order in
which keys are written in an experiment file never changes which point a trial gets.

Each kind owns its behaviour: callers elsewhere ask a hyperparameter (``bounds``, ``choices``,
``ordered``, ``axis_scale``, ``grid_units``, ``describe``, ``to_json``) instead of switching on
its class, so a new kind is written here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, TypeAlias

from tunebook.core.numeric import finite

__all__ = [
    "Categorical",
    "Discrete",
    "Float",
    "Hyperparameter",
    "HyperparameterError",
    "Int",
    "Scale",
    "SearchSpace",
    "Value",
    "position",
]

Scale: TypeAlias = Literal["linear", "log", "one_minus_log"]
Value: TypeAlias = float | int | str | bool
SCALES: tuple[str, ...] = ("linear", "log", "one_minus_log")


class HyperparameterError(ValueError):
    """A hyperparameter's definition is invalid.

    Args:
        field: the field at fault (``low``, ``high``, ``scale`` or ``values``), so a caller can
            point at the key without reading the message.
        message: what is wrong, including the bad value.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def _check_number(field: str, value: object, name: str | None = None) -> float:
    name = name or field
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HyperparameterError(field, f"{name} must be a number, got {value!r}")
    number = finite(value)
    if number is None:
        raise HyperparameterError(field, f"{name} must be finite, got {value!r}")
    return number


def _fmt(value: Any) -> str:
    return str(value)


class _Range:
    """What :class:`Float` and :class:`Int` share: a range ``[low, high]`` with a scale."""

    kind: ClassVar[str]
    integer: ClassVar[bool]
    ordered: ClassVar[bool] = True
    low: float
    high: float
    scale: str

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` as floats."""
        return float(self.low), float(self.high)

    @property
    def choices(self) -> None:
        """None: a range has no list of values."""
        return None

    def as_range(self) -> Self:
        """This hyperparameter, typed as a range (None for a list of values)."""
        return self

    @property
    def axis_scale(self) -> str:
        """How a plot's axis shows the values: the scale."""
        return self.scale

    def grid_units(self, levels: int) -> list[float]:
        """``levels`` (at least 2) evenly spaced points of ``[0, 1)``, both ends included."""
        # 1 - 1e-12 instead of 1 keeps from_unit inside [low, high] for every kind.
        return [min(j / (levels - 1), 1 - 1e-12) for j in range(levels)]

    def describe(self, fmt: Callable[[Any], str] = _fmt) -> str:
        """One line for people, e.g. ``float [0.001, 1], log``; ``fmt`` formats numbers."""
        return f"{self.kind} [{fmt(self.low)}, {fmt(self.high)}], {self.scale}"

    def to_json(self) -> dict[str, Any]:
        """The experiment file's description of this hyperparameter."""
        return {"type": self.kind, "low": self.low, "high": self.high, "scale": self.scale}


class _Choice:
    """What :class:`Discrete` and :class:`Categorical` share: a list of values."""

    kind: ClassVar[str]
    ordered: ClassVar[bool]
    integer: ClassVar[bool] = False
    values: tuple[Value, ...]

    @property
    def bounds(self) -> None:
        """None: a list of values has no range."""
        return None

    @property
    def choices(self) -> tuple[Value, ...]:
        """The values, in order."""
        return self.values

    def as_range(self) -> None:
        """None: a list of values is no range."""
        return None

    @property
    def axis_scale(self) -> str:
        """How a plot's axis shows the values: one category each."""
        return "categorical"

    def _index(self, u: float) -> int:
        """The value ``u`` in ``[0, 1)`` picks, each with equal probability."""
        return min(int(u * len(self.values)), len(self.values) - 1)

    def to_unit(self, value: Value) -> float:
        """Centre of ``value``'s slice of ``[0, 1)`` (the inverse of :meth:`from_unit`)."""
        return (self.values.index(value) + 0.5) / len(self.values)

    def grid_units(self, levels: int) -> list[float]:
        """The centre of every value's slice (``levels`` does not apply: every value is used)."""
        k = len(self.values)
        return [(j + 0.5) / k for j in range(k)]

    def describe(self, fmt: Callable[[Any], str] = _fmt) -> str:
        """One line for people, e.g. ``discrete 32, 64``; ``fmt`` formats numbers."""
        show = fmt if self.ordered else str
        return f"{self.kind} " + ", ".join(show(v) for v in self.values)

    def to_json(self) -> dict[str, Any]:
        """The experiment file's description of this hyperparameter."""
        return {"type": self.kind, "values": list(self.values)}


@dataclass(frozen=True)
class Float(_Range):
    """A real-valued hyperparameter searched between ``low`` and ``high``.

    ``scale="log"`` searches uniformly in ``log(value)`` (learning rates, weight decay);
    ``scale="one_minus_log"`` searches uniformly in ``log(1 - value)`` (momentum, Adam's beta1).
    """

    kind: ClassVar[str] = "float"
    integer: ClassVar[bool] = False
    low: float
    high: float
    scale: Scale = "linear"

    def __post_init__(self) -> None:
        low = _check_number("low", self.low)
        high = _check_number("high", self.high)
        if self.scale not in SCALES:
            raise HyperparameterError(
                "scale", f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if low >= high:
            raise HyperparameterError(
                "low", f"low must be < high, got low={self.low!r}, high={self.high!r}")
        if finite(high - low) is None:
            # Every sample would be inf: low + u * (high - low) overflows.
            raise HyperparameterError(
                "high", f"high - low must be a finite number, got low={self.low!r}, "
                        f"high={self.high!r} (a width of {high - low!r})")
        if self.scale == "log" and low <= 0:
            raise HyperparameterError("low", f"low must be > 0 for log scale, got {self.low!r}")
        if self.scale == "one_minus_log" and high >= 1:
            raise HyperparameterError(
                "high", f"high must be < 1 for one_minus_log scale, got {self.high!r}")
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
class Int(_Range):
    """An integer hyperparameter in ``[low, high]``, both ends included."""

    kind: ClassVar[str] = "int"
    integer: ClassVar[bool] = True
    low: int
    high: int
    scale: Literal["linear", "log"] = "linear"

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise HyperparameterError(name, f"{name} must be an integer, got {value!r}")
        if self.scale not in ("linear", "log"):
            raise HyperparameterError(
                "scale", f"scale must be linear or log for int, got {self.scale!r}")
        if self.low >= self.high:
            raise HyperparameterError(
                "low", f"low must be < high, got low={self.low!r}, high={self.high!r}")
        if self.scale == "log" and self.low <= 0:
            raise HyperparameterError("low", f"low must be > 0 for log scale, got {self.low!r}")
        for name in ("low", "high"):
            # Sampling goes through floats: beyond 2**53 integers are skipped, beyond ~1e308
            # there is no float at all.
            if abs(getattr(self, name)) > 2**53:
                raise HyperparameterError(
                    name, f"{name} must be within +-2**53 (integers are sampled through "
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


def _check_distinct(values: tuple[Value, ...]) -> None:
    if len(set(values)) != len(values):
        raise HyperparameterError("values", f"values must be distinct, got {list(values)!r}")


@dataclass(frozen=True)
class Discrete(_Choice):
    """A hyperparameter taking one of an ordered list of numbers (e.g. batch sizes)."""

    kind: ClassVar[str] = "discrete"
    ordered: ClassVar[bool] = True
    values: tuple[float | int, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise HyperparameterError(
                "values", f"values must list at least 2 numbers, got {list(self.values)!r}")
        for v in self.values:
            _check_number("values", v, "each value")
        _check_distinct(self.values)

    def from_unit(self, u: float) -> float | int:
        """Map ``u`` in ``[0, 1)`` to one of the values, each with equal probability."""
        return self.values[self._index(u)]


@dataclass(frozen=True)
class Categorical(_Choice):
    """A hyperparameter taking one of an unordered set of values (e.g. activation)."""

    kind: ClassVar[str] = "categorical"
    ordered: ClassVar[bool] = False
    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise HyperparameterError(
                "values", f"values must list at least 2 choices, got {list(self.values)!r}")
        for v in self.values:
            if not isinstance(v, str | int | float | bool):
                raise HyperparameterError(
                    "values", f"each value must be a string, number or boolean, got {v!r}")
            if isinstance(v, float) and finite(v) is None:
                raise HyperparameterError("values", f"each value must be finite, got {v!r}")
        _check_distinct(self.values)

    def from_unit(self, u: float) -> Value:
        """Map ``u`` in ``[0, 1)`` to one of the values, each with equal probability."""
        return self.values[self._index(u)]


Hyperparameter: TypeAlias = Float | Int | Discrete | Categorical


def position(hp: Hyperparameter, value: Any) -> float | None:
    """Where ``value`` sits in ``hp``'s scaled space (``to_unit``), or None when it has no
    position: an unordered (categorical) hyperparameter, a value that is not a finite number
    (booleans included), or one outside what the scale can map."""
    if not hp.ordered:
        return None
    v = finite(value)
    if v is None:
        return None
    try:
        u = hp.to_unit(v)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return finite(u)


class SearchSpace(Mapping[str, Hyperparameter]):
    """An immutable mapping of hyperparameter names to their definitions.

    Iteration order (and so the dimension order of the unit cube) is sorted by name; with
    ``first``, the names in ``first`` come first (sorted), then the others (sorted): a study
    with conditional hyperparameters puts the shared ones first, so that a designer whose
    dimension ``j`` depends only on ``j`` (quasi-random, random) gives every study the same
    shared point at the same index. The order is part of the space (two orders are two spaces).
    """

    def __init__(self, params: Mapping[str, Hyperparameter], first: Sequence[str] = ()) -> None:
        lead = sorted(n for n in set(first) if n in params)
        rest = sorted(n for n in params if n not in set(lead))
        self._params = {name: params[name] for name in (*lead, *rest)}

    def __getitem__(self, name: str) -> Hyperparameter:
        return self._params[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"SearchSpace({self._params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and (
            list(self._params.items()) == list(other._params.items()))

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

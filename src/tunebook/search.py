"""Search designers: they turn a trial index into hyperparameter values.

All designers share one small interface (:class:`Designer`): ``suggest`` values for trial
indices, ``observe`` finished trials, and a ``state`` that can be saved in the store and
``restore``-d. The non-adaptive designers (quasi-random, random, grid) make trial ``i`` a pure
function of (seed, search space, ``i``): any worker can take any index, a study can be extended,
and serial and parallel runs produce exactly the same trials. An adaptive designer (Bayesian
optimisation, for the exploitation phase) plugs into the same interface with ``adaptive = True``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.halton import scrambled_halton
from tunebook.rng import SplitMix64, derive_seed
from tunebook.space import Categorical, Discrete, SearchSpace, Value

__all__ = [
    "Designer",
    "GridDesigner",
    "Observation",
    "QuasiRandomDesigner",
    "RandomDesigner",
    "make_designer",
    "trial_seed",
]


@dataclass(frozen=True)
class Observation:
    """What a designer learns from one finished trial."""

    index: int
    params: dict[str, Value]
    value: float | None
    feasible: bool


class Designer(ABC):
    """Suggests hyperparameter values for trial indices of one study."""

    name: ClassVar[str]
    adaptive: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.seed = seed

    @abstractmethod
    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Values for each of ``indices`` (non-adaptive designers: a pure function of each)."""

    def observe(self, observations: Sequence[Observation]) -> None:  # noqa: B027
        """Learn from finished trials; non-adaptive designers ignore them."""

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable state to save in the store."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state` returned."""

    def capacity(self) -> int | None:
        """How many distinct trials the designer can produce (``None``: unbounded)."""
        return None


class QuasiRandomDesigner(Designer):
    """Shifted, scrambled Halton points: the playbook's choice for the exploration phase."""

    name = "quasi_random"

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Map Halton points ``indices`` of this seed into the search space."""
        points = scrambled_halton(self.seed, len(self.space), list(indices))
        return [self.space.from_unit(row.tolist()) for row in points]


class RandomDesigner(Designer):
    """Uniform random search (in each hyperparameter's scale); trial ``i`` has its own stream."""

    name = "random"

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Draw each index's point from a generator seeded by (seed, index)."""
        out = []
        for i in indices:
            rng = SplitMix64(derive_seed("random", self.seed, int(i)))
            out.append(self.space.from_unit([rng.uniform() for _ in self.space]))
        return out


class GridDesigner(Designer):
    """A grid over 1-2 nuisance hyperparameters (the playbook allows no more).

    Categorical and discrete hyperparameters contribute every value; each continuous one gets
    ``levels`` evenly spaced points in its scale, ends included.
    """

    name = "grid"

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20) -> None:
        super().__init__(space, seed)
        discrete = [len(hp.values) for hp in space.values()
                    if isinstance(hp, Categorical | Discrete)]
        n_cont = len(space) - len(discrete)
        fixed_size = math.prod(discrete)
        self.levels = (
            max(2, math.floor((trials / fixed_size) ** (1 / n_cont) + 1e-9)) if n_cont else 1)
        self._units: list[list[float]] = []
        for hp in space.values():
            if isinstance(hp, Categorical | Discrete):
                k = len(hp.values)
                self._units.append([(j + 0.5) / k for j in range(k)])
            else:
                k = self.levels
                # 1 - 1e-12 instead of 1 keeps from_unit inside [low, high] for every kind.
                self._units.append([min(j / (k - 1), 1 - 1e-12) for j in range(k)])

    def capacity(self) -> int:
        """The number of grid points."""
        return math.prod(len(u) for u in self._units)

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Grid point ``i`` in mixed-radix order (the last hyperparameter varies fastest)."""
        out = []
        for i in indices:
            if not 0 <= i < self.capacity():
                raise IndexError(f"grid has {self.capacity()} points, index {i} is outside")
            coords = []
            rest = int(i)
            for units in reversed(self._units):
                rest, digit = divmod(rest, len(units))
                coords.append(units[digit])
            out.append(self.space.from_unit(coords[::-1]))
        return out


def make_designer(algorithm: str, space: SearchSpace, seed: int, trials: int) -> Designer:
    """Build the designer named ``algorithm`` for one study."""
    if algorithm == "quasi_random":
        return QuasiRandomDesigner(space, seed)
    if algorithm == "random":
        return RandomDesigner(space, seed)
    if algorithm == "grid":
        return GridDesigner(space, seed, trials)
    raise ValueError(f"unknown search algorithm {algorithm!r}")


def trial_seed(search_seed: int, study: str, index: int) -> int:
    """The training seed of one trial: distinct per trial, reproducible, below 2**31."""
    return derive_seed("trial", search_seed, study, index) % (2**31)

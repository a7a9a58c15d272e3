"""Search designers: they turn trial indices (and, if adaptive, what was observed) into values.

Every designer is a plug-in registered by name with :func:`designer` (the experiment file's
``search.algorithm`` is one of :func:`designer_names`) and shares one small interface
(:class:`Designer`): ``suggest`` values for the next trial indices, ``observe`` finished trials,
and a JSON ``state`` that the runner saves in the store after every change and ``restore``-s on
resume.

The non-adaptive designers (quasi-random, random, grid) make trial ``i`` a pure function of
(seed, search space, ``i``): the runner writes a study's whole budget at once, any worker can
take any index, a study can be extended, and serial and parallel runs produce exactly the same
trials. An adaptive designer (``adaptive = True``: "refine" here, Bayesian optimisation later)
is asked for new trials as workers free up, given the trials it has observed so far.

To add one: subclass :class:`Designer` in a module that ``tunebook.search.designers`` imports
(worker processes validate the algorithm name too), decorate it with ``@designer("name")``, and
test it in ``tests/search/test_designers.py`` (a pure-function or resume test as those there).

Options: the experiment file's ``search.options`` mapping reaches the designer as ``options``;
a designer that takes some overrides :meth:`Designer.check_options` (the default accepts none),
raising :class:`OptionError` for a bad one, which the experiment's validation reports as
``search.options.KEY``. A *family* of algorithms registers a name ending in ``:``
(``@designer("optuna:")``): ``search.algorithm: optuna:TPESampler`` then builds that class with
``variant="TPESampler"`` (:func:`designer_class`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.core.numeric import finite
from tunebook.core.registry import Registry
from tunebook.search.rng import SplitMix64, derive_seed
from tunebook.search.space import SearchSpace, Value

__all__ = [
    "Designer",
    "GridDesigner",
    "Observation",
    "OptionError",
    "QuasiRandomDesigner",
    "RandomDesigner",
    "RefineDesigner",
    "designer",
    "designer_class",
    "designer_names",
    "make_designer",
    "trial_seed",
]

@dataclass(frozen=True)
class Observation:
    """What a designer learns from one finished trial.

    Attributes:
        value: the trial's objective (its best value), None unless ``status`` is completed
            and the trial reported it; an infeasible or failed trial carries no made-up value.
    """

    index: int
    params: dict[str, Value]
    value: float | None
    status: str  # completed, infeasible or failed

    @property
    def feasible(self) -> bool:
        """Completed with a finite objective value."""
        return self.status == "completed" and finite(self.value) is not None


class OptionError(ValueError):
    """A bad ``search.options`` entry: ``key`` (below ``search.options``) and the message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class Designer(ABC):
    """Suggests hyperparameter values for the trials of one study.

    Args:
        space: the nuisance search space.
        seed: the study's search seed.
        trials: the study's trial budget.
        goal: ``minimize`` or ``maximize`` the observed values.
        options: the experiment's ``search.options`` (validated by :meth:`check_options`).
        variant: for a family of algorithms (a name registered with a trailing ``:``), what
            follows the colon in ``search.algorithm``; else empty.
    """

    name: ClassVar[str]
    adaptive: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20,
                 goal: str = "minimize", options: Mapping[str, Any] | None = None,
                 variant: str = "") -> None:
        self.space = space
        self.seed = seed
        self.trials = trials
        self.goal = goal
        self.options: dict[str, Any] = dict(options or {})
        self.variant = variant

    @classmethod
    def check_options(cls, options: Mapping[str, Any], space: SearchSpace,
                      variant: str = "") -> None:
        """Raise :class:`OptionError` for a bad entry of ``options`` (or a ``variant`` this
        family does not have); the default accepts no option at all."""
        for key in options:
            raise OptionError(str(key), f"{cls.name!r} takes no options")

    @abstractmethod
    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Values for the leading trials of ``indices``, in order.

        A non-adaptive designer returns one point per index, each a pure function of (seed,
        space, index). An adaptive one is asked for the next consecutive indices and may
        return fewer (none while it waits for observations); what it returns is final.
        """

    @classmethod
    def parallel(cls, options: Mapping[str, Any]) -> int | None:
        """How many trials of a study the designer hands out before it waits for results,
        once past its start (None: as many as asked). With more workers than that, the
        others wait; ``tunebook run`` says so."""
        return None

    def observe(self, observations: Sequence[Observation]) -> None:  # noqa: B027
        """Learn from finished trials, each observed once; non-adaptive designers ignore them."""

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable state to save in the store."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state` returned."""

    def capacity(self) -> int | None:
        """How many distinct trials the designer can produce (``None``: unbounded)."""
        return None


# ``@designer("name")`` registers a Designer subclass as ``search.algorithm: name``.
designer: Registry[type[Designer]] = Registry("search algorithm")


def designer_names() -> tuple[str, ...]:
    """The registered algorithm names, in registration order."""
    return designer.names()


def designer_class(algorithm: str) -> tuple[type[Designer], str]:
    """The class ``search.algorithm: algorithm`` names, and its variant: ``("refine")`` is
    registered as it is; ``"optuna:TPESampler"`` is the family ``optuna:`` with variant
    ``TPESampler``. ValueError naming the known ones if neither."""
    if isinstance(algorithm, str) and algorithm not in designer.names() and ":" in algorithm:
        family, variant = algorithm.split(":", 1)
        if f"{family}:" in designer.names():
            return designer.get(f"{family}:"), variant
    return designer.get(algorithm), ""


def make_designer(algorithm: str, space: SearchSpace, seed: int, trials: int,
                  goal: str = "minimize", options: Mapping[str, Any] | None = None
                  ) -> Designer:
    """Build the designer ``algorithm`` names (see :func:`designer_class`) for one study."""
    cls, variant = designer_class(algorithm)
    return cls(space, seed, trials, goal, options, variant)


def _halton(seed: int, dims: int, indices: Sequence[int]) -> list[list[float]]:
    if dims == 0:  # an empty space (replicates): every point is the empty point
        return [[] for _ in indices]
    # Imported here: NumPy stays out of `import tunebook` (the experiment validates names).
    from tunebook.search.halton import scrambled_halton

    return [row.tolist() for row in scrambled_halton(seed, dims, list(indices))]


@designer("quasi_random")
class QuasiRandomDesigner(Designer):
    """Shifted, scrambled Halton points: the playbook's choice for the exploration phase."""

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Map Halton points ``indices`` of this seed into the search space."""
        return [self.space.from_unit(u) for u in _halton(self.seed, len(self.space), indices)]


@designer("random")
class RandomDesigner(Designer):
    """Uniform random search (in each hyperparameter's scale); trial ``i`` has its own stream."""

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Draw each index's point from a generator seeded by (seed, index)."""
        out = []
        for i in indices:
            rng = SplitMix64(derive_seed("random", self.seed, int(i)))
            out.append(self.space.from_unit([rng.uniform() for _ in self.space]))
        return out


@designer("grid")
class GridDesigner(Designer):
    """A grid over 1-2 nuisance hyperparameters (the playbook allows no more).

    Categorical and discrete hyperparameters contribute every value; each continuous one gets
    ``levels`` evenly spaced points in its scale, ends included. An empty space (replicates:
    every trial the same configuration, each with its own seed) has ``trials`` points, all
    the empty point.
    """

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20,
                 goal: str = "minimize", options: Mapping[str, Any] | None = None,
                 variant: str = "") -> None:
        super().__init__(space, seed, trials, goal, options, variant)
        discrete = [len(hp.choices) for hp in space.values() if hp.choices is not None]
        n_cont = len(space) - len(discrete)
        fixed_size = math.prod(discrete)
        self.levels = (
            max(2, math.floor((trials / fixed_size) ** (1 / n_cont) + 1e-9)) if n_cont else 1)
        self._units: list[list[float]] = []
        for hp in space.values():
            self._units.append(hp.grid_units(self.levels))

    def capacity(self) -> int:
        """The number of grid points (``trials`` replicates of the empty point when the space
        is empty)."""
        if not self._units:
            return self.trials
        return math.prod(len(u) for u in self._units)

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Grid point ``i`` in mixed-radix order (the last hyperparameter varies fastest)."""
        out = []
        for i in indices:
            if not 0 <= i < self.capacity():
                raise IndexError(f"grid has {self.capacity()} points, index {i} is outside")
            coords: list[float] = []
            rest = int(i)
            for units in reversed(self._units):
                rest, digit = divmod(rest, len(units))
                coords.append(units[digit])
            out.append(self.space.from_unit(coords[::-1]))
        return out


@designer("refine")
class RefineDesigner(Designer):
    """Refine around the best so far: a quasi-random start, then boxes shrinking around the best.

    The first ``initial`` trials (half the budget, at least 2) are the quasi-random designer's
    points. Then trials come in rounds of ``batch``: round ``r`` samples uniformly, in the unit
    cube of the hyperparameters' scales, within ``0.5 * SHRINK**r`` of the best trial finished
    before the round (ties: the lowest index). A round starts only once every earlier trial has
    finished, so its points depend on the seed and the observed values alone, never on which
    worker finished first: a run killed and resumed suggests the trials an uninterrupted run
    would. Infeasible and failed trials count as finished, never as best; while no trial is
    feasible the rounds go on with the quasi-random sequence; over an empty space (replicates)
    nothing waits. It exploits: use it after an
    exploration round has settled the search space, not instead of one.
    """

    adaptive = True
    SHRINK = 0.5

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20,
                 goal: str = "minimize", options: Mapping[str, Any] | None = None,
                 variant: str = "") -> None:
        super().__init__(space, seed, trials, goal, options, variant)
        self.initial = min(trials, max(2, trials // 2))
        self.batch = max(2, trials // 8)
        self._units: list[list[float]] = []  # unit coordinates of every suggested trial
        self._observed: dict[int, tuple[str, float | None]] = {}

    def _round(self, index: int) -> tuple[int, int]:
        """(round number, first index of that round)."""
        if index < self.initial:
            return 0, 0
        r = (index - self.initial) // self.batch
        return r + 1, self.initial + r * self.batch

    def _best(self, before: int) -> int | None:
        sign = -1.0 if self.goal == "maximize" else 1.0
        scored = [(sign * v, i) for i, (status, v) in self._observed.items()
                  if i < before and status == "completed" and v is not None]
        return min(scored)[1] if scored else None

    def _point(self, index: int) -> list[float]:
        r, start = self._round(index)
        best = self._best(start) if r else None
        if best is None:
            return _halton(self.seed, len(self.space), [index])[0]
        width = 0.5 * self.SHRINK**r
        rng = SplitMix64(derive_seed("refine", self.seed, index))
        return [min(max(c + (2 * rng.uniform() - 1) * width, 0.0), 1 - 1e-12)
                for c in self._units[best]]

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """The next trials up to the end of the current round (none until it can start)."""
        out = []
        for i in indices:
            if i != len(self._units):
                raise ValueError(f"refine suggests trials in order: expected index "
                                 f"{len(self._units)}, got {i}")
            _, start = self._round(i)
            if len(self.space) and any(j not in self._observed for j in range(start)):
                break  # the round waits for every earlier trial (replicates have no box)
            self._units.append(self._point(i))
            out.append(self.space.from_unit(self._units[-1]))
        return out

    def observe(self, observations: Sequence[Observation]) -> None:
        """Remember each trial's outcome; only feasible ones keep a value."""
        for o in observations:
            self._observed[o.index] = (o.status, o.value if o.feasible else None)

    def state(self) -> dict[str, Any]:
        """The suggested points and every observation."""
        return {"units": self._units,
                "observed": [[i, s, v] for i, (s, v) in sorted(self._observed.items())]}

    def restore(self, state: dict[str, Any]) -> None:
        """Back to what :meth:`state` saved."""
        self._units = [list(map(float, u)) for u in state.get("units", [])]
        self._observed = {int(i): (str(s), None if v is None else float(v))
                          for i, s, v in state.get("observed", [])}


def trial_seed(search_seed: int, study: str, index: int) -> int:
    """The training seed of one trial: distinct per trial, reproducible, below 2**31."""
    return derive_seed("trial", search_seed, study, index) % (2**31)


# Registered here so that every process that validates ``search.algorithm`` knows it.
from tunebook.search import bayes as _bayes  # noqa: E402, F401

# Registered here so that every process that validates an algorithm name knows the family;
# the module imports Optuna only when such a designer is used.
from tunebook.search import optuna_designer as _optuna_designer  # noqa: E402, F401

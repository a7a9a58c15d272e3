"""Every registered designer passes the same tests (the designer seam's conformance suite).

A new designer registered with ``@designer("name")`` is picked up here without any edit: its
suggestions must lie in the space, depend only on the seed and what it observed, survive a JSON
round trip of its state (what a resumed run does), and cope with infeasible and failed trials.
A non-adaptive designer must also make trial ``i`` a pure function of (seed, space, ``i``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from tunebook.search.designers import Designer, designer_names, make_designer
from tunebook.search.space import Categorical, Discrete, Float, Int, SearchSpace, Value

from driving import drive

SPACE = SearchSpace({
    "lr": Float(1e-4, 1.0, "log"),
    "momentum": Float(0.5, 0.999, "one_minus_log"),
    "width": Int(8, 64),
    "batch": Discrete((16, 32, 64)),
    "act": Categorical(("relu", "gelu", "tanh")),
    "x": Float(-1.0, 1.0),
})
BUDGET = 24


def _loss(params: Mapping[str, Value]) -> float:
    return ((math.log10(float(params["lr"])) + 2.0) ** 2 + float(params["x"]) ** 2
            + (0.1 if params["act"] == "tanh" else 0.0))


def _outcome(i: int) -> str:
    # Every fifth trial diverges, every seventh crashes: designers must take both in stride.
    return "infeasible" if i % 5 == 4 else "failed" if i % 7 == 6 else "completed"


def _drive(d: Designer, restart_after: int | None = None) -> list[dict[str, Value]]:
    """The whole budget (or the designer's capacity), one trial at a time."""
    return drive(d, min(BUDGET, d.capacity() or BUDGET), _loss, _outcome, restart_after)


def _in_space(params: Mapping[str, Value]) -> bool:
    if set(params) != set(SPACE.names):
        return False
    for name, hp in SPACE.items():
        v = params[name]
        if hp.choices is not None:
            if v not in hp.choices:
                return False
        else:
            low, high = hp.bounds
            if not low <= float(v) <= high or (hp.integer and v != int(v)):
                return False
    return True


@pytest.fixture(params=designer_names())
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_suggestions_lie_in_the_space(algorithm: str) -> None:
    points = _drive(make_designer(algorithm, SPACE, seed=3, trials=BUDGET))
    assert points and all(_in_space(p) for p in points)


def test_suggestions_depend_only_on_the_seed_and_the_observations(algorithm: str) -> None:
    first = _drive(make_designer(algorithm, SPACE, seed=11, trials=BUDGET))
    again = _drive(make_designer(algorithm, SPACE, seed=11, trials=BUDGET))
    other = _drive(make_designer(algorithm, SPACE, seed=12, trials=BUDGET))
    assert first == again
    assert algorithm == "grid" or first != other  # a grid has no randomness to seed


def test_the_state_survives_a_json_round_trip_midway(algorithm: str) -> None:
    whole = _drive(make_designer(algorithm, SPACE, seed=5, trials=BUDGET))
    for cut in (1, BUDGET // 2, BUDGET - 3):
        resumed = _drive(make_designer(algorithm, SPACE, seed=5, trials=BUDGET),
                         restart_after=cut)
        assert resumed == whole, f"{algorithm}: resumed after {cut} trials went elsewhere"


def test_a_non_adaptive_designer_makes_trial_i_a_function_of_i(algorithm: str) -> None:
    d = make_designer(algorithm, SPACE, seed=7, trials=BUDGET)
    if d.adaptive:
        pytest.skip("adaptive designers are asked for consecutive indices only")
    n = min(BUDGET, d.capacity() or BUDGET)
    whole = d.suggest(list(range(n)))
    picked = make_designer(algorithm, SPACE, seed=7, trials=BUDGET).suggest([n - 1, 2, 0])
    assert picked == [whole[n - 1], whole[2], whole[0]]


def test_an_empty_space_gives_the_whole_budget_of_empty_points(algorithm: str) -> None:
    """Replicates (``nuisance: {}``): every trial is the same configuration, and every designer
    still gives the whole budget (a grid's capacity is the budget), resumable like any other."""
    empty = SearchSpace({})
    d = make_designer(algorithm, empty, seed=3, trials=7)
    assert (d.capacity() or 7) == 7
    points = drive(d, 7, lambda p: 1.0, _outcome)
    assert points == [{}] * 7
    resumed = drive(make_designer(algorithm, empty, seed=3, trials=7), 7, lambda p: 1.0,
                    _outcome, restart_after=3)
    assert resumed == points


def test_refine_does_not_wait_for_rounds_over_an_empty_space() -> None:
    """Replicates have no box to shrink: every trial can start at once."""
    d = make_designer("refine", SearchSpace({}), seed=0, trials=9)
    assert d.suggest(range(9)) == [{}] * 9

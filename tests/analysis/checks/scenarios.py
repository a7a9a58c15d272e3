"""The labeled scenario suite: synthetic experiments that each plant one problem (or none, or a
named combination), with the exact set of checks that must fire on each.

Every family adds its scenarios in ``scenarios_FAMILY.py`` with :func:`scenario`; the test
``test_scenarios.py`` runs *every* registered check on *every* scenario and asserts that the
checks that fire are exactly the scenario's ``fires`` (so each check fires on its scenarios and
stays silent on all the others) and that no two findings give opposite advice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tunebook.analysis.data import ExperimentData

__all__ = ["SCENARIOS", "Scenario", "scenario"]


@dataclass(frozen=True)
class Scenario:
    """One labeled synthetic experiment.

    Attributes:
        name: unique, says what is planted (``edge_with_mediocre_trials``).
        build: returns the data (deterministic: seeded generators only).
        fires: the checks that must fire, exactly (every other check must stay silent).
        expect: optional extra assertions on the findings (``{check: predicate}``), e.g. the
            isolation verdict or a severity.
    """

    name: str
    build: Callable[[], ExperimentData]
    fires: frozenset[str]
    expect: dict[str, Callable[[list[object]], bool]] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, fires: set[str] | frozenset[str] = frozenset(),
             expect: dict[str, Callable[[list[object]], bool]] | None = None
             ) -> Callable[[Callable[[], ExperimentData]], Callable[[], ExperimentData]]:
    """Register the decorated builder as scenario ``name`` that must fire exactly ``fires``."""

    def register(build: Callable[[], ExperimentData]) -> Callable[[], ExperimentData]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is defined twice")
        SCENARIOS[name] = Scenario(name, build, frozenset(fires), dict(expect or {}))
        return build

    return register

"""Budget checks: enough trials to tell the studies apart."""

from __future__ import annotations

from typing import Any

import pytest
from checkdata import (
    flat,
    make_data,
    only,
    tr,
)

from tunebook.analysis.checks import (
    check_enough_trials,
)


# ----------------------------------------------------------------------------- 11. enough trials
def _spread(best: float, n: int) -> list[dict[str, Any]]:
    return [tr(flat(best + 0.1 * i)) for i in range(n)]


def test_enough_trials_wide_bootstrap_versus_small_gap() -> None:
    trials = [{**t, "study": "a"} for t in _spread(0.10, 4)]
    trials += [{**t, "study": "b"} for t in _spread(0.11, 4)]
    data = make_data(trials)
    f = only(check_enough_trials(data))
    assert f.severity == "info"
    assert f.evidence["seed"] == 0 and f.evidence["draws"] == 1000
    assert f.evidence["gap"] == pytest.approx(0.01)
    assert {r["study"] for r in f.evidence["studies"]} == {"a", "b"}
    assert check_enough_trials(data) == check_enough_trials(data)  # seeded


def test_enough_trials_clear_gap_does_not_fire() -> None:
    trials = [{**t, "study": "a"} for t in [tr(flat(0.1)) for _ in range(5)]]
    trials += [{**t, "study": "b"} for t in [tr(flat(0.5 + 0.001 * i)) for i in range(5)]]
    assert check_enough_trials(make_data(trials)) == []


def test_enough_trials_needs_two_studies() -> None:
    assert check_enough_trials(make_data(_spread(0.1, 5))) == []

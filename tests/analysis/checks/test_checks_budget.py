"""Budget checks: enough trials to tell the studies apart."""

from __future__ import annotations

import math
from typing import Any

import pytest
from checkdata import (
    flat,
    make_data,
    only,
    tr,
)

from tunebook.analysis import stats
from tunebook.analysis.checks import (
    check_enough_trials,
)
from tunebook.analysis.plots import best_of_k, isolation


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


def test_enough_trials_and_the_isolation_verdict_share_one_spread() -> None:
    # Flat tails: no late-training noise, so the isolation spread is the bootstrap IQR alone.
    trials = [{**t, "study": "a"} for t in _spread(0.10, 4)]
    trials += [{**t, "study": "b"} for t in _spread(0.11, 4)]
    data = make_data(trials)
    rows = {r["study"]: r["iqr"] for r in only(check_enough_trials(data)).evidence["studies"]}
    for study, iqr in rows.items():
        assert iqr == stats.best_of_n_iqr(stats.study_pool(data, study))
        box = next(b for b in best_of_k(data) if b.study == study)
        assert box.stats[-1][0] == box.n and box.stats[-1][4] - box.stats[-1][2] == iqr
    iso = isolation(data)
    assert iso.spread == stats.spread([], list(rows.values()))
    assert "within the spread" in iso.summary  # and enough_trials fired: the same verdict


def test_enough_trials_counts_infeasible_trials_as_failures() -> None:
    # As in the report's best-of-k boxes: a study that often diverges is less sure of its best.
    trials = [{**t, "study": "a"} for t in _spread(0.10, 3)]
    trials += [tr(None, study="a", status="infeasible")] * 3
    trials += [{**t, "study": "b"} for t in _spread(0.11, 3)]
    data = make_data(trials)
    rows = {r["study"]: r for r in only(check_enough_trials(data)).evidence["studies"]}
    assert rows["a"]["n_trials"] == 6 and rows["b"]["n_trials"] == 3
    assert rows["a"]["iqr"] == stats.best_of_n_iqr(stats.study_pool(data, "a"))
    assert sum(math.isinf(v) for v in stats.study_pool(data, "a")) == 3

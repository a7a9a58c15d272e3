"""Budget checks: enough trials to tell the studies apart (the comparison's sampling limit)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from checkdata import healthy_curve, make_data, only, tr

from tunebook.analysis import stats
from tunebook.analysis.checks import check_enough_trials, check_isolation
from tunebook.analysis.checks.common import fmt
from tunebook.analysis.comparison import compare
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.plots import isolation


def _studies(a: Sequence[float | None], b: Sequence[float | None], noise: float = 0.0,
             seed: int = 0) -> ExperimentData:
    """Studies a and b; position i is the shared nuisance point i, None an infeasible trial."""
    rng = np.random.default_rng(seed)
    trials = [tr(healthy_curve(v, rng, noise=noise), study=s) if v is not None
              else tr(None, study=s, status="infeasible")
              for s, values in (("a", a), ("b", b)) for v in values]
    return make_data(trials, max_train_steps=200)


def _uniform(seed: int, n: int = 12) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).uniform(0.2, 0.6, n)]


def test_enough_trials_fires_when_sampling_limits_the_comparison() -> None:
    data = _studies(_uniform(6), _uniform(7))
    cmp = compare(data)
    assert cmp is not None and cmp.verdict == "within_spread" and cmp.limit == "sampling"
    f = only(check_enough_trials(data))
    assert f.severity == "info"
    assert f.advice == {"trials": "more", "studies": "within_spread"}
    assert f.evidence["gap"] == cmp.gap and f.evidence["sampling"] == cmp.sampling
    assert f.evidence["seed"] == 0 and f.evidence["draws"] == 1000
    assert {t["label"] for t in f.trials} == {t.label for t in cmp.trials}
    assert check_enough_trials(data) == check_enough_trials(data)  # seeded


def test_enough_trials_and_the_isolation_finding_say_the_same_numbers() -> None:
    data = _studies(_uniform(6), _uniform(7))
    budget, iso = only(check_enough_trials(data)), only(check_isolation(data))
    assert iso.evidence["verdict"] == "within_spread" == budget.evidence["verdict"]
    assert iso.advice["studies"] == budget.advice["studies"]
    for number in (iso.evidence["gap"], iso.evidence["sampling"]):
        assert fmt(number) in budget.message and fmt(number) in iso.message
    assert isolation(data).spread == iso.evidence["spread"] == budget.evidence["spread"]


def test_enough_trials_is_silent_when_the_studies_differ() -> None:
    a = _uniform(8)
    data = _studies(a, [v + 0.1 for v in a])
    cmp = compare(data)
    assert cmp is not None and cmp.verdict == "differ"
    assert check_enough_trials(data) == []


def test_enough_trials_is_silent_when_step_noise_limits() -> None:
    # more trials would not help: the best trials' curves jitter more than the gap
    a = [0.3 + 0.0005 * i for i in range(12)]
    data = _studies(a, [v + 0.004 for v in a], noise=0.02, seed=5)
    cmp = compare(data)
    assert cmp is not None and cmp.limit == "step_noise"
    assert check_enough_trials(data) == []


def test_enough_trials_needs_two_studies() -> None:
    rng = np.random.default_rng(0)
    data = make_data([tr(healthy_curve(v, rng)) for v in _uniform(1)], max_train_steps=200)
    assert check_enough_trials(data) == []


def test_enough_trials_counts_infeasible_trials_as_failures() -> None:
    # As in the report's best-of-k boxes: a study that often diverges is less sure of its best.
    a: list[float | None] = [*_uniform(6, 8), None, None, None, None]
    data = _studies(a, _uniform(7))
    rows = {r["study"]: r for r in only(check_enough_trials(data)).evidence["studies"]}
    assert rows["a"]["n_trials"] == 12 and rows["b"]["n_trials"] == 12
    assert rows["a"]["iqr"] == stats.best_of_n_iqr(stats.study_pool(data, "a"))
    assert sum(math.isinf(v) for v in stats.study_pool(data, "a")) == 4

"""The comparison of the studies: paired bootstrap, pairing, resolution, verdicts, fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunebook.analysis import stats
from tunebook.analysis.comparison import ComparisonThresholds, compare, pairing
from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.experiment import Experiment, Objective
from tunebook.search.space import Float

N = 20  # evaluations per curve


def _curve(best: float, rng: np.random.Generator, noise: float, examples: int | None
           ) -> tuple[float, ...]:
    t = np.arange(1, N + 1) / N
    y = best + 0.3 * np.exp(-12 * t) + rng.normal(0, noise, N)
    if examples is not None:
        y = np.round(y * examples) / examples
    return tuple(float(v) for v in y)


def _data(studies: dict[str, list[float | None]], *, noise: float = 0.0, seed: int = 0,
          examples: int | None = None, goal: str = "minimize") -> ExperimentData:
    """One study per key; list position = trial index (the shared nuisance point); None is an
    infeasible trial. Curves fall to the value given (plus ``noise``); with ``examples`` the
    metric is ``val_error`` on a 1/examples lattice and ``val_examples`` is reported."""
    rng = np.random.default_rng(seed)
    metric = "val_error" if examples is not None else "loss"
    exp = Experiment(name="c", objective=Objective(metric, goal),  # type: ignore[arg-type]
                     max_train_steps=10 * N, eval_every=10, workload="m:f",
                     scientific={"arm": tuple(studies)}, nuisance={"lr": Float(1e-3, 1.0, "log")})
    steps = tuple(10 * (i + 1) for i in range(N))
    trials = []
    for study, values in studies.items():
        for i, v in enumerate(values):
            curves: dict[str, Curve] = {}
            best = None
            if v is not None:
                y = _curve(v, rng, noise, examples)
                curves[metric] = Curve(steps, y)
                if examples is not None:
                    curves["val_examples"] = Curve((10,), (float(examples),))
                best = min(y) if goal == "minimize" else max(y)
            trials.append(TrialData(
                id=len(trials) + 1, study=study, index=i,
                status="completed" if v is not None else "infeasible",
                params={"arm": study, "lr": 10 ** (-3 + 3 * i / len(values))}, seed=i,
                best_step=None if best is None else steps[list(curves[metric].values).index(best)],
                best_value=best, final_step=steps[-1] if best is not None else None,
                final_value=None if best is None else curves[metric].values[-1],
                curves=curves))
    return ExperimentData(experiment=exp, metric=metric, goal=goal,  # type: ignore[arg-type]
                          final=False, studies=tuple(studies), trials=tuple(trials))


def _spread_values(n: int, seed: int, low: float = 0.2, high: float = 0.6) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).uniform(low, high, n)]


# ----------------------------------------------------------------------------- the bootstrap
def test_paired_bootstrap_identical_pools_tie_exactly() -> None:
    pool = [0.3, 0.1, math.inf, 0.5]
    assert stats.paired_best_of_k(pool, pool, 4) == 0.5


def test_paired_bootstrap_a_constant_shift_wins_every_draw() -> None:
    a = np.asarray(_spread_values(12, 1))
    assert stats.paired_best_of_k(a, a + 0.001, 12) == 1.0
    assert stats.paired_best_of_k(a + 0.001, a, 12) == 0.0


def test_paired_bootstrap_is_seeded_and_resamples_pairs_together() -> None:
    a = [0.1, 0.5, 0.5, 0.5]
    b = [0.2, 0.4, 0.4, 0.4]
    share = stats.paired_best_of_k(a, b, 4, draws=4000, seed=3)
    assert share == stats.paired_best_of_k(a, b, 4, draws=4000, seed=3)
    # a wins exactly when pair 0 is drawn: 1 - (3/4)^4
    assert share == pytest.approx(1 - 0.75 ** 4, abs=0.02)


def test_paired_bootstrap_rejects_unpaired_pools() -> None:
    with pytest.raises(ValueError):
        stats.paired_best_of_k([0.1, 0.2], [0.1], 2)
    with pytest.raises(ValueError):
        stats.paired_best_of_k([], [], 1)


# ----------------------------------------------------------------------------- pairing
def test_pairing_uses_shared_indices_and_counts_infeasible_apart() -> None:
    a = {0: 0.1, 1: 0.2, 2: math.inf, 3: 0.4, 5: 0.0}
    b = {0: 0.2, 1: 0.2, 2: 0.3, 3: 0.3, 4: 0.0}
    p = pairing(a, b)
    assert p.n_pairs == 4  # indices 0..3: 4 and 5 are not shared
    assert (p.n_feasible, p.wins, p.losses, p.ties) == (3, 1, 1, 1)
    assert (p.only_a, p.only_b) == (0, 1)  # pair 2: a infeasible, b trained
    # a's best (0.1 at pair 0) only wins draws holding pair 0 and not beaten elsewhere
    assert p.share is not None and 0 < p.share < 1


def test_pairing_top_half_counts_pairs_whose_better_member_ranks_high() -> None:
    a = {i: float(i) for i in range(6)}  # a better on every pair
    b = {i: float(i) + 0.5 for i in range(6)}
    p = pairing(a, b)
    assert (p.wins, p.top, p.top_wins) == (6, 3, 3)


# ----------------------------------------------------------------------------- verdicts
def test_fewer_than_two_studies_has_no_comparison() -> None:
    assert compare(_data({"a": [0.3, 0.4]})) is None
    assert compare(_data({"a": [0.3, 0.4], "b": [None, None]})) is None


def test_identical_studies_are_within_the_spread() -> None:
    values = _spread_values(12, 2)
    cmp = compare(_data({"a": values, "b": values}))
    assert cmp is not None and cmp.verdict == "within_spread"
    assert cmp.gap == 0 and cmp.pairing.share == 0.5 and cmp.pairing.ties == 12


def test_a_difference_only_pairing_detects_is_a_difference() -> None:
    # nuisance points 0.04 apart: another sample of them moves a study's best by ~0.04
    a = [float(v) for v in np.random.default_rng(3).permutation(0.2 + 0.04 * np.arange(12))]
    cmp = compare(_data({"a": a, "b": [v + 0.01 for v in a]}))
    assert cmp is not None and cmp.best == "a"
    # the unpaired rule cannot see it: the best-of-n sampling IQR is larger than the gap
    assert cmp.sampling is not None and cmp.sampling > cmp.gap
    assert cmp.pairing.share == 1.0 and cmp.pairing.wins == 12
    assert cmp.verdict == "differ" and cmp.runner_up.paired
    assert "beats arm=b on 12 of 12 shared nuisance points" in cmp.summary()


def test_a_difference_below_the_resolution_is_within_the_spread() -> None:
    a = _spread_values(12, 4, 0.10, 0.40)
    cmp = compare(_data({"a": a, "b": [v + 1 / 300 for v in a]}, examples=300))
    assert cmp is not None
    assert cmp.metric_resolution.source == "reported" and cmp.metric_resolution.examples == 300
    assert cmp.pairing.share == 1.0  # consistent, but one example
    assert cmp.resolution >= 3 / 300 and cmp.gap == pytest.approx(1 / 300)
    assert cmp.verdict == "within_spread" and cmp.limit == "resolution"
    assert "1 of 300 examples" in cmp.summary()


def test_step_noise_larger_than_the_gap_is_within_and_limits() -> None:
    a = [0.3 + 0.0005 * i for i in range(12)]
    cmp = compare(_data({"a": a, "b": [v + 0.004 for v in a]}, noise=0.02, seed=5))
    assert cmp is not None and cmp.step_noise is not None and cmp.step_noise > 0.01
    assert cmp.verdict == "within_spread" and cmp.limit == "step_noise"


def test_inconclusive_pairs_are_limited_by_sampling() -> None:
    a, b = _spread_values(12, 6), _spread_values(12, 7)
    cmp = compare(_data({"a": a, "b": b}))
    assert cmp is not None and cmp.pairing.share is not None
    assert cmp.pairing.share < 0.95
    assert cmp.verdict == "within_spread" and cmp.limit == "sampling"


def test_a_clear_difference_differs() -> None:
    a = _spread_values(12, 8, 0.1, 0.2)
    cmp = compare(_data({"a": a, "b": [v + 0.3 for v in a]}, noise=0.001))
    assert cmp is not None and cmp.verdict == "differ"
    assert cmp.gap > (cmp.spread or 0)


def test_maximised_objectives_compare_the_other_way() -> None:
    a = _spread_values(12, 9)
    cmp = compare(_data({"a": a, "b": [v + 0.05 for v in a]}, goal="maximize"))
    assert cmp is not None and cmp.best == "b" and cmp.verdict == "differ"
    assert cmp.best_value > cmp.runner_up.value


def test_without_shared_points_the_unpaired_rule_decides() -> None:
    # two trials each: fewer pairs than min_pairs (3)
    close = compare(_data({"a": [0.30, 0.6], "b": [0.31, 0.5]}))
    assert close is not None and not close.runner_up.paired
    assert close.verdict == ("differ" if stats.separated(close.gap, close.spread)
                             else "within_spread")
    assert close.verdict == "within_spread"  # sampling IQR ~0.15 against a gap of 0.01
    far = compare(_data({"a": [0.1, 0.11], "b": [0.5, 0.52]}))
    assert far is not None and not far.runner_up.paired and far.verdict == "differ"
    assert "judged unpaired" in far.summary()


def test_three_studies_list_every_other_study_against_the_best() -> None:
    a = _spread_values(12, 10)
    cmp = compare(_data({"a": [v + 0.2 for v in a], "b": a, "c": [v + 0.01 for v in a]}))
    assert cmp is not None and cmp.best == "b" and cmp.runner_up.study == "c"
    assert [v.study for v in cmp.others] == ["a"]
    assert cmp.others[0].verdict == "differ" and cmp.others[0].gap == pytest.approx(0.2)
    assert [o["study"] for o in cmp.as_dict()["others"]] == ["a"]


def test_the_comparison_is_computed_once_per_data_and_thresholds() -> None:
    data = _data({"a": [0.3, 0.4, 0.5], "b": [0.31, 0.41, 0.51]})
    assert compare(data) is compare(data)
    strict = ComparisonThresholds(sign_alpha=0.001)
    assert compare(data, strict) is compare(data, strict)
    assert compare(data, strict) is not compare(data)


def test_evidence_is_json_and_names_the_verdict() -> None:
    import json

    cmp = compare(_data({"a": [0.3, None, 0.5], "b": [0.31, 0.41, None]}))
    assert cmp is not None
    ev = cmp.as_dict()
    json.dumps(ev, allow_nan=False)
    assert ev["verdict"] == cmp.verdict and ev["n_pairs"] == 3 and ev["n_feasible"] == 1
    assert {"gap", "step_noise", "sampling", "resolution", "spread", "limit", "share"} <= set(ev)


def test_three_lucky_points_do_not_make_a_difference() -> None:
    # a is far better on 3 nuisance points, b better on the 9 others: a's best wins ~97% of
    # the paired best-of-12 resamples, but not most of the pairs that matter
    a = [0.10, 0.11, 0.12] + [0.50 + 0.01 * i for i in range(9)]
    b = [0.30, 0.31, 0.32] + [0.20 + 0.01 * i for i in range(9)]
    cmp = compare(_data({"a": a, "b": b}))
    assert cmp is not None and cmp.best == "a"
    assert cmp.pairing.share is not None and cmp.pairing.share >= 0.95
    assert (cmp.pairing.wins, cmp.pairing.top, cmp.pairing.top_wins) == (3, 9, 3)
    assert cmp.verdict == "within_spread" and cmp.limit == "sampling"
    assert "sign test p = " in cmp.summary()


def test_the_sign_test_is_exact() -> None:
    from tunebook.analysis.pairing import sign_test

    assert sign_test(0, 0) == 1.0
    assert sign_test(6, 0) == pytest.approx(1 / 64)
    assert sign_test(10, 2) == pytest.approx(79 / 4096)
    assert sign_test(3, 9) > 0.9
    # Thousands of pairs (a 10,000-trial experiment): no float overflow, still exact.
    assert sign_test(2500, 2500) == pytest.approx(0.5 + math.comb(5000, 2500) / 2 ** 5001)
    assert sign_test(0, 3000) == 1.0
    assert sign_test(3000, 0) < 1e-300


def test_studies_that_do_not_differ_are_rarely_called_different() -> None:
    # 200 experiments of two studies drawn from one distribution (no shared nuisance effect,
    # 12 trials each): the verdict's false-positive rate stays near the sign test's level
    rng = np.random.default_rng(7)
    differ = 0
    for _ in range(200):
        a, b = (list(rng.uniform(0.1, 0.5, 12)) for _ in range(2))
        cmp = compare(_data({"a": a, "b": b}))
        assert cmp is not None
        differ += cmp.verdict == "differ"
    assert differ <= 0.08 * 200, differ


def test_a_shift_on_every_point_differs_even_when_the_points_spread_far_more() -> None:
    rng = np.random.default_rng(3)
    a = list(rng.uniform(0.1, 0.6, 12))
    cmp = compare(_data({"a": a, "b": [v + 0.01 for v in a]}))
    assert cmp is not None and cmp.best == "a" and cmp.verdict == "differ"
    assert cmp.pairing.sign_p == pytest.approx(1 / 4096)

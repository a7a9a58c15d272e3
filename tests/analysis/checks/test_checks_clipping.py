"""The clipping check and the per-study clipping threshold, on hand-built data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from checkdata import GOOD, make_data, only, tr

from tunebook.analysis.checks import check_clipping, check_eval_steps, run_checks
from tunebook.analysis.checks.clipping import (
    ClippingThresholds,
    clip_fraction,
    study_thresholds,
)
from tunebook.torch import clip_threshold

STEPS = list(range(1, 101))  # per-step norms of a 100-step trial (GOOD: evaluations every 10)


def norms(rng: np.random.Generator, scale: float, n: int = 100) -> list[float]:
    """Per-step unclipped norms: lognormal around ``scale``, larger early in training."""
    early = 1.0 + 4.0 * np.exp(-np.arange(n) / 10)
    return [float(v) for v in scale * early * rng.lognormal(0.0, 0.3, n)]


def trial(level: float, norm: list[float] | None = None, *, study: str = "main",
          clip: float | None = None, fraction: float | None = None,
          status: str = "completed") -> dict[str, object]:
    extra: dict[str, tuple[list[int], list[float]]] = {}
    if norm is not None:
        extra["grad_norm"] = (STEPS[:len(norm)], norm)
    if fraction is not None:
        extra["clip_fraction"] = ([10 * (i + 1) for i in range(10)], [fraction] * 10)
    params = {"lr": 0.01} if clip is None else {"lr": 0.01, "grad_clip": clip}
    return tr([v + level for v in GOOD], study=study, params=params, extra=extra,
              status=status)


# ----------------------------------------------------------------------------- thresholds
def test_threshold_per_study_pools_the_best_three_trials_whole_training() -> None:
    rng = np.random.default_rng(0)
    a = [norms(rng, 1.0) for _ in range(5)]
    b = [norms(rng, 0.01) for _ in range(4)]
    trials = [trial(0.1 * i, n, study="linear") for i, n in enumerate(a)]
    trials += [trial(0.1 * i, n, study="mlp") for i, n in enumerate(b)]
    data = make_data(trials)
    got = {s.study: s for s in study_thresholds(data)}
    assert set(got) == {"linear", "mlp"}
    for study, pool in (("linear", a), ("mlp", b)):
        s = got[study]
        want = np.quantile(np.concatenate(pool[:3]), 0.9)  # the 3 best: lowest objective
        assert s.threshold == pytest.approx(want, rel=1e-12)
        assert s.threshold == clip_threshold([v for n in pool[:3] for v in n])
        assert s.n_norms == 300 and s.per_step and s.quantile == 0.9
        assert [t.index for t in s.trials] == [0, 1, 2]
        assert s.grad_clip == (None, None, None)
        json.dumps(s.as_dict(), allow_nan=False)
    # Two orders of magnitude apart: pooling the studies would give neither.
    assert got["linear"].threshold > 50 * got["mlp"].threshold


def test_threshold_skips_trials_without_norms_and_marks_evaluation_only_norms() -> None:
    rng = np.random.default_rng(1)
    at_evals = [float(v) for v in rng.lognormal(0, 0.3, 10)]  # one value per evaluation
    data = make_data([
        trial(0.0),  # the best trial reported no grad_norm: the next best are used
        {**trial(0.1), "extra": {"grad_norm": ([10 * (i + 1) for i in range(10)], at_evals)}},
        trial(0.2, [float("nan")] * 100),  # no finite norm
    ])
    (s,) = study_thresholds(data)
    assert [t.index for t in s.trials] == [1]
    assert not s.per_step and s.n_norms == 10
    assert s.threshold == pytest.approx(np.quantile(at_evals, 0.9))


def test_best_trials_is_a_threshold_of_the_family() -> None:
    rng = np.random.default_rng(2)
    pool = [norms(rng, 1.0) for _ in range(3)]
    data = make_data([trial(0.1 * i, n) for i, n in enumerate(pool)])
    (s,) = study_thresholds(data, ClippingThresholds(best_trials=1))
    assert s.threshold == pytest.approx(np.quantile(pool[0], 0.9))


def test_no_grad_norm_no_threshold() -> None:
    assert study_thresholds(make_data([trial(0.0), trial(0.1)])) == []


# ----------------------------------------------------------------------------- the check
def test_more_than_half_clipped_is_a_warning_listing_the_trials() -> None:
    rng = np.random.default_rng(3)
    trials = [trial(0.01 * i, norms(rng, 1.0), clip=5.0, fraction=0.1) for i in range(8)]
    trials[5] = trial(0.05, norms(rng, 1.0), clip=0.2, fraction=0.93)
    trials[6] = trial(0.06, norms(rng, 1.0), clip=0.5, fraction=0.51)
    trials[7] = trial(0.07, norms(rng, 1.0), clip=0.9, fraction=0.5)  # exactly half: not more
    data = make_data(trials)
    f = only(check_clipping(data))
    assert f.severity == "warning" and f.study == "main"
    assert f.check == "clipping" and f.advice == {"grad_clip": "higher"}
    assert [t["id"] for t in f.trials] == [6, 7]
    ev = f.evidence
    assert [(e["id"], e["clip_fraction"], e["grad_clip"], e["source"]) for e in ev["trials"]] \
        == [(6, 0.93, 0.2, "clip_fraction"), (7, 0.51, 0.5, "clip_fraction")]
    assert ev["n_with_clipping"] == 8 and ev["n_aggressive"] == 2
    assert not ev["best_trial_aggressive"]
    assert ev["study_threshold"]["threshold"] == study_thresholds(data)[0].threshold
    assert "93% at grad_clip=0.2" in f.message and "main #5" in f.message
    assert "lower the learning rate" in f.action
    assert f"{study_thresholds(data)[0].threshold:.4g}" in f.action


def test_fraction_from_per_step_norms_when_no_clip_fraction_was_reported() -> None:
    norm = [2.0] * 60 + [0.5] * 40  # 60% of the updates above grad_clip=1
    data = make_data([trial(0.0, norm, clip=1.0), trial(0.1, [0.5] * 100, clip=1.0)])
    cf = clip_fraction(data, data.trials[0])
    assert cf is not None and (cf.fraction, cf.source) == (0.6, "grad_norm")
    f = only(check_clipping(data))
    assert [t["id"] for t in f.trials] == [1] and f.evidence["best_trial_aggressive"]
    assert "including the study's best trial" in f.message


def test_evaluation_only_norms_cannot_tell_the_clipped_share() -> None:
    evals = [10 * (i + 1) for i in range(10)]
    data = make_data([{**trial(0.0, clip=1.0), "extra": {"grad_norm": (evals, [2.0] * 10)}}])
    assert clip_fraction(data, data.trials[0]) is None
    assert check_clipping(data) == []


def test_silent_without_clipping_with_moderate_clipping_and_for_failed_trials() -> None:
    rng = np.random.default_rng(4)
    assert check_clipping(make_data([trial(0.1 * i, norms(rng, 1.0)) for i in range(4)])) == []
    moderate = [trial(0.1 * i, norms(rng, 1.0), clip=1.5, fraction=0.1) for i in range(4)]
    assert check_clipping(make_data(moderate)) == []
    failed = trial(0.0, clip=0.1, fraction=0.9, status="failed")
    assert check_clipping(make_data([*moderate, failed])) == []


def test_one_finding_per_study() -> None:
    data = make_data([trial(0.0, clip=0.1, fraction=0.8, study="a"),
                      trial(0.0, clip=0.1, fraction=0.7, study="b"),
                      trial(0.1, clip=9.0, fraction=0.0, study="c")])
    got = check_clipping(data)
    assert [(f.study, [t["id"] for t in f.trials]) for f in got] == [("a", [1]), ("b", [2])]


def test_aggressive_fraction_is_configurable() -> None:
    data = make_data([trial(0.0, clip=1.0, fraction=0.3)])
    assert check_clipping(data) == []
    assert len(check_clipping(data, ClippingThresholds(aggressive_fraction=0.25))) == 1


def test_per_step_norms_keep_the_eval_steps_check_silent() -> None:
    rng = np.random.default_rng(5)
    data = make_data([trial(0.1 * i, norms(rng, 1.0)) for i in range(3)])
    assert check_eval_steps(data) == []
    assert "clipping" not in {f.check for f in run_checks(data)}

"""Plot data: axis plots, isolation verdicts, downsampling, the best-of-k bootstrap."""

from __future__ import annotations

import math

import pytest

from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.analysis.plots import axis_plots, best_of_k, downsample, isolation
from tunebook.experiment import Experiment, Objective
from tunebook.search.space import Categorical, Float


def _data(values: dict[str, list[float | None]], goal: str = "minimize",
          noise: float = 0.0) -> ExperimentData:
    exp = Experiment(name="e", objective=Objective("loss", goal),  # type: ignore[arg-type]
                     max_train_steps=100, eval_every=10, workload="m:f",
                     scientific={"arm": tuple(values)},
                     nuisance={"lr": Float(1e-3, 1.0, "log"), "act": Categorical(("a", "b"))})
    trials = []
    tid = 0
    for study, vals in values.items():
        for i, v in enumerate(vals):
            tid += 1
            steps = tuple(range(10, 101, 10))
            curve = (tuple(v + (noise if k % 2 else -noise) + 1.0 / (k + 1) ** 3
                           for k in range(10)) if v is not None else ())
            trials.append(TrialData(
                id=tid, study=f"arm={study}", index=i,
                status="completed" if v is not None else "infeasible",
                params={"arm": study, "lr": 10 ** (-3 + 3 * i / max(1, len(vals))),
                        "act": "ab"[i % 2]},
                seed=i, best_step=100 if v is not None else None, best_value=v,
                final_step=100 if v is not None else None, final_value=v,
                curves={"loss": Curve(steps[:len(curve)], curve)} if curve else {}))
    return ExperimentData(experiment=exp, metric="loss", goal=goal,  # type: ignore[arg-type]
                          final=False, studies=tuple(f"arm={s}" for s in values),
                          trials=tuple(trials))


def test_axis_plots_mark_infeasible_and_keep_scales() -> None:
    plots = {p.hyperparameter: p for p in axis_plots(_data({"x": [0.5, None, 0.3]}))}
    assert plots["lr"].scale == "log" and (plots["lr"].low, plots["lr"].high) == (1e-3, 1.0)
    assert plots["act"].scale == "categorical" and plots["act"].categories == ("a", "b")
    pts = plots["lr"].points
    assert len(pts) == 3 and [p[4] for p in pts] == [True, False, True]
    assert pts[1][1] is None and pts[0][1] == 0.5


def test_isolation_says_when_the_difference_is_real_or_within_the_spread() -> None:
    clear = isolation(_data({"a": [0.10, 0.11, 0.12, 0.13], "b": [0.50, 0.52, 0.55, 0.6]}))
    assert clear.groups[0]["best"]["value"] == 0.10
    assert "arm=a reached the best loss" in clear.summary
    assert clear.verdict == "differ" and "Verdict: the studies differ" in clear.summary
    close = isolation(_data({"a": [0.100, 0.3, 0.5, 0.7], "b": [0.101, 0.35, 0.5, 0.6]},
                            noise=0.01))
    assert close.verdict == "within_spread"
    assert "does not show a difference (within_spread)" in close.summary
    maxi = isolation(_data({"a": [0.9, 0.8], "b": [0.7, 0.6]}, goal="maximize"))
    assert maxi.summary.startswith("arm=a reached the best loss, 0.9")


def test_isolation_states_the_comparison_and_its_numbers() -> None:
    from tunebook.analysis.checks import check_isolation
    from tunebook.analysis.comparison import compare

    data = _data({"a": [0.100, 0.3, 0.5, 0.7], "b": [0.101, 0.35, 0.5, 0.6]}, noise=0.01)
    iso, cmp = isolation(data), compare(data)
    assert cmp is not None
    assert iso.summary == cmp.summary() == check_isolation(data)[0].message
    assert iso.spread == cmp.spread and iso.numbers == cmp.as_dict()
    assert isolation(_data({"a": [0.3]})).verdict is None


def test_isolation_with_missing_studies() -> None:
    only = isolation(_data({"a": [0.3], "b": [None]}))
    assert "Only arm=a has a completed trial" in only.summary
    none = isolation(_data({"a": [None], "b": [None]}))
    assert "No study has a completed trial" in none.summary


def test_best_of_k_quantiles_are_monotone_and_count_failures() -> None:
    boxes = best_of_k(_data({"a": [0.1 * k for k in range(1, 11)]}))
    stats = boxes[0].stats
    assert [s[0] for s in stats] == [1, 2, 3, 5, 8, 10]
    medians = [s[3] for s in stats]
    assert medians == sorted(medians, reverse=True)  # more trials, better best
    for _, p5, q1, med, q3, p95 in stats:
        assert p5 <= q1 <= med <= q3 <= p95
    assert stats[0][3] == pytest.approx(0.55, abs=0.1)  # best of 1 = a random trial
    failing = best_of_k(_data({"a": [0.1, None, None, None, None, None]}))[0]
    assert failing.stats[0][0] > 1  # k=1 is mostly failures: not drawn
    empty = best_of_k(_data({"a": [None, None]}))[0]
    assert empty.stats == () and empty.notes == ("no completed trial",)


def test_best_of_k_maximize() -> None:
    stats = best_of_k(_data({"a": [0.1 * k for k in range(1, 11)]}, goal="maximize"))[0].stats
    assert stats[-1][3] == pytest.approx(1.0)
    medians = [s[3] for s in stats]
    assert medians == sorted(medians)


def test_downsample_keeps_ends_and_extremes_and_gaps() -> None:
    steps = tuple(range(1, 10_001))
    values: list[float] = [math.sin(s / 100) for s in steps]
    values[5000] = -5.0
    values[7000] = math.nan
    ds, dv = downsample(steps, tuple(values), limit=200)
    assert len(ds) <= 202 and ds[0] == 1 and ds[-1] == 10_000
    assert -5.0 in dv
    short_steps, short_values = downsample((1, 2, 3), (1.0, math.inf, 2.0))
    assert short_steps == (1, 2, 3) and short_values == (1.0, None, 2.0)


def test_bucketed_isolation_keeps_the_best_trial_per_slice() -> None:
    from tunebook.analysis.plots import bucketed_isolation

    data = _data({"a": [0.9, 0.5, 0.7, 0.2, 0.4, 0.8]})
    buckets = bucketed_isolation(data, "lr", buckets=3)
    # lr = 10**(-3 + 3 i / 6): i = 0,1 in the first third (log scale), 2,3 in the second...
    assert [b[2] for b in buckets] == [0.5, 0.2, 0.4]
    assert [b[3] for b in buckets] == ["arm=a #1", "arm=a #3", "arm=a #4"]
    assert buckets[0][0] == pytest.approx(1e-3) and buckets[-1][1] == pytest.approx(1.0)
    assert bucketed_isolation(data, "act") == ()

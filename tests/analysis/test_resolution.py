"""analysis/resolution.py: what a metric can resolve (quantum, binomial SE, chance level)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from tunebook.analysis.checks import run_checks, thresholds_from_config
from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.analysis.resolution import (
    Resolution,
    ResolutionThresholds,
    is_meta_metric,
    resolution,
)
from tunebook.errors import ConfigError
from tunebook.experiment import Experiment, Objective
from tunebook.search.space import Float, SearchSpace


def _data(curves: Sequence[Mapping[str, Sequence[float]]], metric: str = "val_error",
          checks: Mapping[str, Mapping[str, float]] | None = None) -> ExperimentData:
    """One trial per mapping ``{metric: values}``; values at steps 10, 20, ..."""
    exp = Experiment(name="r", objective=Objective(metric, "minimize"), max_train_steps=200,
                     eval_every=10, nuisance=SearchSpace({"lr": Float(1e-3, 1.0, "log")}),
                     workload="x:y", checks=dict(checks or {}))
    trials = []
    for i, named in enumerate(curves):
        cs = {name: Curve(tuple(10 * (k + 1) for k in range(len(v))), tuple(float(x) for x in v))
              for name, v in named.items()}
        values = named.get(metric, [])
        best = min(values) if values else None
        trials.append(TrialData(id=i + 1, study="main", index=i, status="completed",
                                params={"lr": 0.01}, seed=i, best_step=10, best_value=best,
                                final_step=10, final_value=best, curves=cs))
    return ExperimentData(experiment=exp, metric=metric, goal="minimize", final=False,
                          studies=("main",), trials=tuple(trials))


def _lattice_values(n: int, count: int = 40, seed: int = 0) -> list[float]:
    """``count`` error rates over ``n`` examples, with repeats (an error rate over a fixed set)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(int(0.2 * n), int(0.2 * n) + 8, count)
    return [float(x) / n for x in k]


# ----------------------------------------------------------------------------- reported size
def test_reported_size_gives_the_quantum_and_the_binomial_se() -> None:
    data = _data([{"val_error": [0.4, 0.36, 0.35], "val_examples": [500]}])
    res = resolution(data)
    assert (res.metric, res.source, res.examples) == ("val_error", "reported", 500)
    assert res.quantum == pytest.approx(1 / 500)
    # The MLP: error ~0.35 over 500 examples: SE sqrt(0.35 * 0.65 / 500) ~ 0.0213.
    assert res.se(0.35) == pytest.approx(math.sqrt(0.35 * 0.65 / 500))
    assert res.se(0.35) == pytest.approx(0.02133, abs=1e-5)
    assert res.min_change(0.35) == pytest.approx(res.se(0.35))  # SE > 3 examples (0.006)
    assert res.min_change(0.001) == pytest.approx(3 / 500)      # 3 examples > SE (0.0014)
    assert res.examples_text(0.01) == "5 of 500 examples"
    assert res.examples_text(-0.004) == "2 of 500 examples"


def test_the_most_specific_size_wins() -> None:
    data = _data([{"val_top5_error": [0.2, 0.1, 0.1], "val_top5_examples": [1000],
                   "val_examples": [500], "examples": [50]}], metric="val_top5_error")
    assert resolution(data).examples == 1000
    data = _data([{"val_top5_error": [0.2, 0.1, 0.1], "val_examples": [500]}],
                 metric="val_top5_error")
    assert resolution(data).examples == 500
    data = _data([{"error": [0.2, 0.1, 0.1], "examples": [50]}], metric="error")
    assert resolution(data).examples == 50


def test_a_size_reported_by_a_later_trial_only_is_found() -> None:
    data = _data([{"val_error": [0.3, 0.2, 0.2]},
                  {"val_error": [0.3, 0.25, 0.2], "val_examples": [200]}])
    assert resolution(data).examples == 200


def test_a_non_integer_size_is_ignored() -> None:
    data = _data([{"val_error": [0.3, 0.2, 0.21], "val_examples": [200.5]}])
    assert resolution(data).source == "none"


# ----------------------------------------------------------------------------- inferred lattice
def test_inferred_lattice_of_an_error_rate() -> None:
    data = _data([{"val_error": _lattice_values(300, seed=s)} for s in range(3)])
    res = resolution(data)
    assert (res.source, res.examples) == ("inferred", 300)
    assert res.quantum == pytest.approx(1 / 300)
    assert res.min_change(0.2) == pytest.approx(math.sqrt(0.2 * 0.8 / 300))


@pytest.mark.parametrize("n", [300, 1000, 10000])
def test_inferred_lattice_survives_float32_rounding(n: int) -> None:
    # Error rates computed in float32 (as a framework reports them) and read back as float64.
    rng = np.random.default_rng(n)
    counts = rng.integers(int(0.2 * n), int(0.25 * n), 2000)  # repeats: <= 50% distinct
    values = [float(np.float32(k / n)) for k in counts]
    assert any(v != k / n for v, k in zip(values, counts, strict=True))  # off the lattice
    res = resolution(_data([{"val_error": values}]))
    assert (res.source, res.examples) == ("inferred", n)
    assert res.quantum == pytest.approx(1 / n, rel=1e-6)


def test_inferred_quantum_from_a_smallest_gap_of_two_quanta() -> None:
    # Only even counts of 250 examples appear: the spacing 2/250 is tried with divisors, and
    # 1/125 already puts every value on a lattice (the quantum found is the coarsest that fits).
    values = [float(2 * k) / 250 for k in [50, 51, 52, 53, 52, 51, 50] * 4]
    res = resolution(_data([{"val_error": values}]))
    assert res.source == "inferred" and res.quantum == pytest.approx(2 / 250)
    assert res.examples == 125


def test_a_lattice_outside_0_1_has_a_quantum_but_no_size() -> None:
    values = [float(k) * 0.5 for k in [10, 11, 12, 11, 10, 12] * 5]  # a count in halves
    res = resolution(_data([{"val_error": values}]))
    assert res.source == "inferred" and res.quantum == pytest.approx(0.5)
    assert res.examples is None and res.se(0.3) == 0.0 and res.examples_text(1.0) == ""
    assert res.min_change(5.0) == pytest.approx(1.5)  # 3 quanta, no SE


@pytest.mark.parametrize("values", [
    pytest.param(list(np.linspace(0.3, 0.5, 40)), id="continuous"),
    pytest.param([0.3, 0.302, 0.304, 0.302] * 4, id="too-few-values"),
    pytest.param([0.25 + 0.002 * (k % 30) for k in range(40)], id="too-many-distinct"),
])
def test_no_lattice_means_a_continuous_metric(values: list[float]) -> None:
    res = resolution(_data([{"val_error": values}]))
    assert (res.source, res.quantum, res.examples) == ("none", None, None)
    assert res.min_change(0.3) == 0.0 and res.se(0.3) == 0.0 and res.examples_text(0.1) == ""


def test_continuous_loss_curves_have_no_resolution() -> None:
    rng = np.random.default_rng(3)
    curves = [{"loss": list(0.5 + rng.normal(0, 0.01, 20))} for _ in range(4)]
    assert resolution(_data(curves, metric="loss")).source == "none"


# ----------------------------------------------------------------------------- chance level
def test_chance_reported_by_the_workload() -> None:
    data = _data([{"val_error": [0.5, 0.3, 0.3], "val_examples": [500],
                   "val_error_chance": [0.9]}])
    assert resolution(data).chance == pytest.approx(0.9)
    assert resolution(data, "val_examples").chance is None


def test_chance_from_the_checks_section_is_the_objectives_only() -> None:
    curves = [{"val_error": [0.5, 0.3, 0.3], "train_error": [0.5, 0.2, 0.1]}]
    data = _data(curves, checks={"resolution": {"chance_level": 0.8}})
    assert resolution(data).chance == pytest.approx(0.8)
    assert resolution(data, "train_error").chance is None
    assert resolution(_data(curves)).chance is None


def test_meta_metrics_are_not_measurements() -> None:
    assert is_meta_metric("val_examples") and is_meta_metric("val_error_chance")
    assert not is_meta_metric("val_error") and not is_meta_metric("examples_seen")


# ----------------------------------------------------------------------------- thresholds
def test_the_checks_section_changes_min_change() -> None:
    curves = [{"val_error": [0.5, 0.3, 0.3], "val_examples": [10000]}]
    default = resolution(_data(curves))
    assert default.min_change(0.0005) == pytest.approx(3 / 10000)  # SE 0.00022 < 3 examples
    fewer = resolution(_data(curves, checks={"resolution": {"min_examples": 10,
                                                             "se_mult": 2.0}}))
    assert (fewer.min_examples, fewer.se_mult) == (10, 2.0)
    assert fewer.min_change(0.0005) == pytest.approx(10 / 10000)
    assert fewer.min_change(0.3) == pytest.approx(2 * math.sqrt(0.3 * 0.7 / 10000))


def test_explicit_thresholds_bypass_the_memo() -> None:
    data = _data([{"val_error": [0.5, 0.3, 0.3], "val_examples": [100]}])
    assert resolution(data) is resolution(data)  # computed once per data
    strict = resolution(data, th=ResolutionThresholds(min_examples=5))
    assert strict.min_examples == 5 and resolution(data).min_examples == 3


@pytest.mark.parametrize(("values", "key", "message"), [
    ({"min_exemples": 3}, "checks.resolution.min_exemples",
     "did you mean 'min_examples'?"),
    ({"min_examples": 2.5}, "checks.resolution.min_examples", "must be an integer"),
    ({"se_mult": -1.0}, "checks.resolution.se_mult", ">= 0"),
    ({"chance_level": "high"}, "checks.resolution.chance_level", "must be a number"),
])
def test_the_resolution_family_is_validated(values: dict[str, object], key: str,
                                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        thresholds_from_config({"resolution": values}, "exp.yaml")
    assert info.value.key == key and message in info.value.message
    data = _data([{"val_error": [0.5, 0.3, 0.3]}], checks={"resolution": values})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        run_checks(data)


def test_resolution_as_dict_is_the_evidence_form() -> None:
    res = Resolution("val_error", 0.002, 500, "reported", 0.9)
    assert res.as_dict() == {"metric": "val_error", "quantum": 0.002, "examples": 500,
                             "source": "reported", "chance": 0.9, "min_examples": 3,
                             "se_mult": 1.0}
    assert dataclasses.replace(res, quantum=None).min_change(0.3) == 0.0



def test_a_reported_size_applies_to_rates_not_to_the_loss_beside_them() -> None:
    rng = np.random.default_rng(0)
    curves = [{"val_error": [k / 500 for k in rng.integers(100, 200, 5)],
               "val_loss": list(rng.uniform(0.3, 0.9, 5)), "val_examples": [500]}]
    assert resolution(_data(curves)).source == "reported"
    loss = resolution(_data(curves, metric="val_loss"))
    assert (loss.source, loss.quantum, loss.min_change(0.5)) == ("none", None, 0.0)
    for name in ("train_nll", "val_cross_entropy", "valid_perplexity"):
        assert resolution(_data([{name: [0.5, 0.4], "valid_examples": [500],
                                  "train_examples": [500], "val_examples": [500]}],
                                metric=name)).source == "none"

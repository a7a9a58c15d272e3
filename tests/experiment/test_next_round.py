"""The next round's experiment: the narrowed space, the schedule rule, the written file."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from tunebook.errors import ConfigError
from tunebook.experiment import Experiment
from tunebook.experiment.rounds import (
    MIN_MARGIN,
    extend_schedule,
    narrow,
    next_name,
    next_round,
)
from tunebook.schedules import from_hparams
from tunebook.search.space import Categorical, Discrete, Float, Int


def base(**over: Any) -> Experiment:
    d: dict[str, Any] = {
        "name": "r1", "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss"}, "max_train_steps": 1000, "eval_every": 100,
        "search": {"trials": 8},
        "scientific": {"y": [0.0, -0.2]},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1.0,
                                       "scale": "log"},
                     "x": {"type": "float", "low": -1, "high": 1},
                     "width": {"type": "int", "low": 8, "high": 512, "scale": "log"},
                     "batch": {"type": "discrete", "values": [16, 32, 64]},
                     "act": ["relu", "gelu", "tanh"]},
        "fixed": {"schedule": "linear", "warmup_steps": 100}}
    d.update(over)
    return Experiment.from_dict(d)


TOP = {"y=0.0": [{"learning_rate": 0.01, "x": 0.3, "width": 64, "batch": 32, "act": "relu"},
                 {"learning_rate": 0.03, "x": 0.1, "width": 100, "batch": 16, "act": "gelu"}],
       "y=-0.2": [{"learning_rate": 0.02, "x": 0.5, "width": 70, "batch": 32, "act": "relu"}]}


@pytest.mark.parametrize("hp", [Float(1e-4, 1.0, "log"), Float(-1.0, 1.0, "linear"),
                                Float(0.5, 0.999, "one_minus_log"), Int(8, 512, "log"),
                                Int(0, 10, "linear")])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_narrowed_range_holds_the_top_and_lies_in_the_old(hp: Any, k: int) -> None:
    values = [hp.from_unit(u) for u in (0.31, 0.52, 0.4)[:k]]
    new = narrow(hp, values)
    assert isinstance(new, type(hp))
    assert hp.low <= new.low <= min(values) and max(values) <= new.high <= hp.high
    assert new.scale == hp.scale
    # Narrower than the old range, but widened past the top trials' span.
    assert (new.to_json()["low"], new.to_json()["high"]) != (hp.low, hp.high)
    u_lo, u_hi = hp.to_unit(new.low), hp.to_unit(new.high)
    assert u_hi - u_lo >= min(2 * MIN_MARGIN, 1.0) * 0.5


def test_narrowed_range_is_clipped_to_the_old() -> None:
    new = narrow(Float(1e-4, 1.0, "log"), [1.0, 0.5])
    assert isinstance(new, Float) and new.high == 1.0 and new.low < 0.5


def test_lists_keep_the_values_used_and_one_value_is_fixed() -> None:
    assert narrow(Categorical(("a", "b", "c")), ["c", "a", "c"]) == Categorical(("a", "c"))
    assert narrow(Discrete((16, 32, 64)), [64, 16]) == Discrete((16, 64))
    assert narrow(Categorical(("a", "b")), ["b"]) == "b"


def test_next_name() -> None:
    assert next_name("mnist") == "mnist-r2"
    assert next_name("mnist-r2") == "mnist-r3"
    assert next_name("mnist", ["mnist-r2", "mnist-r3"]) == "mnist-r4"


def test_next_round_file_is_a_valid_experiment_with_comments(tmp_path: Any) -> None:
    exp = base()
    text = next_round(exp, TOP, 4000, "r1-r2").to_yaml()
    path = tmp_path / "r1-r2.yaml"
    path.write_text(text)
    new = Experiment.from_yaml(path)
    assert new.name == "r1-r2" and new.follows == "r1"
    assert new.max_train_steps == 4000
    assert new.eval_every == 400  # 10 evaluations, as before
    assert "# was 1000" in text and "evaluations per trial" in text
    assert new.scientific == exp.scientific
    for rows in TOP.values():
        for p in rows:
            for name, hp in new.nuisance.items():
                v = p[name]
                if hp.bounds is not None:
                    assert hp.bounds[0] <= v <= hp.bounds[1], (name, v, hp)
                else:
                    assert v in hp.choices
    assert new.nuisance["act"] == Categorical(("relu", "gelu"))
    assert new.fixed["warmup_steps"] == 100  # warmup stays in steps
    assert new.identity() != exp.identity()


def test_next_round_drops_search_seeds_and_keeps_the_seed() -> None:
    exp = base(search={"trials": 4, "seeds": [3, 4]})
    doc = yaml.safe_load(next_round(exp, TOP, 2000, "r1-r2").to_yaml())
    assert doc["search"] == {"algorithm": "quasi_random", "trials": 4, "seed": 3}


# --- the schedule rule, per built-in schedule --------------------------------------------------
OLD, NEW = 1000, 4000


def lr_at_fraction(config: dict[str, Any], total: int, fraction: float) -> float:
    """The learning rate at ``fraction`` of the training after warmup."""
    w = int(config.get("warmup_steps", 0))
    return from_hparams(config, total)(w + round(fraction * (total - w)))


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "rsqrt"])
@pytest.mark.parametrize("decay", [None, 450, 900])
def test_schedule_rule_per_built_in_schedule(schedule: str, decay: int | None) -> None:
    config: dict[str, Any] = {"learning_rate": 0.1, "schedule": schedule, "warmup_steps": 100,
                              "end_factor": 0.1} if schedule in ("linear", "cosine") else {
        "learning_rate": 0.1, "schedule": schedule, "warmup_steps": 100}
    if schedule == "rsqrt":
        config["rsqrt_timescale"] = 50
    if decay is not None:
        config["decay_steps"] = decay
    new, notes = extend_schedule(config, OLD, NEW)
    # Warmup, end values, timescale and the learning rate stay.
    for key in ("warmup_steps", "end_factor", "rsqrt_timescale", "learning_rate", "schedule"):
        assert new.get(key) == config.get(key)
    if decay is None:
        assert "decay_steps" not in new and not notes  # by default the decay spans the rest
    else:
        assert new["decay_steps"] == round(decay * (NEW - 100) / (OLD - 100))
        assert notes and "decay_steps" in notes[0]
    if schedule == "rsqrt":
        return  # the timescale stays: the curve is not a shape relative to the length
    # The shape relative to the training after warmup is kept (same rate at the same fraction).
    for fraction in (0.0, 0.25, 0.5, 0.8, 1.0):
        a = lr_at_fraction(config, OLD, fraction)
        b = lr_at_fraction(new, NEW, fraction)
        assert math.isclose(a, b, rel_tol=0.02, abs_tol=1e-4), (fraction, a, b)


def test_decay_steps_scaled_in_nuisance_and_with_searched_warmup() -> None:
    exp = base(nuisance={"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0,
                                           "scale": "log"},
                         "decay_steps": {"type": "int", "low": 300, "high": 900}},
               fixed={"schedule": "cosine"})
    top = {"y=0.0": [{"learning_rate": 0.1, "decay_steps": 600}],
           "y=-0.2": [{"learning_rate": 0.2, "decay_steps": 700}]}
    new = Experiment.from_dict(yaml.safe_load(next_round(exp, top, 3000, "r1-r2").to_yaml()))
    hp = new.nuisance["decay_steps"]
    assert isinstance(hp, Int)
    assert hp.low <= 600 * 3 and hp.high >= 700 * 3 and hp.high <= 900 * 3  # x3, no warmup
    exp = base(fixed={"schedule": "linear", "decay_steps": 500},
               nuisance={"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0},
                         "warmup_steps": [0, 200]})
    top = {"y=0.0": [{"learning_rate": 0.1, "warmup_steps": 0}],
           "y=-0.2": [{"learning_rate": 0.2, "warmup_steps": 200}]}
    new = Experiment.from_dict(yaml.safe_load(next_round(exp, top, 3000, "r1-r2").to_yaml()))
    assert new.fixed["decay_steps"] == 1500  # warmup searched: S / S0


def test_a_round_that_would_be_invalid_is_one_error() -> None:
    exp = base(fixed={"schedule": "linear", "warmup_steps": 100})
    with pytest.raises(ConfigError, match=r"--steps.*not be a valid experiment"):
        next_round(exp, TOP, 2**31, "r1-r2")


def test_listed_mode_scales_each_entrys_decay_with_its_own_warmup() -> None:
    exp = base(nuisance={"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0},
                         "warmup_steps": [0, 100], "decay_steps": [400, 900]},
               fixed={"schedule": "cosine"})
    best = [("trial y=0.0 #1", {"y": 0.0, "learning_rate": 0.1, "warmup_steps": 100,
                                "decay_steps": 900, "schedule": "cosine"}),
            ("trial y=-0.2 #4", {"y": -0.2, "learning_rate": 0.2, "warmup_steps": 0,
                                 "decay_steps": 400, "schedule": "cosine"})]
    text = next_round(exp, {}, 2000, "r1-r2", best).to_yaml()
    new = Experiment.from_dict(yaml.safe_load(text))
    assert [dict(c) for c in new.configs] == [
        {"name": "top1", "y": 0.0, "learning_rate": 0.1, "warmup_steps": 100,
         "decay_steps": round(900 * 1900 / 900)},
        {"name": "top2", "y": -0.2, "learning_rate": 0.2, "warmup_steps": 0,
         "decay_steps": 800}]
    assert "trial y=-0.2 #4" in text and len(new.nuisance) == 0
    # A round after a listed round narrows nothing and scales the entries again.
    again = next_round(new, {"top1": [{}], "top2": [{}]}, 4000, "r1-r3").document
    assert [c["decay_steps"] for c in again["configs"]] == [3900, 1600]

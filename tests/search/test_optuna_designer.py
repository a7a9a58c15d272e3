"""The ``optuna:<Sampler>`` designer family: real Optuna samplers on tunebook's seam and runner."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tunebook.errors import ConfigError
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.search.designers import Designer, Observation, designer_class, make_designer
from tunebook.search.optuna_designer import SAMPLERS, OptunaDesigner
from tunebook.search.space import Categorical, Discrete, Float, Int, SearchSpace, Value

import driving
from conftest import cli_env, write_experiment

optuna = pytest.importorskip("optuna")

SPACE = SearchSpace({
    "lr": Float(1e-4, 1.0, "log"), "x": Float(-1.0, 1.0), "beta": Float(0.5, 0.999,
                                                                        "one_minus_log"),
    "layers": Int(1, 6), "width": Int(8, 512, "log"), "batch": Discrete((16, 32, 64, 128)),
    "act": Categorical(("relu", "gelu", "tanh")),
})


def loss(p: Mapping[str, Value]) -> float:
    return ((float(p["x"]) - 0.3) ** 2 + abs(float(p["lr"]) - 0.01) + (1 - float(p["beta"]))
            + 0.1 * (p["act"] != "gelu"))


def outcome(i: int, p: Mapping[str, Value]) -> str:
    """High learning rates diverge; trial 2 fails whatever it is."""
    return "failed" if i == 2 else "infeasible" if float(p["lr"]) > 0.3 else "completed"


def drive(algorithm: str, budget: int, options: dict[str, Any] | None = None,
          restart_after: int | None = None, seed: int = 4) -> tuple[list[dict[str, Value]],
                                                                     Designer]:
    """Serially suggest and observe, as a one-worker run does; ``restart_after``: carry on with
    a fresh designer restored from the JSON round trip of the state (a resumed run)."""
    d = make_designer(algorithm, SPACE, seed, budget, options=options)
    done: list[dict[str, Value]] = []
    while len(done) < budget:
        if len(done) == restart_after:
            fresh = make_designer(algorithm, SPACE, seed, budget, options=options)
            fresh.restore(json.loads(json.dumps(d.state())))
            d = fresh
        i = len(done)
        (p,) = d.suggest([i])
        status = outcome(i, p)
        d.observe([Observation(i, p, loss(p) if status == "completed" else None, status)])
        done.append(p)
    return done, d


# Startup trials shortened so that the model-based samplers model within a small budget.
RUNS = {"TPESampler": {"n_startup_trials": 4}, "GPSampler": {"n_startup_trials": 4},
        "CmaEsSampler": {"n_startup_trials": 2}, "RandomSampler": {}, "QMCSampler": {}}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_is_seeded_and_a_resumed_run_repeats_it_exactly(sampler: str) -> None:
    algorithm, options = f"optuna:{sampler}", RUNS[sampler]
    budget = 9
    whole, d = drive(algorithm, budget, options)
    assert whole == drive(algorithm, budget, options)[0]
    assert whole == drive(algorithm, budget, options, restart_after=7)[0]
    assert whole != drive(algorithm, budget, options, seed=5)[0]
    for p in whole:  # every value is one the space can hold, of its type
        assert set(p) == set(SPACE)
        for name, hp in SPACE.items():
            if hp.choices is not None:
                assert p[name] in hp.choices
            else:
                low, high = hp.bounds
                assert low <= float(p[name]) <= high
                assert isinstance(p[name], int) == hp.integer
    # Infeasible and failed trials are Optuna FAIL trials, never given a value.
    assert isinstance(d, OptunaDesigner)
    states = [t.state.name for t in d._study.trials]
    expect = ["COMPLETE" if outcome(i, p) == "completed" else "FAIL"
              for i, p in enumerate(whole)]
    assert states == expect and "FAIL" in states
    assert [t.value for t in d._study.trials if t.state.name == "FAIL"] == [None] * (
        states.count("FAIL"))


def test_the_space_maps_to_optuna_distributions_both_ways() -> None:
    d = make_designer("optuna:RandomSampler", SPACE, 0, 30)
    points = d.suggest(range(30))
    trials = d._study.trials  # type: ignore[attr-defined]
    dists = trials[0].distributions
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    assert dists["beta"] == optuna.distributions.FloatDistribution(1 - 0.999, 0.5, log=True)
    assert dists["batch"] == optuna.distributions.IntDistribution(0, 3)
    assert dists["width"] == optuna.distributions.IntDistribution(8, 512, log=True)
    assert dists["act"] == optuna.distributions.CategoricalDistribution(["relu", "gelu", "tanh"])
    for p, t in zip(points, trials, strict=True):
        # one_minus_log: Optuna searches 1 - beta on a log scale; discrete: the position.
        assert p["beta"] == pytest.approx(1 - t.params["beta"], rel=0, abs=1e-15)
        assert p["batch"] == (16, 32, 64, 128)[t.params["batch"]]
    assert {p["batch"] for p in points} == {16, 32, 64, 128}
    assert {p["act"] for p in points} == {"relu", "gelu", "tanh"}
    assert max(float(p["beta"]) for p in points) > 0.99  # the log scale reaches near 1


def test_pending_trials_are_running_and_indices_come_in_order() -> None:
    d = make_designer("optuna:TPESampler", SPACE, 1, 10)
    first = d.suggest([0, 1, 2])
    assert len(first) == 3
    assert [t.state.name for t in d._study.trials] == ["RUNNING"] * 3  # type: ignore[attr-defined]
    d.observe([Observation(1, first[1], 0.5, "completed")])
    assert [t.state.name for t in d._study.trials] == [  # type: ignore[attr-defined]
        "RUNNING", "COMPLETE", "RUNNING"]
    with pytest.raises(ValueError, match="expected index 3, got 5"):
        d.suggest([5])


def test_a_trial_it_did_not_suggest_is_learnt_from_the_store() -> None:
    d = make_designer("optuna:TPESampler", SPACE, 1, 10)
    p = make_designer("quasi_random", SPACE, 1, 10).suggest([0])[0]
    d.observe([Observation(4, p, 0.25, "completed"), Observation(5, p, None, "infeasible")])
    (complete, failed) = d._study.trials  # type: ignore[attr-defined]
    assert (complete.value, failed.state.name) == (0.25, "FAIL")
    assert complete.params["beta"] == pytest.approx(1 - float(p["beta"]))
    assert len(d.suggest([6])) == 1  # it carries on after the store's trials
    d.observe([Observation(4, p, 0.25, "completed")])  # shown twice: learnt once
    assert len(d._study.trials) == 3  # type: ignore[attr-defined]
    resumed = make_designer("optuna:TPESampler", SPACE, 1, 10)
    resumed.restore(json.loads(json.dumps(d.state())))
    assert resumed.state() == d.state()


def test_a_log_another_optuna_would_replay_differently_is_forced_with_a_warning() -> None:
    _, d = drive("optuna:TPESampler", 6, RUNS["TPESampler"])
    state = json.loads(json.dumps(d.state()))
    ask = next(e for e in state["events"] if e[0] == "ask" and e[1] == 5)
    ask[2]["x"] = 0.123456  # what another version of the sampler might have asked
    resumed = make_designer("optuna:TPESampler", SPACE, 4, 8, options=RUNS["TPESampler"])
    with pytest.warns(RuntimeWarning, match="rebuilt from the saved trials"):
        resumed.restore(state)
    assert resumed._study.trials[5].params["x"] == 0.123456  # type: ignore[attr-defined]
    assert resumed.state() == state
    assert len(resumed.suggest([6])) == 1


_doc = driving.experiment_doc


def test_bad_sampler_names_and_options_are_one_line_errors() -> None:
    def refused(algorithm: str, **options: Any) -> str:
        with pytest.raises(ConfigError) as exc:
            Experiment.from_dict(_doc(algorithm, **options), source="e.yaml")
        message = str(exc.value)
        assert "\n" not in message and "e.yaml" in message
        return message

    assert "search.algorithm" in refused("optuna:TPE")
    assert "unknown Optuna sampler 'TPE'; one of optuna:TPESampler, optuna:GPSampler" in (
        refused("optuna:TPE"))
    msg = refused("optuna:TPESampler", n_startup=3)
    assert "search.options.n_startup" in msg and "n_startup_trials" in msg
    assert "comes from search.seed" in refused("optuna:RandomSampler", seed=3)
    assert "takes a Python object" in refused("optuna:TPESampler", gamma="x")
    assert "n_startup_trials must be int, got 'ten'" in refused("optuna:TPESampler",
                                                                n_startup_trials="ten")
    assert "is a count, got -1" in refused("optuna:GPSampler", n_startup_trials=-1)
    assert "takes none besides the seed" in refused("optuna:RandomSampler", anything=1)
    msg = refused("optuna:QMCSampler", qmc_type="lattice")
    assert "search.options.qmc_type" in msg and "lattice" in msg
    exp = Experiment.from_dict(_doc("optuna:TPESampler", n_startup_trials=3, multivariate=True))
    assert exp.search.options == {"n_startup_trials": 3, "multivariate": True}
    cls, variant = designer_class(exp.search.algorithm)
    assert (cls, variant) == (OptunaDesigner, "TPESampler") and cls.adaptive
    d = make_designer(exp.search.algorithm, exp.nuisance, 1, 4, options=exp.search.options)
    assert make_designer("optuna:", SPACE, 1, 4).variant == "TPESampler"  # Optuna's default
    Experiment.from_dict(_doc("optuna:"))
    assert d._study.sampler._n_startup_trials == 3  # type: ignore[attr-defined]


def test_without_optuna_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what a missing package looks like
    with pytest.raises(ConfigError, match=r"search\.algorithm.*pip install 'tunebook\[optuna\]'"):
        Experiment.from_dict(_doc("optuna:TPESampler"), source="e.yaml")
    with pytest.raises(ModuleNotFoundError, match=r"tunebook\[optuna\]"):
        make_designer("optuna:TPESampler", SPACE, 0, 4)


def test_import_tunebook_does_not_import_optuna() -> None:
    code = ("import sys, tunebook, tunebook.search.designers, tunebook.experiment; "
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(), check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- through the runner

def _bowl(folder: Path, sleep: float = 0.0) -> Path:
    folder.mkdir()
    # toy:bowl: a minimum at x = 0.3, infeasible beyond 0.9, an exception beyond 0.8.
    return write_experiment(folder, name="opt", workload="toy:bowl", max_train_steps=1,
                            eval_every=1, scientific={}, fixed={"sleep": sleep},
                            search={"algorithm": "optuna:TPESampler", "trials": 12, "seed": 2,
                                    "options": {"n_startup_trials": 5}})


def _outcome(root: Path) -> tuple[list[tuple[int, float, str]], dict[str, Any]]:
    return driving.run_outcome(root, "opt")


def test_a_run_killed_midway_resumes_into_the_same_trials(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    run(Experiment.from_yaml(_bowl(whole)), root=whole / "root", workers=0)
    want, state = _outcome(whole / "root")
    assert [i for i, _, _ in want] == list(range(12))
    assert {s for _, _, s in want} >= {"completed", "infeasible"}
    told = {e[1]: e[2] for e in state["designer"]["events"] if e[0] == "tell"}
    assert told == {i: s for i, _, s in want}  # each observed once, for what it is

    cut = tmp_path / "cut"
    path = _bowl(cut, sleep=0.2)
    # Killed after the startup trials, well before the end.
    seen = driving.kill_run_midway(path, cut / "root", "opt", after=6, workers=0)
    assert 6 < len(seen) < 12
    assert [(i, x) for i, x, _ in seen] == [(i, x) for i, x, _ in want[:len(seen)]]
    run(Experiment.from_yaml(path), root=cut / "root", workers=0)
    got, got_state = _outcome(cut / "root")
    assert got == want and got_state == state

"""The ``bayesian`` designer: determinism, feasibility, batches, spaces, options, and runs."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.errors import ConfigError
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.search.bayes import BayesianDesigner
from tunebook.search.designers import Observation, QuasiRandomDesigner, make_designer
from tunebook.search.space import Categorical, Discrete, Float, Int, SearchSpace, Value
from tunebook.store.sql import Store

import driving
from conftest import cli_env, write_experiment

LR_SPACE = SearchSpace({"lr": Float(1e-4, 10.0, "log"), "x": Float(0.0, 1.0)})


def lr_loss(p: Mapping[str, Value]) -> float:
    """A log-scale valley at lr = 0.01, x = 0.3."""
    return (math.log10(float(p["lr"])) + 2.0) ** 2 + (float(p["x"]) - 0.3) ** 2


def run_serially(algorithm: str, space: SearchSpace, seed: int, budget: int,
                 loss: Callable[[Mapping[str, Value]], float],
                 feasible: Callable[[Mapping[str, Value]], bool] = lambda p: True,
                 **options: Any) -> list[dict[str, Value]]:
    """One trial at a time; an infeasible point is observed without a value."""
    d = make_designer(algorithm, space, seed, budget, options=options)
    done: list[dict[str, Value]] = []
    for i in range(budget):
        (p,) = d.suggest([i])
        ok = feasible(p)
        d.observe([Observation(i, p, loss(p) if ok else None,
                               "completed" if ok else "infeasible")])
        done.append(p)
    return done


def test_suggestions_are_a_function_of_the_seed_and_the_observations() -> None:
    a = run_serially("bayesian", LR_SPACE, 1, 14, lr_loss)
    assert a == run_serially("bayesian", LR_SPACE, 1, 14, lr_loss)
    assert a != run_serially("bayesian", LR_SPACE, 2, 14, lr_loss)
    d = BayesianDesigner(LR_SPACE, 1, 14)
    assert d.initial == 5  # max(5, 2 * 2), under half the budget
    assert a[:5] == QuasiRandomDesigner(LR_SPACE, 1).suggest(range(5))
    # Other values after the same start: other suggestions.
    assert run_serially("bayesian", LR_SPACE, 1, 14, lambda p: -lr_loss(p))[5:] != a[5:]
    # A resumed designer (state through JSON) carries on identically.
    assert driving.drive(BayesianDesigner(LR_SPACE, 1, 14), 14, lr_loss, restart_after=8) == a


def test_it_beats_quasi_random_at_the_same_budget() -> None:
    """A smooth 3-dimensional function, 20 trials, 7 fixed seeds: the median best is better."""
    space = SearchSpace({"lr": Float(1e-4, 1.0, "log"), "m": Float(0.5, 0.999, "one_minus_log"),
                         "w": Float(-1.0, 1.0)})

    def loss(p: Mapping[str, Value]) -> float:
        return ((math.log10(float(p["lr"])) + 2.5) ** 2 + (math.log10(1 - float(p["m"])) + 2) ** 2
                + (float(p["w"]) - 0.4) ** 2)

    best = {alg: [min(map(loss, run_serially(alg, space, s, 20, loss))) for s in range(7)]
            for alg in ("bayesian", "quasi_random")}
    assert statistics.median(best["bayesian"]) < 0.5 * statistics.median(best["quasi_random"])


def test_infeasible_trials_steer_suggestions_away_from_the_diverging_region() -> None:
    """lr > 0.03 diverges, the optimum is lr = 0.01 beside it: half of quasi-random's trials
    are infeasible; after the initial ones, far fewer of the designer's."""
    def feasible(p: Mapping[str, Value]) -> bool:
        return float(p["lr"]) <= 0.03

    shares = {}
    for alg in ("bayesian", "quasi_random"):
        shares[alg] = statistics.median(
            sum(not feasible(p) for p in run_serially(alg, LR_SPACE, s, 25, lr_loss, feasible)[5:])
            / 20 for s in range(6))
    assert shares["quasi_random"] == 0.5
    assert shares["bayesian"] <= 0.3
    # Infeasible trials are kept without a value: nothing made up enters the regression.
    d = BayesianDesigner(LR_SPACE, 0, 8)
    start = d.suggest(range(5))
    d.observe([Observation(i, p, 1.0 if feasible(p) else None,
                           "completed" if feasible(p) else "infeasible")
               for i, p in enumerate(start)])
    ends = [(s, v) for _, s, v in d.state()["observed"]]
    assert ("infeasible", None) in ends and all(v is None for s, v in ends if s != "completed")


def test_no_feasible_trial_yet_goes_on_quasi_randomly() -> None:
    d = BayesianDesigner(LR_SPACE, 3, 9)
    first = d.suggest(range(9))
    assert len(first) == 4  # initial = min(5, 9 // 2): the model waits for them
    d.observe([Observation(i, p, None, "failed") for i, p in enumerate(first)])
    assert d.suggest([4]) == QuasiRandomDesigner(LR_SPACE, 3).suggest([4])


@pytest.mark.parametrize("size", [2, 8])
def test_a_batch_waits_for_earlier_trials_and_holds_distinct_spread_points(size: int) -> None:
    d = BayesianDesigner(LR_SPACE, 4, 30, options={"batch": size})
    start = d.suggest(range(20))
    assert len(start) == 5
    d.observe([Observation(i, p, lr_loss(p), "completed") for i, p in enumerate(start[:4])])
    assert d.suggest([5]) == []  # trial 4 is still running
    d.observe([Observation(4, start[4], lr_loss(start[4]), "completed")])
    batch = d.suggest(range(5, 5 + size + 3))
    assert len(batch) == size
    units = [(LR_SPACE["lr"].to_unit(float(p["lr"])), float(p["x"])) for p in batch]
    gaps = [math.dist(a, b) for i, a in enumerate(units) for b in units[i + 1:]]
    assert min(gaps) > 0.005  # distinct, not stacked on one spot
    with pytest.raises(ValueError, match=f"expected index {5 + size}, got 20"):
        d.suggest([20])


def test_categorical_int_and_discrete_dimensions_are_respected() -> None:
    space = SearchSpace({"act": Categorical(("relu", "gelu", "tanh", "elu")),
                         "width": Int(8, 512, "log"), "batch": Discrete((16, 32, 64, 128)),
                         "lr": Float(1e-3, 1.0, "log")})

    def loss(p: Mapping[str, Value]) -> float:
        return ((0.0 if p["act"] == "gelu" else 1.0) + (math.log2(int(p["width"])) - 7) ** 2 / 4
                + (math.log2(int(p["batch"])) - 6) ** 2 / 4
                + (math.log10(float(p["lr"])) + 1.5) ** 2)

    points = run_serially("bayesian", space, 0, 30, loss)
    for p in points:
        assert p["act"] in ("relu", "gelu", "tanh", "elu") and p["batch"] in (16, 32, 64, 128)
        assert isinstance(p["width"], int) and 8 <= p["width"] <= 512
    model = points[8:]  # initial = max(5, 2 * 4)
    assert sum(p["act"] == "gelu" for p in model) > len(model) / 2
    best = min(model, key=loss)
    assert best["act"] == "gelu" and best["batch"] == 64 and 64 <= int(best["width"]) <= 256
    assert loss(best) < min(map(loss, points[:8]))


def _doc(**options: Any) -> dict[str, Any]:
    return {"name": "e", "workload": "m:f", "objective": {"metric": "loss"},
            "max_train_steps": 10, "eval_every": 5,
            "search": {"algorithm": "bayesian", "trials": 10, "seed": 1, "options": options},
            "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


@pytest.mark.parametrize(("options", "message"), [
    ({"initial": 0}, r"search\.options\.initial.*integer >= 1, got 0"),
    ({"initial": 2.5}, r"search\.options\.initial.*got 2\.5"),
    ({"batch": True}, r"search\.options\.batch.*integer >= 1, got True"),
    ({"acquisition": "ucb"}, r"search\.options\.acquisition.*one of ei, pi, got 'ucb'"),
    ({"kernel": "rbf"}, r"search\.options\.kernel.*unknown option.*initial, acquisition, batch"),
])
def test_bad_options_are_refused_in_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Experiment.from_dict(_doc(**options), source="e.yaml")
    assert "e.yaml" in str(err.value) and "\n" not in str(err.value)
    good = Experiment.from_dict(_doc(initial=3, batch=2, acquisition="pi"))
    assert good.search.options == {"initial": 3, "batch": 2, "acquisition": "pi"}


def test_without_scipy_the_designer_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tunebook\[bayes\]'"):
        make_designer("bayesian", LR_SPACE, 0, 10)


def test_import_tunebook_stays_light() -> None:
    code = ("import sys, tunebook.search.designers; "
            "print(any(m.split('.')[0] in ('scipy', 'torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ through runs

def _bowl_file(folder: Path) -> Path:
    folder.mkdir()
    # toy:bowl: best at x = 0.3, infeasible beyond 0.9, failing beyond 0.8.
    return write_experiment(folder, name="bo", workload="toy:bowl", max_train_steps=1,
                            eval_every=1, scientific={}, fixed={"sleep": 0.2},
                            search={"algorithm": "bayesian", "trials": 16, "seed": 2,
                                    "options": {"batch": 2}})


def _outcome(root: Path) -> tuple[list[tuple[int, float, str]], dict[str, Any]]:
    return driving.run_outcome(root, "bo")


def test_a_run_killed_midway_resumes_into_the_same_trials(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    run(Experiment.from_yaml(_bowl_file(whole)), root=whole / "root", workers=2)
    want, want_state = _outcome(whole / "root")
    assert [i for i, _, _ in want] == list(range(16))
    assert len({x for _, x, _ in want}) == 16  # two workers never got the same point
    best = min((x for _, x, s in want if s == "completed"), key=lambda x: abs(x - 0.3))
    assert abs(best - 0.3) < 0.02

    cut = tmp_path / "cut"
    path = _bowl_file(cut)
    # Killed once the model's batches have begun, well before the end.
    seen = driving.kill_run_midway(path, cut / "root", "bo", after=8, workers=2)
    assert 8 < len(seen) < 16
    assert [(i, x) for i, x, _ in seen] == [(i, x) for i, x, _ in want[:len(seen)]]

    run(Experiment.from_yaml(path), root=cut / "root", workers=2)
    assert _outcome(cut / "root") == (want, want_state)


def test_a_conditional_space_gets_a_designer_per_study(tmp_path: Path) -> None:
    x = {"type": "float", "low": -1.0, "high": 1.0}
    doc = {"name": "cond", "workload": "tunebook.workloads.synthetic:quadratic",
           "objective": {"metric": "val_loss", "goal": "minimize"},
           "max_train_steps": 10, "eval_every": 10,
           "search": {"algorithm": "bayesian", "trials": 8, "seed": 1},
           "scientific": {"optimizer": ["adam", "sgd"]},
           "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0,
                                          "scale": "log"}},
           "nuisance_for": {"optimizer=adam": {"x": x}}, "fixed": {"noise": 0.0}}
    path = tmp_path / "cond.yaml"
    path.write_text(yaml.safe_dump(doc))
    run(Experiment.from_yaml(path), root=tmp_path / "root", workers=0)
    store = Store.at_root(tmp_path / "root", create=False)
    try:
        exp = store.require_experiment("cond")
        trials = store.trials(exp.id)
        states = {s.name: store.designer_state(s.id) for s in store.studies(exp.id)}
    finally:
        store.close()
    by_study: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        by_study.setdefault(t.params["optimizer"], []).append(t.params)
    assert sorted(by_study) == ["adam", "sgd"] and all(len(v) == 8 for v in by_study.values())
    assert all("x" in p and -1 <= p["x"] <= 1 for p in by_study["adam"])
    assert all("x" not in p for p in by_study["sgd"])
    # Each study's designer works over its own space: 2 and 1 unit coordinates.
    assert {len(u) for u in states["optimizer=adam"]["designer"]["units"]} == {2}
    assert {len(u) for u in states["optimizer=sgd"]["designer"]["units"]} == {1}


def test_run_says_when_workers_would_wait_for_a_batch(tmp_path: Path) -> None:
    from conftest import run_cli, write_experiment

    def first_line(batch: int | None, workers: str) -> str:
        search: dict[str, Any] = {"algorithm": "bayesian", "trials": 2, "seed": 0}
        if batch is not None:
            search["options"] = {"batch": batch}
        path = write_experiment(tmp_path, workload="tunebook.workloads.synthetic:quadratic",
                                max_train_steps=2, eval_every=1, search=search,
                                objective={"metric": "val_loss", "goal": "minimize"},
                                scientific={}, fixed={})
        proc = run_cli("run", str(path), "--root", str(tmp_path / f"r{batch}{workers}"),
                       "--workers", workers, "--quiet", check=True)
        return proc.stderr.splitlines()[0] if proc.stderr else ""

    warned = first_line(None, "3")
    assert warned.startswith("tunebook: warning: bayesian hands out 1 trial(s) of a study at "
                             "a time") and "set search.options.batch to 3" in warned
    assert "warning" not in first_line(3, "3")
    assert "warning" not in first_line(None, "1")

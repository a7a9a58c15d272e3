"""Conditional nuisance hyperparameters (nuisance_for:): validation, each study's space, runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.analysis.data import load
from tunebook.analysis.plots import axis_plots, bucketed_isolation
from tunebook.analysis.surrogate import fit
from tunebook.cli import main
from tunebook.errors import ConfigError
from tunebook.execution.runner import run
from tunebook.execution.suggestions import materialize
from tunebook.experiment import Experiment
from tunebook.search.space import Float, SearchSpace
from tunebook.store.sql import Store

LR = {"type": "float", "low": 1e-3, "high": 1.0, "scale": "log"}
X = {"type": "float", "low": -1.0, "high": 1.0}
BASE: dict[str, Any] = {
    "name": "cond",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "max_train_steps": 30,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 12, "seed": 1},
    "scientific": {"optimizer": ["adam", "nesterov", "sgd"]},
    "nuisance": {"learning_rate": LR},
    "nuisance_for": {"optimizer=adam": {"x": X, "beta1": [0.9, 0.99]},
                     "optimizer=nesterov": {"y": X}},
    "fixed": {"noise": 0.02},
}


def exp(**overrides: Any) -> Experiment:
    return Experiment.from_dict({**BASE, **overrides}, source="cond.yaml")


def test_each_study_searches_the_shared_and_its_own_hyperparameters() -> None:
    e = exp()
    spaces = {s.name: e.study_space(s) for s in e.studies()}
    assert spaces["optimizer=adam"].names == ("learning_rate", "beta1", "x")  # shared first
    assert spaces["optimizer=nesterov"].names == ("learning_rate", "y")
    assert spaces["optimizer=sgd"] == e.nuisance
    assert e.searched.names == ("beta1", "learning_rate", "x", "y")
    assert not e.replicates


@pytest.mark.parametrize("algorithm", ["quasi_random", "random"])
def test_trials_share_the_shared_values_at_each_index(algorithm: str) -> None:
    e = exp(search={"algorithm": algorithm, "trials": 12, "seed": 1})
    _, trials = materialize(e)
    lrs = {study: [t.params["learning_rate"] for t in rows] for study, rows in trials.items()}
    assert lrs["optimizer=adam"] == lrs["optimizer=nesterov"] == lrs["optimizer=sgd"]
    assert len(set(lrs["optimizer=sgd"])) == 12
    assert all(set(t.params) == {"noise", "optimizer", "learning_rate", "beta1", "x"}
               for t in trials["optimizer=adam"])
    assert all("x" not in t.params and "beta1" not in t.params and "y" in t.params
               for t in trials["optimizer=nesterov"])
    assert all(set(t.params) == {"noise", "optimizer", "learning_rate"}
               for t in trials["optimizer=sgd"])


def test_with_configs_and_an_empty_shared_space() -> None:
    e = exp(scientific={}, nuisance={},
            configs=[{"optimizer": "adam", "learning_rate": 0.01},
                     {"optimizer": "nesterov", "learning_rate": 0.1}],
            nuisance_for={"optimizer=adam": {"x": X}, "learning_rate=0.1": {"y": X}})
    assert [e.study_space(s).names for s in e.studies()] == [("x",), ("y",)]
    assert not e.replicates


def test_the_section_belongs_to_the_identity_and_round_trips() -> None:
    e = exp()
    assert Experiment.from_dict(e.to_dict(), source="cond.yaml") == e
    wider = exp(nuisance_for={**BASE["nuisance_for"], "optimizer=nesterov": {
        "y": {**X, "high": 2.0}}})
    assert wider.identity() != e.identity()
    assert "nuisance_for" not in exp(nuisance_for={}).to_dict()


def test_a_name_in_two_blocks_with_the_same_definition_is_one_hyperparameter() -> None:
    e = exp(nuisance_for={"optimizer=adam": {"x": X}, "optimizer=nesterov": {"x": X}})
    assert e.searched.names == ("learning_rate", "x")


def test_search_space_order_is_part_of_the_space() -> None:
    a = SearchSpace({"a": Float(0, 1), "b": Float(0, 1)})
    b = SearchSpace({"a": Float(0, 1), "b": Float(0, 1)}, first=("b",))
    assert b.names == ("b", "a")
    assert a != b  # the order decides the designers' dimensions


@pytest.mark.parametrize(("overrides", "key", "fragments"), [
    ({"nuisance_for": {"optimizer": {"x": X}}}, "nuisance_for.optimizer", ("NAME=VALUE",)),
    ({"nuisance_for": {"optimiser=adam": {"x": X}}}, "nuisance_for.optimiser=adam",
     ("unknown scientific hyperparameter 'optimiser'", "did you mean 'optimizer'")),
    ({"nuisance_for": {"optimizer=adamw": {"x": X}}}, "nuisance_for.optimizer=adamw",
     ("no value 'adamw'", "adam, nesterov, sgd")),
    ({"nuisance_for": {"optimizer=adam": {}}}, "nuisance_for.optimizer=adam",
     ("at least one",)),
    ({"nuisance_for": {"optimizer=adam": {"learning_rate": LR}}},
     "nuisance_for.optimizer=adam.learning_rate", ("also nuisance",)),
    ({"nuisance_for": {"optimizer=adam": {"noise": X}}}, "nuisance_for.optimizer=adam.noise",
     ("also fixed",)),
    ({"nuisance_for": {"optimizer=adam": {"optimizer": ["a", "b"]}}},
     "nuisance_for.optimizer=adam.optimizer", ("also scientific",)),
    ({"nuisance_for": {"optimizer=adam": {"x": X}, "optimizer=sgd": {"x": {**X, "low": 0}}}},
     "nuisance_for.optimizer=sgd.x", ("differs", "nuisance_for.optimizer=adam")),
    ({"search": {"algorithm": "grid", "trials": 4}}, "search.algorithm", ("grid",)),
    ({"nuisance_for": {"optimizer=adam": {"x": {"type": "float", "low": 1, "high": 0}}}},
     "nuisance_for.optimizer=adam.x.low", ("low",)),
    ({"nuisance_for": {"optimizer=adam": [1, 2]}}, "nuisance_for.optimizer=adam",
     ("must be a mapping",)),
    ({"nuisance_for": "optimizer=adam"}, "nuisance_for", ("must be a mapping",)),
], ids=["no-equals", "unknown-name", "unknown-value", "empty-block", "also-shared",
        "also-fixed", "also-scientific", "two-definitions", "grid", "bad-range", "block-list",
        "not-a-mapping"])
def test_bad_conditional_spaces_name_the_key(overrides: dict[str, Any], key: str,
                                             fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        exp(**overrides)
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith("cond.yaml: ") and "\n" not in str(info.value)
    for f in fragments:
        assert f in info.value.message, (f, info.value.message)


def test_a_conditional_run_through_report_and_findings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cond.yaml"
    path.write_text(yaml.safe_dump({**BASE, "search": {"algorithm": "quasi_random",
                                                       "trials": 10, "seed": 1}}))
    root = tmp_path / "root"
    assert main(["run", str(path), "--root", str(root), "--workers", "0", "--quiet"]) == 0
    data = load(Store.at_root(root), "cond")
    plots = {p.hyperparameter: p for p in axis_plots(data)}
    assert set(plots) == {"learning_rate", "beta1", "x", "y"}
    assert len(plots["learning_rate"].points) == 30  # every trial has it
    assert {p[2] for p in plots["x"].points} == {"optimizer=adam"}  # only those that have it
    assert len(plots["y"].points) == 10
    assert bucketed_isolation(data, "y")  # a conditional range is bucketed too
    model = fit(data)
    assert set(model.left_out) >= {"beta1", "x", "y"}
    assert len(model.trials) == 30  # fit over every trial, on what they all have
    capsys.readouterr()
    assert main(["findings", "cond", "--root", str(root), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert all(f.get("hyperparameter") not in ("x", "y", "beta1") or f["check"] not in (
        "boundary", "no_effect") for f in found)
    few = [f for f in found if f["check"] == "too_few_trials"]
    assert few and few[0]["evidence"]["n_nuisance"] == 3  # adam's study: lr, beta1, x
    assert main(["report", "cond", "--root", str(root)]) == 0
    html = (root / "reports" / "cond.html").read_text(encoding="utf-8")
    assert "nuisance if optimizer=adam" in html
    # resume with the refine designer's per-study spaces
    path.write_text(yaml.safe_dump({**BASE, "name": "cond-refine", "search": {
        "algorithm": "refine", "trials": 6, "seed": 1}}))
    result = run(Experiment.from_yaml(path), root=root, workers=0)
    assert result.counts == {"completed": 18}
    rows = Store.at_root(root).trials(Store.at_root(root).require_experiment("cond-refine").id)
    assert all(("x" in t.params) == (t.study == "optimizer=adam") for t in rows)


def test_python_construction_and_boolean_values() -> None:
    e = Experiment(name="p", objective=exp().objective, max_train_steps=10, eval_every=5,
                   workload="m:f", scientific={"use_bn": [True, False]},
                   nuisance={"learning_rate": Float(1e-3, 1.0, "log")},
                   nuisance_for={"use_bn=true": {"bn_momentum": Float(0.5, 0.99)}})
    assert isinstance(e.nuisance_for["use_bn=true"], SearchSpace)
    names = {s.name: e.study_space(s).names for s in e.studies()}
    assert names == {"use_bn=True": ("learning_rate", "bn_momentum"),
                     "use_bn=False": ("learning_rate",)}

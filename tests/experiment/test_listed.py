"""Replicates (an empty nuisance space) and studies from a list of configurations (configs:)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.errors import ConfigError
from tunebook.execution.suggestions import materialize
from tunebook.experiment import Experiment
from tunebook.search.designers import designer_class, designer_names

BASE: dict[str, Any] = {
    "name": "listed",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "max_train_steps": 20,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 5, "seed": 4},
    "nuisance": {},
}


def exp(**overrides: Any) -> Experiment:
    return Experiment.from_dict({**BASE, **overrides}, source="listed.yaml")


def error(**overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        exp(**overrides)
    assert str(info.value).startswith("listed.yaml: ")
    assert "\n" not in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- replicates
@pytest.mark.parametrize("algorithm", designer_names())
def test_an_empty_nuisance_space_gives_replicates(algorithm: str) -> None:
    e = exp(scientific={"x": [0.0, 0.3]}, fixed={"learning_rate": 0.03},
            search={"algorithm": algorithm, "trials": 5, "seed": 4})
    assert e.replicates
    studies, trials = materialize(e)
    assert [s.budget for s in studies] == [5, 5]
    seeds = set()
    for spec in studies:
        rows = trials[spec.name]
        if designer_class(algorithm)[0].adaptive:  # its trials come while the run goes on
            assert rows == []
            continue
        assert [t.idx for t in rows] == list(range(5))
        assert all(t.params == {"learning_rate": 0.03, "x": spec.scientific["x"]} for t in rows)
        seeds |= {t.seed for t in rows}
    assert designer_class(algorithm)[0].adaptive or len(seeds) == 10  # a training seed each


def test_a_null_nuisance_is_an_empty_one_and_searching_ones_are_not_replicates() -> None:
    assert exp(nuisance=None).replicates
    assert not exp(nuisance={"x": {"type": "float", "low": 0, "high": 1}}).replicates


# ----------------------------------------------------------------------------- configs
CONFIGS = [
    {"name": "adam-best", "optimizer": "adam", "learning_rate": 0.003},
    {"optimizer": "nesterov", "learning_rate": "1e-1", "momentum": 0.9},
]


def test_one_study_per_listed_configuration_in_order() -> None:
    e = exp(configs=CONFIGS, fixed={"batch_size": 64})
    specs = e.studies()
    assert [s.name for s in specs] == ["adam-best",
                                       "learning_rate=0.1,momentum=0.9,optimizer=nesterov"]
    assert [s.position for s in specs] == [0, 1]
    assert specs[0].scientific == {"learning_rate": 0.003, "optimizer": "adam"}
    assert specs[1].scientific == {"learning_rate": 0.1, "momentum": 0.9,
                                   "optimizer": "nesterov"}  # 1e-1 is a number
    assert e.scientific_values == {"learning_rate": (0.003, 0.1), "momentum": (0.9,),
                                   "optimizer": ("adam", "nesterov")}
    _, trials = materialize(e)
    assert trials["adam-best"][0].params == {"batch_size": 64, "learning_rate": 0.003,
                                             "optimizer": "adam"}


def test_configs_round_trip_and_belong_to_the_identity(tmp_path: Path) -> None:
    e = exp(configs=CONFIGS)
    again = Experiment.from_dict(e.to_dict(), source="listed.yaml")
    assert again == e and again.identity() == e.identity()
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(e.to_dict()), encoding="utf-8")
    assert Experiment.from_yaml(path).studies() == e.studies()
    other = exp(configs=[CONFIGS[0], {**CONFIGS[1], "momentum": 0.95}])
    assert other.identity() != e.identity()
    renamed = exp(configs=[{**CONFIGS[0], "name": "adam"}, CONFIGS[1]])
    assert renamed.identity() != e.identity()  # a study's name is where its trials are


def test_experiments_without_configs_keep_their_identity() -> None:
    e = exp(scientific={"x": [0.0, 0.3]}, nuisance={"y": [0.0, 1.0]})
    assert "configs" not in e.to_dict()
    assert e.scientific_values == {"x": (0.0, 0.3)}


def test_an_entry_with_only_a_name_runs_the_fixed_values() -> None:
    e = exp(configs=[{"name": "baseline"}, {"learning_rate": 0.1}],
            fixed={"noise": 0.0})
    assert [(s.name, s.scientific) for s in e.studies()] == [
        ("baseline", {}), ("learning_rate=0.1", {"learning_rate": 0.1})]


def test_values_are_compared_as_numbers_like_scientific_values() -> None:
    # 1, 1.0 and true are equal values (as in scientific: lists), so the same configuration
    assert error(configs=[{"name": "a", "flag": 1}, {"name": "b", "flag": True}]).key == (
        "configs[1]")
    e = exp(configs=[{"name": "a", "flag": 1}, {"name": "c", "flag": "1"}])
    assert e.scientific_values == {"flag": (1, "1")}


@pytest.mark.parametrize(("overrides", "key", "fragments"), [
    ({"configs": CONFIGS, "scientific": {"x": [1, 2]}}, "configs", ("not both",)),
    ({"configs": [{"name": "a", "x": 1}, {"name": "a", "x": 2}]}, "configs[1].name",
     ("'a'", "configs[0]")),
    ({"configs": [{"x": 1}, {"x": 1}]}, "configs[1]", ("same values as configs[0]",)),
    ({"configs": [{"x": 1}, {"name": "b", "x": 1.0}]}, "configs[1]", ("same values",)),
    ({"configs": [{"x": 1}], "fixed": {"x": 2}}, "configs[0].x",
     ("x=1 is also fixed", "2")),
    ({"configs": [{"y": 0.5}], "nuisance": {"y": {"type": "float", "low": 0, "high": 1}}},
     "configs[0].y", ("also nuisance", "0.5")),
    ({"configs": [{"x": {"a": 1}}]}, "configs[0].x", ("string, number or boolean",)),
    ({"configs": [{"x": float("nan")}]}, "configs[0].x", ("finite",)),
    ({"configs": [{}]}, "configs[0]", ("no hyperparameter value",)),
    ({"configs": [{"name": "", "x": 1}]}, "configs[0].name", ("non-empty",)),
    ({"configs": [{"name": "n" * 256, "x": 1}]}, "configs[0].name", ("256 characters",)),
    ({"configs": [{"x": "a\tb"}]}, "configs[0].x", ("control character",)),
    ({"configs": [{"x": "v" * 300}]}, "configs", ("study name", "at most 255")),
    ({"configs": []}, "configs", ("must be a list", "[]")),
    ({"configs": [3]}, "configs[0]", ("must be a mapping", "3")),
], ids=["with-scientific", "same-name", "same-values", "same-values-int-float",
        "key-in-fixed", "key-in-nuisance", "mapping-value", "nan", "empty-entry", "empty-name",
        "long-name", "tab-in-label", "long-label", "empty-list", "not-a-mapping"])
def test_bad_configs_name_the_key_and_value(overrides: dict[str, Any], key: str,
                                            fragments: tuple[str, ...]) -> None:
    err = error(**overrides)
    assert err.key == key
    for f in fragments:
        assert f in err.message, (f, err.message)


def test_python_construction_checks_configs_the_same_way() -> None:
    e = exp(configs=CONFIGS)
    with pytest.raises(ConfigError) as info:
        Experiment(name="p", objective=e.objective, max_train_steps=10, eval_every=5,
                   nuisance={}, workload=e.workload,
                   configs=({"x": 1}, {"x": 1}))
    assert info.value.key == "configs[1]"
    # configs given in Python are kept as plain dicts, as from a file
    built = Experiment(name="listed", objective=e.objective, max_train_steps=20,
                       eval_every=10, nuisance={}, workload=e.workload, search=e.search,
                       configs=tuple(CONFIGS))
    assert built.studies()[1].scientific["learning_rate"] == "1e-1"  # Python: taken as given
    assert built.configs[0] == CONFIGS[0]

"""Reading an experiment document: YAML to plain data, plain data to an Experiment's fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.errors import ConfigError
from tunebook.experiment.parse import TOP_KEYS, parse_document, read_yaml
from tunebook.search.space import Categorical, Float, SearchSpace

DOC = {
    "name": 2024,
    "objective": {"metric": "loss", "goal": "max"},
    "max_train_steps": 100,
    "eval_every": 10,
    "workload": "toy:curve",
    "scientific": {"arm": "a", "lr": ["1e-1", 0.2]},
    "nuisance": {"x": {"type": "float", "low": "1e-3", "high": 1.0, "scale": "log"},
                 "act": ["relu", "gelu"]},
    "fixed": {"wd": "1e-4", "note": "1.5"},
    "trial_timeout": "1e3",
    "checks": {"search_space": {"edge_fraction": "2e-1", "note": "1.5"}},
}


def test_read_yaml_gives_the_data_and_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "e.yaml"
    path.parent.mkdir()
    path.write_text("name: x\nfixed: {wd: 1e-4}\n", encoding="utf-8")
    data, base_dir = read_yaml(path)
    assert data == {"name": "x", "fixed": {"wd": "1e-4"}}  # YAML 1.1: still a string here
    assert base_dir == str(path.parent.resolve())


def test_read_yaml_names_the_line_of_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("name: x\nfixed: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML syntax error at line 3") as info:
        read_yaml(path)
    assert info.value.source == str(path)


def test_parse_converts_without_judging_values() -> None:
    fields = parse_document(DOC, "doc")
    assert fields["name"] == "2024" and fields["objective"] == ("loss", "maximize")
    assert fields["scientific"] == {"arm": ("a",), "lr": (0.1, 0.2)}
    assert fields["fixed"] == {"wd": 1e-4, "note": "1.5"}  # a quoted "1.5" stays text
    assert fields["trial_timeout"] == 1000.0
    assert fields["nuisance"] == SearchSpace({"x": Float(1e-3, 1.0, "log"),
                                              "act": Categorical(("relu", "gelu"))})
    assert fields["search"] == {"algorithm": "quasi_random", "trials": 20, "seed": 0}
    assert fields["checks"] == {"search_space": {"edge_fraction": 0.2, "note": "1.5"}}
    # Values are the Experiment's to check: a step count of -5 reads fine.
    assert parse_document({**DOC, "max_train_steps": -5}, "doc")["max_train_steps"] == -5


def test_parse_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'search\.trials'") as info:
        parse_document({**DOC, "trials": 3}, "doc")
    assert info.value.key == "trials"
    with pytest.raises(ConfigError, match="missing") as info:
        parse_document({k: v for k, v in DOC.items() if k != "eval_every"}, "doc")
    assert info.value.key == "eval_every"
    with pytest.raises(ConfigError) as info:
        parse_document({**DOC, "nuisance": {"x": {"type": "float", "low": 2.0, "high": 1.0}}},
                       "doc")
    assert info.value.key == "nuisance.x.low"


def test_top_keys_are_every_key_an_experiment_writes() -> None:
    assert set(TOP_KEYS) >= set(DOC) | {"goal", "command", "search"}

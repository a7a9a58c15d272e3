"""Experiments: loading, studies, identity, and one clear ConfigError per bad input."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.errors import ConfigError, TunebookError
from tunebook.experiment import Experiment, Objective, Search
from tunebook.search.space import Categorical, Discrete, Float, Int, SearchSpace

from conftest import write_experiment

EXAMPLE = Path(__file__).resolve().parent / "full_space.yaml"


def example_doc() -> dict[str, Any]:
    """The example experiment as a plain dict (a fresh copy each time)."""
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def write(tmp_path: Path, doc: Any, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False),
                    encoding="utf-8")
    return path


def load(tmp_path: Path, doc: Any) -> Experiment:
    return Experiment.from_yaml(write(tmp_path, doc))


def config_error(tmp_path: Path, doc: Any) -> ConfigError:
    """Load ``doc`` from a file, expecting a ConfigError that names that file."""
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        Experiment.from_yaml(path)
    err = info.value
    assert err.source == str(path)
    assert str(err).startswith(f"{path}: ")
    assert "\n" not in str(err)
    return err


def python_experiment(**overrides: Any) -> Experiment:
    """The example experiment, built with keyword arguments."""
    kw: dict[str, Any] = {
        "name": "digits-depth",
        "goal": "Does a second hidden layer reduce validation error?",
        "workload": "tunebook.workloads.digits:train_mlp",
        "objective": Objective("val_error", "minimize"),
        "max_train_steps": 1000,
        "eval_every": 100,
        "search": Search("quasi_random", 8, 0),
        "scientific": {"num_layers": [1, 2]},
        # Written in another order, with ints where YAML has floats: still the same experiment.
        "nuisance": {
            "width": Int(32, 512, "log"),
            "activation": Categorical(("relu", "gelu", "tanh")),
            "learning_rate": Float(1e-4, 1, "log"),
            "beta1": Float(0.5, 0.999, "one_minus_log"),
        },
        "fixed": {"batch_size": 64},
    }
    kw.update(overrides)
    return Experiment(**kw)


# ----------------------------------------------------------------------------- loading
def test_example_loads() -> None:
    exp = Experiment.from_yaml(EXAMPLE)
    assert exp.name == "digits-depth"
    assert exp.goal == "Does a second hidden layer reduce validation error?"
    assert exp.workload == "tunebook.workloads.digits:train_mlp"
    assert exp.command is None
    assert exp.objective == Objective("val_error", "minimize")
    assert (exp.max_train_steps, exp.eval_every) == (1000, 100)
    assert exp.search == Search("quasi_random", 8, 0)
    assert exp.scientific == {"num_layers": (1, 2)}
    assert exp.fixed == {"batch_size": 64}
    assert exp.nuisance.names == ("activation", "beta1", "learning_rate", "width")
    assert exp.nuisance["learning_rate"] == Float(1e-4, 1.0, "log")
    assert exp.nuisance["beta1"] == Float(0.5, 0.999, "one_minus_log")
    assert exp.nuisance["width"] == Int(32, 512, "log")
    assert exp.nuisance["activation"] == Categorical(("relu", "gelu", "tanh"))
    assert exp.source == str(EXAMPLE)
    assert Path(exp.base_dir) == EXAMPLE.parent


def test_source_and_base_dir_come_from_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, example_doc())
    exp = Experiment.from_yaml(path)
    assert exp.source == str(path)
    assert Path(exp.base_dir) == sub.resolve()
    assert Experiment.from_dict(example_doc()).source == "<dict>"


def test_defaults(tmp_path: Path) -> None:
    doc = example_doc()
    for key in ("goal", "search", "scientific", "fixed"):
        del doc[key]
    doc["objective"] = {"metric": "val_error"}
    exp = load(tmp_path, doc)
    assert exp.goal == ""
    assert exp.objective.goal == "minimize"
    assert exp.search == Search("quasi_random", 20, 0)
    assert exp.scientific == {}
    assert exp.fixed == {}


@pytest.mark.parametrize(("written", "goal"), [("min", "minimize"), ("max", "maximize"),
                                               ("maximize", "maximize")])
def test_goal_aliases(tmp_path: Path, written: str, goal: str) -> None:
    doc = example_doc()
    doc["objective"] = {"metric": "val_accuracy", "goal": written}
    exp = load(tmp_path, doc)
    assert exp.objective.goal == goal
    assert exp.objective.better(2.0, 1.0) is (goal == "maximize")


def test_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads 1e-4 as the string '1e-4'.
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("low: 1.0e-4, high: 1.0, scale: log", "low: 1e-4, high: 1e0, scale: log")
    assert "low: 1e-4" in text
    assert yaml.safe_load(text)["nuisance"]["learning_rate"]["low"] == "1e-4"
    text = text.replace("nuisance:\n", "nuisance:\n  wd: {type: discrete, values: [1e-5, 1E-3]}\n")
    exp = load(tmp_path, text)
    assert exp.nuisance["learning_rate"] == Float(1e-4, 1.0, "log")
    assert exp.nuisance["wd"] == Discrete((1e-5, 1e-3))
    plain = Experiment.from_yaml(EXAMPLE)
    assert exp.nuisance["learning_rate"] == plain.nuisance["learning_rate"]


def test_list_is_shorthand_for_categorical(tmp_path: Path) -> None:
    doc = example_doc()
    doc["nuisance"]["activation"] = ["relu", "gelu", "tanh"]
    exp = load(tmp_path, doc)
    assert exp.nuisance["activation"] == Categorical(("relu", "gelu", "tanh"))
    assert exp.identity() == Experiment.from_yaml(EXAMPLE).identity()


def test_command_as_string_or_list(tmp_path: Path) -> None:
    doc = example_doc()
    del doc["workload"]
    doc["command"] = "python train.py --flag 'a b'"
    as_string = load(tmp_path, doc)
    doc["command"] = ["python", "train.py", "--flag", "a b"]
    as_list = load(tmp_path, doc)
    assert as_string.command == as_list.command == ("python", "train.py", "--flag", "a b")
    assert as_string.workload is None
    assert as_string.identity() == as_list.identity()


def test_scalar_scientific_value_is_one_value(tmp_path: Path) -> None:
    doc = example_doc()
    doc["scientific"] = {"num_layers": 2}
    exp = load(tmp_path, doc)
    assert exp.scientific == {"num_layers": (2,)}
    assert [s.name for s in exp.studies()] == ["num_layers=2"]


# ----------------------------------------------------------------------------- studies
def test_one_study_per_scientific_value() -> None:
    studies = Experiment.from_yaml(EXAMPLE).studies()
    assert [(s.name, s.position, s.scientific) for s in studies] == [
        ("num_layers=1", 0, {"num_layers": 1}),
        ("num_layers=2", 1, {"num_layers": 2}),
    ]


def test_two_scientific_hyperparameters_give_the_cartesian_product(tmp_path: Path) -> None:
    doc = example_doc()
    doc["scientific"] = {"optimizer": ["adam", "sgd", "nesterov"], "num_layers": [1, 2]}
    studies = load(tmp_path, doc).studies()
    assert len(studies) == 6
    assert [s.position for s in studies] == list(range(6))
    combos = [(s.scientific["num_layers"], s.scientific["optimizer"]) for s in studies]
    assert combos == list(itertools.product([1, 2], ["adam", "sgd", "nesterov"]))
    assert studies[0].name == "num_layers=1,optimizer=adam"
    assert studies[5].name == "num_layers=2,optimizer=nesterov"
    assert len({s.name for s in studies}) == 6


def test_no_scientific_hyperparameter_gives_one_study(tmp_path: Path) -> None:
    doc = example_doc()
    del doc["scientific"]
    studies = load(tmp_path, doc).studies()
    assert [(s.name, s.position, s.scientific) for s in studies] == [("main", 0, {})]


# ----------------------------------------------------------------------------- round trip
def test_to_dict_round_trips() -> None:
    exp = Experiment.from_yaml(EXAMPLE)
    d = exp.to_dict()
    again = Experiment.from_dict(d)
    assert again.identity() == exp.identity()
    assert again.to_dict() == d
    assert again.nuisance == exp.nuisance
    assert again.objective == exp.objective and again.goal == exp.goal
    assert again.search == exp.search
    # The dict is plain data: it survives JSON and YAML.
    assert Experiment.from_dict(json.loads(json.dumps(d))).identity() == exp.identity()
    assert Experiment.from_dict(yaml.safe_load(yaml.safe_dump(d))).to_dict() == d


def test_to_dict_round_trips_a_command_experiment(tmp_path: Path) -> None:
    doc = example_doc()
    del doc["workload"]
    doc["command"] = ["./train.sh", "--fast"]
    doc["nuisance"]["bs"] = {"type": "discrete", "values": [16, 32]}
    doc["nuisance"]["depth"] = {"type": "int", "low": 1, "high": 4}
    exp = load(tmp_path, doc)
    again = Experiment.from_dict(exp.to_dict())
    assert again.command == ("./train.sh", "--fast")
    assert again.nuisance == exp.nuisance
    assert again.identity() == exp.identity()


# ----------------------------------------------------------------------------- identity
def test_python_construction_matches_yaml() -> None:
    from_yaml = Experiment.from_yaml(EXAMPLE)
    built = python_experiment()
    assert built.identity() == from_yaml.identity()
    assert built.to_dict() == from_yaml.to_dict()
    assert built.nuisance == from_yaml.nuisance
    assert built.source == "<python>"
    assert [s.name for s in built.studies()] == [s.name for s in from_yaml.studies()]


def test_python_construction_accepts_command_string() -> None:
    exp = python_experiment(workload=None, command="python train.py")
    assert exp.command == ("python", "train.py")


def test_python_construction_validates() -> None:
    with pytest.raises(ConfigError) as info:
        python_experiment(scientific={}, configs=({"name": 1},))
    assert info.value.key == "configs[0].name"
    assert info.value.source == "<python>"
    with pytest.raises(ConfigError) as info:
        python_experiment(eval_every=0)
    assert info.value.key == "eval_every"
    assert "got 0" in info.value.message
    with pytest.raises(ConfigError) as info:
        python_experiment(command=("run.sh",))  # and a workload: two workloads
    assert info.value.key == "workload"


@pytest.mark.parametrize("change", [
    lambda d: d["objective"].update(metric="val_loss"),
    lambda d: d["objective"].update(goal="maximize"),
    lambda d: d.update(goal="Something else entirely"),
    lambda d: d["search"].update(trials=50),
    lambda d: d.update(name="another-name"),
], ids=["metric", "objective.goal", "goal", "trials", "name"])
def test_identity_ignores(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    base = Experiment.from_yaml(EXAMPLE)
    doc = example_doc()
    change(doc)
    changed = load(tmp_path, doc)
    assert changed.to_dict() != base.to_dict()  # the change is real...
    assert changed.identity() == base.identity()  # ...but does not change which trials run


@pytest.mark.parametrize("change", [
    lambda d: d["nuisance"]["learning_rate"].update(low=1e-3),
    lambda d: d["nuisance"]["learning_rate"].update(high=0.5),
    lambda d: d["nuisance"]["width"].update(scale="linear"),
    lambda d: d["nuisance"]["activation"].update(values=["relu", "gelu"]),
    lambda d: d["nuisance"].update(dropout={"type": "float", "low": 0.0, "high": 0.5}),
    lambda d: d["search"].update(seed=1),
    lambda d: d["search"].update(algorithm="random"),
    lambda d: d.update(max_train_steps=2000),
    lambda d: d.update(eval_every=50),
    lambda d: d["scientific"].update(num_layers=[1, 2, 3]),
    lambda d: d["fixed"].update(batch_size=128),
    lambda d: d.update(workload="tunebook.workloads.digits:other"),
    lambda d: d.update(scientific={}, configs=[{"num_layers": 2}, {"num_layers": 3}]),
], ids=["low", "high", "scale", "values", "new-dim", "seed", "algorithm", "max_train_steps",
        "eval_every", "scientific", "fixed", "workload", "configs"])
def test_identity_changes_with(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    base = Experiment.from_yaml(EXAMPLE)
    doc = example_doc()
    change(doc)
    assert load(tmp_path, doc).identity() != base.identity()


def test_identity_ignores_key_order(tmp_path: Path) -> None:
    doc = example_doc()
    doc["nuisance"] = dict(reversed(list(doc["nuisance"].items())))
    doc = dict(reversed(list(doc.items())))
    assert load(tmp_path, doc).identity() == Experiment.from_yaml(EXAMPLE).identity()


# ----------------------------------------------------------------------------- bad input
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the dotted ``path`` of the example doc to ``value``."""
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return change


def _rename(path: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[new] = node.pop(last)
    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        del node[last]
    return change


LR = "nuisance.learning_rate"

# (mutation of the example, expected key, substrings the message must contain)
BAD_INPUTS: dict[str, tuple[Callable[[dict[str, Any]], None], str, tuple[str, ...]]] = {
    # unknown keys, with the nearest suggestion
    "unknown-top-key": (_rename("nuisance", "nuisanse"), "nuisanse",
                        ("'nuisanse'", "did you mean 'nuisance'")),
    "unknown-hp-key": (_rename(f"{LR}.type", "typ"), f"{LR}.typ",
                       ("'typ'", "did you mean 'type'")),
    "unknown-objective-key": (_rename("objective.metric", "metrik"), "objective.metrik",
                              ("'metrik'", "did you mean 'metric'")),
    "unknown-search-key": (_set("search.trails", 5), "search.trails",
                           ("'trails'", "did you mean 'trials'")),
    "unknown-type": (_set(f"{LR}.type", "flaot"), f"{LR}.type",
                     ("'flaot'", "did you mean 'float'")),
    "unknown-scale": (_set(f"{LR}.scale", "logg"), f"{LR}.scale",
                      ("'logg'", "did you mean 'log'")),
    "unknown-algorithm": (_set("search.algorithm", "quasirandom"), "search.algorithm",
                          ("'quasirandom'", "did you mean 'quasi_random'")),
    "key-of-other-type": (_set("nuisance.activation.low", 0), "nuisance.activation.low",
                          ("categorical",)),
    # wrong types
    "steps-string": (_set("max_train_steps", "1000"), "max_train_steps", ("'1000'", "integer")),
    "steps-float": (_set("max_train_steps", 1000.5), "max_train_steps", ("1000.5", "integer")),
    "steps-bool": (_set("max_train_steps", True), "max_train_steps", ("True",)),
    "trials-string": (_set("search.trials", "many"), "search.trials", ("'many'",)),
    "seed-negative": (_set("search.seed", -1), "search.seed", ("-1",)),
    "low-not-number": (_set(f"{LR}.low", "tiny"), f"{LR}.low", ("'tiny'", "number")),
    "low-null": (_set(f"{LR}.low", None), f"{LR}.low", ("None",)),
    "int-low-float": (_set("nuisance.width.low", 32.5), "nuisance.width.low",
                      ("32.5", "integer")),
    "discrete-not-number": (_set("nuisance.bs", {"type": "discrete", "values": [16, "big"]}),
                            "nuisance.bs.values[1]", ("'big'",)),
    "discrete-one-value": (_set("nuisance.bs", {"type": "discrete", "values": [16]}),
                           "nuisance.bs.values", ("[16]",)),
    "categorical-duplicate": (_set("nuisance.activation", ["relu", "relu"]),
                              "nuisance.activation.values", ("['relu', 'relu']", "distinct")),
    "values-not-list": (_set("nuisance.activation.values", "relu"), "nuisance.activation.values",
                        ("'relu'",)),
    "hp-not-mapping": (_set(LR, 0.1), LR, ("0.1", "mapping")),
    "objective-not-mapping": (_set("objective", "val_error"), "objective", ("'val_error'",)),
    "goal-unknown": (_set("objective.goal", "minimise"), "objective.goal", ("'minimise'",)),
    "fixed-list": (_set("fixed.batch_size", [64, 128]), "fixed.batch_size", ("[64, 128]",)),
    "scientific-mapping": (_set("scientific.num_layers", {"a": 1}), "scientific.num_layers[0]",
                           ("{'a': 1}",)),
    "scientific-empty": (_set("scientific.num_layers", []), "scientific.num_layers", ()),
    "scientific-duplicate": (_set("scientific.num_layers", [1, 1]), "scientific.num_layers",
                             ("[1, 1]",)),
    "workload-no-colon": (_set("workload", "tunebook.workloads.digits"), "workload",
                          ("'tunebook.workloads.digits'",)),
    "command-not-string": (lambda d: (d.pop("workload"), d.update(command=42)), "command",
                           ("42",)),
    "workload-and-command": (_set("command", "python train.py"), "workload", ("command",)),
    "no-workload": (_delete("workload"), "workload", ("command",)),
    # low >= high
    "low-equals-high": (_set(f"{LR}.low", 1.0), f"{LR}.low", ("low=1.0", "high=1.0")),
    "low-above-high": (_set(f"{LR}.low", 2.0), f"{LR}.low", ("low=2.0", "high=1.0")),
    "int-low-above-high": (_set("nuisance.width.low", 600), "nuisance.width.low",
                           ("low=600", "high=512")),
    # log scale with low <= 0
    "log-low-zero": (_set(f"{LR}.low", 0.0), f"{LR}.low", ("log", "0.0")),
    "log-low-negative": (_set(f"{LR}.low", -0.5), f"{LR}.low", ("log", "-0.5")),
    "int-log-low-zero": (_set("nuisance.width.low", 0), "nuisance.width.low", ("log", "got 0")),
    "one-minus-log-high-one": (_set("nuisance.beta1.high", 1.0), "nuisance.beta1.high",
                               ("one_minus_log", "1.0")),
    "int-one-minus-log": (_set("nuisance.width.scale", "one_minus_log"), "nuisance.width.scale",
                          ("'one_minus_log'",)),
    # one role per hyperparameter
    "scientific-and-nuisance": (_set("nuisance.num_layers", {"type": "int", "low": 1, "high": 3}),
                                "nuisance.num_layers", ("'num_layers'", "scientific", "nuisance")),
    "nuisance-and-fixed": (_set("fixed.width", 64), "fixed.width",
                           ("'width'", "nuisance", "fixed")),
    # listed configurations (tests/experiment/test_listed.py has the rest)
    "configs-and-scientific": (_set("configs", [{"width": 64}]), "configs",
                               ("not both",)),
    # grid only for 1-2 nuisance dimensions
    "grid-four-dims": (_set("search.algorithm", "grid"), "search.algorithm",
                       ("grid", "got 4")),
    # lengths
    "eval-every-above-max": (_set("eval_every", 1001), "eval_every", ("1001", "1000")),
    "eval-every-zero": (_set("eval_every", 0), "eval_every", ("got 0",)),
    "trials-zero": (_set("search.trials", 0), "search.trials", ("got 0",)),
    # missing required keys
    "missing-name": (_delete("name"), "name", ("missing",)),
    "missing-objective": (_delete("objective"), "objective", ("missing",)),
    "missing-metric": (_delete("objective.metric"), "objective.metric", ("missing",)),
    "missing-max-train-steps": (_delete("max_train_steps"), "max_train_steps", ("missing",)),
    "missing-eval-every": (_delete("eval_every"), "eval_every", ("missing",)),
    "missing-nuisance": (_delete("nuisance"), "nuisance", ("missing",)),
    "missing-type": (_delete(f"{LR}.type"), f"{LR}.type", ("missing", "float")),
    "missing-high": (_delete(f"{LR}.high"), f"{LR}.high", ("missing",)),
    "empty-name": (_set("name", "  "), "name", ("'  '",)),
    "multiline-name": (_set("name", "a\nb"), "name", ("'a\\nb'",)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_key_and_value(tmp_path: Path, case: str) -> None:
    change, key, fragments = BAD_INPUTS[case]
    doc = example_doc()
    change(doc)
    err = config_error(tmp_path, doc)
    assert err.key == key, str(err)
    assert str(err).startswith(f"{tmp_path / 'experiment.yaml'}: {key}: ")
    for fragment in fragments:
        assert fragment in err.message, (fragment, str(err))


@pytest.mark.parametrize("case", ["low-above-high", "unknown-top-key", "scientific-and-nuisance"])
def test_from_dict_raises_the_same_errors(case: str) -> None:
    change, key, fragments = BAD_INPUTS[case]
    doc = example_doc()
    change(doc)
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict(doc, source="mine.yaml")
    assert info.value.key == key
    assert str(info.value).startswith(f"mine.yaml: {key}: ")
    assert all(f in info.value.message for f in fragments)


def test_config_error_is_a_tunebook_error() -> None:
    err = ConfigError("f.yaml", "a.b", "bad 3")
    assert isinstance(err, TunebookError)
    assert str(err) == "f.yaml: a.b: bad 3"
    assert (err.source, err.key, err.message) == ("f.yaml", "a.b", "bad 3")
    assert str(ConfigError("f.yaml", "", "empty")) == "f.yaml: empty"


def test_grid_allows_one_or_two_nuisance_dims(tmp_path: Path) -> None:
    doc = example_doc()
    doc["search"]["algorithm"] = "grid"
    doc["nuisance"] = {"learning_rate": doc["nuisance"]["learning_rate"],
                       "activation": doc["nuisance"]["activation"]}
    assert load(tmp_path, doc).search.algorithm == "grid"
    del doc["nuisance"]["activation"]
    assert load(tmp_path, doc).search.algorithm == "grid"
    doc["nuisance"]["beta1"] = {"type": "float", "low": 0.5, "high": 0.9}
    doc["nuisance"]["width"] = {"type": "int", "low": 1, "high": 9}
    err = config_error(tmp_path, doc)
    assert err.key == "search.algorithm"
    assert "got 3" in err.message


def test_eval_every_equal_to_max_train_steps_is_fine(tmp_path: Path) -> None:
    doc = example_doc()
    doc["eval_every"] = doc["max_train_steps"]
    assert load(tmp_path, doc).eval_every == 1000


def test_int_range_of_two_values_is_fine(tmp_path: Path) -> None:
    doc = example_doc()
    doc["nuisance"]["width"] = {"type": "int", "low": 1, "high": 2}
    assert load(tmp_path, doc).nuisance["width"] == Int(1, 2)


# ----------------------------------------------------------------------------- documents
@pytest.mark.parametrize(("text", "line"), [
    # a key indented under a scalar
    ("name: a\nobjective: {metric: m}\nmax_train_steps: 10\n  eval_every: 5\n", 4),
    ("name: a\n  objective: {metric: m}\nmax_train_steps: 10\n", 2),
    # an unclosed flow mapping: the parser notices on the next line
    ("name: a\nworkload: m:f\nobjective: {metric: m\nmax_train_steps: 10\neval_every: 5\n", 4),
    # a tab
    ("name: a\nworkload: m:f\nobjective:\n  metric: m\nnuisance:\n\tx: [1, 2]\n", 6),
])
def test_yaml_syntax_error_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    err = config_error(tmp_path, text)
    assert err.key == ""
    assert "YAML syntax error" in err.message
    assert f"line {line}," in err.message, err.message


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("- a\n- b\n", "['a', 'b']"),
    ("just a string\n", "'just a string'"),
])
def test_document_must_be_a_mapping(tmp_path: Path, text: str, fragment: str) -> None:
    err = config_error(tmp_path, text)
    assert err.key == ""
    assert fragment in err.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        Experiment.from_yaml(path)
    assert info.value.source == str(path)
    assert "cannot read" in info.value.message


def test_valid_document_round_trip_through_file(tmp_path: Path) -> None:
    exp = Experiment.from_yaml(EXAMPLE)
    again = load(tmp_path, copy.deepcopy(exp.to_dict()))
    assert again.identity() == exp.identity()
    assert again.nuisance == SearchSpace(dict(exp.nuisance))


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        Experiment.from_yaml(path)
    assert info.value.source == str(path)
    assert info.value.key == ""
    assert "UTF-8" in info.value.message
    assert "byte 9" in info.value.message


def test_duplicate_yaml_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(EXAMPLE.read_text() + "name: another\n")
    with pytest.raises(ConfigError) as info:
        Experiment.from_yaml(path)
    first = 1 + EXAMPLE.read_text().splitlines().index(
        next(line for line in EXAMPLE.read_text().splitlines() if line.startswith("name:")))
    assert info.value.key == "name"
    assert f"duplicate key 'name' at line {len(EXAMPLE.read_text().splitlines()) + 1}" in str(
        info.value)
    assert f"(first at line {first})" in str(info.value)


def test_goal_must_be_text_and_name_not_a_boolean() -> None:
    base = yaml.safe_load(EXAMPLE.read_text())
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict({**base, "goal": [1, 2]}, source="x.yaml")
    assert info.value.key == "goal" and "[1, 2]" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict({**base, "name": True}, source="x.yaml")
    assert info.value.key == "name" and "True" in str(info.value)
    assert Experiment.from_dict({**base, "name": 2024}).name == "2024"


# ----------------------------------------------------------------------------- limits
@pytest.mark.parametrize(("overrides", "key", "fragment"), [
    ({"workload": None, "command": "python 'train.py"}, "command", "No closing quotation"),
    ({"search": Search("quasi_random", 10**9, 0)}, "search.trials", "got 1000000000"),
    ({"search": Search("quasi_random", 60_000, 0)}, "search.trials", "2 studies x 60,000"),
    ({"search": Search("quasi_random", 8, 2**63)}, "search.seed", "9223372036854775807"),
    ({"max_train_steps": 2**31, "eval_every": 100}, "max_train_steps", "2147483647"),
    ({"name": "x" * 256}, "name", "256 characters"),
    ({"name": "a\x1b[2Jb"}, "name", "'\\x1b'"),
    ({"objective": Objective("m" * 129)}, "objective.metric", "at most 128"),
    ({"fixed": {"batch_size": math.nan}}, "fixed.batch_size", "finite"),
    ({"scientific": {"num_layers": ["a\nb", 2]}}, "scientific.num_layers[0]", "'\\n'"),
    ({"trial_timeout": 0}, "trial_timeout", "got 0"),
    ({"trial_timeout": math.inf}, "trial_timeout", "finite"),
], ids=["command-quote", "trials", "studies-x-trials", "seed", "steps", "name-length",
        "name-escape", "metric-length", "fixed-nan", "study-name-newline", "timeout-zero",
        "timeout-inf"])
def test_python_api_enforces_the_same_limits(overrides: dict[str, Any], key: str,
                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        python_experiment(**overrides)
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_largest_allowed_values_are_accepted() -> None:
    from tunebook.experiment import MAX_SEED, MAX_STEP, MAX_TRIALS

    exp = python_experiment(search=Search("random", MAX_TRIALS // 2, MAX_SEED),
                            max_train_steps=MAX_STEP, eval_every=MAX_STEP,
                            name="n" * 255, objective=Objective("m" * 128))
    assert len(exp.studies()) == 2


# ----------------------------------------------------------------------------- validated once
def test_every_way_in_checks_the_experiment_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunebook.experiment as experiment_module
    from tunebook.experiment.checks import check_experiment

    checked: list[str] = []

    def counting(exp: Experiment) -> None:
        checked.append(exp.source)
        check_experiment(exp)

    monkeypatch.setattr(experiment_module, "check_experiment", counting)
    path = write(tmp_path, example_doc())
    exp = Experiment.from_yaml(path)
    assert checked == [str(path)]
    Experiment.from_dict(exp.to_dict(), source="again")
    python_experiment()
    assert checked == [str(path), "again", "<python>"]


def test_a_bad_hyperparameter_field_is_named_by_the_space_module(tmp_path: Path) -> None:
    # The key comes from HyperparameterError.field, whatever the message's first word.
    cases = {"low": {"type": "float", "low": 1.0, "high": 0.5},
             "high": {"type": "float", "low": -1.7e308, "high": 1.7e308},
             "scale": {"type": "float", "low": 0.1, "high": 0.5, "scale": "cubic"}}
    for field, spec in cases.items():
        doc = example_doc()
        doc["nuisance"] = {"lr": spec}
        err = config_error(tmp_path, doc)
        assert err.key == f"nuisance.lr.{field}", str(err)


def test_scientific_values_with_the_same_label_are_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(write_experiment(tmp_path).read_text())
    doc["scientific"] = {"x": [1, "1"]}
    with pytest.raises(ConfigError) as info:
        Experiment.from_dict(doc, source="e.yaml")
    assert info.value.key == "scientific.x" and "same study name 'x=1'" in str(info.value)


def test_exponent_strings_are_numbers_everywhere(tmp_path: Path) -> None:
    doc = yaml.safe_load("fixed: {wd: 1e-4}\nscientific: {lr: [1e-1, 1.0e-1, 2e-1]}\n")
    assert doc["fixed"]["wd"] == "1e-4"  # PyYAML's YAML 1.1 reading, the trap
    base = yaml.safe_load(write_experiment(tmp_path).read_text())
    base["fixed"] = doc["fixed"]
    base["scientific"] = {"lr": ["1e-1", 0.2]}
    exp = Experiment.from_dict(base)
    assert exp.fixed["wd"] == 1e-4 and exp.scientific["lr"] == (0.1, 0.2)


def test_follows_links_rounds_without_changing_the_identity(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    plain = Experiment.from_dict(doc)
    linked = Experiment.from_dict({**doc, "name": "round-2", "follows": "digits-depth"})
    assert linked.follows == "digits-depth" and linked.to_dict()["follows"] == "digits-depth"
    assert Experiment.from_dict(linked.to_dict()).follows == "digits-depth"
    assert linked.identity() == plain.identity() and "follows" not in plain.to_dict()
    for bad in ("", "digits-depth", ["a"]):
        with pytest.raises(ConfigError, match="follows"):
            Experiment.from_dict({**doc, "follows": bad})

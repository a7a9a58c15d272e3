"""The rules an experiment follows, and the helpers its messages are made with."""

from __future__ import annotations

import pytest

from tunebook.errors import ConfigError
from tunebook.experiment import Experiment, Objective, Search
from tunebook.experiment.checks import (
    MAX_TRIALS,
    Reader,
    algorithms,
    as_number,
    as_scalar,
    check_experiment,
    nearest,
    show,
)
from tunebook.search.designers import designer_names
from tunebook.search.space import Float, SearchSpace


def experiment(**overrides: object) -> Experiment:
    fields: dict[str, object] = {
        "name": "e", "objective": Objective("loss"), "max_train_steps": 10, "eval_every": 5,
        "nuisance": SearchSpace({"x": Float(0.0, 1.0)}), "workload": "toy:curve"}
    fields.update(overrides)
    return Experiment(**fields)  # type: ignore[arg-type]


def test_a_valid_experiment_passes_again() -> None:
    check_experiment(experiment())


@pytest.mark.parametrize(("overrides", "key"), [
    ({"search": Search("bayes")}, "search.algorithm"),  # type: ignore[arg-type]
    ({"search": Search(trials=MAX_TRIALS + 1)}, "search.trials"),
    ({"eval_every": 20}, "eval_every"),
    ({"trial_timeout": 0}, "trial_timeout"),
    ({"scientific": {"x": (1, 2)}}, "nuisance.x"),
    ({"workload": None}, "workload"),
    ({"checks": {"curves": {"noise": [1, 2]}}}, "checks.curves.noise"),
])
def test_each_rule_names_its_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        experiment(**overrides)
    assert info.value.key == key, str(info.value)


def test_the_algorithm_names_are_the_designers() -> None:
    assert algorithms() == designer_names()
    assert {"quasi_random", "random", "grid"} <= set(algorithms())
    with pytest.raises(ConfigError, match="did you mean 'random'"):
        experiment(search=Search("randon"))  # type: ignore[arg-type]


def test_numbers_written_as_text_become_numbers() -> None:
    assert as_number("1e-4") == 1e-4 and as_number(" 2.5 ") == 2.5 and as_number(".5") == 0.5
    assert as_number("abc") == "abc" and as_number(3) == 3
    assert as_scalar("1e-4") == 1e-4
    assert as_scalar("1.5") == "1.5"  # quoted on purpose: it stays text


def test_messages_stay_short_whatever_the_input() -> None:
    assert len(show("x" * 10**6)) < 120
    assert len(show(list(range(10**5)))) < 120
    assert nearest("learnig_rate", ("learning_rate", "momentum")) == (
        " (did you mean 'learning_rate'?)")
    assert nearest("zzz", ("lr", "momentum")) == ""


def test_a_command_line_is_split_like_a_shell_would() -> None:
    assert Reader("s").command("python 'my train.py' --lr=1") == (
        "python", "my train.py", "--lr=1")
    with pytest.raises(ConfigError, match="cannot be split into arguments"):
        Reader("s").command("python 'unbalanced")

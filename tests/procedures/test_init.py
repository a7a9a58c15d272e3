"""``tunebook init``: the playbook's budget guidance as a search space, and its command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.analysis.checks.setup import check_too_few_trials
from tunebook.analysis.data import ExperimentData
from tunebook.cli import main
from tunebook.experiment import Experiment
from tunebook.procedures.init import experiment_yaml, plan_search

WORKLOAD = "tunebook.workloads.synthetic:quadratic"


def empty_data(exp: Experiment) -> ExperimentData:
    """The experiment before any trial ran (the budget check judges the plan)."""
    return ExperimentData(experiment=exp, metric=exp.objective.metric,
                          goal=exp.objective.goal, final=False,
                          studies=tuple(exp.studies()), trials=())


@pytest.mark.parametrize(("optimizer", "trials", "searched"), [
    ("adam", 1, ["learning_rate"]),
    ("adam", 9, ["learning_rate"]),
    ("adam", 10, ["learning_rate", "beta1"]),
    ("adam", 24, ["learning_rate", "beta1"]),
    ("adam", 25, ["learning_rate", "beta1", "epsilon"]),
    ("adam", 49, ["learning_rate", "beta1", "epsilon"]),
    ("adam", 50, ["learning_rate", "beta1", "epsilon", "beta2"]),
    ("momentum", 9, ["learning_rate"]),
    ("nesterov", 10, ["learning_rate", "momentum"]),
    ("sgd", 100, ["learning_rate"]),
])
def test_the_budget_chooses_the_searched_hyperparameters(
        tmp_path: Path, optimizer: str, trials: int, searched: list[str]) -> None:
    plan = plan_search(optimizer, trials)
    assert list(plan.searched) == searched
    path = tmp_path / "e.yaml"
    path.write_text(experiment_yaml(plan, name="e", workload=WORKLOAD))
    exp = Experiment.from_yaml(path)
    assert sorted(exp.nuisance.names) == sorted(searched)
    assert exp.search.trials == trials and exp.fixed["optimizer"] == optimizer
    scales = {n: plan.searched[n]["scale"] for n in searched}
    assert scales["learning_rate"] == "log"
    assert all(scales[n] == "one_minus_log" for n in ("beta1", "beta2", "momentum")
               if n in scales)
    # The too_few_trials check reads the same rule: never fires on what init writes, once
    # the budget holds 5 trials per searched hyperparameter.
    fired = check_too_few_trials(empty_data(exp))
    assert (fired == []) == (trials >= 5 * len(searched))


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer"):
        plan_search("lion", 10)
    with pytest.raises(ValueError, match="trials"):
        plan_search("adam", 0)
    with pytest.raises(ValueError, match="exactly one"):
        experiment_yaml(plan_search("adam", 10), name="e")


def test_the_command_writes_a_file_that_runs_through_the_loader(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adam.yaml"
    assert main(["init", "--command", "python train.py", "--trials", "30", "--out",
                 str(out)]) == 0
    exp = Experiment.from_yaml(out)
    assert exp.name == "adam" and sorted(exp.nuisance.names) == [
        "beta1", "epsilon", "learning_rate"]
    assert exp.fixed == {"optimizer": "adam", "beta2": 0.999}
    assert "searching: learning_rate, beta1, epsilon" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    ([], "init: give --workload MODULE:FUNCTION or --command COMMAND"),
    (["--workload", "nocolon"], "--workload: must be MODULE:FUNCTION, got 'nocolon'"),
    (["--command", "  "], "--command: must be a command line"),
    (["--command", "x", "--trials", "0"], "--trials: must be >= 1, got 0"),
    (["--command", "x", "--trials", "many"], "--trials: must be an integer"),
    (["--command", "x", "--optimizer", "lion"], "--optimizer: invalid choice"),
    (["--workload", "a:b", "--command", "x"], "not allowed with argument"),
    (["--command", "x", "--out", ""], "--out: must be a file name"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    out = tmp_path / "e.yaml"
    args = ["init", *argv] if "--out" in argv else ["init", *argv, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tunebook: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_kept_without_force(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e.yaml"
    out.write_text("mine")
    assert main(["init", "--command", "x", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["init", "--command", "x", "--out", str(out), "--force"]) == 0
    assert out.read_text() != "mine"
    assert main(["init", "--command", "x", "--out", str(tmp_path)]) == 2

"""``tunebook init``: the playbook's budget guidance as a search space, and its command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.analysis.checks.setup import check_too_few_trials
from tunebook.analysis.data import ExperimentData
from tunebook.cli import main
from tunebook.experiment import Experiment
from tunebook.procedures.init import (
    BUILT_IN_WORKLOADS,
    Answers,
    InitPlan,
    experiment_yaml,
    interview,
    plan_search,
)

from conftest import run_cli

WORKLOAD = "tunebook.workloads.synthetic:quadratic"


def empty_data(exp: Experiment) -> ExperimentData:
    """The experiment before any trial ran (the budget check judges the plan)."""
    return ExperimentData(experiment=exp, metric=exp.objective.metric,
                          goal=exp.objective.goal, final=False,
                          studies=tuple(s.name for s in exp.studies()), trials=())


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
    (["--workload", "nocolon"], "--workload: must be MODULE:FUNCTION or a built-in workload "
                                "(digits, mnist1d-mlp, mnist1d-cnn, text, synthetic), got "
                                "'nocolon'"),
    (["--workload", "a:b", "--objective", "val loss"],
     "--objective: must be a metric name (no spaces), got 'val loss'"),
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


def test_a_built_in_workload_by_its_short_name(tmp_path: Path) -> None:
    out = tmp_path / "d.yaml"
    assert main(["init", "--workload", "synthetic", "--out", str(out)]) == 0
    assert Experiment.from_yaml(out).workload == BUILT_IN_WORKLOADS["synthetic"] == WORKLOAD


# ------------------------------------------------------------------------------- --interactive
def run_interview(lines: list[str], defaults: Answers | None = None, command: bool = False
                  ) -> tuple[tuple[Answers, InitPlan] | None, list[str], list[str], list[str]]:
    """:func:`interview` answering ``lines`` in order (EOFError after them): its result, the
    prompts, what it said and its complaints."""
    it = iter(lines)
    prompts: list[str] = []
    said: list[str] = []
    complaints: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    got = interview(defaults or Answers(None, "val_error", 20, "adam"), ask, said.append,
                    complaints.append, command=command)
    return got, prompts, said, complaints


def test_the_interview_validates_each_answer_like_the_flags_and_shows_the_advice() -> None:
    got, prompts, said, complaints = run_interview(
        ["", "nocolon", "digits", "val loss", "val_loss", "many", "0", "30", "lion", "", "y"])
    assert got is not None
    answers, plan = got
    assert answers == Answers("tunebook.workloads.digits:train_mlp", "val_loss", 30, "adam")
    assert list(plan.searched) == ["learning_rate", "beta1", "epsilon"]
    # Every bad answer got the flag's own error, then the question again.
    assert complaints == [
        "--workload: an answer is needed",
        "--workload: must be MODULE:FUNCTION or a built-in workload (digits, mnist1d-mlp, "
        "mnist1d-cnn, text, synthetic), got 'nocolon'",
        "--objective: must be a metric name (no spaces), got 'val loss'",
        "--trials: must be an integer, got 'many'",
        "--trials: must be >= 1, got 0",
        "--optimizer: invalid choice: 'lion' (choose from 'adam', 'sgd', 'momentum', "
        "'nesterov')"]
    assert prompts[0] == "workload: " and prompts[-1] == "write the file? [Y/n]: "
    # The advice (the plan's reasons) is shown before the question to write.
    assert any("Adam with 30 trials per study" in line for line in said)
    assert "  searching: learning_rate, beta1, epsilon" in said


def test_the_interview_keeps_defaults_skips_the_workload_of_a_command_and_can_decline(
        ) -> None:
    got, prompts, said, _ = run_interview(["", "", "sgd", "n"],
                                          Answers(None, "val_error", 5, "adam"), command=True)
    assert got is None
    assert prompts[0] == "metric to optimise [val_error]: "
    assert any("sgd with 5 trials per study" in line for line in said)
    got, _, said, _ = run_interview(["", "", "", "", "yes"],
                                    Answers(WORKLOAD, "val_loss", 10, "momentum"))
    assert got is not None and got[0] == Answers(WORKLOAD, "val_loss", 10, "momentum")
    assert "  searching: learning_rate, momentum" in said
    with pytest.raises(EOFError):
        run_interview(["digits", ""])


def test_interactive_command_writes_the_answers(tmp_path: Path) -> None:
    out = tmp_path / "i.yaml"
    proc = run_cli("init", "--interactive", "--out", str(out), "--steps", "200",
                   input="mnist1d-cnn\nval_loss\nabc\n9\nnesterov\n\n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tunebook: --trials: must be an integer, got 'abc'; try again" in proc.stderr
    assert "nesterov with 9 trials per study: the learning rate only" in proc.stdout
    exp = Experiment.from_yaml(out)
    assert exp.workload == "tunebook.workloads.mnist1d:train_cnn"
    assert exp.objective.metric == "val_loss" and exp.search.trials == 9
    assert exp.fixed == {"optimizer": "nesterov", "momentum": 0.9}
    assert list(exp.nuisance.names) == ["learning_rate"] and exp.max_train_steps == 200


@pytest.mark.parametrize(("stdin", "code", "message"), [
    ("digits\nval_error\n", 2, "the input ended before every answer was given; nothing "
                                "written"),
    ("", 2, "nothing written"),
    ("digits\n\n\n\nn\n", 0, ""),
])
def test_interactive_end_of_input_or_no_writes_nothing(
        tmp_path: Path, stdin: str, code: int, message: str) -> None:
    out = tmp_path / "i.yaml"
    proc = run_cli("init", "--interactive", "--out", str(out), input=stdin, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_interactive_ctrl_c_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["digits", "val_error"])

    def ask(prompt: str) -> str:
        for answer in answers:
            return answer
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", ask)
    out = tmp_path / "i.yaml"
    assert main(["init", "--interactive", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err and not out.exists()

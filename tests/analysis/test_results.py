"""Trial records for the command line: CSV cells a spreadsheet cannot run, the current
budget, and each study ranked under the objective asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.analysis.data import load
from tunebook.analysis.results import best_per_study, csv_cell, trial_records
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.objective import Objective
from tunebook.store.sql import Store

from conftest import write_experiment


@pytest.mark.parametrize("text", ["=1+1", "+41", "-2", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://x\")"])
def test_text_a_spreadsheet_would_run_is_quoted(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["relu", "a=b", "", " =1", 0.5, -3, 0, True])
def test_other_values_are_kept(value: object) -> None:
    assert csv_cell(value) == value


def test_none_is_an_empty_cell() -> None:
    assert csv_cell(None) == ""


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose experiment ran 3 trials per study, then had its budget lowered to 1."""
    tmp = tmp_path_factory.mktemp("budget")
    root = tmp / "r"
    run(Experiment.from_yaml(write_experiment(tmp, search={"trials": 3, "seed": 1})),
        root=root, workers=0)
    run(Experiment.from_yaml(write_experiment(tmp, search={"trials": 1, "seed": 1})),
        root=root, workers=0)
    return root


def test_trials_past_a_lowered_budget_stay_in_the_store_but_out_of_the_records(
        lowered: Path) -> None:
    store = Store.at_root(lowered)
    assert len(load(store, "toy").trials) == 6
    assert sorted((r.study, r.index) for r in trial_records(store, "toy")) == [
        ("arm=a", 0), ("arm=b", 0)]


def test_records_follow_the_objective_asked_for(lowered: Path) -> None:
    store = Store.at_root(lowered)
    mine = trial_records(store, "toy")
    flipped = trial_records(store, "toy", metric="loss", goal="maximize")
    assert [r.id for r in mine] == [r.id for r in flipped]
    for a, b in zip(mine, flipped, strict=True):
        assert a.final_value == b.final_value
        assert b.best_value is not None and a.best_value is not None
        assert b.best_value >= a.best_value


def test_best_per_study_ranks_each_study_and_keeps_empty_ones(lowered: Path) -> None:
    store = Store.at_root(lowered)
    records = list(load(store, "toy").trials)
    best = best_per_study(records, Objective("loss", "minimize"))
    assert list(best) == ["arm=a", "arm=b"]
    for study, ranked in best.items():
        values = [r.best_value for r in ranked]
        assert values == sorted(values) and len(ranked) == 3
        assert {r.study for r in ranked} == {study}
    worst_first = best_per_study(records, Objective("loss", "maximize"))
    assert [r.id for r in worst_first["arm=a"]] == [r.id for r in best["arm=a"]][::-1]
    assert best_per_study([], Objective("loss")) == {}

"""Trial records as plain data: CSV cells a spreadsheet cannot run, and the current budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.analysis.data import load
from tunebook.experiment import Experiment
from tunebook.results import csv_cell, current_trials, trial_records, within_budget
from tunebook.runner import run
from tunebook.store import Store

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


def test_trials_past_a_lowered_budget_stay_in_the_store_but_out_of_view(lowered: Path) -> None:
    store = Store.at_root(lowered)
    exp = store.require_experiment("toy")
    assert len(store.trials(exp.id)) == 6
    assert sorted((t.study, t.index) for t in current_trials(store, exp.id)) == [
        ("arm=a", 0), ("arm=b", 0)]
    assert sorted((r.study, r.index) for r in trial_records(store, "toy")) == [
        ("arm=a", 0), ("arm=b", 0)]


def test_within_budget_restricts_loaded_data_the_same_way(lowered: Path) -> None:
    store = Store.at_root(lowered)
    data = load(store, "toy")
    assert len(data.trials) == 6
    kept = within_budget(store, data)
    assert sorted((t.study, t.index) for t in kept.trials) == [("arm=a", 0), ("arm=b", 0)]
    assert kept.experiment == data.experiment and kept.name == data.name

"""References (EXPERIMENT, EXPERIMENT/STUDY, EXPERIMENT/STUDY#INDEX), the replicates behind
them, and the retrain experiment's document."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicatedata import fake
from tunebook.analysis.replicates import parse_ref, replicates
from tunebook.analysis.retrain import retrain_document
from tunebook.errors import TunebookError
from tunebook.store.sql import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.at_root(tmp_path / "root")
    fake(s, "search", {"a": [0.30, 0.10, 0.20], "b": [0.50, "infeasible", 0.40],
                       "odd/name #2": [0.9]})
    return s


def test_references_parse_against_the_store(store: Store) -> None:
    assert str(parse_ref(store, "search")) == "search"
    ref = parse_ref(store, "search/a#1")
    assert (ref.experiment, ref.study, ref.index) == ("search", "a", 1)
    # A study name with "/" and "#" is read whole when it is a study.
    ref = parse_ref(store, "search/odd/name #2")
    assert (ref.study, ref.index) == ("odd/name #2", None)
    assert parse_ref(store, "search/odd/name #2#0").index == 0
    # A trial's label, "study #index", works as well.
    ref = parse_ref(store, "search/a #1")
    assert (ref.study, ref.index) == ("a", 1)


@pytest.mark.parametrize(("text", "fragments"), [
    ("serch", ["REF: no experiment 'serch'", "did you mean 'search'"]),
    ("search/c", ["no study of 'search' named 'c'"]),
    ("search/a#7", ["study 'a' of 'search' has no trial #7"]),
    ("nosuch/a#1", ["no experiment 'nosuch'"]),
])
def test_unknown_references_are_one_line_errors(store: Store, text: str,
                                                fragments: list[str]) -> None:
    with pytest.raises(TunebookError) as info:
        parse_ref(store, text)
    message = str(info.value)
    assert "\n" not in message
    for f in fragments:
        assert f in message


def test_a_study_s_replicates_count_infeasible_trials_apart(store: Store) -> None:
    r = replicates(store, "search/b")
    assert r.values == (0.50, 0.40)
    assert (r.n, r.infeasible, r.failed) == (2, 1, 0)
    assert not r.seeds_only  # a searched study: its spread is not the trial variance
    d = r.as_dict()
    assert d["mean"] == pytest.approx(0.45) and d["n"] == 2 and d["infeasible"] == 1


def test_an_experiment_means_its_best_study_by_mean(store: Store) -> None:
    r = replicates(store, "search")  # a: mean 0.2, b: 0.45, odd: 0.9 (minimised)
    assert r.ref.study == "a" and r.source == "search/a"


def test_a_trial_means_its_retrain_when_there_is_one(store: Store) -> None:
    alone = replicates(store, "search/a#1")
    assert alone.values == (0.10,) and alone.source == "search/a" and alone.seeds_only
    fake(store, "search-retrain", {"a #1": [0.15, 0.16, 0.14, None]}, follows="search",
         replicates=True)
    r = replicates(store, "search/a#1")
    assert r.source == "search-retrain/a #1"
    assert sorted(r.values) == [0.14, 0.15, 0.16] and r.failed == 1 and r.seeds_only
    # Not pooled with the original trial: it was selected as the best, its value is biased.
    assert 0.10 not in r.values


def test_retrain_document_takes_the_top_trials_of_each_study(store: Store) -> None:
    doc = retrain_document(store, "search", top=2, seeds=5)
    assert doc["name"] == "search-retrain" and doc["follows"] == "search"
    assert doc["nuisance"] == {} and doc["search"] == {"trials": 5, "seed": 0}
    names = [c["name"] for c in doc["configs"]]
    assert names == ["a #1", "a #2", "b #2", "b #0", "odd/name #2 #0"]
    first = doc["configs"][0]
    assert first["learning_rate"] == pytest.approx(0.2) and first["arm"] == "a"
    assert "noise" not in first and doc["fixed"] == {"noise": 0.01}  # fixed stays fixed
    for key in ("workload", "objective", "max_train_steps", "eval_every"):
        assert doc[key] == store.require_experiment("search").config[key]


def test_retrain_document_of_chosen_trials(store: Store) -> None:
    doc = retrain_document(store, "search", top=1, seeds=3, trial_refs=["b#0", "search/a#2"])
    assert [c["name"] for c in doc["configs"]] == ["b #0", "a #2"]
    with pytest.raises(TunebookError, match="--trial"):
        retrain_document(store, "search", top=1, seeds=3, trial_refs=["a"])
    # The same configuration twice (a retrain of a retrain) is retrained once.
    fake(store, "twice", {"s": [0.1, 0.2]}, params={"s": {"learning_rate": 0.1}})
    assert len(retrain_document(store, "twice", top=2, seeds=3)["configs"]) == 1
    with pytest.raises(TunebookError, match="no completed trial"):
        fake(store, "empty", {"s": [None]})
        retrain_document(store, "empty", top=1, seeds=3)

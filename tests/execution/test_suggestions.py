"""Where a study's trials come from: ``materialize`` for non-adaptive designers (the whole
budget at once) and ``Suggestions`` for adaptive ones (trials as results come in, the designer's
state saved with each change), on a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tunebook.execution.suggestions import Suggestions, materialize
from tunebook.experiment import Experiment
from tunebook.search.designers import Observation, QuasiRandomDesigner, RefineDesigner, trial_seed
from tunebook.search.space import Float, SearchSpace
from tunebook.store.sql import Store, StudyRow

from conftest import write_experiment

X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
SPACE = SearchSpace({"x": Float(0.0, 1.0)})
Outcome = Callable[[int], tuple[str, float | None]]


def _experiment(folder: Path, algorithm: str, trials: int, seed: int = 2,
                **overrides: Any) -> Experiment:
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"scientific": {}, "nuisance": X, "max_train_steps": 2,
                           "eval_every": 1, **overrides}
    return Experiment.from_yaml(write_experiment(
        folder, search={"algorithm": algorithm, "trials": trials, "seed": seed}, **doc))


def _register(folder: Path, algorithm: str = "refine", trials: int = 8, seed: int = 2,
              **overrides: Any) -> tuple[Experiment, Store, int]:
    exp = _experiment(folder, algorithm, trials, seed, **overrides)
    store = Store.at_root(folder / "root")
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), *materialize(exp))
    return exp, store, exp_id


@contextmanager
def _suggestions(folder: Path, algorithm: str = "refine", trials: int = 8,
                 **overrides: Any) -> Iterator[tuple[Suggestions, Store, int]]:
    """A registered experiment's Suggestions, its store (closed afterwards) and its id."""
    exp, store, exp_id = _register(folder, algorithm, trials, **overrides)
    try:
        yield Suggestions.load(store, exp, exp_id), store, exp_id
    finally:
        store.close()


def _finish(store: Store, exp_id: int, outcome: Outcome, n: int | None = None) -> list[int]:
    """Claim and finish up to ``n`` claimable trials (lowest index first) as ``outcome`` says;
    the value goes where a worker writes it (``best_value``), whatever the status."""
    done = []
    while n is None or len(done) < n:
        t = store.claim(exp_id, "w")
        if t is None:
            break
        status, value = outcome(t.index)
        assert store.finish(t.id, "w", status, best_value=value, final_value=value,
                            error="boom" if status == "failed" else None)
        done.append(t.index)
    return done


def _saved(store: Store, s: Suggestions) -> list[dict[str, Any]]:
    return [store.designer_state(study.id) for study, _, _ in s.studies]


def _in_memory(s: Suggestions) -> list[dict[str, Any]]:
    return [{"observed": sorted(seen), "designer": d.state()} for _, d, seen in s.studies]


def _study(s: Suggestions) -> StudyRow:
    (entry,) = s.studies
    return entry[0]


def _loss(i: int) -> tuple[str, float | None]:
    return "completed", 1.0 / (i + 1) + (0.3 if i % 3 == 0 else 0.0)


# ----------------------------------------------------------------------------- materialize
def test_materialize_writes_the_whole_paired_budget_of_a_non_adaptive_study(
        tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "quasi_random", 5, seed=3, scientific={"arm": ["a", "b"]},
                      fixed={"k": 7})
    studies, trials = materialize(exp)
    assert [(s.name, s.position, dict(s.scientific), s.algorithm, s.seed, s.budget)
            for s in studies] == [("arm=a", 0, {"arm": "a"}, "quasi_random", 3, 5),
                                  ("arm=b", 1, {"arm": "b"}, "quasi_random", 3, 5)]
    points = QuasiRandomDesigner(exp.nuisance, 3).suggest(range(5))
    for study in studies:
        rows = trials[study.name]
        assert [r.idx for r in rows] == list(range(5))
        # Fixed, scientific and nuisance values together; the same nuisance points in every
        # study (a paired comparison); a seed per trial and per study.
        assert [dict(r.params) for r in rows] == [
            {"k": 7, **study.scientific, **p} for p in points]
        assert [r.seed for r in rows] == [trial_seed(3, study.name, i) for i in range(5)]
    assert {r.seed for r in trials["arm=a"]}.isdisjoint(r.seed for r in trials["arm=b"])


@pytest.mark.parametrize("algorithm", ["quasi_random", "random"])
def test_trial_i_is_a_pure_function_of_seed_space_and_index(tmp_path: Path,
                                                            algorithm: str) -> None:
    def rows(trials: int, seed: int) -> list[tuple[int, dict[str, Any], int]]:
        exp = _experiment(tmp_path / f"{trials}-{seed}", algorithm, trials, seed)
        return [(r.idx, dict(r.params), r.seed) for r in materialize(exp)[1]["main"]]

    three = rows(3, 4)
    assert three == rows(3, 4)
    assert rows(7, 4)[:3] == three  # a larger budget extends the study, it does not reshuffle
    assert [p for _, p, _ in rows(3, 5)] != [p for _, p, _ in three]
    assert len({p["x"] for _, p, _ in rows(7, 4)}) == 7


def test_a_grid_study_s_budget_is_its_number_of_points(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "grid", 3, nuisance={
        "act": {"type": "categorical", "values": ["relu", "gelu", "tanh"]}})
    (study,), trials = materialize(exp)
    assert study.budget == 3
    assert [r.params["act"] for r in trials["main"]] == ["relu", "gelu", "tanh"]


def test_an_adaptive_study_is_registered_empty(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "refine", 8, scientific={"arm": ["a", "b"]})
    studies, trials = materialize(exp)
    assert [(s.algorithm, s.budget) for s in studies] == [("refine", 8)] * 2
    assert trials == {"arm=a": [], "arm=b": []}


# ----------------------------------------------------------------------------- Suggestions
def test_only_adaptive_studies_get_a_designer(tmp_path: Path) -> None:
    with _suggestions(tmp_path, "quasi_random", 4) as (s, store, exp_id):
        assert s.studies == []
        assert s.top_up(10) == 0
        assert len(store.trials(exp_id)) == 4


def test_trials_are_added_only_as_capacity_frees(tmp_path: Path) -> None:
    # 4 quasi-random trials, then rounds of 2
    with _suggestions(tmp_path, "refine", 8) as (s, store, exp_id):
        study = _study(s)
        assert s.top_up(0) == 0 and store.trials(exp_id) == []
        assert store.designer_state(study.id) == {}  # nothing changed, nothing saved
        assert s.top_up(1) == 1
        assert s.top_up(2) == 2
        assert s.top_up(5) == 1  # the first round waits for the four quasi-random trials
        trials = store.trials(exp_id)
        assert [t.index for t in trials] == [0, 1, 2, 3]
        assert [t.params for t in trials] == QuasiRandomDesigner(SPACE, 2).suggest(range(4))
        assert [t.seed for t in trials] == [trial_seed(2, "main", i) for i in range(4)]
        assert {t.status for t in trials} == {"pending"}
        # The state that suggested them went into the store with them.
        assert _saved(store, s) == _in_memory(s)
        assert store.designer_state(study.id)["observed"] == []
        assert len(store.designer_state(study.id)["designer"]["units"]) == 4
        # Half of them finish: observed and saved, but the round still waits.
        assert _finish(store, exp_id, _loss, 2) == [0, 1]
        assert s.top_up(4) == 0
        assert store.designer_state(study.id)["observed"] == [0, 1]
        assert _saved(store, s) == _in_memory(s)
        _finish(store, exp_id, _loss)
        assert s.top_up(1) == 1  # the round holds two, but only one slot is free
        assert s.top_up(4) == 1  # the rest of the round; the next one waits again
        assert [t.index for t in store.trials(exp_id)] == list(range(6))
        _finish(store, exp_id, _loss)
        assert s.top_up(8) == 2
        _finish(store, exp_id, _loss)
        assert s.top_up(8) == 0  # the budget is spent
        assert [t.index for t in store.trials(exp_id)] == list(range(8))
        assert store.designer_state(study.id)["observed"] == list(range(8))


def _play(folder: Path, reload: bool, outcome: Outcome,
          **overrides: Any) -> tuple[list[tuple[str, int, dict[str, Any], int]],
                                     list[dict[str, Any]]]:
    """Run an adaptive experiment to the end with two free slots; with ``reload`` each step
    starts from a fresh store connection and a fresh Suggestions (a resumed run)."""
    exp, store, exp_id = _register(folder, "refine", 8, **overrides)
    s = Suggestions.load(store, exp, exp_id)
    try:
        for _ in range(50):
            if reload:
                store.close()
                store = Store.at_root(folder / "root", create=False)
                s = Suggestions.load(store, exp, exp_id)
            added = s.top_up(2)
            assert _saved(store, s) == _in_memory(s)
            if not added and not _finish(store, exp_id, outcome, 1):
                break
        trials = [(t.study, t.index, t.params, t.seed) for t in store.trials(exp_id)]
        return trials, _saved(store, s)
    finally:
        store.close()


def test_a_fresh_suggestions_on_the_same_store_carries_on_where_the_last_stopped(
        tmp_path: Path) -> None:
    arms = {"scientific": {"arm": ["a", "b"]}}
    whole = _play(tmp_path / "whole", False, _loss, **arms)
    resumed = _play(tmp_path / "resumed", True, _loss, **arms)
    assert resumed == whole
    trials, states = whole
    assert [(st, i) for st, i, _, _ in trials] == [
        (st, i) for st in ("arm=a", "arm=b") for i in range(8)]
    assert all(p["arm"] == st[-1] for st, _, p, _ in trials)
    assert [s["observed"] for s in states] == [list(range(8))] * 2
    # The refinement used what it observed: another outcome gives other later trials.
    other = _play(tmp_path / "other", False, lambda i: ("completed", float(i)), **arms)
    assert other[0][:4] == trials[:4] and other[0][4:8] != trials[4:8]


def test_infeasible_and_failed_trials_are_observed_without_a_value(tmp_path: Path) -> None:
    # The store holds a best value for the infeasible and the failed trial (an infeasible
    # trial is summarised up to its divergence): the designer must not take either as best.
    outcomes: dict[int, tuple[str, float | None]] = {
        0: ("completed", 0.5), 1: ("infeasible", 0.001), 2: ("failed", 0.0001),
        3: ("completed", 0.2)}
    with _suggestions(tmp_path, "refine", 8) as (s, store, exp_id):
        study = _study(s)
        assert s.top_up(4) == 4
        _finish(store, exp_id, outcomes.__getitem__)
        assert s.top_up(2) == 2
        saved = store.designer_state(study.id)
        assert saved["observed"] == [0, 1, 2, 3]
        assert saved["designer"]["observed"] == [[0, "completed", 0.5], [1, "infeasible", None],
                                                 [2, "failed", None], [3, "completed", 0.2]]
        trials = store.trials(exp_id)
        start = [t.params for t in trials[:4]]
        d = RefineDesigner(SPACE, 2, 8)
        d.suggest(range(4))
        d.observe([Observation(0, start[0], 0.5, "completed"),
                   Observation(1, start[1], None, "infeasible"),
                   Observation(2, start[2], None, "failed"),
                   Observation(3, start[3], 0.2, "completed")])
        assert [t.params for t in trials[4:]] == d.suggest([4, 5])
        # What the designer is shown: the status, the nuisance values, a value only when
        # completed (the store's best value of the other two stays out).
        assert [s._observation(t) for t in trials[:4]] == [
            Observation(0, start[0], 0.5, "completed"),
            Observation(1, start[1], None, "infeasible"),
            Observation(2, start[2], None, "failed"),
            Observation(3, start[3], 0.2, "completed")]
        assert [t.best_value for t in trials[1:3]] == [0.001, 0.0001]


def test_a_completed_trial_without_a_value_is_observed_as_finished(tmp_path: Path) -> None:
    # 2 quasi-random trials, then rounds of 2
    with _suggestions(tmp_path, "refine", 4) as (s, store, exp_id):
        assert s.top_up(4) == 2
        _finish(store, exp_id, lambda i: ("completed", None if i == 0 else 0.4))
        assert s.top_up(4) == 2  # it counts as finished: the round does not wait for it
        assert store.designer_state(_study(s).id)["designer"]["observed"] == [
            [0, "completed", None], [1, "completed", 0.4]]


def test_a_maximised_objective_refines_around_the_highest_value(tmp_path: Path) -> None:
    low_high = {0: ("completed", 0.1), 1: ("completed", 0.9)}

    def second_round(goal: str) -> list[float]:
        objective = {"metric": "loss", "goal": goal}
        with _suggestions(tmp_path / goal, "refine", 4, objective=objective) as (s, store, exp_id):
            s.top_up(2)
            _finish(store, exp_id, low_high.__getitem__)
            s.top_up(2)
            xs = [float(t.params["x"]) for t in store.trials(exp_id)]
        best = xs[1] if goal == "maximize" else xs[0]
        assert all(abs(x - best) <= 0.25 + 1e-9 for x in xs[2:]), (goal, xs)
        return xs

    assert second_round("maximize")[:2] == second_round("minimize")[:2]


def test_an_observation_holds_only_the_nuisance_values(tmp_path: Path) -> None:
    with _suggestions(tmp_path, "refine", 4, scientific={"arm": ["a"]},
                      fixed={"k": 7}) as (s, store, exp_id):
        assert s.top_up(1) == 1
        _finish(store, exp_id, lambda i: ("completed", 0.3))
        (t,) = store.trials(exp_id)
        assert set(t.params) == {"k", "arm", "x"}
        assert s._observation(t) == Observation(0, {"x": t.params["x"]}, 0.3, "completed")

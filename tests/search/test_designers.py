"""Designer plug-ins: the registry, and the adaptive "refine" designer (alone and in a run)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tunebook.errors import ConfigError, StoreError
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.search.designers import (
    Designer,
    Observation,
    QuasiRandomDesigner,
    RefineDesigner,
    designer,
    designer_names,
    make_designer,
)
from tunebook.search.space import Float, SearchSpace, Value
from tunebook.store.sql import Store, StudySpec

import driving
from conftest import write_experiment

SPACE = SearchSpace({"x": Float(-1.0, 1.0), "y": Float(1e-3, 1.0, "log")})


def loss(params: dict[str, Value]) -> float:
    return (float(params["x"]) - 0.3) ** 2 + abs(float(params["y"]) - 0.01)


def drive(d: Designer, budget: int, outcome: dict[int, str] | None = None,
          restart_after: int | None = None) -> list[dict[str, Value]]:
    """:func:`driving.drive` on this module's loss; ``outcome`` maps an index to its status."""
    ends = outcome or {}
    return driving.drive(d, budget, loss, lambda i: ends.get(i, "completed"), restart_after)


def test_registry_lists_the_algorithms_and_the_experiment_accepts_them() -> None:
    assert designer_names()[:4] == ("quasi_random", "random", "grid", "refine")
    assert isinstance(make_designer("refine", SPACE, 0, 8), RefineDesigner)
    with pytest.raises(ValueError, match="unknown search algorithm 'bayes'; one of quasi"):
        make_designer("bayes", SPACE, 0, 5)
    doc = {"name": "e", "workload": "toy:curve", "objective": {"metric": "loss"},
           "max_train_steps": 2, "eval_every": 1,
           "nuisance": {"x": {"type": "float", "low": 0, "high": 1}}}
    assert Experiment.from_dict({**doc, "search": {"algorithm": "refine"}}).search.algorithm \
        == "refine"
    with pytest.raises(ConfigError, match=r"unknown algorithm 'bayes'.*refine"):
        Experiment.from_dict({**doc, "search": {"algorithm": "bayes"}})


def test_a_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        @designer("quasi_random")
        class Impostor(QuasiRandomDesigner):
            pass


def test_refine_starts_quasi_random_then_closes_in_on_the_best() -> None:
    d = RefineDesigner(SPACE, seed=5, trials=24)
    points = drive(d, 24)
    assert points[:d.initial] == QuasiRandomDesigner(SPACE, 5).suggest(range(d.initial))
    first = min(loss(p) for p in points[:d.initial])
    assert min(loss(p) for p in points) < first  # refining found better points
    # The last round lies within its box around the best point before it.
    last_round = points[-d.batch:]
    best = min(points[:-d.batch], key=loss)
    r = (24 - d.batch - d.initial) // d.batch + 1
    width = 2.0 * 0.5 * RefineDesigner.SHRINK**r  # x spans 2 in unit coordinates
    assert all(abs(float(p["x"]) - float(best["x"])) <= width + 1e-9 for p in last_round)


def test_refine_is_a_function_of_seed_and_observations() -> None:
    a = drive(RefineDesigner(SPACE, 1, 16), 16)
    assert a == drive(RefineDesigner(SPACE, 1, 16), 16)
    assert a == drive(RefineDesigner(SPACE, 1, 16), 16, restart_after=11)
    assert a != drive(RefineDesigner(SPACE, 2, 16), 16)
    maximised = drive(RefineDesigner(SPACE, 1, 16, goal="maximize"), 16)
    assert maximised[:8] == a[:8] and maximised[8:] != a[8:]


def test_a_round_waits_for_every_earlier_trial() -> None:
    d = RefineDesigner(SPACE, 0, 8)  # 4 quasi-random, then rounds of 2
    first = d.suggest(range(6))
    assert len(first) == 4  # the first round needs the first four observed
    d.observe([Observation(i, p, loss(p), "completed") for i, p in enumerate(first[:3])])
    assert d.suggest([4, 5]) == []
    d.observe([Observation(3, first[3], loss(first[3]), "completed")])
    assert len(d.suggest([4, 5, 6])) == 2  # the round holds two; the next waits again
    with pytest.raises(ValueError, match="expected index 6, got 9"):
        d.suggest([9])


def test_infeasible_and_failed_trials_are_never_best() -> None:
    d = RefineDesigner(SPACE, 3, 8)
    start = d.suggest(range(4))
    d.observe([Observation(0, start[0], None, "infeasible"),
               Observation(1, start[1], None, "failed"),
               Observation(2, start[2], float("nan"), "completed"),
               Observation(3, start[3], 5.0, "completed")])
    assert d.state()["observed"] == [[0, "infeasible", None], [1, "failed", None],
                                     [2, "completed", None], [3, "completed", 5.0]]
    assert d._best(4) == 3
    # No feasible trial at all: the rounds go on quasi-randomly.
    e = RefineDesigner(SPACE, 3, 8)
    e.observe([Observation(i, p, None, "infeasible") for i, p in enumerate(e.suggest(range(4)))])
    assert e.suggest([4, 5]) == QuasiRandomDesigner(SPACE, 3).suggest([4, 5])




def _refine_file(folder: Path) -> Path:
    folder.mkdir()
    # Seed 2's quasi-random start holds x = 0.96 (infeasible) and x = 0.84 (fails).
    return write_experiment(folder, name="refine", workload="toy:bowl", max_train_steps=1,
                            eval_every=1, search={"algorithm": "refine", "trials": 16, "seed": 2},
                            scientific={}, fixed={"sleep": 0.25})



def _outcome(root: Path) -> tuple[list[tuple[int, float, str]], dict[str, Any]]:
    return driving.run_outcome(root, "refine")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_refine_run_killed_midway_resumes_into_the_same_trials(tmp_path: Path,
                                                                  sig: int) -> None:
    whole = tmp_path / "whole"
    run(Experiment.from_yaml(_refine_file(whole)), root=whole / "root", workers=2)
    want, want_state = _outcome(whole / "root")
    assert [i for i, _, _ in want] == list(range(16))
    statuses = [s for _, _, s in want]
    assert statuses.count("infeasible") == 1 and statuses.count("failed") == 1
    # Each is observed for what it is: no value for the infeasible and the failed trial.
    outcomes = {i: (s, v) for i, s, v in want_state["designer"]["observed"]}
    assert [outcomes[i] for i, _, s in want if s != "completed"] == [
        ("infeasible", None), ("failed", None)]
    assert want_state["observed"] == list(range(16))
    best = min((x for _, x, s in want if s == "completed"), key=lambda x: abs(x - 0.3))
    assert abs(best - 0.3) < abs(0.34 - 0.3)  # the refinement beat the quasi-random start

    cut = tmp_path / "cut"
    path = _refine_file(cut)
    # Stopped once the refinement has begun, well before the end.
    seen = driving.kill_run_midway(path, cut / "root", "refine", after=8, workers=2, sig=sig)
    assert 8 < len(seen) < 16
    assert [(i, x) for i, x, _ in seen] == [(i, x) for i, x, _ in want[:len(seen)]]

    run(Experiment.from_yaml(path), root=cut / "root", workers=2)
    got, got_state = _outcome(cut / "root")
    assert got == want
    assert got_state == want_state


def test_refine_trials_do_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    runs = {}
    for workers in (0, 3):
        folder = tmp_path / f"w{workers}"
        run(Experiment.from_yaml(_refine_file(folder)), root=folder / "root", workers=workers)
        runs[workers] = _outcome(folder / "root")
    assert runs[0] == runs[3]


def test_the_store_appends_trials_with_the_state_that_suggested_them(tmp_path: Path) -> None:
    store = Store.at_root(tmp_path)
    try:
        exp_id = store.register("e", "id", {}, [StudySpec("main", 0, {}, "refine", 0, 4)], {})
        (study,) = store.studies(exp_id)
        assert store.designer_state(study.id) == {}
        rows = [(0, {"x": 0.5}, 11), (1, {"x": 0.25}, 12)]
        assert store.add_trials(study.id, rows, {"n": 2}) == 2
        # A redo (a reply lost in an outage) adds nothing and keeps the first trials.
        assert store.add_trials(study.id, [(1, {"x": 0.9}, 99), (2, {"x": 0.1}, 13)],
                                {"n": 3}) == 1
        assert [(t.index, t.params, t.seed, t.status) for t in store.trials(exp_id)] == [
            (0, {"x": 0.5}, 11, "pending"), (1, {"x": 0.25}, 12, "pending"),
            (2, {"x": 0.1}, 13, "pending")]
        assert store.designer_state(study.id) == {"n": 3}
        store.save_designer_state(study.id, {"n": 4})
        assert store.designer_state(study.id) == {"n": 4}
        with pytest.raises(StoreError, match="no study with id 999"):
            store.designer_state(999)
    finally:
        store.close()


# ----------------------------------------------------------------------------- options, families
_doc = driving.experiment_doc


def test_search_options_reach_the_designer_and_bad_ones_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"search\.options\.initial.*'quasi_random' takes "
                                          r"no options"):
        Experiment.from_dict(_doc("quasi_random", initial=3), source="e.yaml")
    with pytest.raises(ConfigError, match=r"search\.options\.bad.*must be a number"):
        Experiment.from_dict(_doc("quasi_random", bad={"nested": 1}), source="e.yaml")
    # Options are part of the experiment's identity only when given.
    plain = Experiment.from_dict(_doc("quasi_random"))
    assert "options" not in plain.to_dict()["search"]

    @designer("test-family:")
    class Family(QuasiRandomDesigner):
        @classmethod
        def check_options(cls, options: Any, space: SearchSpace, variant: str = "") -> None:
            from tunebook.search.designers import OptionError

            if variant not in ("A", "B"):
                raise OptionError("", f"unknown variant {variant!r}; one of A, B")
            for key, value in options.items():
                if key != "k" or not isinstance(value, int):
                    raise OptionError(key, f"must be k: an integer, got {value!r}")

    exp = Experiment.from_dict(_doc("test-family:A", k=3))
    assert exp.search.options == {"k": 3} and exp.to_dict()["search"]["options"] == {"k": 3}
    assert Experiment.from_dict(exp.to_dict()).identity() == exp.identity()
    assert Experiment.from_dict(_doc("test-family:A", k=4)).identity() != exp.identity()
    d = make_designer("test-family:B", SPACE, 0, 4, options={"k": 1})
    assert isinstance(d, Family) and d.variant == "B" and d.options == {"k": 1}
    with pytest.raises(ConfigError, match=r"search\.algorithm.*unknown variant 'C'"):
        Experiment.from_dict(_doc("test-family:C"))
    with pytest.raises(ConfigError, match=r"search\.options\.k.*must be k"):
        Experiment.from_dict(_doc("test-family:A", k="x"))
    with pytest.raises(ConfigError, match=r"search\.algorithm.*unknown algorithm "
                                          r"'nofamily:A'"):
        Experiment.from_dict(_doc("nofamily:A"))

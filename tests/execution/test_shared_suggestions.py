"""Several supervisors of one adaptive study (``tunebook worker`` on several machines, a
``tunebook run`` beside them): each top-up is a compare-and-swap of the stored designer state,
so the study gets every index once, within its budget, with the points one supervisor alone
would have suggested. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunebook.execution.suggestions import Suggestions, materialize
from tunebook.experiment import Experiment
from tunebook.store.sql import Store, sqlite_url

from conftest import write_experiment

BUDGET = 12


@pytest.fixture(name="url", params=["sqlite", "postgresql"])
def url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "tunebook.db")
    return str(request.getfixturevalue("postgres").new_database())


def _experiment(folder: Path, algorithm: str, **search: Any) -> Experiment:
    folder.mkdir(parents=True, exist_ok=True)
    return Experiment.from_yaml(write_experiment(
        folder, search={"algorithm": algorithm, "trials": BUDGET, "seed": 5, **search},
        scientific={}, max_train_steps=2, eval_every=1))


def _register(url: str, exp: Experiment) -> int:
    store = Store(url)
    try:
        return store.register(exp.name, exp.identity(), exp.to_dict(), *materialize(exp))
    finally:
        store.close()


def _loss(params: dict[str, Any]) -> float:
    return round((float(params["x"]) - 0.3) ** 2, 12)


def _finish_one(store: Store, exp_id: int, who: str) -> bool:
    """Claim one trial and complete it with the loss of its point; False when none is left."""
    t = store.claim(exp_id, who)
    if t is None:
        return False
    value = _loss(t.params)
    assert store.finish(t.id, who, "completed", best_value=value, final_value=value)
    return True


def _points(url: str, exp_id: int) -> list[tuple[int, float]]:
    store = Store(url)
    try:
        return [(t.index, float(t.params["x"])) for t in store.trials(exp_id)]
    finally:
        store.close()


def _serial(tmp_path: Path, algorithm: str, **search: Any) -> list[tuple[int, float]]:
    """The points of one supervisor alone, finishing trials one at a time."""
    exp = _experiment(tmp_path / "serial", algorithm, **search)
    url = sqlite_url(tmp_path / "serial" / "tunebook.db")
    exp_id = _register(url, exp)
    store = Store(url)
    try:
        s = Suggestions.load(store, exp, exp_id)
        while True:
            s.top_up(2)
            if not _finish_one(store, exp_id, "w"):
                break
    finally:
        store.close()
    return _points(url, exp_id)


def test_a_swap_writes_only_over_the_state_it_read(url: str, tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "refine")
    exp_id = _register(url, exp)
    store = Store(url)
    try:
        [study] = store.studies(exp_id)
        assert store.designer_state(study.id) == {}
        rows = [(0, {"x": 0.5}, 1), (1, {"x": 0.25}, 2)]
        assert store.swap_designer_state(study.id, {}, {"n": 2}, rows) == 2
        # Another supervisor, still holding the old state: nothing written.
        assert store.swap_designer_state(study.id, {}, {"n": 9}, [(1, {"x": 0.9}, 3),
                                                                  (2, {"x": 0.1}, 4)]) is None
        assert store.designer_state(study.id) == {"n": 2}
        assert [(t.index, t.params["x"]) for t in store.trials(exp_id)] == [(0, 0.5), (1, 0.25)]
        # The same new state again (a redo, or an identical suggestion): indices kept.
        assert store.swap_designer_state(study.id, {}, {"n": 2}, rows) == 0
        assert store.swap_designer_state(study.id, {"n": 2}, {"n": 3}, [(2, {"x": 0.1}, 4)]) == 1
        assert store.swap_designer_state(study.id, {"n": 3}, {"n": 4}) == 0  # state only
        assert store.designer_state(study.id) == {"n": 4}
        assert len(store.trials(exp_id)) == 3
    finally:
        store.close()


@pytest.mark.parametrize(("algorithm", "search"), [
    ("refine", {}),
    ("bayesian", {"options": {"initial": 4, "batch": 2}}),
])
def test_two_supervisors_taking_turns(url: str, tmp_path: Path, algorithm: str,
                                      search: dict[str, Any]) -> None:
    """Two supervisors loaded at the same moment, then taking turns: the second finds the
    study moved on by the first (its own designer is stale) and reloads instead of failing or
    adding a trial twice; the points are those of one supervisor alone."""
    exp = _experiment(tmp_path / "shared", algorithm, **search)
    exp_id = _register(url, exp)
    stores = [Store(url), Store(url)]
    try:
        sups = [Suggestions.load(s, exp, exp_id) for s in stores]
        turn = 0
        while True:
            sups[turn % 2].top_up(2)
            if not _finish_one(stores[turn % 2], exp_id, f"w{turn % 2}"):
                sups[(turn + 1) % 2].top_up(2)  # the other one has nothing more either
                if not _finish_one(stores[0], exp_id, "w0"):
                    break
            turn += 1
    finally:
        for s in stores:
            s.close()
    points = _points(url, exp_id)
    assert [i for i, _ in points] == list(range(BUDGET))
    assert points == _serial(tmp_path, algorithm, **search)


def _race(url: str, exp: Experiment, exp_id: int, who: str, errors: list[BaseException],
          start: threading.Barrier) -> None:
    store = Store(url)
    try:
        s = Suggestions.load(store, exp, exp_id)
        start.wait()
        idle = 0
        while idle < 50:
            s.top_up(2)
            if _finish_one(store, exp_id, who):
                idle = 0
            else:
                idle += 1
                time.sleep(0.01)
                if store.counts(exp_id).get("completed", 0) >= BUDGET:
                    break
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        store.close()


@pytest.mark.parametrize("algorithm", ["refine", "bayesian"])
def test_supervisors_racing(url: str, tmp_path: Path, algorithm: str) -> None:
    """Three supervisors topping up and finishing trials at once, each with its own
    connection: no error, every index once, nothing over budget, the serial run's points."""
    search: dict[str, Any] = {"options": {"initial": 4, "batch": 2}} if algorithm == "bayesian" \
        else {}
    exp = _experiment(tmp_path / "shared", algorithm, **search)
    exp_id = _register(url, exp)
    errors: list[BaseException] = []
    start = threading.Barrier(3)
    threads = [threading.Thread(target=_race, args=(url, exp, exp_id, f"w{k}", errors, start))
               for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    points = _points(url, exp_id)
    assert [i for i, _ in points] == list(range(BUDGET))
    assert points == _serial(tmp_path, algorithm, **search)



def test_a_poll_that_changes_nothing_reads_no_designer_state(tmp_path: Path) -> None:
    # The supervisor polls every 0.25 s: the stored state is read when this supervisor loses a
    # swap, never to find out that nothing happened.
    url = sqlite_url(tmp_path / "tunebook.db")
    exp = _experiment(tmp_path / "poll", "refine")
    exp_id = _register(url, exp)
    store = Store(url)
    reads: list[int] = []
    real = store.designer_state
    store.designer_state = (  # type: ignore[method-assign]
        lambda study_id: reads.append(study_id) or real(study_id))
    try:
        s = Suggestions.load(store, exp, exp_id)
        assert len(reads) == 1 and s.top_up(BUDGET) > 0  # refine's first round
        for _ in range(5):  # the round's trials not finished: refine waits
            assert s.top_up(BUDGET) == 0
        assert len(reads) == 1
        # Another supervisor moves the study on: this one's swap is lost, it reloads once.
        other = Suggestions.load(Store(url), exp, exp_id)
        while _finish_one(store, exp_id, "w"):
            pass
        assert other.top_up(BUDGET) > 0
        # Its load, then what losing the swap costs: a reload (and a check of the state when
        # its stale designer refused the other's indices).
        assert s.top_up(BUDGET) == 0 and 2 <= len(reads) <= 3
        assert sorted(t.index for t in store.trials(exp_id)) == list(
            range(len(store.trials(exp_id))))
    finally:
        store.close()

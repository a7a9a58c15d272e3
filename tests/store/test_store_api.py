"""What callers of the store rely on (tunebook.store.api): the rows and typed inputs, the
stored form of a run's outcome, the protocol as a runtime check, and a module light enough to
import without SQLAlchemy."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tunebook.store import api, sql
from tunebook.store.api import (
    ACTIVE,
    CLAIMABLE,
    TERMINAL,
    NewTrial,
    RunOutcome,
    StoreAPI,
    StudySpec,
    TrialRow,
    TrialSummary,
)
from tunebook.store.sql import Store

from store_backends import connect_fixture, register, store_fixture  # noqa: F401 (fixtures)


def test_the_protocol_module_is_light() -> None:
    """A remote client implements StoreAPI without SQLAlchemy: the module must not need it."""
    code = "import sys, tunebook.store.api; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_the_statuses_partition_a_trials_life() -> None:
    assert set(CLAIMABLE) < set(ACTIVE) and set(ACTIVE) - set(CLAIMABLE) == {"running"}
    assert not set(ACTIVE) & set(TERMINAL)
    assert len({*ACTIVE, *TERMINAL}) == len(ACTIVE) + len(TERMINAL)


def test_a_run_outcome_is_stored_as_plain_json() -> None:
    counts = {"completed": 2}
    stored = RunOutcome(counts, interrupted=True, signal="SIGTERM", elapsed=3.5).as_dict()
    assert stored == {"counts": {"completed": 2}, "interrupted": True, "signal": "SIGTERM",
                      "elapsed": 3.5}
    counts["failed"] = 1  # the stored form is a copy, not the runner's live counter
    assert stored["counts"] == {"completed": 2}
    assert RunOutcome().as_dict() == {"counts": {}, "interrupted": False, "signal": None,
                                      "elapsed": 0.0}
    assert RunOutcome({"completed": 2}, abandoned="its process died").as_dict() == {
        "abandoned": True, "reason": "its process died"}


def test_rows_and_inputs_are_immutable() -> None:
    row = TrialRow(id=1, study_id=1, study="s", index=0, params={}, seed=0, status="pending",
                   attempts=0)
    assert (row.first_start, row.run_seconds, row.best_value) == (False, 0.0, None)
    spec = StudySpec("s", 0, {}, "grid", 0, 3)
    summary = TrialSummary(1, 2, 0.5, 3, 0.4)
    for frozen in (row, spec, summary):
        with pytest.raises(dataclasses.FrozenInstanceError):
            frozen.id = 2  # type: ignore[misc, union-attr]
    trial = NewTrial(2, {"x": 1}, 7)
    assert trial == (2, {"x": 1}, 7) and (trial.idx, trial.seed) == (2, 7)
    assert trial.index(7) == 2  # why the field is ``idx``: a tuple's index() stays a method


def test_plain_tuples_and_new_trials_register_alike(store: Store) -> None:
    specs = [StudySpec("s", 0, {}, "grid", 0, 2)]
    a = store.register("a", "i", {}, specs, {"s": [(0, {"x": 1}, 5), (1, {"x": 2}, 6)]})
    b = store.register("b", "i", {}, specs, {"s": [NewTrial(0, {"x": 1}, 5),
                                                   NewTrial(1, {"x": 2}, 6)]})
    assert [(t.index, t.params, t.seed) for t in store.trials(a)] == [
        (t.index, t.params, t.seed) for t in store.trials(b)]


def test_summaries_set_through_the_typed_input_are_read_back(store: Store) -> None:
    exp_id = register(store, n=2)
    first, second = store.trials(exp_id)
    store.set_summaries([TrialSummary(first.id, 4, 0.25, 8, 0.5),
                         TrialSummary(second.id, None, None, None, None)])
    got = {t.id: (t.best_step, t.best_value, t.final_step, t.final_value)
           for t in store.trials(exp_id)}
    assert got == {first.id: (4, 0.25, 8, 0.5), second.id: (None, None, None, None)}


def test_the_sql_store_speaks_the_api_types() -> None:
    # One definition of each row and input: a copy in sql.py would break isinstance checks
    # and annotations of the callers written against the api.
    shared = [name for name in api.__all__ if hasattr(sql, name)]
    assert {"StoreAPI", "StudySpec", "NewTrial", "RunOutcome", "TrialRow"} <= set(shared)
    for name in shared:
        assert getattr(sql, name) is getattr(api, name), name


class _Partial:
    url = display_url = "memory://"
    outage_seconds = 0.0
    on_outage: Callable[[float, str], None] | None = None

    def close(self) -> None:
        """Nothing to release."""


def test_the_protocol_check_asks_for_every_member(store: Store) -> None:
    assert isinstance(store, StoreAPI)
    assert not isinstance(_Partial(), StoreAPI)  # missing claim, finish, ...
    complete: Any = type("Complete", (_Partial,), {
        name: getattr(Store, name) for name, v in vars(StoreAPI).items()
        if callable(v) and not name.startswith("_")})
    assert isinstance(complete(), StoreAPI)

"""A worker: one claimed trial run to its end and recorded, whatever the workload does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunebook.analysis.results import trial_records
from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.execution.runner import materialize, run
from tunebook.execution.worker import (
    COULD_NOT_START,
    NO_OBJECTIVE,
    Heartbeat,
    WorkerOptions,
    broken_workload,
    run_trial,
)
from tunebook.execution.workload import load_workload
from tunebook.experiment import Experiment
from tunebook.store.sql import Store, TrialRow

from conftest import write_experiment


def _one_claimed_trial(tmp_path: Path, workload: str) -> tuple[Store, Experiment, int, TrialRow]:
    """A store holding one trial of ``toy:<workload>``, claimed by worker ``me``."""
    exp = Experiment.from_yaml(write_experiment(tmp_path, workload=workload, scientific={},
                                                search={"trials": 1}))
    store = Store.at_root(tmp_path / "r")
    studies, trials = materialize(exp)
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
    row = store.claim(exp_id, "me")
    assert row is not None
    return store, exp, exp_id, row


def _run(tmp_path: Path, workload: str) -> tuple[str, TrialRow, Store, int]:
    store, exp, exp_id, row = _one_claimed_trial(tmp_path, workload)
    status = run_trial(store, exp, load_workload(exp), row, tmp_path / "r", "me",
                       WorkerOptions(heartbeat_seconds=0.05))
    return status, store.trial(row.id), store, exp_id


# ----------------------------------------------------------------------------- outcomes
def test_a_completed_trial_is_summarised_and_logged(tmp_path: Path) -> None:
    status, row, _, _ = _run(tmp_path, "toy:curve")
    assert status == row.status == "completed"
    assert row.best_value is not None and row.final_step == 40 and row.error is None


def test_a_diverged_trial_is_infeasible_with_its_reason(tmp_path: Path) -> None:
    status, row, _, _ = _run(tmp_path, "toy:diverge")
    assert status == row.status == "infeasible"
    assert row.infeasible_reason == "gradient norm exploded"
    log = trial_dir(tmp_path / "r", "toy", "main", 0) / TRIAL_LOG
    assert "infeasible: gradient norm exploded" in log.read_text()


def test_a_trial_that_never_reports_the_objective_fails(tmp_path: Path) -> None:
    status, row, _, _ = _run(tmp_path, "toy:no_objective")
    assert status == row.status == "failed"
    assert (row.error or "").startswith(f"{NO_OBJECTIVE}'loss'") and "'lost'" in (row.error or "")


def test_a_workload_that_cannot_start_marks_the_experiment_broken(tmp_path: Path) -> None:
    status, row, store, exp_id = _run(tmp_path, "toy:missing_package")
    assert status == row.status == "failed"
    assert (row.error or "").startswith(COULD_NOT_START + "ModuleNotFoundError")
    broken = broken_workload(store, exp_id)
    assert broken is not None and broken.id == row.id


def test_a_trial_that_reported_is_no_sign_of_a_broken_workload(tmp_path: Path) -> None:
    status, _, store, exp_id = _run(tmp_path, "toy:no_objective")
    assert status == "failed"
    assert broken_workload(store, exp_id) is None


def test_sys_exit_in_a_workload_fails_only_its_trial(tmp_path: Path) -> None:
    exp = Experiment.from_yaml(write_experiment(tmp_path, workload="toy:exits", scientific={},
                                                search={"trials": 6, "seed": 1}))
    for workers in (0, 1):
        root = tmp_path / f"r{workers}"
        run(exp, root=root, workers=workers)
        for r in trial_records(Store.at_root(root), "toy"):
            if r.params["x"] > 0.5:
                assert r.status == "failed" and "SystemExit: 3" in (r.error or "")
                assert r.attempts == 1
            else:
                assert r.status == "completed"


def test_checkpoints_the_store_never_recorded_are_not_resumed(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 1}, scientific={})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    for f in (tmp_path / "r").glob("tunebook.db*"):
        f.unlink()
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    [rec] = trial_records(Store.at_root(tmp_path / "r"), "toy")
    assert rec.status == "completed" and rec.best_step is not None
    folder = tmp_path / "r/runs/toy/main/trial-00000"
    assert list(folder.glob("checkpoints.unrecorded-*"))


# 3600: the worker's heartbeat never notices (it was stopped, say); the store refuses its
# writes all the same, its last flush after the workload returned included.
@pytest.mark.parametrize("beat_every", [0.05, 3600])
def test_a_worker_that_lost_its_trial_stops_and_writes_nothing(tmp_path: Path,
                                                               beat_every: float) -> None:
    exp = Experiment.from_yaml(write_experiment(tmp_path, workload="toy:taken_over",
                                                scientific={}, search={"trials": 1}))
    store = Store.at_root(tmp_path / "r")
    studies, trials = materialize(exp)
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
    row = store.claim(exp_id, "me")
    assert row is not None
    row = type(row)(**{**row.__dict__, "params": {**row.params, "_worker": "me",
                                                  "_exp": exp_id}})
    with Heartbeat(store, "me", beat_every) as beat:
        status = run_trial(store, exp, load_workload(exp), row, tmp_path / "r", "me",
                           WorkerOptions(heartbeat_seconds=beat_every), beat)
    assert status == "lost"
    now = store.trial(row.id)
    assert now.status == "running" and now.worker == "other"
    # Nothing from the lost attempt reaches the store (its buffered step 1 included): the new
    # owner starts from the checkpoint it finds and reports everything again.
    assert store.measurements([row.id]) == []

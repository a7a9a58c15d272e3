"""What the runner does to the store around a run: summaries, abandoned runs, re-queues, typos."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.errors import WorkloadError
from tunebook.execution.bookkeeping import (
    check_objective,
    close_abandoned_runs,
    refresh_summaries,
    requeue_failed,
)
from tunebook.execution.suggestions import materialize
from tunebook.execution.worker import NO_OBJECTIVE
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import write_experiment


def _store(tmp_path: Path, trials: int = 2) -> tuple[Store, Experiment, int]:
    exp = Experiment.from_yaml(write_experiment(tmp_path, scientific={},
                                                search={"trials": trials}))
    store = Store.at_root(tmp_path / "r")
    return store, exp, store.register(exp.name, exp.identity(), exp.to_dict(),
                                      *materialize(exp))


def test_refresh_summaries_recomputes_values_and_completes_trials_failed_by_a_typo(
        tmp_path: Path) -> None:
    store, _, exp_id = _store(tmp_path)
    first, second = store.claim(exp_id, "w"), store.claim(exp_id, "w")
    assert first is not None and second is not None
    store.add_measurements(first.id, [(10, "acc", 0.5), (20, "acc", 0.9), (30, "acc", 0.7)])
    store.finish(first.id, "w", "completed", best_step=10, best_value=0.5)
    store.add_measurements(second.id, [(10, "acc", 0.6)])
    store.finish(second.id, "w", "failed", error=f"{NO_OBJECTIVE}'accuracy' (typo)")
    refresh_summaries(store, exp_id, "acc", "maximize")
    rows = {t.id: t for t in store.trials(exp_id)}
    assert (rows[first.id].best_step, rows[first.id].best_value) == (20, 0.9)
    assert (rows[first.id].final_step, rows[first.id].final_value) == (30, 0.7)
    assert rows[second.id].status == "completed" and rows[second.id].best_value == 0.6
    store.close()


def test_only_runs_of_dead_processes_on_this_host_are_closed(tmp_path: Path) -> None:
    store, _, exp_id = _store(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = socket.gethostname()
    dead = store.start_run(exp_id, host, 1, {"pid": child.pid})
    alive = store.start_run(exp_id, host, 1, {"pid": os.getppid()})
    elsewhere = store.start_run(exp_id, "another-host.invalid", 1, {"pid": child.pid})
    close_abandoned_runs(store, exp_id)
    runs = {r.id: r for r in store.runs(exp_id)}
    assert runs[dead].finished_at is not None
    assert runs[dead].outcome is not None and runs[dead].outcome["abandoned"] is True
    assert "died" in runs[dead].outcome["reason"]
    assert runs[alive].finished_at is None and runs[elsewhere].finished_at is None
    store.close()


def test_requeue_failed_keeps_the_old_error_in_the_trial_log(tmp_path: Path) -> None:
    store, exp, exp_id = _store(tmp_path)
    row = store.claim(exp_id, "w")
    assert row is not None
    store.finish(row.id, "w", "failed", error="Traceback ...\nValueError: boom")
    assert requeue_failed(store, exp, exp_id, tmp_path / "r") == 1
    assert store.trial(row.id).status == "pending"
    log = (trial_dir(tmp_path / "r", exp.name, row.study, row.index) / TRIAL_LOG).read_text()
    assert "re-queued by --retry-failed" in log and "ValueError: boom" in log
    assert requeue_failed(store, exp, exp_id, tmp_path / "r") == 0  # nothing failed now
    store.close()


def test_a_metric_the_workload_never_reports_is_named_with_the_nearest_one(
        tmp_path: Path) -> None:
    store, exp, exp_id = _store(tmp_path)
    check_objective(store, exp_id, exp)  # nothing reported yet: nothing to say
    row = store.claim(exp_id, "w")
    assert row is not None
    store.add_measurements(row.id, [(10, "los", 1.0)])
    with pytest.raises(WorkloadError, match=r"never reports 'loss' \(did you mean 'los'\?\)"):
        check_objective(store, exp_id, exp)
    store.close()

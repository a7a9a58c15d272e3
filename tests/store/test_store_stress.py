"""Many worker processes on one experiment (issue 14): 8 on PostgreSQL, 4 on SQLite, each a
real process with its own Store, claiming, measuring, heartbeating and finishing trials until
none is left. No worker meets a lock error (not even one ridden out by a retry), no trial is
claimed twice, every trial is completed exactly once, and the measurements are exactly those
written."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from tunebook.store.sql import Store, sqlite_url

from store_backends import register

EVALS = 5


def _value(trial_id: int, step: int) -> float:
    return trial_id + step / 1000


def _work(url: str, worker: str, out: str) -> None:
    """A worker's loop, as the runner's workers do it: claim, report each evaluation, finish."""
    outages: list[str] = []
    store = Store(url, wait_for_store=True, on_outage=lambda _s, cause: outages.append(cause))
    exp_id = store.require_experiment("exp").id
    done = []
    while (t := store.claim(exp_id, worker)) is not None:
        for step in range(1, EVALS + 1):
            store.add_measurements(t.id, [(step, "loss", _value(t.id, step)),
                                          (step, "acc", -_value(t.id, step))])
            if not store.heartbeat(t.id, worker):
                raise AssertionError(f"{worker} lost trial {t.id}")
        if not store.finish(t.id, worker, "completed", best_step=EVALS,
                            best_value=_value(t.id, EVALS)):
            raise AssertionError(f"{worker} could not finish trial {t.id}")
        done.append(t.id)
    store.close()
    Path(out).write_text(json.dumps({"done": done, "outages": outages}))


@pytest.mark.parametrize("backend,workers,trials", [("sqlite", 4, 60), ("postgresql", 8, 120)])
def test_workers_in_processes_complete_every_trial_exactly_once(
        backend: str, workers: int, trials: int, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = sqlite_url(tmp_path / "tunebook.db")
    else:
        url = request.getfixturevalue("postgres").new_database()
    store = Store(url)
    exp_id = register(store, n=trials // 2, studies=2)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_work, args=(url, f"w{k}", str(tmp_path / f"w{k}.json")))
             for k in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * workers
    results: list[dict[str, Any]] = [json.loads((tmp_path / f"w{k}.json").read_text())
                                     for k in range(workers)]
    assert [r["outages"] for r in results] == [[]] * workers  # not even a retried lock
    claimed = [tid for r in results for tid in r["done"]]
    rows = store.trials(exp_id)
    assert sorted(claimed) == sorted(t.id for t in rows)  # each trial claimed exactly once
    assert {(t.status, t.attempts) for t in rows} == {("completed", 1)}
    owner = {tid: f"w{k}" for k, r in enumerate(results) for tid in r["done"]}
    assert all(t.worker == owner[t.id] for t in rows)
    assert sum(1 for r in results if r["done"]) > 1  # the work was shared
    want = sorted([(t.id, s, m, v) for t in rows for s in range(1, EVALS + 1)
                   for m, v in (("acc", -_value(t.id, s)), ("loss", _value(t.id, s)))])
    assert sorted(store.measurements(experiment_id=exp_id)) == want
    assert store.metric_names(exp_id) == ["acc", "loss"]

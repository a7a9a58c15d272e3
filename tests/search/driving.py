"""Driving a designer serially, the way a one-worker run does (shared by the designer tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tunebook.errors import StoreError
from tunebook.search.designers import Designer, Observation, make_designer
from tunebook.search.space import Value
from tunebook.store.sql import Store

from conftest import cli_env


def drive(d: Designer, budget: int, loss: Callable[[Mapping[str, Value]], float],
          outcome: Callable[[int], str] = lambda i: "completed",
          restart_after: int | None = None) -> list[dict[str, Value]]:
    """Suggest and observe one trial at a time until ``budget`` trials are done; trial ``i``
    ends as ``outcome(i)`` (only a completed one has a value, ``loss`` of its point).

    ``restart_after``: after that many suggestions, carry on with a fresh designer restored
    from a JSON round trip of the state (what a resumed run does). The state must also be JSON
    after every observation: the runner saves it in the store after every change.
    """
    done: list[dict[str, Value]] = []
    while len(done) < budget:
        if restart_after is not None and len(done) == restart_after:
            fresh = make_designer(d.name + d.variant, d.space, d.seed, d.trials, d.goal,
                                  d.options)
            fresh.restore(json.loads(json.dumps(d.state())))
            d = fresh
        i = len(done)
        new = d.suggest([i])
        assert len(new) == 1, f"{d.name}: nothing suggested for trial {i} of a serial run"
        status = outcome(i)
        d.observe([Observation(i, new[0], loss(new[0]) if status == "completed" else None,
                               status)])
        json.dumps(d.state())
        done.append(new[0])
    return done


def experiment_doc(algorithm: str, **options: Any) -> dict[str, Any]:
    """A minimal experiment document searching ``x`` in [0, 1] with ``algorithm`` and
    ``search.options`` (for validation tests: the workload is never imported)."""
    search: dict[str, Any] = {"algorithm": algorithm, "trials": 4, "seed": 1}
    if options:
        search["options"] = options
    return {"name": "e", "workload": "m:f", "objective": {"metric": "loss"},
            "max_train_steps": 10, "eval_every": 5, "search": search,
            "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


def run_outcome(root: Path, name: str) -> tuple[list[tuple[int, float, str]], dict[str, Any]]:
    """Every trial's (index, x, status) of the one-study experiment ``name`` under ``root``,
    and the designer state the store holds (what a resume test compares)."""
    store = Store.at_root(root, create=False)
    try:
        exp = store.require_experiment(name)
        (study,) = store.studies(exp.id)
        trials = [(t.index, float(t.params["x"]), t.status) for t in store.trials(exp.id)]
        return trials, store.designer_state(study.id)
    finally:
        store.close()


RUN_SCRIPT = """
import sys

import tunebook

if __name__ == "__main__":
    tunebook.run(tunebook.Experiment.from_yaml(sys.argv[1]), root=sys.argv[2],
                 workers=int(sys.argv[3]))
"""


def kill_run_midway(path: Path, root: Path, name: str, *, after: int, workers: int,
                    sig: int = signal.SIGKILL, timeout: float = 120.0
                    ) -> list[tuple[int, float, str]]:
    """Run experiment file ``path`` into ``root`` in a process of its own, send it ``sig``
    once more than ``after`` trials of ``name`` are in the store, and return the trials the
    store holds then (:func:`run_outcome`'s first part)."""
    script = path.parent / "go.py"
    script.write_text(RUN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(root), str(workers)],
                            env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the run never had more than {after} trials"
        try:
            seen, _ = run_outcome(root, name)
        except StoreError:  # not written yet
            seen = []
        if len(seen) > after:
            break
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    proc.communicate(timeout=60)
    return run_outcome(root, name)[0]

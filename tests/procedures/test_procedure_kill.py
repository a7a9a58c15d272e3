"""A procedure killed mid-way resumes like any run: ``tunebook stability FILE`` is SIGKILLed
(its whole process group, workers included) once some but not all of its experiments are done,
then run again. The result must be the uninterrupted run's, with no trial run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test_stability import base_file

from tunebook.errors import StoreError
from tunebook.store.sql import Store

from conftest import cli_env, run_cli

#: The experiments the procedure runs on this base (the sweep finds 1.0 unstable, so the
#: early run and the warmup study follow; warmup 100 is stable, so no clipping).
PLANNED = ("base.stability.sweep", "base.stability.early", "base.stability.warmup-1",
           "base.stability.warmup-10", "base.stability.warmup-100")


def _command(path: Path, root: Path) -> list[str]:
    return ["stability", str(path), "--root", str(root), "--steps", "20", "--workers", "1",
            "--format", "json"]


def _done(root: Path) -> list[str]:
    """The procedure's experiments whose every trial has ended (completed, or infeasible: a
    diverged sweep rate), read from the store."""
    try:
        store = Store.at_root(root, create=False)
    except StoreError:  # not made yet, or being made
        return []
    try:
        done = []
        for exp in store.experiments():
            trials = store.trials(exp.id)
            if trials and all(t.status in ("completed", "infeasible") for t in trials):
                done.append(exp.name)
        return done
    finally:
        store.close()


def _state(root: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every trial by (experiment, study, index): its id, status and measurements."""
    store = Store.at_root(root, create=False)
    try:
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        for exp in store.experiments():
            for t in store.trials(exp.id):
                key = (exp.name, t.study, t.index)
                assert key not in out, f"two trials for {key}"
                out[key] = {"id": t.id, "status": t.status,
                            "rows": sorted(store.measurements([t.id]))}
        return out
    finally:
        store.close()


def _without_ids(doc: Any) -> Any:
    """``doc`` without the store's trial ids (two stores number their trials by themselves)."""
    if isinstance(doc, dict):
        return {k: (None if k == "id" else _without_ids(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_without_ids(v) for v in doc]
    return doc


def test_a_killed_procedure_resumes_to_the_same_recommendation(tmp_path: Path) -> None:
    path = base_file(tmp_path)
    # The reference: the same command, uninterrupted, in another folder.
    ref = run_cli(*_command(path, tmp_path / "ref"), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    expected = json.loads(ref.stdout)
    assert list(expected["evidence"]["experiments"]) == list(PLANNED)

    root = tmp_path / "root"
    env = {**cli_env(), "WARMUP_WORKLOAD_SLEEP": "0.01",
           "WARMUP_WORKLOAD_LOG": str(tmp_path / "first.log")}
    first = subprocess.Popen([sys.executable, "-m", "tunebook.cli", *_command(path, root)],
                             env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        done: list[str] = []
        # Some but not all: the sweep and the early run done, the warmup study not.
        while time.monotonic() < deadline:
            done = _done(root)
            if len(done) >= 2:
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert 2 <= len(done) < len(PLANNED), done
    before = _state(root)
    finished = {k: v for k, v in before.items() if v["status"] in ("completed", "infeasible")}
    assert {k[0] for k in finished} >= set(PLANNED[:2])

    second_log = tmp_path / "second.log"
    again = subprocess.run([sys.executable, "-m", "tunebook.cli", *_command(path, root)],
                           env={**cli_env(), "WARMUP_WORKLOAD_LOG": str(second_log)},
                           cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout)
    # The same recommendation, word for word; the same evidence but for the store's ids.
    assert got["recommendation"] == expected["recommendation"]
    assert _without_ids(got["evidence"]) == _without_ids(expected["evidence"])

    after = _state(root)
    # One trial per (experiment, study, index), as many as uninterrupted, each ended as there
    # (completed, or infeasible: the sweep's diverging rates), with the same measurements.
    reference = _state(tmp_path / "ref")
    assert set(after) == set(reference)
    assert {k: (v["status"], [r[1:] for r in v["rows"]]) for k, v in after.items()} == {
        k: (v["status"], [r[1:] for r in v["rows"]]) for k, v in reference.items()}
    # What finished before the kill is kept as it was, and never ran again.
    for key, row in finished.items():
        assert after[key] == row, key
    rerun = {int(line.split()[1]) for line in second_log.read_text().splitlines()} \
        if second_log.exists() else set()
    assert not rerun & {row["id"] for row in finished.values()}
    assert rerun, "the second run had experiments left to run"

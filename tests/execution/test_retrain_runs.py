"""``tunebook retrain``: the file it writes is a valid experiment, and its run resumes after
the run is killed (re-running the same command continues the same experiment), like any run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tunebook.core.paths import trial_dir
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import cli_env, run_cli, write_experiment
from toy import expected_value


def _ticking(root: Path, study: str, n: int) -> int:
    return sum(1 for i in range(n)
               if "tick" in _read(trial_dir(root, "kill-search-retrain", study, i) / "executions"))


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_retrain_writes_replicates_and_resumes_after_a_kill(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, name="kill-search", workload="toy:lifecycle",
                            max_train_steps=20, eval_every=5, scientific={"arm": ["a", "b"]},
                            search={"algorithm": "quasi_random", "trials": 2, "seed": 1},
                            fixed={"sleep": 0.03})
    root = tmp_path / "root"
    assert run_cli("run", str(path), "--root", str(root), "--workers", "2", "--quiet",
                   "--no-report").returncode == 0
    argv = ["retrain", "kill-search", "--top", "1", "--seeds", "3", "--root", str(root),
            "--workers", "2", "--quiet", "--no-report"]
    first = subprocess.Popen([sys.executable, "-m", "tunebook.cli", *argv], env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    store = Store.at_root(root)
    best = {s: min((t for t in store.trials(store.require_experiment("kill-search").id, s)),
                   key=lambda t: t.best_value or 0.0) for s in ("arm=a", "arm=b")}
    studies = [f"arm=a #{best['arm=a'].index}", f"arm=b #{best['arm=b'].index}"]
    deadline = time.monotonic() + 120
    while sum(_ticking(root, s, 3) for s in studies) < 2:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the retrain never had two trials going"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # the main process alone, as a scheduler does
    first.communicate(timeout=60)
    killed = store.trials(store.require_experiment("kill-search-retrain").id)
    assert [t.status for t in killed].count("completed") < 6  # the kill left work to do
    # The file was written beside the experiment file, as printed, and is a valid experiment.
    out = tmp_path / "kill-search-retrain.yaml"
    written = out.read_text()
    exp = Experiment.from_yaml(out)
    assert exp.follows == "kill-search" and len(exp.nuisance) == 0
    assert [s.name for s in exp.studies()] == studies
    # The same command again resumes the same experiment.
    second = run_cli(*argv)
    assert second.returncode == 0, (second.stdout, second.stderr)
    assert f"written to {out}" in second.stdout
    assert out.read_text() == written
    rexp = store.require_experiment("kill-search-retrain")
    trials = store.trials(rexp.id)
    assert [t.status for t in trials] == ["completed"] * 6
    rows = store.measurements(experiment_id=rexp.id)
    for t in trials:
        original = best[t.study.split(" #")[0]]
        # The same configuration as the retrained trial, with a new seed.
        assert t.params == original.params and t.seed != original.seed
        steps = [(s, v) for tid, s, m, v in rows if tid == t.id and m == "loss"]
        assert steps == [(s, expected_value(t.params, s)) for s in (5, 10, 15, 20)]
        ends = _read(trial_dir(root, rexp.name, t.study, t.index) / "executions").split()
        assert ends.count("end") == 1  # resumed, never run twice to the end
    assert len({t.seed for t in trials}) == 6
    # Its config keeps the original's setup.
    doc = yaml.safe_load(written)
    assert doc["workload"] == "toy:lifecycle" and doc["fixed"] == {"sleep": 0.03}
    assert doc["search"]["trials"] == 3 and doc["max_train_steps"] == 20

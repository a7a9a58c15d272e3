"""Command workloads: any program, hyperparameters as flags, JSON lines as measurements."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tunebook.errors import WorkloadError
from tunebook.experiment import Experiment
from tunebook.results import trial_records
from tunebook.runner import run
from tunebook.store import Store
from tunebook.workload import CommandWorkload, PythonWorkload

from conftest import write_experiment

PROGRAM = textwrap.dedent('''
    import json, math, os, sys
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    x = float(args["x"])
    steps = int(os.environ["TUNEBOOK_MAX_TRAIN_STEPS"])
    every = int(os.environ["TUNEBOOK_EVAL_EVERY"])
    print("starting with", sys.argv[1:])              # a plain log line
    print("{not json")                                # garbage
    print(json.dumps({"no_step": 1}))                 # JSON without a step: log
    print("seed", os.environ["TUNEBOOK_SEED"], "dir", os.environ["TUNEBOOK_TRIAL_DIR"])
    sys.stderr.write("a warning on stderr\\n")
    if args.get("mode") == "crash":
        sys.stderr.write("fatal: out of cheese\\n")
        sys.exit(3)
    for step in range(every, steps + 1, every):
        value = float("nan") if args.get("mode") == "nan" and step == 20 else x + 1 / step
        print(json.dumps({"step": step, "loss": value, "tag": "text-ignored"}))
    if args.get("mode") == "diverge":
        print(json.dumps({"infeasible": "loss exploded", "step": steps}))
''')


@pytest.fixture
def program(tmp_path: Path) -> Path:
    p = tmp_path / "train.py"
    p.write_text(PROGRAM)
    return p


def test_command_workload_end_to_end(tmp_path: Path, program: Path) -> None:
    path = write_experiment(tmp_path, workload=None, command=f"{sys.executable} train.py",
                            scientific={"mode": ["ok", "crash", "nan", "diverge"]},
                            search={"trials": 2, "seed": 0})
    doc = path.read_text().replace("workload: null\n", "")
    path.write_text(doc)
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=2)
    records = trial_records(Store.at_root(tmp_path / "r"), "toy")
    by_mode = {r.params["mode"]: r for r in records if r.index == 0}
    ok = by_mode["ok"]
    assert ok.status == "completed"
    assert ok.best_value == pytest.approx(ok.params["x"] + 1 / 40) and ok.best_step == 40
    log = (tmp_path / "r/runs/toy/mode=ok/trial-00000/log.txt").read_text()
    assert "starting with" in log and "{not json" in log and "a warning on stderr" in log
    assert "ignored non-numeric keys ['tag']" in log
    assert f"seed {ok.seed} dir" in log
    crash = by_mode["crash"]
    assert crash.status == "failed" and "status 3" in (crash.error or "")
    assert "out of cheese" in (crash.error or "")
    nan = by_mode["nan"]
    assert nan.status == "infeasible" and nan.infeasible_step == 20
    assert nan.best_value == pytest.approx(nan.params["x"] + 0.1)  # step 10 is kept
    div = by_mode["diverge"]
    assert (div.status, div.infeasible_reason, div.infeasible_step) == (
        "infeasible", "loss exploded", 40)


def test_missing_program_is_refused() -> None:
    with pytest.raises(WorkloadError, match="command: program 'nope-xyz' not found"):
        CommandWorkload(("nope-xyz",), "exp.yaml")


def test_python_workload_errors_name_the_file_and_key() -> None:
    with pytest.raises(WorkloadError, match=r"exp.yaml: workload: cannot import 'no_such_mod'"):
        PythonWorkload("no_such_mod:train", "exp.yaml")
    with pytest.raises(WorkloadError, match="has no attribute 'nope'"):
        PythonWorkload("tunebook.workloads.synthetic:nope", "exp.yaml")
    with pytest.raises(WorkloadError, match="not callable"):
        PythonWorkload("tunebook.workloads.synthetic:__doc__", "exp.yaml")

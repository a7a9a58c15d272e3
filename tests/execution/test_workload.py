"""Command workloads: any program, hyperparameters as flags, JSON lines as measurements."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tunebook.analysis.results import trial_records
from tunebook.errors import WorkloadError
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial
from tunebook.execution.workload import (
    LOG_LINE_BYTES,
    TAIL_LINE_CHARS,
    TAIL_LINES,
    CommandWorkload,
    PythonWorkload,
    WorkloadFailed,
)
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import MemorySink as Rows
from conftest import run_cli, write_experiment

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


# --------------------------------------------------------------------------- bounded output
def _command(tmp_path: Path, code: str) -> CommandWorkload:
    (tmp_path / "prog.py").write_text(textwrap.dedent(code))
    return CommandWorkload(("python", "prog.py"), base_dir=str(tmp_path))


def _trial(tmp_path: Path, sink: Rows, **kw: Any) -> Trial:
    args: dict[str, Any] = dict(hparams={}, max_train_steps=40, eval_every=10, seed=1,
                                dir=tmp_path / "trial", sink=sink, objective="loss")
    args.update(kw)
    return Trial(**args)


BIG = 30 * 1024 * 1024


def test_a_30_mb_line_is_cut_in_the_log_and_the_error(tmp_path: Path) -> None:
    workload = _command(tmp_path, f'''
        import json, sys
        print("first line")
        print(json.dumps({{"step": 1, "loss": 0.5}}))
        sys.stdout.write("A" * {BIG} + "\\n")
        sys.stderr.write("E" * {BIG} + "\\n")
        sys.stdout.flush()
        print(json.dumps({{"step": 2, "loss": 0.25}}))   # read after the long line
        print("x" * 5000)
        print("last line")
        sys.exit(4)
    ''')
    sink = Rows()
    trial = _trial(tmp_path, sink)
    with pytest.raises(WorkloadFailed) as info:
        workload.run(trial)
    trial.flush()
    assert sink.rows == [(1, "loss", 0.5), (2, "loss", 0.25)]
    message = str(info.value)
    assert message.startswith("command exited with status 4; last lines:\n")
    assert len(message) < TAIL_LINES * (TAIL_LINE_CHARS + 40)
    assert f"{'A' * TAIL_LINE_CHARS} … [{BIG - TAIL_LINE_CHARS} bytes cut]" in message
    assert f"{'x' * TAIL_LINE_CHARS} … [4000 bytes cut]" in message
    assert message.endswith("last line")
    log = (trial.dir / "log.txt").read_text()
    assert len(log) < 3 * LOG_LINE_BYTES
    assert f"{'A' * LOG_LINE_BYTES} … [{BIG - LOG_LINE_BYTES} bytes cut]\n" in log
    assert f"{'E' * LOG_LINE_BYTES} … [{BIG - LOG_LINE_BYTES} bytes cut]\n" in log
    for line in ("first line", "last line", "x" * 5000):
        assert log.count(line + "\n") == 1  # every line once
    assert "A" * (LOG_LINE_BYTES + 1) not in log


def test_a_30_mb_line_stays_out_of_the_store(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(f"import sys\nprint('A' * {BIG})\nsys.exit(1)\n")
    path = write_experiment(tmp_path, workload=None, command="python prog.py",
                            scientific={}, search={"trials": 1, "seed": 0})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    (record,) = trial_records(Store.at_root(tmp_path / "r"), "toy")
    assert record.status == "failed" and "bytes cut]" in (record.error or "")
    assert len(record.error or "") < 5000
    log = next((tmp_path / "r" / "runs").rglob("log.txt"))
    assert log.stat().st_size < 2 * LOG_LINE_BYTES


# --------------------------------------------------------------------------- checkpoints
CHECKPOINTING = '''
    import json, os, sys
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    start = int(os.environ["TUNEBOOK_START_STEP"])
    resume = os.environ["TUNEBOOK_RESUME_FROM"]
    with open(os.path.join(os.environ["TUNEBOOK_TRIAL_DIR"], "starts"), "a") as f:
        f.write(f"{start} {resume}\\n")
    if resume:
        assert json.load(open(os.path.join(resume, "s.json"))) == {"step": start}
    staging = os.environ["TUNEBOOK_CHECKPOINT_DIR"]
    assert os.listdir(staging) == [], os.listdir(staging)
    os.makedirs(os.path.join(staging, "left-behind"))  # a half-written one: ignored
    for step in range(start + 10, 41, 10):
        print(json.dumps({"step": step, "loss": 1 / step}))
        folder = os.path.join(staging, f"c{step}")
        os.makedirs(folder)
        json.dump({"step": step}, open(os.path.join(folder, "s.json"), "w"))
        print(json.dumps({"checkpoint": step, "path": folder}), flush=True)
        if args.get("die") == str(step):
            os.kill(os.getpid(), 9)
'''


def test_command_checkpoints_are_published_and_resumed(tmp_path: Path) -> None:
    workload = _command(tmp_path, CHECKPOINTING)
    sink = Rows()
    trial = _trial(tmp_path, sink, hparams={"die": 20})
    workload.run(trial)  # killed once (SIGKILL) after publishing 20: started again from 20
    starts = (trial.dir / "starts").read_text().splitlines()
    assert [line.split()[0] for line in starts] == ["0", "20"]  # the second one publishes 30
    assert starts[0] == "0 " and starts[1].endswith("step-0000000020")
    assert sorted(sink.rows) == [(s, "loss", 1 / s) for s in (10, 20, 30, 40)]
    assert sink.checkpoint_steps == [10, 20, 20, 30, 40]  # rewound to 20 before the restart
    assert [s for s, _ in trial.checkpoints()] == [30, 40]
    manifest = json.loads((trial.checkpoint_root / "step-0000000040" /
                           "tunebook-manifest.json").read_text())
    assert list(manifest["files"]) == ["s.json"] and manifest["step"] == 40
    log = (trial.dir / "log.txt").read_text()
    assert "killed by SIGKILL: starting it again from step 20" in log


def test_a_command_killed_without_progress_fails_after_max_restarts(tmp_path: Path) -> None:
    workload = _command(tmp_path, '''
        import os
        print("started", flush=True)
        os.kill(os.getpid(), 9)
    ''')
    trial = _trial(tmp_path, Rows())
    with pytest.raises(WorkloadFailed, match=r"killed by SIGKILL \(3 restarts without a new "
                                             r"checkpoint\)"):
        workload.run(trial)
    assert (trial.dir / "log.txt").read_text().count("started\n") == 4


def test_a_command_crashing_on_another_signal_is_not_restarted(tmp_path: Path) -> None:
    workload = _command(tmp_path, '''
        import os, signal
        print("started", flush=True)
        os.kill(os.getpid(), signal.SIGABRT)
    ''')
    trial = _trial(tmp_path, Rows())
    with pytest.raises(WorkloadFailed, match=r"^command was killed by SIGABRT; last lines:"):
        workload.run(trial)
    assert (trial.dir / "log.txt").read_text().count("started\n") == 1


@pytest.mark.parametrize(("line", "problem"), [
    ('{"checkpoint": "10", "path": "x"}', "must be the step"),
    ('{"checkpoint": -1, "path": "x"}', "must be the step"),
    ('{"checkpoint": 10}', "'path' must be the folder"),
    ('{"checkpoint": 10, "path": "no-such-folder"}', "is not a folder"),
    ('{"checkpoint": 10, "path": "."}', "is not inside the trial folder"),
    ('{"checkpoint": 10, "path": "TRIAL"}', "is not inside the trial folder"),
    ('{"checkpoint": 10, "path": "TRIAL/checkpoints"}', "holds the trial's checkpoints"),
    ('{"checkpoint": 10, "path": "TRIAL/checkpoints/.staging"}', "holds the trial's"),
    ('{"checkpoint": 10, "path": "TRIAL/checkpoints/step-0000000005"}', "is a published"),
    ('{"checkpoint": 10, "path": "TRIAL/checkpoints/step-0000000005/sub"}', "is a published"),
])
def test_bad_checkpoint_announcements_fail_the_trial(tmp_path: Path, line: str, problem: str
                                                     ) -> None:
    sink = Rows()
    trial = _trial(tmp_path, sink)
    with trial.checkpoint(5) as folder:
        (folder / "sub").mkdir()
    line = line.replace("TRIAL", str(trial.dir))
    workload = _command(tmp_path, f'print({line!r}, flush=True)\nimport time\ntime.sleep(30)\n')
    with pytest.raises(WorkloadError, match=re.escape(problem)):
        workload.run(trial)
    assert [s for s, _ in trial.checkpoints()] == [5]


def test_a_folder_anywhere_in_the_trial_folder_can_be_announced(tmp_path: Path) -> None:
    workload = _command(tmp_path, '''
        import json, os
        folder = os.path.join(os.environ["TUNEBOOK_TRIAL_DIR"], "mine", "ckpt")
        os.makedirs(folder)
        open(os.path.join(folder, "w"), "w").write("w")
        print(json.dumps({"step": 10, "loss": 1.0}))
        print(json.dumps({"checkpoint": 10, "path": os.path.relpath(folder)}))
    ''')
    sink = Rows()
    trial = _trial(tmp_path, sink)
    workload.run(trial)
    assert [s for s, _ in trial.checkpoints()] == [10] and sink.checkpoint_steps == [10]
    assert not (trial.dir / "mine" / "ckpt").exists()


# --------------------------------------------------------------------------- packages
def test_a_missing_package_of_a_built_in_workload_is_named_before_any_trial(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kw: Any) -> Any:
        return None if name == "mnist1d" else real(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(WorkloadError) as info:
        PythonWorkload("tunebook.workloads.mnist1d:train_cnn", "exp.yaml")
    assert str(info.value) == ("exp.yaml: workload: tunebook.workloads.mnist1d:train_cnn needs "
                               "the package 'mnist1d': pip install 'tunebook[workloads]'")
    PythonWorkload("tunebook.workloads.synthetic:quadratic", "exp.yaml")  # needs nothing


def test_requirements_are_read_without_importing_the_module(tmp_path: Path) -> None:
    (tmp_path / "needy.py").write_text(textwrap.dedent('''
        import no_such_package_xyz
        REQUIRES = {"no_such_package_xyz": "demo", "os": "demo", "also_missing_xyz": "torch"}

        def train(hparams, trial):
            pass
    '''))
    path = write_experiment(tmp_path, workload="needy:train")
    proc = run_cli("run", str(path), "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"tunebook: error: {path}: workload: needy:train needs the packages "
        "'no_such_package_xyz' and 'also_missing_xyz': pip install 'tunebook[demo,torch]'")
    assert not (tmp_path / "r" / "runs").exists()


def test_every_built_in_workload_declares_its_packages() -> None:
    from tunebook.execution.workload import _declared_requirements

    assert _declared_requirements("tunebook.workloads.mnist1d") == {
        "torch": "workloads", "mnist1d": "workloads"}
    assert _declared_requirements("tunebook.workloads.digits") == {
        "torch": "demo", "sklearn": "demo"}
    assert _declared_requirements("tunebook.workloads.text") == {"torch": "torch"}
    assert _declared_requirements("tunebook.workloads.synthetic") == {}


def test_command_gets_an_absolute_trial_folder_with_a_relative_root(tmp_path: Path) -> None:
    exps = tmp_path / "exps"
    exps.mkdir()
    (exps / "train.py").write_text(
        "import json, os, pathlib\n"
        "pathlib.Path(os.environ['TUNEBOOK_TRIAL_DIR'], 'mine.txt').write_text('x')\n"
        "print(json.dumps({'step': 10, 'loss': 1.0}))\n")
    path = write_experiment(exps, workload=None, command="python train.py", scientific={},
                            search={"trials": 1}, max_train_steps=10, eval_every=10)
    run_cli("run", str(path), "--root", "r", "--workers", "1", "--quiet", check=True,
            cwd=tmp_path)
    assert (tmp_path / "r/runs/toy/main/trial-00000/mine.txt").exists()
    assert not (exps / "r").exists()

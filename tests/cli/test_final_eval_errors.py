"""``tunebook final-eval``'s bad inputs, in the style of test_bad_input.py: exit 2, one line
naming what is wrong, the store (SQLite and PostgreSQL) and the folders left as they were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_bad_input import (  # noqa: F401 (fixtures)
    NAME,
    Backend,
    cli,
    error_line,
    pg_backend,
    snapshot,
    sqlite_backend,
)

from tunebook.experiment import Experiment
from tunebook.store.sql import Store, StudySpec, sqlite_url

# The bad-input store: NAME on tunebook.workloads.synthetic:quadratic (no final-evaluation
# entry), studies arm=a and arm=b of 2 completed trials each; "other" with one study.
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("unknown-experiment", "final-eval nosuch", ("'nosuch'", NAME)),
    ("unknown-study", f"final-eval {NAME} --trial arm=c#0", ("--trial", "'arm=c'",
                                                            "did you mean 'arm=")),
    ("unknown-index", f"final-eval {NAME} --trial arm=a#7", ("--trial", "no trial 7",
                                                            "0 to 1")),
    ("index-not-a-number", f"final-eval {NAME} --trial arm=a#x", ("--trial", "'arm=a#x'",
                                                                 "integer")),
    ("bare-index-two-studies", f"final-eval {NAME} --trial 1", ("--trial", "'1'",
                                                               "names no study", "2 studies")),
    ("no-entry", f"final-eval {NAME}", ("synthetic:quadratic", "no final-evaluation entry",
                                        "quadratic_final_eval")),
    ("no-entry-trial", "final-eval other --trial 0", ("no final-evaluation entry",)),
    ("trial-and-best", f"final-eval {NAME} --trial arm=a#0 --best", ("--best",
                                                                     "not allowed with")),
    ("timeout-zero", f"final-eval {NAME} --timeout 0", ("--timeout", "'0'")),
    ("missing-name", "final-eval", ("required: name",)),
]


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
@pytest.mark.parametrize(("case", "argv", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_final_eval(case: str, argv: str, fragments: tuple[str, ...], kind: str,
                        tmp_path: Path, request: pytest.FixtureRequest,
                        capsys: pytest.CaptureFixture[str]) -> None:
    backend: Backend = request.getfixturevalue(f"{kind}_backend")
    before = backend.state()
    code, out, err = cli(capsys, *argv.split(), *backend.store_args())
    error_line(code, err, *fragments)
    assert out == ""
    assert backend.state() == before


WORKLOAD = '''\
def train(hparams, trial):
    if hparams["arm"] == "b":
        raise RuntimeError("arm b always fails")
    for step in range(trial.eval_every, trial.max_train_steps + 1, trial.eval_every):
        trial.report(step, val_error=hparams["x"] / step)


def train_final_eval(hparams, trial):
    return {"test_error": 0.5}
'''


@pytest.fixture
def no_checkpoints(tmp_path: Path) -> Path:
    """A root whose arm=a trials completed without a checkpoint and arm=b trials failed."""
    (tmp_path / "wl_nockpt.py").write_text(WORKLOAD)
    doc: dict[str, Any] = {
        "name": "nockpt", "workload": "wl_nockpt:train",
        "objective": {"metric": "val_error", "goal": "minimize"}, "max_train_steps": 4,
        "eval_every": 2, "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
        "scientific": {"arm": ["a", "b"]},
        "nuisance": {"x": {"type": "float", "low": 0.1, "high": 1.0}}}
    path = tmp_path / "nockpt.yaml"
    path.write_text(yaml.safe_dump(doc))
    from tunebook.cli import main

    assert main(["run", str(path), "--root", str(tmp_path / "root"), "--workers", "0",
                 "--quiet", "--no-report"]) == 1  # arm=b failed
    return tmp_path / "root"


@pytest.mark.parametrize(("argv", "fragments"), [
    ("--trial arm=b#0", ("arm=b #0", "is failed, not completed")),
    ("--trial arm=a#0", ("arm=a #0", "has no checkpoint", "trial-00000")),
    ("--best", ("arm=a #0", "has no checkpoint")),
])
def test_a_trial_without_a_result_to_evaluate(no_checkpoints: Path, argv: str,
                                              fragments: tuple[str, ...],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(no_checkpoints)
    code, out, err = cli(capsys, "final-eval", "nockpt", *argv.split(), "--root",
                         str(no_checkpoints))
    error_line(code, err, *fragments)
    assert out == ""
    assert snapshot(no_checkpoints) == before


def test_nothing_completed_python_or_command(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(sqlite_url(tmp_path / "tunebook.db"))
    exp = Experiment.from_dict({
        "name": "pending", "workload": "wl:train", "objective": {"metric": "loss",
                                                                 "goal": "minimize"},
        "max_train_steps": 2, "eval_every": 1,
        "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0}}})
    spec = [StudySpec("main", 0, {}, "quasi_random", 0, 1)]
    store.register("pending", exp.identity(), exp.to_dict(), spec, {"main": [(0, {"x": 1}, 7)]})
    # Only the workload key matters before anything else is read.
    store.register("cmd", "id2", {**exp.to_dict(), "workload": None,
                                  "command": ["python", "train.py"]}, spec,
                   {"main": [(0, {"x": 1}, 7)]})
    store.close()
    root = ["--root", str(tmp_path)]
    code, _, err = cli(capsys, "final-eval", "pending", *root)
    error_line(code, err, "'pending'", "no completed trial")
    code, _, err = cli(capsys, "final-eval", "pending", "--trial", "0", *root)
    error_line(code, err, "main #0", "is pending, not completed")
    code, _, err = cli(capsys, "final-eval", "cmd", "--trial", "0", *root)
    error_line(code, err, "main #0", "is pending, not completed")


def test_trials_json_gives_null_for_a_trial_without_a_checkpoint(
        no_checkpoints: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "trials", "nockpt", "--root", str(no_checkpoints), "--format",
                       "json")
    assert code == 0
    assert [(t["study"], t["checkpoint"]) for t in json.loads(out)] == [("arm=a", None),
                                                                       ("arm=b", None)]

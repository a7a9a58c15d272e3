"""Bad input through the real ``tunebook`` command: one clear line, exit code 2, store untouched."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli, write_experiment

EXIT_BAD_INPUT = 2

BASE: dict[str, Any] = {
    "name": "cli-errors",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_error", "goal": "minimize"},
    "max_train_steps": 20,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 2, "seed": 0},
    "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "scale": "log"}},
}


def doc(**overrides: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(overrides))
    return d


def write(folder: Path, content: dict[str, Any] | str, name: str = "experiment.yaml") -> Path:
    path = folder / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def tunebook(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunebook.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def run_file(tmp_path: Path, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return tunebook("run", str(path), "--root", str(tmp_path / "root"), "--workers", "1", *extra,
                    cwd=tmp_path)


def error_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2 and exactly one line on stderr, containing every fragment."""
    assert proc.returncode == EXIT_BAD_INPUT, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("tunebook: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def assert_no_store(tmp_path: Path) -> None:
    assert not (tmp_path / "root" / "tunebook.db").exists()
    assert not (tmp_path / "root" / "runs").exists()


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def trials_json(root: Path, name: str, *extra: str) -> list[dict[str, Any]]:
    proc = tunebook("trials", name, "--root", str(root), "--format", "json", *extra,
                    cwd=root.parent)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert isinstance(records, list)
    return records


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding one completed run of BASE (do not modify it)."""
    folder = tmp_path_factory.mktemp("populated")
    proc = run_file(folder, write(folder, doc()), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return folder / "root"


# ----------------------------------------------------------------------------- config errors
CONFIG_CASES: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "unknown-key": (
        {"nuisanse": BASE["nuisance"]}, "nuisanse", ("'nuisanse'", "did you mean 'nuisance'")),
    "unknown-hp-key": (
        {"nuisance": {"learning_rate": {"typ": "float", "low": 0.01, "high": 0.1}}},
        "nuisance.learning_rate.typ", ("'typ'", "did you mean 'type'")),
    "wrong-type": ({"max_train_steps": "twenty"}, "max_train_steps", ("'twenty'",)),
    "low-not-below-high": (
        {"nuisance": {"learning_rate": {"type": "float", "low": 0.5, "high": 0.1}}},
        "nuisance.learning_rate.low", ("low=0.5", "high=0.1")),
    "log-low-not-positive": (
        {"nuisance": {"learning_rate": {"type": "float", "low": 0.0, "high": 0.1,
                                        "scale": "log"}}},
        "nuisance.learning_rate.low", ("log", "0.0")),
    "scientific-and-nuisance": (
        {"scientific": {"learning_rate": [0.01, 0.1]}}, "nuisance.learning_rate",
        ("'learning_rate'", "scientific", "nuisance")),
    "configs-not-a-list": ({"configs": {"arm": "a"}}, "configs", ("must be a list",)),
    "grid-three-dims": (
        {"search": {"algorithm": "grid", "trials": 8},
         "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                      "y": {"type": "float", "low": 0.0, "high": 1.0},
                      "learning_rate": {"type": "float", "low": 0.01, "high": 0.1}}},
        "search.algorithm", ("grid", "got 3")),
    "eval-every-too-large": ({"eval_every": 50}, "eval_every", ("50", "20")),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_error(tmp_path: Path, case: str) -> None:
    overrides, key, fragments = CONFIG_CASES[case]
    path = write(tmp_path, doc(**overrides))
    proc = run_file(tmp_path, path)
    error_line(proc, f"{path}: {key}: ", *fragments)
    assert proc.stdout == ""
    assert_no_store(tmp_path)


def test_missing_required_key(tmp_path: Path) -> None:
    d = doc()
    del d["max_train_steps"]
    path = write(tmp_path, d)
    proc = run_file(tmp_path, path)
    error_line(proc, f"{path}: max_train_steps: ", "missing")
    assert_no_store(tmp_path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(doc(), sort_keys=False).replace("eval_every:", "  eval_every:")
    line = text.splitlines().index("  eval_every: 10") + 1
    assert line > 1
    path = write(tmp_path, text)
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), "YAML syntax error", f"line {line},")
    assert_no_store(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "no-such-experiment.yaml"
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), "cannot read")
    assert_no_store(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(doc(goal="café"), allow_unicode=True).encode("latin-1"))
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), "UTF-8")
    assert_no_store(tmp_path)


# ----------------------------------------------------------------------------- workload errors
@pytest.mark.parametrize(("overrides", "fragments"), [
    ({"workload": "no_such_module:train"}, ("workload: ", "'no_such_module'", "cannot import")),
    ({"workload": "tunebook.workloads.synthetic:nope"},
     ("workload: ", "'tunebook.workloads.synthetic'", "'nope'")),
    ({"workload": None, "command": "definitely-not-a-program-xyz --fast"},
     ("command: ", "'definitely-not-a-program-xyz'", "not found")),
    ({"workload": None, "command": ["./missing-script.sh"]},
     ("command: ", "'./missing-script.sh'", "not found")),
], ids=["no-module", "no-attribute", "no-program", "no-script"])
def test_workload_error(tmp_path: Path, overrides: dict[str, Any],
                        fragments: tuple[str, ...]) -> None:
    d = doc(**overrides)
    if d["workload"] is None:
        del d["workload"]
    path = write(tmp_path, d)
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), *fragments)
    assert proc.stdout == ""
    assert_no_store(tmp_path)


def test_broken_workload_module_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken_workload.py").write_text("def train(hparams, trial)\n    pass\n")
    path = write(tmp_path, doc(workload="broken_workload:train"))
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), "workload: ", "'broken_workload'", "SyntaxError")
    assert_no_store(tmp_path)


def test_workload_import_error_with_a_multiline_message(tmp_path: Path) -> None:
    (tmp_path / "multiline_workload.py").write_text(
        'raise ImportError("first line\\nsecond line")\n')
    path = write(tmp_path, doc(workload="multiline_workload:train"))
    proc = run_file(tmp_path, path)
    error_line(proc, str(path), "workload: ", "'multiline_workload'", "first line")
    assert_no_store(tmp_path)


def test_bad_input_leaves_an_existing_store_untouched(tmp_path: Path, populated: Path) -> None:
    before = snapshot(populated)
    assert "tunebook.db" in before
    # Same experiment name, broken in two ways: neither run may write anything.
    bad_config = write(tmp_path, doc(eval_every=0), "bad-config.yaml")
    proc = tunebook("run", str(bad_config), "--root", str(populated), "--workers", "1",
                    cwd=tmp_path)
    error_line(proc, str(bad_config), "eval_every: ")
    bad_workload = write(tmp_path, doc(workload="no_such_module:train"), "bad-workload.yaml")
    proc = tunebook("run", str(bad_workload), "--root", str(populated), "--workers", "1",
                    cwd=tmp_path)
    error_line(proc, str(bad_workload), "'no_such_module'")
    assert snapshot(populated) == before


# ----------------------------------------------------------------------------- metric errors
def test_metric_the_workload_never_reports(tmp_path: Path) -> None:
    path = write(tmp_path, doc(name="typo", objective={"metric": "val_eror"}))
    proc = run_file(tmp_path, path)
    assert proc.returncode == EXIT_BAD_INPUT, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # Without --quiet the progress lines share stderr; the error is one line, and the last.
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("tunebook: error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == errors[0]
    for fragment in (str(path), "objective.metric: ", "'val_eror'", "did you mean 'val_error'"):
        assert fragment in errors[0], (fragment, errors[0])

    # The trials that ran are kept, measurements included.
    root = tmp_path / "root"
    records = trials_json(root, "typo")
    assert len(records) >= 1
    # A trial that never reported the objective is failed, never completed; its
    # measurements are kept.
    # The run stopped at the first one (others may have been interrupted on their way).
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all(r["status"] in ("failed", "interrupted", "pending") for r in records)
    assert all(r["error"].startswith("finished without reporting 'val_eror'") for r in failed)
    measured = trials_json(root, "typo", "--metric", "val_error")
    assert all(r["best_value"] is not None for r in measured if r["status"] == "failed")

    # Fixing the metric is allowed (it is not part of the identity) and reuses the trials.
    fixed = write(tmp_path, doc(name="typo"))
    proc = run_file(tmp_path, fixed, "--quiet")
    assert proc.returncode == 0, proc.stderr
    after = trials_json(root, "typo")
    assert [r["trial_id"] for r in after] == [r["trial_id"] for r in records]
    assert all(r["status"] == "completed" and r["best_value"] is not None for r in after)


def test_metric_error_quiet_is_exactly_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, doc(name="typo", objective={"metric": "val_eror"}))
    proc = run_file(tmp_path, path, "--quiet")
    error_line(proc, str(path), "objective.metric: ", "'val_eror'", "did you mean 'val_error'")


# ----------------------------------------------------------------------------- store errors
def test_status_without_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = tunebook("status", "--root", str(empty), cwd=tmp_path)
    error_line(proc, "no tunebook store", str(empty))
    assert list(empty.iterdir()) == []


def test_status_of_a_missing_root_creates_nothing(tmp_path: Path) -> None:
    proc = tunebook("status", "--root", str(tmp_path / "nowhere"), cwd=tmp_path)
    error_line(proc, "no tunebook store", "nowhere")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("command", ["best", "trials", "status"])
def test_unknown_experiment_name(tmp_path: Path, populated: Path, command: str) -> None:
    before = snapshot(populated)
    proc = tunebook(command, "nosuch", "--root", str(populated), cwd=tmp_path)
    error_line(proc, "'nosuch'", "cli-errors")
    assert snapshot(populated) == before


def test_unknown_study(tmp_path: Path, populated: Path) -> None:
    proc = tunebook("best", "cli-errors", "--study", "nosuch", "--root", str(populated),
                    cwd=tmp_path)
    error_line(proc, "'cli-errors'", "'nosuch'")


def test_rerun_with_a_changed_search_space_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, doc(name="round-1"))
    assert run_file(tmp_path, path, "--quiet").returncode == 0
    root = tmp_path / "root"
    first = trials_json(root, "round-1")
    assert len(first) == 2 and all(r["status"] == "completed" for r in first)

    changed = doc(name="round-1")
    changed["nuisance"]["learning_rate"]["high"] = 0.5
    path = write(tmp_path, changed)
    proc = run_file(tmp_path, path)
    error_line(proc, "'round-1'", "already exists")
    assert trials_json(root, "round-1") == first


def test_negative_workers_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, doc())
    proc = tunebook("run", str(path), "--root", str(tmp_path / "root"), "--workers", "-1",
                    cwd=tmp_path)
    assert proc.returncode == 2 and "--workers: must be >= 0, got -1" in proc.stderr
    assert_no_store(tmp_path)


@pytest.mark.parametrize(("args", "fragments"), [
    (("best", "cli-errors", "--top", "0"), ("--top: must be >= 1, got 0",)),
    (("trials", "cli-errors", "--format", "xml"), ("--format: invalid choice: 'xml'",)),
], ids=["top-zero", "bad-format"])
def test_option_errors_are_one_line_in_a_real_process(tmp_path: Path, populated: Path,
                                                      args: tuple[str, ...],
                                                      fragments: tuple[str, ...]) -> None:
    before = snapshot(populated)
    proc = tunebook(*args, "--root", str(populated), cwd=tmp_path)
    error_line(proc, *fragments)
    assert "usage:" not in proc.stderr
    assert snapshot(populated) == before


def test_root_that_is_a_file_is_refused_before_anything(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    path = write(tmp_path, doc())
    proc = tunebook("run", str(path), "--root", str(afile / "sub"), cwd=tmp_path)
    error_line(proc, "--root: ", str(afile), "is not a folder")
    assert afile.read_text() == ""


def test_unknown_metric_on_the_command_line(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, search={"trials": 1})
    run_cli("run", str(path), "--root", str(tmp_path / "r"), "--quiet", check=True)
    for cmd in ("trials", "best", "report", "findings"):
        proc = run_cli(cmd, "toy", "--root", str(tmp_path / "r"), "--metric", "lsos")
        assert proc.returncode == 2, cmd
        assert "--metric: no trial of 'toy' reported 'lsos' (did you mean 'loss'?)" in proc.stderr

"""The CLI's happy paths: run, status, best, trials (table, CSV, JSON), note."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import run_cli, write_experiment
from toy import expected_value


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    path = write_experiment(tmp, search={"trials": 3, "seed": 4})
    proc = run_cli("run", str(path), "--root", str(tmp / "root"), "--workers", "2", check=True)
    assert "experiment 'toy': 6 completed, 0 infeasible, 0 failed" in proc.stdout
    assert "arm=a" in proc.stdout and "arm=b" in proc.stdout
    assert "6/6 done" in proc.stderr  # the progress line
    return path, tmp / "root"


def test_trials_json_schema(done: tuple[Path, Path]) -> None:
    _, root = done
    out = run_cli("trials", "toy", "--root", str(root), "--format", "json", check=True).stdout
    trials = json.loads(out)
    assert len(trials) == 6
    for t in trials:
        assert {"study", "index", "status", "params", "seed", "best_step", "best_value",
                "final_value"} <= set(t)
        steps = (10, 20, 30, 40)
        values = {s: expected_value(t["params"], s) for s in steps}
        best = min(steps, key=lambda s: values[s])
        assert (t["best_step"], t["best_value"]) == (best, values[best])
        assert t["final_value"] == values[40] and t["status"] == "completed"


def test_objective_chosen_after_the_fact(done: tuple[Path, Path]) -> None:
    _, root = done
    out = run_cli("trials", "toy", "--root", str(root), "--format", "json", "--metric", "other",
                  "--goal", "max", check=True).stdout
    for t in json.loads(out):
        values = {s: -expected_value(t["params"], s) for s in (10, 20, 30, 40)}
        best = max(values, key=lambda s: values[s])
        assert (t["best_step"], t["best_value"]) == (best, values[best])
    out = run_cli("best", "toy", "--root", str(root), "--final", "--format", "json",
                  check=True).stdout
    best = json.loads(out)
    assert set(best) == {"arm=a", "arm=b"}
    for study, rows in best.items():
        assert len(rows) == 1 and rows[0]["study"] == study
    table = run_cli("best", "toy", "--root", str(root), "--final", "--top", "2",
                    check=True).stdout
    assert "final loss" in table
    assert sum(line.startswith("arm=a ") for line in table.splitlines()) == 2


def test_trials_csv_and_table(done: tuple[Path, Path]) -> None:
    _, root = done
    out = run_cli("trials", "toy", "--root", str(root), "--format", "csv", check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and {"study", "best_value", "x", "arm"} <= set(rows[0])
    table = run_cli("trials", "toy", "--root", str(root), check=True).stdout
    assert table.splitlines()[0].split()[:3] == ["study", "index", "status"]


def test_status_and_note(done: tuple[Path, Path]) -> None:
    _, root = done
    out = run_cli("status", "--root", str(root), check=True).stdout
    assert "toy" in out and "arm=b" in out
    assert run_cli("note", "toy", "x near 0.3 looks best", "--root", str(root),
                   check=True).returncode == 0
    from tunebook.store.sql import Store

    store = Store.at_root(root)
    assert [t for *_, t in store.notes(store.require_experiment("toy").id)] == [
        "x near 0.3 looks best"]


def test_second_run_resumes_nothing_to_do(done: tuple[Path, Path]) -> None:
    path, root = done
    proc = run_cli("run", str(path), "--root", str(root), "--quiet", check=True)
    assert "6 completed" in proc.stdout


def test_report_and_findings_commands(done: tuple[Path, Path], tmp_path: Path) -> None:
    _, root = done
    default = root / "reports" / "toy.html"
    assert default.exists()  # `tunebook run` wrote it
    out = tmp_path / "custom" / "toy-final.html"
    proc = run_cli("report", "toy", "--root", str(root), "--final", "--out", str(out),
                   check=True)
    assert f"report: {out}" in proc.stdout
    assert out.exists() and out.with_suffix(".csv").exists() and out.with_suffix(".md").exists()
    assert "loss (final)" in out.read_text()
    findings = json.loads(run_cli("findings", "toy", "--root", str(root), "--format", "json",
                                  check=True).stdout)
    assert isinstance(findings, list)
    for f in findings:
        assert {"check", "severity", "message", "evidence", "hyperparameter"} <= set(f)
        assert f["severity"] in ("problem", "warning", "info")
    text = run_cli("findings", "toy", "--root", str(root), check=True).stdout
    assert text.strip()
    for f in findings:
        assert f"[{f['severity']}] {f['check']}" in text


def test_runs_record_provenance(done: tuple[Path, Path]) -> None:
    from tunebook.store.sql import Store

    path, root = done
    store = Store.at_root(root)
    runs = store.runs(store.require_experiment("toy").id)
    assert len(runs) >= 1
    first = runs[0]
    assert first.provenance["file"] == str(path)
    assert first.provenance["command"].startswith("tunebook run ")
    assert first.provenance["config_hash"]
    assert first.outcome is not None and first.outcome["counts"] == {"completed": 6}
    assert first.finished_at is not None and first.finished_at >= first.started_at


def test_the_password_is_left_out_of_the_recorded_command_line() -> None:
    from tunebook.cli.run import _without_password

    assert _without_password(["run", "x", "--store", "postgresql+psycopg://u:pw@h/d"])[-1] == (
        "postgresql+psycopg://u:***@h/d")


def test_a_misspelt_check_threshold_stops_the_run_before_any_training(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, checks={"curves": {"overfit_rel_rize": 0.05}})
    proc = run_cli("run", str(path), "--root", str(tmp_path / "root"), "--workers", "0")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "checks.curves.overfit_rel_rize" in lines[0]
    assert "overfit_rel_rise" in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "root" / "runs").exists()

"""The batch-size probe: known answers from a synthetic workload, a real one end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook import procedures
from tunebook.errors import WorkloadError
from tunebook.experiment import Experiment
from tunebook.procedures.batch_size import BatchSize, run_batch_size
from tunebook.store.sql import Store

from conftest import run_cli


def _base(folder: Path, **fixed: Any) -> Experiment:
    doc = {"name": "sat", "workload": "batchload:saturating",
           "objective": {"metric": "loss", "goal": "minimize"},
           "max_train_steps": 100, "eval_every": 50,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {}, "fixed": {"batch_size": 16, **fixed}}
    path = folder / "sat.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Experiment.from_yaml(path)


def _probe(**kw: Any) -> BatchSize:
    return BatchSize(warmup_steps=2, timed_steps=8, repeats=2, **kw)


def test_the_probe_finds_where_throughput_saturates_and_the_data_share(
        tmp_path: Path) -> None:
    base = _base(tmp_path, knee=64, data_share=0.3)
    rec = procedures.run_procedure(_probe(max_size=256), base, root=tmp_path / "root",
                                   workers=0)
    assert rec is not None
    sizes = rec.evidence["sizes"]
    # Doubling from the file's 16 up to --max-size: everything fits.
    assert [s["batch_size"] for s in sizes] == [16, 32, 64, 128, 256]
    assert all(s["fits"] for s in sizes)
    # Perfect scaling up to the knee (gain 2 per doubling), none above it (gain 1).
    gains = [s["gain_per_doubling"] for s in sizes[1:]]
    assert gains[:2] == pytest.approx([2.0, 2.0], rel=0.15)
    assert gains[2:] == pytest.approx([1.0, 1.0], rel=0.15)
    assert rec.values == {"batch_size": 64}
    assert rec.evidence["diminishing_returns_at"] == 128
    assert rec.evidence["data_share"] == pytest.approx(0.3, abs=0.05)
    assert all(s["spread"][0] <= s["examples_per_second"] <= s["spread"][1] for s in sizes)
    assert "Do not tune the batch size for validation performance" in rec.text
    assert "re-tune" in rec.text
    assert {f.check for f in rec.findings} == {"batch-size-retune"}  # 30% < 1/3


def test_an_input_bound_workload_gets_the_warning(tmp_path: Path) -> None:
    base = _base(tmp_path, knee=1024, data_share=0.6)
    rec = procedures.run_procedure(_probe(sizes=[16, 32]), base, root=tmp_path / "root",
                                   workers=0)
    assert rec is not None and rec.values == {"batch_size": 32}
    (bound,) = [f for f in rec.findings if f.check == "batch-size-input-bound"]
    assert bound.evidence["data_share"] == pytest.approx(0.6, abs=0.05)


def test_out_of_memory_and_the_memory_ceiling_mean_does_not_fit(tmp_path: Path) -> None:
    base = _base(tmp_path, knee=1024, oom_above=100)
    rec = procedures.run_procedure(_probe(sizes=[32, 64, 128]), base,
                                   root=tmp_path / "oom", workers=0)
    assert rec is not None and rec.values == {"batch_size": 64}
    assert [(s["batch_size"], s["fits"], s["reason"]) for s in rec.evidence["sizes"]][-1] == (
        128, False, "out of memory")
    assert "128 does not fit (out of memory)" in rec.text
    # The CPU ceiling: 1 MiB per example over a 100 MiB limit; the doubling stops there.
    base = _base(tmp_path, knee=1024, mb_per_example=1.0)
    rec = procedures.run_procedure(_probe(memory_limit_mb=100.0), base,
                                   root=tmp_path / "ceiling", workers=0)
    assert rec is not None and rec.values == {"batch_size": 64}
    last = rec.evidence["sizes"][-1]
    assert (last["batch_size"], last["fits"]) == (128, False)
    assert last["reason"].startswith("peak memory 128 MiB above the limit 100 MiB")


def test_a_size_that_cannot_start_ends_the_doubling_and_does_not_fit(tmp_path: Path) -> None:
    base = _base(tmp_path, knee=1024, max_batch=100)
    rec = run_batch_size(_probe(max_size=1024), base, root=tmp_path / "root", workers=0)
    assert rec is not None and rec.values == {"batch_size": 64}
    assert [(s["batch_size"], s["fits"]) for s in rec.evidence["sizes"]] == [
        (16, True), (32, True), (64, True), (128, False)]
    assert rec.evidence["sizes"][-1]["reason"] == (
        "failed: ValueError: batch_size must be at most 100, got 128")
    # The smallest size failing is the workload's problem, not a batch size's.
    with pytest.raises(WorkloadError, match="at most 10, got 16"):
        run_batch_size(_probe(), _base(tmp_path, max_batch=10), root=tmp_path / "r2",
                       workers=0)


def test_the_command_on_a_built_in_workload_end_to_end(tmp_path: Path) -> None:
    doc = {"name": "digits-bs", "workload": "tunebook.workloads.digits:train_mlp",
           "objective": {"metric": "val_error", "goal": "minimize"},
           "max_train_steps": 100, "eval_every": 50,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {}, "fixed": {"batch_size": 16, "num_layers": 1, "width": 32}}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(doc))
    args = ("batch-size", "e.yaml", "--root", "root", "--sizes", "16,32", "--warmup-steps", "2",
            "--timed-steps", "4", "--repeats", "2", "--format", "json")
    out = json.loads(run_cli(*args, check=True, cwd=tmp_path).stdout)
    assert out["recommendation"]["batch_size"] in (16, 32)
    assert out["recommendation"]["procedure"] == "batch-size"
    sizes = out["evidence"]["sizes"]
    assert [s["batch_size"] for s in sizes] == [16, 32]
    assert all(s["fits"] and s["repeats"] == 2 and 0 < s["data_share"] < 1 for s in sizes)
    # Stored, and resumable: a second call runs no new trial and says the same.
    again = json.loads(run_cli(*args, check=True, cwd=tmp_path).stdout)
    assert again["evidence"]["experiments"] == out["evidence"]["experiments"]
    store = Store.at_root(tmp_path / "root", create=False)
    try:
        assert len(procedures.recommendations(store, "digits-bs", "batch-size")) == 2
        trials = store.trials(store.require_experiment("digits-bs.batch-size.b32").id)
        assert len(trials) == 2 and trials[0].params["step_timing"] is True
    finally:
        store.close()
    text = run_cli(*args[:-2], check=True, cwd=tmp_path).stdout
    assert text.startswith("Use batch_size ") and "examples/s" in text


@pytest.mark.parametrize(("option", "value"), [("--sizes", "16,abc"), ("--sizes", "0"),
                                                ("--repeats", "0"), ("--memory-limit", "-1"),
                                                ("--min-gain", "nan")])
def test_bad_options_get_one_line(tmp_path: Path, option: str, value: str) -> None:
    proc = run_cli("batch-size", "e.yaml", option, value, cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tunebook: error:") and option in line
    assert not (tmp_path / "tunebook").exists()


def test_a_missing_file_gets_one_line_and_no_store(tmp_path: Path) -> None:
    proc = run_cli("batch-size", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tunebook: error:") and "missing.yaml" in line
    assert not (tmp_path / "tunebook").exists()

"""The batch-size probe: known answers from a synthetic workload, a real one end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook import procedures
from tunebook.errors import ConfigError, WorkloadError
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
    assert {f.check for f in rec.findings} == {"batch_size_retune"}  # 30% < 50%
    # The input-bound threshold is the pipeline family's, set by the file's checks: section.
    base = _base(tmp_path, knee=64, data_share=0.3)
    base = Experiment.from_dict({**base.to_dict(),
                                 "checks": {"pipeline": {"input_bound_share": 0.2}}},
                                source=base.source, base_dir=base.base_dir)
    rec = procedures.run_procedure(_probe(sizes=[16]), base, root=tmp_path / "root",
                                   workers=0)
    assert rec is not None
    (bound,) = [f for f in rec.findings if f.check == "batch_size_input_bound"]
    assert bound.evidence["threshold"] == 0.2 and bound.advice == {"input_pipeline": "speed_up"}
    assert rec.evidence["input_bound_share"] == 0.2
    assert [t["label"] for t in bound.trials] == ["main #0", "main #1"]


def test_an_input_bound_workload_gets_the_warning(tmp_path: Path) -> None:
    base = _base(tmp_path, knee=1024, data_share=0.6)
    rec = procedures.run_procedure(_probe(sizes=[16, 32]), base, root=tmp_path / "root",
                                   workers=0)
    assert rec is not None and rec.values == {"batch_size": 32}
    (bound,) = [f for f in rec.findings if f.check == "batch_size_input_bound"]
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
                                                ("--min-gain", "nan"),
                                                ("--steps-to-result", "nan"),
                                                ("--steps-to-result", "abc"),
                                                ("--result-trials", "0"),
                                                ("--cost-per-hour", "0"),
                                                ("--cost-per-hour", "-2")])
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


# ----------------------------------------------------------------------------- steps to result
def _scaling_base(folder: Path, **top: Any) -> Experiment:
    """Steps to val_loss 0.5: 320/q at 16, halving per doubling up to 96, flat above it
    (tests/batchload.py); time per step flat up to 128, doubling above it."""
    doc = {"name": "scale", "workload": "batchload:saturating",
           "objective": {"metric": "val_loss", "goal": "minimize"},
           "max_train_steps": 480, "eval_every": 4,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 1.0,
                                          "scale": "log"}},
           "fixed": {"batch_size": 16, "knee": 128, "critical": 96, "steps16": 320,
                     "base_seconds": 0.002}, **top}
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Experiment.from_yaml(path)


def test_steps_to_result_find_perfect_scaling_and_diminishing_returns(tmp_path: Path) -> None:
    base = _scaling_base(tmp_path)
    proc = _probe(sizes=[16, 32, 64, 128, 256], steps_to_result=0.5, result_trials=4,
                  cost_per_hour=3.6)
    rec = run_batch_size(proc, base, root=tmp_path / "root", workers=0)
    assert rec is not None
    rows = rec.evidence["steps_to_result"]
    assert [r["batch_size"] for r in rows] == [16, 32, 64, 128, 256]
    assert all(set(r) == {"batch_size", "steps", "best_value", "target", "trials", "trial"}
               and r["trials"] == 4 and r["target"] == 0.5 for r in rows)
    steps = [r["steps"] for r in rows]
    # Perfect scaling up to the critical size (96: 64 is the last power of two under it): the
    # steps halve per doubling within one evaluation interval (4 steps) ...
    for i in (0, 1):
        assert abs(steps[i] / 2 - steps[i + 1]) <= 4
    # ... then 64 -> 128 falls by 96/64 = 1.5, and 128 -> 256 not at all.
    assert steps[3] == pytest.approx(steps[2] / 1.5, abs=4) and steps[4] == steps[3]
    shape = rec.evidence["scaling"]
    assert (shape["perfect_up_to"], shape["diminishing_returns_at"],
            shape["no_reduction_at"]) == (64, 128, 256)
    # Time to result = steps x step seconds: least at 128 (time per step doubles at 256).
    times = {t["batch_size"]: t for t in rec.evidence["time_to_result"]}
    assert all(t["seconds"] == pytest.approx(t["steps"] * t["step_seconds"])
               and t["cost"] == pytest.approx(t["seconds"] / 1000) for t in times.values())
    assert rec.values == {"batch_size": 128} and rec.evidence["recommended_by"] == "cost"
    assert "halve per doubling (within 25%) up to 64; diminishing returns from 128" in rec.text
    assert "Do not tune the batch size for validation performance" in rec.text
    best = rows[3]["trial"]
    assert best["label"].startswith("main #") and isinstance(best["id"], int)
    assert {f.check for f in rec.findings} == {"batch_size_retune",
                                               "batch_size_no_step_reduction"}
    # Resumable: the searches are a stage of the procedure; a second call runs nothing new.
    again = run_batch_size(proc, base, root=tmp_path / "root", workers=0)
    assert again is not None and again.evidence["steps_to_result"] == rows


def test_a_maximised_objective_reaches_the_target_from_below(tmp_path: Path) -> None:
    proc = _probe(sizes=[16, 32], steps_to_result=0.5, result_trials=2)
    low = run_batch_size(proc, _scaling_base(tmp_path), root=tmp_path / "low", workers=0)
    high = run_batch_size(proc, _scaling_base(
        tmp_path, objective={"metric": "val_score", "goal": "maximize"}),
        root=tmp_path / "high", workers=0)
    assert low is not None and high is not None
    # val_score = 1 - val_loss: >= 0.5 at the step val_loss reaches <= 0.5.
    lows, highs = low.evidence["steps_to_result"], high.evidence["steps_to_result"]
    assert [r["steps"] for r in highs] == [r["steps"] for r in lows]
    assert all(h["best_value"] == pytest.approx(1 - lo["best_value"])
               for h, lo in zip(highs, lows, strict=True))
    assert "val_score >= 0.5" in high.text


def test_a_target_never_reached_falls_back_to_throughput(tmp_path: Path) -> None:
    base = _scaling_base(tmp_path, max_train_steps=40)
    proc = _probe(sizes=[16, 32], steps_to_result=0.01, result_trials=2)
    rec = run_batch_size(proc, base, root=tmp_path / "root", workers=0)
    assert rec is not None and rec.values == {"batch_size": 32}
    assert [r["steps"] for r in rec.evidence["steps_to_result"]] == [None, None]
    assert all(r["best_value"] > 0.01 and r["trial"] is not None
               for r in rec.evidence["steps_to_result"])
    assert "No size reached val_loss <= 0.01 within 40 steps" in rec.text
    (missed,) = [f for f in rec.findings if f.check == "batch_size_target_not_reached"]
    assert missed.severity == "warning" and len(missed.trials) == 2


def test_steps_to_result_needs_the_learning_rate_searched(tmp_path: Path) -> None:
    base = _scaling_base(tmp_path, nuisance={})
    with pytest.raises(ConfigError, match=r"nuisance\.learning_rate"):
        run_batch_size(_probe(steps_to_result=0.5), base, root=tmp_path / "root", workers=0)
    # Another name for the learning rate (--learning-rate-name).
    renamed = _scaling_base(tmp_path, nuisance={"lr": {"type": "float", "low": 0.01,
                                                       "high": 1.0, "scale": "log"}})
    BatchSize(steps_to_result=0.5, learning_rate="lr").validate(renamed)
    with pytest.raises(ConfigError, match="got lr"):
        BatchSize(steps_to_result=0.5).validate(renamed)
    with pytest.raises(ValueError, match="cost_per_hour"):
        BatchSize(cost_per_hour=0.0)
    with pytest.raises(ValueError, match="steps_to_result"):
        BatchSize(steps_to_result=float("nan"))


def test_steps_to_result_without_a_learning_rate_search_gets_one_line(tmp_path: Path) -> None:
    _scaling_base(tmp_path, nuisance={})
    proc = run_cli("batch-size", "scale.yaml", "--steps-to-result", "0.5", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tunebook: error:") and "scale.yaml" in line
    assert "nuisance.learning_rate" in line and "got none" in line
    assert not (tmp_path / "tunebook").exists()


def test_steps_to_result_on_a_built_in_workload_end_to_end(tmp_path: Path) -> None:
    doc = {"name": "digits-steps", "workload": "tunebook.workloads.digits:train_mlp",
           "objective": {"metric": "val_error", "goal": "minimize"},
           "max_train_steps": 60, "eval_every": 10,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1,
                                          "scale": "log"}},
           "fixed": {"batch_size": 16, "num_layers": 1, "width": 32}}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(doc))
    args = ("batch-size", "e.yaml", "--root", "root", "--sizes", "16,32", "--warmup-steps", "2",
            "--timed-steps", "4", "--repeats", "2", "--steps-to-result", "0.5",
            "--result-trials", "2", "--cost-per-hour", "1")
    out = json.loads(run_cli(*args, "--format", "json", check=True, cwd=tmp_path).stdout)
    ev = out["evidence"]
    assert ev["experiments"] == ["digits-steps.batch-size.b16", "digits-steps.batch-size.b32",
                                 "digits-steps.batch-size.steps-b16",
                                 "digits-steps.batch-size.steps-b32"]
    rows = ev["steps_to_result"]
    assert [r["batch_size"] for r in rows] == [16, 32] and all(r["trials"] == 2 for r in rows)
    assert all(r["steps"] is None or (r["best_value"] <= 0.5 and r["steps"] % 10 == 0)
               for r in rows)
    reached = [t for t in ev["time_to_result"] if t["steps"] is not None]
    if reached:
        pick = min(reached, key=lambda t: t["cost"])
        assert out["recommendation"]["batch_size"] == pick["batch_size"]
    text = run_cli(*args, check=True, cwd=tmp_path).stdout
    assert "best trial" in text and "val_error <= 0.5" in text

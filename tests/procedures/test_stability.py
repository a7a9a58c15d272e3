"""The stability and clip procedures on a synthetic workload with known answers
(tests/procedures/warmup_workload.py): the unstable learning rate, the shortest warmup that
works, the clipping threshold of known norms; a stable workload; the CLI; resuming."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.experiment import Experiment
from tunebook.procedures import recommendations, run_procedure
from tunebook.procedures.clip import ClipOptions, run_clip
from tunebook.procedures.stability import (
    Stability,
    StabilityOptions,
    run_stability,
    sweep_rates,
    unstable,
    warmup_candidates,
)
from tunebook.store.api import TrialRow
from tunebook.store.sql import Store

from conftest import run_cli

HERE = Path(__file__).parent


def base_file(folder: Path, **overrides: Any) -> Path:
    """An experiment on warmup_workload (copied beside it, so workers import it)."""
    shutil.copy(HERE / "warmup_workload.py", folder / "warmup_workload.py")
    doc: dict[str, Any] = {
        "name": "base", "workload": "warmup_workload:train",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": 1000, "eval_every": 100,
        "search": {"algorithm": "quasi_random", "trials": 3, "seed": 0},
        "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1,
                                       "scale": "log"}},
        "fixed": {}}
    doc.update(overrides)
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_sweep_rates_the_warmup_list_and_the_spike_rule() -> None:
    assert sweep_rates(0.01, 0.1, 100, 2) == [0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0]
    # Powers of ten up to 10% of max_train_steps, the largest four.
    assert warmup_candidates(1000) == [1, 10, 100]
    assert warmup_candidates(200_000) == [10, 100, 1000, 10_000]
    assert warmup_candidates(5) == [1]
    row = TrialRow(1, 1, "s", 0, {}, 0, "completed", 1)
    assert unstable(row, [3.0, 2.0, 1.0, 1.9], 2.0) is None
    assert "spike at evaluation 4" in str(unstable(row, [3.0, 2.0, 1.0, 2.1], 2.0))
    # Doubling near a fitted training set is noise unless it rises by 10% of the fall so far.
    assert unstable(row, [2.0, 0.1, 0.0044, 0.01], 2.0) is None
    assert "spike at evaluation 4" in str(unstable(row, [2.0, 0.1, 0.0044, 0.3], 2.0))
    assert "non-finite" in str(unstable(row, [3.0, float("nan")], 2.0))
    assert "diverged" in str(unstable(
        TrialRow(1, 1, "s", 0, {}, 0, "infeasible", 1, infeasible_reason="nan"), [], 2.0))


def test_a_run_that_made_no_progress_is_named() -> None:
    from tunebook.procedures.stability import no_progress, progress

    # Digits at learning rate 0.956: a collapse to chance before the first evaluation (flat,
    # no spike) against the best rate's fall from 0.272 to 0.0001.
    best = [0.272, 0.048, 0.0001]
    assert progress(best) == pytest.approx(math.log(2720))
    stalled = no_progress([2.671, 2.345, 2.329, 2.312, 2.33], best)
    assert "no progress: training loss 2.671 at its first evaluation, 2.33 at the end (2% of" \
        in str(stalled)
    assert no_progress([1.355, 0.283, 0.1, 0.007], best) is None  # slower, learning
    # Converged before its first evaluation: flat, but below where the best rate started.
    assert no_progress([0.123, 0.123, 0.122], best) is None
    # Without a reference (a run after the sweep): only ending no lower than the start.
    assert no_progress([2.302, 2.303, 2.303]) is not None
    assert no_progress([2.3, 2.2, 2.25]) is None
    assert no_progress([2.3]) is None and no_progress([]) is None
    assert no_progress([float("nan"), 2.3, 2.1]) is None  # non-finite values are skipped


def test_the_warmup_study_finds_the_shortest_warmup_that_works(tmp_path: Path) -> None:
    base = Experiment.from_yaml(base_file(tmp_path))
    root = tmp_path / "root"
    rec = run_stability(base, options=StabilityOptions(steps=200), root=root, workers=0)
    assert rec is not None
    # Rates above 0.5 blow up without warmup: the smallest unstable one of the sweep is 1.0
    # (a loss spike); 10.0 is above 5.0 and diverges (infeasible).
    assert rec.evidence["unstable_base_learning_rate"] == 1.0
    sweep = {r["learning_rate"]: r for r in rec.evidence["sweep"]}
    assert [lr for lr, r in sweep.items() if r["unstable"]] == [1.0, 3.16, 10.0]
    assert "spike" in sweep[1.0]["unstable"] and "diverged" in sweep[10.0]["unstable"]
    # The warmup study at 10x: warmups 1, 10, 100 (10% of 1000), post-warmup 2x each, but at
    # least 2x the step where the early run broke (2): 4 steps after a 1-step warmup.
    study = rec.evidence["warmup_study"]
    assert [(r["warmup_steps"], r["max_train_steps"]) for r in study] == [
        (1, 5), (10, 30), (100, 300)]
    assert all(r["learning_rate"] == 10.0 for r in study)
    # At least 30 steps are needed: 100 is the shortest of the list that works.
    assert rec.values == {"warmup_steps": 100, "learning_rate": 10.0, "max_train_steps": 1100,
                          "unstable_base_learning_rate": 1.0}
    assert "shortest stable warmup" in rec.text and "1100 steps" in rec.text
    assert rec.experiments[:2] == ("base.stability.sweep", "base.stability.early")
    assert "clipping" not in rec.evidence
    # The early run at 1.0, evaluated every step: the first update blows up, step 2 spikes.
    assert rec.evidence["early_run"]["unstable"].startswith("loss spike at step 2:")
    # 100 steps are 10% of 1000, more than the playbook's 5%: max_train_steps may need to grow.
    # The findings are the registered stability checks' (sorted: severity, then name), each
    # with its advice and the trials it is about.
    found = {f.check: f for f in rec.findings}
    assert [f.check for f in rec.findings] == ["long_warmup", "unstable_learning_rate",
                                               "early_instability"]
    assert found["long_warmup"].advice == {"training_length": "longer"}
    assert found["long_warmup"].trials == [rec.evidence["warmup_study"][2]["trial"]]
    assert found["long_warmup"].trials[0]["label"] == "warmup=100 #0"
    assert found["unstable_learning_rate"].advice == {"stability": "improve"}
    # The best stable rate (0.316) is the largest stable one: at the edge of instability.
    assert found["unstable_learning_rate"].evidence["best_stable_learning_rate"] == 0.316
    assert [t["label"] for t in found["unstable_learning_rate"].trials] == [
        "lr=1 #0", "lr=3.16 #0", "lr=10 #0"]
    assert found["early_instability"].trials == [rec.evidence["early_run"]["trial"]]
    assert "may need to grow" in rec.text

    # A finer list: 40 is the shortest of 10, 20, 40, 80 above the known 30.
    finer = run_stability(base, options=StabilityOptions(steps=200, warmups=(10, 20, 40, 80)),
                          root=root, workers=0)
    assert finer is not None and finer.values["warmup_steps"] == 40
    assert "long_warmup" not in [f.check for f in finer.findings]  # 40 < 5% of 1000
    # The share is the experiment file's threshold: at 3%, 40 steps of 1000 are long.
    strict = run_stability(Experiment.from_yaml(base_file(
        tmp_path, checks={"stability": {"long_warmup_share": 0.03}})),
        options=StabilityOptions(steps=200, warmups=(10, 20, 40, 80)), root=root, workers=0)
    assert strict is not None and "long_warmup" in [f.check for f in strict.findings]
    assert "more than 3% of max_train_steps" in strict.text


def test_when_warmup_does_not_help_clipping_at_the_90th_percentile_does(
        tmp_path: Path) -> None:
    base = Experiment.from_yaml(base_file(tmp_path, fixed={"warmup_helps": False}))
    rec = run_stability(base, options=StabilityOptions(steps=100), root=tmp_path / "r",
                        workers=0)
    assert rec is not None
    assert all(r["unstable"] for r in rec.evidence["warmup_study"])
    assert [f.check for f in rec.findings if f.severity == "problem"] == [
        "warmup_did_not_help"]
    assert rec.findings[0].advice == {"stability": "improve"}
    assert len(rec.findings[0].trials) == len(rec.evidence["warmup_study"])
    clip = rec.evidence["clipping"]
    assert clip["unstable"] is None
    # The norms 2, 3, ..., 10, 1 repeat: the pooled 90th percentile of 100-step trials.
    norms = [1.0 + s % 10 for s in range(1, 101)]
    assert clip["grad_clip"] == pytest.approx(
        statistics.quantiles(norms, n=10, method="inclusive")[8])
    assert rec.values["grad_clip"] == rec.values["clip_threshold"] == clip["grad_clip"]
    assert "fixed it" in rec.text


def test_without_recorded_norms_clipping_is_not_tried(tmp_path: Path) -> None:
    base = Experiment.from_yaml(base_file(
        tmp_path, fixed={"warmup_helps": False, "report_norms": False}))
    rec = run_stability(base, options=StabilityOptions(steps=100), root=tmp_path / "r",
                        workers=0)
    assert rec is not None and "clipping" not in rec.evidence
    assert not any(name.endswith(".clip") for name in rec.experiments)
    assert "Clipping was not tried" in rec.text


def test_a_stable_workload_needs_no_warmup_study(tmp_path: Path) -> None:
    # The sweep stops at 0.1 x 4 = 0.4, below the unstable 0.5. Run by name, as any procedure.
    base = Experiment.from_yaml(base_file(tmp_path, max_train_steps=50, eval_every=10))
    rec = run_procedure(Stability(StabilityOptions(extend=4)), base, root=tmp_path / "r",
                        workers=0)
    assert rec is not None and rec.evidence["unstable_base_learning_rate"] is None
    assert rec.experiments == ("base.stability.sweep",)
    assert "no warmup study was run" in rec.text
    assert rec.values == {"unstable_base_learning_rate": None}


def test_clip_takes_the_90th_percentile_of_the_recorded_norms(tmp_path: Path) -> None:
    base = Experiment.from_yaml(base_file(tmp_path, max_train_steps=50, eval_every=10))
    root = tmp_path / "root"
    # No finished run of the base: a short run first, then the clipped run.
    rec = run_clip(base, root=root, workers=0)
    assert rec is not None
    assert rec.experiments == ("base.clip.norms", "base.clip.clipped")
    norms = [1.0 + s % 10 for s in range(1, 51)] * 3  # the 3 best trials, every step
    q90 = statistics.quantiles(norms, n=10, method="inclusive")[8]
    assert rec.values == {"grad_clip": pytest.approx(q90), "clip_threshold": pytest.approx(q90)}
    assert rec.evidence["steps_pooled"] == 150
    assert [r["label"] for r in rec.evidence["trial_refs"]] == [
        t.split("#")[0] + " #" + t.split("#")[1] for t in rec.evidence["trials"]]
    assert rec.evidence["fraction_clipped"] == pytest.approx(
        sum(v > q90 for v in norms) / len(norms))
    store = Store.at_root(root, create=False)
    try:
        clipped = store.require_experiment("base.clip.clipped")
        assert clipped.config["fixed"]["grad_clip"] == pytest.approx(q90)
        assert recommendations(store, "base", "clip")[-1] == rec
    finally:
        store.close()


def test_clip_reads_a_finished_run_of_the_base_and_a_quantile_option(tmp_path: Path) -> None:
    path = base_file(tmp_path, max_train_steps=20, eval_every=10)
    root = tmp_path / "root"
    assert run_cli("run", str(path), "--root", str(root), "--workers", "0", "--no-report",
                   "--quiet", cwd=tmp_path).returncode == 0
    rec = run_clip(Experiment.from_yaml(path), options=ClipOptions(quantile=0.5), root=root,
                   workers=0)
    assert rec is not None and rec.experiments == ("base.clip.clipped",)
    assert rec.evidence["norms_from"] == "base"
    norms = [1.0 + s % 10 for s in range(1, 21)] * 3
    assert rec.values["grad_clip"] == pytest.approx(statistics.median(norms))


def test_resuming_runs_nothing_again(tmp_path: Path) -> None:
    base = Experiment.from_yaml(base_file(tmp_path))
    root = tmp_path / "root"
    first = run_stability(base, options=StabilityOptions(steps=100), root=root, workers=0)
    store = Store.at_root(root, create=False)
    try:
        before = {e.name: [(t.id, t.finished_at) for t in store.trials(e.id)]
                  for e in store.experiments()}
    finally:
        store.close()
    again = run_stability(base, options=StabilityOptions(steps=100), root=root, workers=0)
    assert again is not None and first is not None and again.values == first.values
    store = Store.at_root(root, create=False)
    try:
        after = {e.name: [(t.id, t.finished_at) for t in store.trials(e.id)]
                 for e in store.experiments()}
        assert after == before
        assert len(recommendations(store, "base", "stability")) == 2
    finally:
        store.close()


def test_the_commands_end_to_end_with_json(tmp_path: Path) -> None:
    path = base_file(tmp_path)
    root = tmp_path / "root"
    proc = run_cli("stability", str(path), "--root", str(root), "--steps", "100",
                   "--workers", "0", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["recommendation"]["warmup_steps"] == 100
    assert out["recommendation"]["learning_rate"] == 10.0
    assert out["evidence"]["unstable_base_learning_rate"] == 1.0
    proc = run_cli("clip", str(path), "--root", str(root), "--steps", "20", "--workers", "0",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("clip the gradient norm at ")
    text = run_cli("stability", str(path), "--root", str(root), "--steps", "100",
                   "--workers", "0", cwd=tmp_path)
    assert text.returncode == 0 and "shortest stable warmup" in text.stdout
    assert (root / "reports" / "base--stability.md").is_file()


@pytest.mark.parametrize(("args", "expected"), [
    (["stability", "{dir}/missing.yaml"], "missing.yaml"),
    (["stability", "{file}", "--extend", "0.5"], "--extend: must be a number >= 1, got '0.5'"),
    (["stability", "{file}", "--warmups", "1,x"], "--warmups: must be comma-separated"),
    (["stability", "{file}", "--per-decade", "0"], "--per-decade: must be >= 1, got 0"),
    (["clip", "{file}", "--quantile", "1.5"], "--quantile: must be a number in (0, 1]"),
    (["clip", "{file}", "--steps", "0"], "--steps: must be >= 1, got 0"),
    (["clip", "{file}", "--spike-factor", "0.5"],
     "--spike-factor: must be a number >= 1, got '0.5'"),
    (["stability", "{nolr}"], "no 'learning_rate' to sweep"),
])
def test_bad_input_is_one_line_and_leaves_no_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        expected: str) -> None:
    from tunebook.cli import main

    file = base_file(tmp_path)
    nolr = tmp_path / "nolr.yaml"
    nolr.write_text(file.read_text().replace("learning_rate", "x"))
    root = tmp_path / "root"
    argv = [a.format(dir=tmp_path, file=file, nolr=nolr) for a in args] + ["--root", str(root)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tunebook: error: ") and expected in err
    assert not root.exists()


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    from tunebook.cli import main

    for cmd in ("stability", "clip"):
        assert main([cmd, "--help"]) == 0
        assert "--format" in capsys.readouterr().out


def test_both_procedures_on_the_built_in_synthetic_workload(tmp_path: Path) -> None:
    # tunebook.workloads.synthetic:quadratic diverges above learning rate 2.0 whatever the
    # warmup or clipping (it ignores both): the procedure says neither fixed it.
    path = base_file(tmp_path, workload="tunebook.workloads.synthetic:quadratic",
                     max_train_steps=100, eval_every=10)
    base = Experiment.from_yaml(path)
    rec = run_stability(base, root=tmp_path / "r", workers=0)
    assert rec is not None and rec.evidence["unstable_base_learning_rate"] == 3.16
    assert "diverged" in rec.evidence["sweep"][-2]["unstable"]
    assert rec.evidence["warmup_list"] == [1, 10]
    assert rec.evidence["clipping"]["unstable"] and "did not fix it either" in rec.text
    assert [f.check for f in rec.findings if f.severity == "problem"] == [
        "clipping_did_not_help", "warmup_did_not_help"]
    clip = run_procedure("clip", base, root=tmp_path / "r", workers=0)  # by name
    assert clip is not None and clip.evidence["steps_pooled"] == 30  # 3 trials x 10 evaluations
    assert clip.experiments == ("base.clip.norms", "base.clip.clipped")
    assert 0 < clip.evidence["fraction_clipped"] <= 0.1 + 1e-9
    # The clipped run at the base's rates is stable, and 10% of the steps is no unusual share.
    assert all(r["unstable"] is None for r in clip.evidence["clipped_trials"])
    assert clip.findings == ()

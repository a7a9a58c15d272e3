"""``tunebook final-eval``: the test set looked at once, through the real command line, on the
digits workload (a tiny run); the guard, the stored counts, the report, best_checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import tunebook
from tunebook.store.sql import Store
from tunebook.torch import evaluate
from tunebook.workloads import digits
from tunebook.workloads.common import cross_entropy_metrics

from conftest import run_cli

NAME = "digits-final"
EXPERIMENT: dict[str, Any] = {
    "name": NAME,
    "goal": "does depth matter?",
    "workload": "tunebook.workloads.digits:train_mlp",
    "objective": {"metric": "val_error", "goal": "minimize"},
    "max_train_steps": 30,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 2, "seed": 0},
    "scientific": {"num_layers": [1, 2]},
    "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "scale": "log"}},
    "fixed": {"width": 16},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root where the tiny search has run and nobody has looked at the test set yet."""
    folder = tmp_path_factory.mktemp("final")
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    run_cli("run", str(path), "--root", str(folder / "root"), "--workers", "0", "--quiet",
            "--no-report", check=True)
    return folder / "root"


def _test_numbers(root: Path, trial: str) -> dict[str, float]:
    """The test metrics of a trial's best checkpoint, computed here without tunebook's entry."""
    store = Store.at_root(root, create=False)
    try:
        exp = store.require_experiment(NAME)
        study, _, index = trial.partition("#")
        [row] = [t for t in store.trials(exp.id, study=study) if t.index == int(index)]
    finally:
        store.close()
    state = torch.load(tunebook.best_checkpoint(NAME, root=root, trial=trial) / "state.pt",
                       weights_only=True)
    model = digits._model(row.params)
    model.load_state_dict(state["model"])
    result = evaluate(model, digits.load_digits_test(), metrics=cross_entropy_metrics)
    return {"test_error": result["error"], "test_loss": result["loss"], "test_examples": 359.0}


class _Fresh:
    """Each call on a store opened for it, as a new process would (read, then closed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            store = Store.at_root(self.root, create=False)
            try:
                return getattr(store, name)(*args)
            finally:
                store.close()
        return call


def test_final_eval_is_guarded_counted_stored_and_reported(finished: Path) -> None:
    root = ["--root", str(finished)]
    store = _Fresh(finished)
    exp_id = store.require_experiment(NAME).id
    # Before: no test number anywhere (the ledger is empty, no trial reported a test_ metric).
    assert store.final_evals(exp_id) == []
    assert not [m for m in store.metric_names(exp_id) if m.startswith("test")]
    trials = json.loads(run_cli("trials", NAME, *root, "--format", "json", check=True).stdout)
    assert all(Path(t["checkpoint"]).is_dir() for t in trials)
    best = min(trials, key=lambda t: (t["best_value"], t["index"], t["trial_id"]))
    best_ref = f"{best['study']}#{best['index']}"
    assert Path(best["checkpoint"]).name == f"step-{best['best_step']:010d}"

    out = finished.parent / "report.html"
    run_cli("report", NAME, *root, "--out", str(out), check=True)
    assert "final-eval" not in out.read_text()  # no section before any look

    first = run_cli("final-eval", NAME, *root, check=True)
    assert f"{best['study']} #{best['index']}" in first.stdout
    assert "looked at 1 time(s)" in first.stdout
    [row] = store.final_evals(exp_id)
    assert row.trial_id == best["trial_id"]
    assert row.selection["rule"] == "best" and row.selection["metric"] == "val_error"
    assert row.selection["checkpoint_step"] == best["best_step"]
    want = _test_numbers(finished, best_ref)
    assert row.metrics == pytest.approx(want)

    again = run_cli("final-eval", NAME, "--trial", best_ref, *root)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        f"tunebook: error: the test set of {NAME} has already been looked at 1 time(s) (last: "
        f"{row.selection['trial']} on {again.stderr.split(' on ')[1].split(')')[0]}); "
        "pass --again to look again"]
    assert len(store.final_evals(exp_id)) == 1

    other = next(t for t in trials if t["trial_id"] != best["trial_id"])
    other_ref = f"{other['study']}#{other['index']}"
    third = run_cli("final-eval", NAME, "--trial", other_ref, "--again", *root, check=True)
    assert "looked at 2 time(s)" in third.stdout
    rows = store.final_evals(exp_id)
    assert [r.trial_id for r in rows] == [best["trial_id"], other["trial_id"]]
    assert rows[1].selection["rule"] == "trial" and rows[1].selection["ref"] == other_ref
    assert rows[1].selection["looked_before"] == 1
    assert rows[1].metrics == pytest.approx(_test_numbers(finished, other_ref))
    # The test metrics never became measurements: no validation column can show them.
    assert not [m for m in store.metric_names(exp_id) if m.startswith("test")]

    run_cli("report", NAME, *root, "--out", str(out), check=True)
    page = out.read_text()
    assert "Final evaluation (test set)" in page and "looked at 2 times" in page
    # Its own box, before the tracking table (whose validation column it never enters).
    assert page.index("id='final-eval'") < page.index("<section id='tracking'>")
    tracking = page[page.index("<section id='tracking'>"):]
    assert f"{rows[0].metrics['test_error']:.4g}" not in tracking.split("</section>")[0]
    table = out.with_suffix(".csv").read_text()
    assert "test_error" not in table


def test_best_checkpoint_loads_with_torch(finished: Path) -> None:
    path = tunebook.best_checkpoint(NAME, root=finished)
    state = torch.load(path / "state.pt", weights_only=True)
    assert state["step"] == int(path.name.removeprefix("step-"))
    layers = int(path.parents[2].name.removeprefix("num_layers="))  # the trial's study
    digits._model({"num_layers": layers, "width": 16}).load_state_dict(state["model"])
    with pytest.raises(RuntimeError):  # the weights are that trial's: other shapes refuse them
        digits._model({"num_layers": 3, "width": 16}).load_state_dict(state["model"])
    with pytest.raises(tunebook.TunebookError, match=r"trial: experiment .* has no study"):
        tunebook.best_checkpoint(NAME, root=finished, trial="num_layers=9#0")
    with pytest.raises(tunebook.TunebookError, match="no trial 5"):
        tunebook.best_checkpoint(NAME, root=finished, trial="num_layers=1#5")
    with pytest.raises(tunebook.StoreError, match="nosuch"):
        tunebook.best_checkpoint("nosuch", root=finished)


def test_final_eval_on_another_machine_fetches_the_shared_best_checkpoint(
        tmp_path: Path) -> None:
    # The trials ran on machine A, publishing to a shared mount; machine B has the store (the
    # same URL) but none of the trial folders.
    mount, root_a, root_b = tmp_path / "mount", tmp_path / "a", tmp_path / "b"
    mount.mkdir()
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, "checkpoint_root": str(mount)}))
    run_cli("run", str(path), "--root", str(root_a), "--workers", "0", "--quiet",
            "--no-report", check=True)
    url = f"sqlite:///{root_a / 'tunebook.db'}"
    store = _Fresh(root_a)
    [best] = [t for t in store.trials(store.require_experiment(NAME).id)
              if t.id == store.best_trial(store.require_experiment(NAME).id, "minimize").id]
    ref = f"{best.study}#{best.index}"

    done = run_cli("final-eval", NAME, "--root", str(root_b), "--store", url, check=True)
    assert f"checkpoint at step {best.best_step}" in done.stdout
    fetched = root_b / "runs" / NAME / best.study / f"trial-{best.index:05d}" / "checkpoints"
    assert (fetched / f"step-{best.best_step:010d}" / "state.pt").is_file()
    [row] = store.final_evals(store.require_experiment(NAME).id)
    assert row.metrics == pytest.approx(_test_numbers(root_a, ref))
    # The notebook's best_checkpoint fetches the same way on a third machine.
    got = tunebook.best_checkpoint(NAME, root=tmp_path / "c", store=url)
    assert (got / "state.pt").read_bytes() == (fetched / got.name / "state.pt").read_bytes()
    # Without the shared root (nothing published there), the missing folder is said.
    bare = run_cli("final-eval", NAME, "--root", str(tmp_path / "d"), "--store", url, "--again",
                   "--checkpoint-root", str(tmp_path / "empty"))
    assert bare.returncode != 0 and "has no checkpoint" in bare.stderr

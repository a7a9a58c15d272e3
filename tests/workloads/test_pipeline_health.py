"""The pipeline's health on real runs: multi-host seeds (same init, different data), the
data-share timer, a periodic subset with the full set at the end, an imbalanced validation set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tunebook.analysis.checks import run_checks
from tunebook.analysis.data import load
from tunebook.analysis.results import trial_records
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial
from tunebook.experiment import Experiment
from tunebook.store.sql import Store
from tunebook.workloads import common, digits
from tunebook.workloads.digits import load_digits_split
from tunebook.workloads.hosts import host_seeds
from tunebook.workloads.timing import DataShare

from conftest import write_experiment


def test_every_host_shares_the_init_seed_and_not_the_data_seed() -> None:
    seeds = [host_seeds(7, h) for h in range(8)]
    assert len({s.init for s in seeds}) == 1
    assert len({s.data for s in seeds}) == 8 and seeds[0].init not in {s.data for s in seeds}
    assert host_seeds(8, 0).init != seeds[0].init  # another trial starts elsewhere
    assert host_seeds(7, 3) == seeds[3]  # reproducible
    with pytest.raises(ValueError, match="host"):
        host_seeds(7, -1)


def test_data_share_is_the_fetch_time_over_the_step_time() -> None:
    timer = DataShare()
    for _ in range(3):
        timer.begin()
        time.sleep(0.03)  # the batch
        timer.fetched()
        time.sleep(0.01)  # the update
        timer.end()
    time.sleep(0.05)  # an evaluation: not counted
    share = timer.take()
    assert share is not None and 0.6 < share < 0.8
    assert timer.take() is None  # counting starts afresh
    timer.end()  # without begin: nothing
    assert timer.take() is None


def subset_mlp(hparams: dict[str, Any], trial: Trial) -> None:
    """The digits MLP evaluated periodically on 100 validation examples (a workload)."""
    x_train, y_train, x_val, y_val = load_digits_split()
    torch.manual_seed(trial.seed)
    model = digits._model({"width": 16})
    common.train_classifier(trial, model, (x_train, y_train), (x_val, y_val), hparams,
                            val_subset_size=100)


def test_a_periodic_subset_and_the_full_set_at_the_end(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, name="subset", workload="test_pipeline_health:subset_mlp",
                            max_train_steps=10, eval_every=4, scientific={},
                            nuisance={"learning_rate": {"type": "float", "low": 1e-3,
                                                        "high": 1e-2, "scale": "log"}},
                            objective={"metric": "val_error", "goal": "minimize"},
                            search={"algorithm": "quasi_random", "trials": 1, "seed": 1})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    store = Store.at_root(tmp_path / "r")
    (record,) = trial_records(store, "subset")
    assert record.status == "completed", record.error
    curves: dict[str, list[tuple[int, float]]] = {}
    for _, step, metric, value in store.measurements([record.trial_id]):
        curves.setdefault(metric, []).append((step, value))
    assert [s for s, _ in curves["val_error"]] == [4, 8, 10]
    assert curves["val_examples"] == [(4, 100.0)]
    n_val = len(load_digits_split()[3])
    assert curves["val_full_examples"] == [(10, float(n_val))] and n_val > 100
    assert [s for s, _ in curves["val_full_error"]] == [10]
    assert sum(dict(curves[f"val_class{k}_examples"])[10] for k in range(10)) == 100


def imbalanced_mlp(hparams: dict[str, Any], trial: Trial) -> None:
    """The digits MLP validated on a set that keeps 3 examples of class 9 (a workload)."""
    x_train, y_train, x_val, y_val = load_digits_split()
    keep = (y_val != 9) | (torch.cumsum((y_val == 9).long(), 0) <= 3)
    torch.manual_seed(trial.seed)
    model = digits._model({"width": 16})
    common.train_classifier(trial, model, (x_train, y_train), (x_val[keep], y_val[keep]),
                            hparams)


def test_an_imbalanced_validation_set_is_found_from_a_real_run(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, name="imb", workload="test_pipeline_health:imbalanced_mlp",
                            max_train_steps=20, eval_every=10, scientific={},
                            nuisance={"learning_rate": {"type": "float", "low": 1e-3,
                                                        "high": 1e-2, "scale": "log"}},
                            objective={"metric": "val_error", "goal": "minimize"},
                            search={"algorithm": "quasi_random", "trials": 2, "seed": 1})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    data = load(Store.at_root(tmp_path / "r"), "imb")
    (found,) = [f for f in run_checks(data) if f.check == "class_imbalance"
                and f.severity == "info"]
    counts = found.evidence["classes"]
    assert counts["9"]["examples"] == 3 and found.evidence["imbalance_ratio"] >= 10
    assert found.trials and found.advice == {"eval_data": "per_class"}

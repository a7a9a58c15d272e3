"""The built-in workloads, in process and at a tiny size: metrics, schedule, divergence, data."""

from __future__ import annotations

import math
import re
import shutil
import socket
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml

from tunebook.analysis.results import trial_records
from tunebook.errors import WorkloadError
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial
from tunebook.experiment import Experiment
from tunebook.schedules import from_hparams
from tunebook.store.sql import Store
from tunebook.workloads import common, digits, mnist1d, text
from tunebook.workloads.common import BatchOrder

from conftest import write_experiment

EXAMPLES = Path(__file__).parents[2] / "examples"
REQUIRED = {"train_loss", "train_error", "val_loss", "val_error", "grad_norm", "learning_rate",
            "data_share"}
# Reported once, at the first evaluation (the metrics' resolution and chance level).
ONCE = {"train_examples", "val_examples", "val_error_chance", "val_loss_chance"}

# Each workload at a size that trains a few steps in well under a second.
SMALL: dict[str, dict[str, Any]] = {
    "tunebook.workloads.digits:train_mlp": {"num_layers": 2, "width": 16},
    "tunebook.workloads.mnist1d:train_mlp": {"num_layers": 1, "width": 16},
    "tunebook.workloads.mnist1d:train_cnn": {"num_layers": 2, "width": 8, "kernel_size": 3},
    "tunebook.workloads.text:train_transformer": {"num_layers": 1, "width": 16, "num_heads": 2,
                                                  "context_length": 8, "batch_size": 4},
}
# Everything the shared loop supports, switched on.
EVERYTHING = {"schedule": "linear", "warmup_steps": 4, "grad_clip": 1.0, "dropout": 0.1,
              "label_smoothing": 0.1, "weight_decay": 1e-4, "optimizer": "nadam"}
LR_RANGE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "scale": "log"}}


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root for the whole module: MNIST-1D is generated into its cache once."""
    return tmp_path_factory.mktemp("root")


def _run(folder: Path, root: Path, name: str, workload: str, fixed: dict[str, Any],
         steps: int = 10, every: int = 4, trials: int = 1,
         nuisance: dict[str, Any] | None = None) -> tuple[Store, list[Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_experiment(folder, name=name, workload=workload, max_train_steps=steps,
                            eval_every=every, scientific={}, nuisance=nuisance or LR_RANGE,
                            objective={"metric": "val_error", "goal": "minimize"},
                            search={"algorithm": "quasi_random", "trials": trials, "seed": 1},
                            fixed=fixed)
    run(Experiment.from_yaml(path), root=root, workers=0)
    store = Store.at_root(root)
    return store, trial_records(store, name)


def _curves(store: Store, trial_id: int) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    for _, step, metric, value in store.measurements([trial_id]):
        curves.setdefault(metric, []).append((step, value))
    return curves


def _class_counts(curves: dict[str, list[tuple[int, float]]], workload: str) -> set[str]:
    """The per-class count metrics: 10 classes' for the digit workloads (counts that add up to
    the validation set), none for the byte-level language model (256 classes, over the cap)."""
    names = {m for m in curves if re.fullmatch(r"val_class\d+_(correct|examples)", m)}
    if "text" in workload:
        assert not names
        return names
    assert len(names) == 20, sorted(names)
    steps = {s for s, _ in curves["val_error"]}
    for k in range(10):
        for kind in ("correct", "examples"):
            assert {s for s, _ in curves[f"val_class{k}_{kind}"]} == steps
    last = max(steps)
    at = {m: dict(curves[m])[last] for m in names}
    total = sum(at[f"val_class{k}_examples"] for k in range(10))
    assert total == dict(curves["val_examples"])[min(steps)]
    wrong = total - sum(at[f"val_class{k}_correct"] for k in range(10))
    assert wrong == pytest.approx(dict(curves["val_error"])[last] * total)
    return names


@pytest.mark.parametrize("workload", sorted(SMALL))
def test_every_metric_at_every_evaluation_with_warmup_schedule(
        tmp_path: Path, shared_root: Path, workload: str) -> None:
    name = workload.rsplit(".", 1)[1].replace(":", "-").replace("_", "-")
    store, (record,) = _run(tmp_path, shared_root, name, workload,
                            {**SMALL[workload], **EVERYTHING})
    assert record.status == "completed", record.error
    curves = _curves(store, record.trial_id)
    classes = _class_counts(curves, workload)
    assert set(curves) == REQUIRED | ONCE | {"clip_fraction"} | classes  # clipping is on
    for metric, points in curves.items():
        # grad_norm at every update; the rest at every eval, and the last step.
        want_steps = ([*range(1, 11)] if metric == "grad_norm" else [4] if metric in ONCE
                      else [4, 8, 10])
        assert [s for s, _ in points] == want_steps, metric
        assert all(math.isfinite(v) for _, v in points), metric
    for metric in ("train_error", "val_error", "clip_fraction", "data_share"):
        assert all(0.0 <= v <= 1.0 for _, v in curves[metric]), metric
    for metric in ("train_loss", "val_loss", "grad_norm"):
        assert all(v > 0 for _, v in curves[metric]), metric
    # The rate of the last update before each evaluation (update s uses schedule(s), s from 0):
    # warmup over updates 0-3, then a linear decay over the remaining 6 that would reach 0 at
    # update 10.
    lr = record.params["learning_rate"]
    schedule = from_hparams(record.params, 10)
    want = [lr * 3 / 4, lr * (1 - 3 / 6), lr * (1 - 5 / 6)]
    assert [schedule(s - 1) for s in (4, 8, 10)] == pytest.approx(want)
    assert [v for _, v in curves["learning_rate"]] == pytest.approx(want, rel=1e-12)


def test_defaults_report_exactly_the_required_metrics(tmp_path: Path) -> None:
    store, (record,) = _run(tmp_path, tmp_path / "r", "defaults",
                            "tunebook.workloads.digits:train_mlp", {}, steps=6, every=3)
    assert record.status == "completed", record.error
    curves = _curves(store, record.trial_id)
    classes = _class_counts(curves, "tunebook.workloads.digits:train_mlp")
    assert set(curves) == REQUIRED | ONCE | classes  # no clip_fraction without grad_clip
    assert [v for _, v in curves["learning_rate"]] == [record.params["learning_rate"]] * 2
    assert record.best_step in (3, 6) and 0 <= (record.best_value or -1) <= 1


@pytest.mark.parametrize("workload", ["tunebook.workloads.digits:train_mlp",
                                      "tunebook.workloads.text:train_transformer"])
def test_a_huge_learning_rate_is_infeasible_not_failed(tmp_path: Path, workload: str) -> None:
    _, records = _run(tmp_path, tmp_path / "r", "diverge", workload,
                      {**SMALL[workload], "optimizer": "sgd"}, steps=40, every=10, trials=2,
                      nuisance={"learning_rate": {"type": "float", "low": 1e5, "high": 1e6,
                                                  "scale": "log"}})
    for r in records:
        assert r.status == "infeasible", r.error
        assert r.infeasible_reason is not None and (
            r.infeasible_reason.startswith(("training loss is ", "gradient norm is "))
            and r.infeasible_reason.endswith(("nan", "inf"))), r.infeasible_reason
        assert r.infeasible_step is not None and 1 <= r.infeasible_step <= 40


def test_an_unknown_hyperparameter_stops_the_run_with_a_hint(tmp_path: Path) -> None:
    # One trial fails that way: its trial fails (it could be the trial's own values).
    _, (record,) = _run(tmp_path, tmp_path / "r", "typo", "tunebook.workloads.digits:train_mlp",
                        {"num_layer": 2}, steps=4, every=2)
    assert record.status == "failed"
    hint = "unknown hyperparameter 'num_layer' (did you mean 'num_layers'?)"
    assert hint in (record.error or "")
    # The second one that fails the same way shows the workload cannot start: the run stops.
    with pytest.raises(WorkloadError, match="could not start: ValueError: " + re.escape(hint)):
        _run(tmp_path, tmp_path / "r2", "typo", "tunebook.workloads.digits:train_mlp",
             {"num_layer": 2}, steps=4, every=2, trials=5)
    records = trial_records(Store.at_root(tmp_path / "r2"), "typo")
    assert [r.status for r in records] == ["failed", "failed", "pending", "pending", "pending"]
    assert "unknown hyperparameter 'num_layer' (did you mean 'num_layers'?)" in (record.error
                                                                                  or "")


@pytest.mark.parametrize(("module", "names"), [
    (digits, digits.HPARAMS), (mnist1d, mnist1d.MLP_HPARAMS | mnist1d.CNN_HPARAMS),
    (text, text.HPARAMS), (common, common.TRAINING_HPARAMS)])
def test_every_hyperparameter_is_documented(module: ModuleType, names: frozenset[str]) -> None:
    doc = module.__doc__ or ""
    own = names - common.TRAINING_HPARAMS if module is not common else names
    assert sorted(n for n in own if f"``{n}``" not in doc) == []
    if module is not common:
        assert "tunebook.workloads.common" in doc  # where the training ones are
    for name in module.__all__:
        obj = getattr(module, name)
        assert not callable(obj) or obj.__doc__, name


def test_batch_order_is_a_pure_function_of_seed_and_step() -> None:
    ordered = BatchOrder(10, 3, seed=7)
    batches = [ordered(s).tolist() for s in range(9)]  # 3 batches per epoch, 1 example dropped
    for epoch in range(3):
        seen = [i for batch in batches[3 * epoch:3 * epoch + 3] for i in batch]
        assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert batches[0:3] != batches[3:6]  # a new permutation every epoch
    assert [BatchOrder(10, 3, seed=7)(s).tolist() for s in (8, 2, 5)] == [
        batches[8], batches[2], batches[5]]  # any step, in any order, in a fresh object
    assert BatchOrder(10, 3, seed=8)(0).tolist() != batches[0]
    with pytest.raises(ValueError, match="batch_size"):
        BatchOrder(10, 11, seed=0)


# --------------------------------------------------------------------------- MNIST-1D data
@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download fails the test: mnist1d's get_dataset, requests, sockets."""
    import mnist1d.data
    import requests

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d, "get_dataset", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_mnist1d_is_generated_offline_and_cached_once(tmp_path: Path, no_network: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mnist1d._arrays.cache_clear()
    mnist1d.load_mnist1d.cache_clear()
    x_train, y_train, x_val, y_val = mnist1d.load_mnist1d(str(tmp_path))
    assert (x_train.shape, y_train.shape, x_val.shape, y_val.shape) == (
        (3000, 40), (3000,), (1000, 40), (1000,))
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert set(y_train.tolist()) == set(range(10))
    path = mnist1d.cache_file(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    stamp = path.stat().st_mtime_ns, path.stat().st_ino

    def no_generation() -> Any:
        raise AssertionError("the cached file was not reused")

    monkeypatch.setattr(mnist1d, "_generate", no_generation)
    mnist1d._arrays.cache_clear()  # a new worker process: reads the file
    mnist1d.load_mnist1d.cache_clear()
    again = mnist1d.load_mnist1d(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(again, (x_train, y_train, x_val, y_val),
                                                 strict=True))
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    assert mnist1d.load_mnist1d(str(tmp_path))[0] is again[0]  # and once per process


def test_mnist1d_generation_does_not_disturb_global_generators(tmp_path: Path) -> None:
    import random

    import numpy as np

    random.seed(5)
    np.random.seed(5)
    want = random.random(), np.random.rand()
    random.seed(5)
    np.random.seed(5)
    mnist1d._arrays.cache_clear()
    mnist1d.load_mnist1d.cache_clear()
    mnist1d.load_mnist1d(str(tmp_path))  # make_dataset reseeds both with 42
    assert (random.random(), np.random.rand()) == want


# --------------------------------------------------------------------------- the transformer
class _Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        self.rows += rows

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        pass

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        return 0


def _transformer_rows(folder: Path, seed: int) -> list[tuple[int, str, float]]:
    hparams = {**SMALL["tunebook.workloads.text:train_transformer"], "dropout": 0.1}
    sink = _Sink()
    trial = Trial(hparams=hparams, max_train_steps=6, eval_every=3, seed=seed, dir=folder,
                  sink=sink, objective="val_loss")
    torch.manual_seed(seed)  # as the worker does; the workload seeds the model itself too
    text.train_transformer(hparams, trial)
    trial.flush()
    # data_share is a timing of this machine, not a result: it is not reproducible.
    return [row for row in sink.rows if row[1] != "data_share"]


def test_transformer_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    first = _transformer_rows(tmp_path / "a", seed=3)
    assert first == _transformer_rows(tmp_path / "b", seed=3)
    assert first != _transformer_rows(tmp_path / "c", seed=4)
    val_error = [v for s, m, v in first if m == "val_error"]
    assert len(val_error) == 2 and all(0 <= v <= 1 for v in val_error)


def test_transformer_windows_predict_the_next_byte() -> None:
    stream = torch.arange(10)
    inputs, targets = text.windows(stream, 4)
    assert inputs.shape == targets.shape == (6, 4)
    assert torch.equal(targets, inputs + 1)
    inputs, _ = text.windows(stream, 4, stride=4)
    assert inputs.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    train, val = text.load_text()
    assert len(train) > 8 * len(val) > 0 and int(train.max()) < text.VOCAB_SIZE


# --------------------------------------------------------------------------- examples
NEW_EXAMPLES = ["mnist1d_cnn_depth.yaml", "mnist1d_mlp_dropout.yaml", "text_warmup.yaml"]


def test_the_new_examples_are_the_ones_tested_here() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert [n for n in names if n.startswith(("mnist1d_", "text_"))] == NEW_EXAMPLES


@pytest.mark.parametrize("example", NEW_EXAMPLES)
def test_example_runs_at_a_small_size(tmp_path: Path, shared_root: Path, example: str) -> None:
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    doc.update(max_train_steps=6, eval_every=3)
    doc["search"]["trials"] = 1
    # Keep the examples' hyperparameters but shrink the models the way a test can afford.
    doc["fixed"] = {**doc["fixed"], **{k: v for k, v in SMALL[doc["workload"]].items()
                                       if k in doc["fixed"] or k == "num_heads"}}
    if "warmup_steps" in doc["scientific"]:
        doc["scientific"]["warmup_steps"] = [0, 2]
    if "warmup_steps" in doc["fixed"]:
        doc["fixed"]["warmup_steps"] = 2
    shutil.copytree(EXAMPLES, tmp_path / "ex")
    path = tmp_path / "ex" / example
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run(Experiment.from_yaml(path), root=shared_root, workers=0)
    records = trial_records(Store.at_root(shared_root), doc["name"])
    assert len(records) == 2  # one trial in each of the two studies
    for r in records:
        assert r.status == "completed", r.error
        assert r.best_value is not None and math.isfinite(r.best_value)
        assert r.final_step == 6


def test_grad_norm_every_update_and_the_log_defers_to_the_report(tmp_path: Path) -> None:
    # grad_clip far below every norm: the >50% warning is logged and clip_fraction says so.
    store, (record,) = _run(tmp_path, tmp_path / "r", "clip", "tunebook.workloads.digits:train_mlp",
                            {"grad_clip": 1e-4, "width": 16}, steps=12, every=5)
    assert record.status == "completed", record.error
    curves = _curves(store, record.trial_id)
    assert [s for s, _ in curves["grad_norm"]] == list(range(1, 13))
    assert all(v > 1e-4 for _, v in curves["grad_norm"])  # unclipped norms, not the clipped
    assert curves["clip_fraction"][-1] == (12, 1.0)
    log = (tmp_path / "r" / "runs" / "clip" / "main" / "trial-00000" / "log.txt").read_text()
    # The trial's own percentile says what it is, and points to the per-study threshold.
    assert "this trial's last 12 unclipped gradient norms: 90th percentile" in log
    assert "late training only" in log and "per-study threshold" in log
    assert "clipped 12 of 12 steps (100%, more than 50%)" in log

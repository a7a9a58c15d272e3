"""The one trial record above the store and its one loader (``tunebook.analysis.data.load``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tunebook
from tunebook import cli
from tunebook.analysis import ExperimentData, TrialData, load
from tunebook.analysis.results import TrialRecord, csv_cell, trial_records
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import write_experiment
from toy import expected_value


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An experiment of 2 studies x 3 trials run to the end, then registered again with 2
    trials per study: each study's third trial stays in the store, dormant."""
    tmp = tmp_path_factory.mktemp("loader")
    path = write_experiment(tmp, search={"algorithm": "quasi_random", "trials": 3, "seed": 1})
    run(Experiment.from_yaml(path), root=tmp / "r", workers=0)
    doc = yaml.safe_load(path.read_text())
    doc["search"]["trials"] = 2
    path.write_text(yaml.safe_dump(doc))
    run(Experiment.from_yaml(path), root=tmp / "r", workers=0)
    return path, tmp / "r"


def test_one_record_type_importable_under_every_old_name() -> None:
    assert TrialRecord is TrialData is tunebook.TrialRecord
    assert tunebook.trial_records is trial_records
    assert ExperimentData.__module__ == "tunebook.analysis.data"


def test_current_keeps_only_trials_within_the_budget(shrunk: tuple[Path, Path]) -> None:
    _, root = shrunk
    store = Store.at_root(root, create=False)
    every = load(store, "toy")
    current = load(store, "toy", current=True)
    assert sorted((t.study, t.index) for t in every.trials) == [
        (s, i) for s in ("arm=a", "arm=b") for i in range(3)]
    assert sorted((t.study, t.index) for t in current.trials) == [
        (s, i) for s in ("arm=a", "arm=b") for i in range(2)]
    records = trial_records(store, "toy")
    assert [(r.study, r.index) for r in records] == [(t.study, t.index) for t in current.trials]
    store.close()


def test_records_carry_values_not_curves_and_agree_with_the_full_loader(
        shrunk: tuple[Path, Path]) -> None:
    _, root = shrunk
    store = Store.at_root(root, create=False)
    records = trial_records(store, "toy")
    full = {t.id: t for t in load(store, "toy").trials}
    for r in records:
        # Finished trials under the experiment's objective: the store's own summaries.
        assert r.curves == {} and set(full[r.id].curves) == {"loss", "other"}
        assert (r.best_step, r.best_value, r.final_step, r.final_value) == (
            full[r.id].best_step, full[r.id].best_value, full[r.id].final_step,
            full[r.id].final_value)
        values = [expected_value(r.params, s) for s in (10, 20, 30, 40)]
        assert r.best_value == min(values) and r.final_value == values[-1]
        assert (r.best_step, r.final_step) == (10 + 10 * values.index(min(values)), 40)
        assert r.trial_id == r.id and r.attempts == 1 and r.status == "completed"
    # Another metric: its own curve, its own direction (guessed: `other` is minimised).
    other = trial_records(store, "toy", "other")
    for r in other:
        assert r.curves == {}
        assert r.best_value == min(-expected_value(r.params, s) for s in (10, 20, 30, 40))
    only = load(store, "toy", metrics=["other"])
    assert all(set(t.curves) == {"loss", "other"} for t in only.trials)
    store.close()


def test_json_schema_of_a_record(shrunk: tuple[Path, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, root = shrunk
    store = Store.at_root(root, create=False)
    record = trial_records(store, "toy")[0]
    d = record.as_dict()
    assert list(d) == ["study", "index", "status", "params", "seed", "attempts", "best_step",
                       "best_value", "final_step", "final_value", "run_seconds", "trial_id",
                       "error", "infeasible_reason", "infeasible_step"]
    assert json.loads(json.dumps(d)) == d and d["trial_id"] == record.id
    assert cli.main(["trials", "toy", "--root", str(root), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    # the command line adds each trial's best checkpoint folder (None when none is kept)
    assert all("checkpoint" in r for r in listed)
    assert [{k: v for k, v in r.items() if k != "checkpoint"} for r in listed] == [
        r.as_dict() for r in trial_records(store, "toy")]
    store.close()


def test_csv_cell_guards_formulas() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+x", "-y", "@z", "\tq", "ok", 1.5, None)] == [
        "'=1+1", "'+x", "'-y", "'@z", "'\tq", "ok", 1.5, ""]


@pytest.mark.parametrize("many", [False, True])
def test_records_of_unfinished_trials_are_summarised_from_their_curves(
        tmp_path: Path, many: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running trial has no stored summary yet: its live best comes from its curve, through
    an IN list of its id or, past the list's limit, one query for the experiment."""
    from tunebook.analysis import data as data_module
    from tunebook.execution.runner import materialize

    if many:
        monkeypatch.setattr(data_module, "_IN_LIST_LIMIT", 0)
    exp = Experiment.from_yaml(write_experiment(tmp_path, scientific={}, search={"trials": 3}))
    store = Store.at_root(tmp_path / "r")
    exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), *materialize(exp))
    done = store.claim(exp_id, "w1")
    live = store.claim(exp_id, "w2")
    assert done is not None and live is not None
    store.add_measurements(done.id, [(10, "loss", 0.5), (20, "loss", 0.25)])
    store.add_measurements(live.id, [(10, "loss", 0.75), (20, "loss", 0.375), (30, "loss", 0.5)])
    store.finish(done.id, "w1", "completed", best_step=20, best_value=0.25, final_step=20,
                 final_value=0.25)
    records = {r.id: r for r in trial_records(store, "toy")}
    assert (records[done.id].best_value, records[done.id].status) == (0.25, "completed")
    assert records[live.id].status == "running"
    assert (records[live.id].best_step, records[live.id].best_value) == (20, 0.375)
    assert (records[live.id].final_step, records[live.id].final_value) == (30, 0.5)
    assert [r.best_value for r in records.values() if r.id not in (done.id, live.id)] == [None]
    store.close()


def test_a_budget_samples_the_curves_past_each_studys_best_trials(tmp_path: Path) -> None:
    doc = {"name": "long", "workload": "tunebook.workloads.synthetic:quadratic",
           "objective": {"metric": "val_loss", "goal": "minimize"},
           "max_train_steps": 300, "eval_every": 10,
           "search": {"algorithm": "quasi_random", "trials": 8, "seed": 0},
           "scientific": {"y": [0.0, -0.2]},
           "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 10.0,
                                          "scale": "log"}}}
    run(Experiment.from_dict(doc, source="long.yaml"), root=tmp_path, workers=0)
    store = Store.at_root(tmp_path)
    full = load(store, "long")
    # 16 trials, 160 points of each metric: 10 per curve, every 3rd of 30 evaluations.
    sampled = load(store, "long", budget=160, full_top=2)
    assert [t.as_dict() for t in sampled.trials] == [t.as_dict() for t in full.trials]
    best = {t.id for s in full.studies for t in full.ranked(s)[:2]}
    n_sampled = 0
    for f, s in zip(full.trials, sampled.trials, strict=True):
        assert set(s.curves) == set(f.curves)
        for metric, curve in s.curves.items():
            if f.id in best:
                assert curve == f.curves[metric] and not curve.sampled
                continue
            assert curve.every == 30 and curve.sampled
            n_sampled += 1
            whole = dict(zip(f.curves[metric].steps, f.curves[metric].values, strict=True))
            # Also each curve's last point: where a diverged trial stopped.
            last = max(whole)
            assert list(curve.steps) == [st for st in whole
                                         if st == 10 or st % 30 == 0 or st == last]
            assert [repr(v) for v in curve.values] == [repr(whole[st]) for st in curve.steps]
    assert n_sampled > 0
    # Short curves, or a budget they fit in: every point, the same data as without one.
    assert load(store, "long", budget=10_000, full_top=0).trials == full.trials
    # Another objective than the experiment's: the store holds no summaries for it to trust.
    other = load(store, "long", metric="train_loss", budget=160, full_top=2)
    assert not any(c.sampled for t in other.trials for c in t.curves.values())

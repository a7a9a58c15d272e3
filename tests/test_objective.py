"""The one objective: its rules, and every entry point ranking the same trials the same way."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunebook import cli
from tunebook.analysis import load
from tunebook.analysis.results import best_per_study, trial_records
from tunebook.execution.runner import run
from tunebook.execution.trial import Trial
from tunebook.experiment import Experiment
from tunebook.objective import (
    CurveSummary,
    Objective,
    guess_goal,
    parse_goal,
    resolve,
    summarize,
)
from tunebook.report import write_report
from tunebook.store.sql import Store

from conftest import write_experiment

# ----------------------------------------------------------------------------- the rules

@dataclass(frozen=True)
class _T:
    id: int
    index: int
    status: str
    best_value: float | None
    final_value: float | None = None


def test_goal_guessed_from_the_metric_name() -> None:
    for name in ("accuracy", "val_acc", "top-1-accuracy", "AUC", "mean_reward", "f1"):
        assert guess_goal(name) == "maximize", name
    for name in ("loss", "val_error", "perplexity", "error_rate", "accurate_loss", "xyz"):
        assert guess_goal(name) == "minimize", name


def test_goal_parsed_with_aliases_and_nothing_else() -> None:
    assert [parse_goal(g) for g in ("min", "max", "minimize", "maximize")] == [
        "minimize", "maximize", "minimize", "maximize"]
    assert [parse_goal(g) for g in ("Maximize", "up", "", None, 1)] == [None] * 5


def test_resolve_defaults_guesses_and_overrides() -> None:
    stored = {"metric": "loss", "goal": "minimize"}
    assert resolve(stored) == Objective("loss", "minimize", "best")
    assert resolve(Objective("acc", "maximize")) == Objective("acc", "maximize")
    # Another metric without a goal: guessed from its name, not the experiment's goal.
    assert resolve(stored, "accuracy") == Objective("accuracy", "maximize")
    assert resolve(stored, "val_error") == Objective("val_error", "minimize")
    # The experiment's own metric keeps the experiment's goal, even against the name.
    assert resolve({"metric": "score", "goal": "minimize"}).goal == "minimize"
    assert resolve(stored, "accuracy", "min") == Objective("accuracy", "minimize")
    assert resolve(stored, None, "max", True) == Objective("loss", "maximize", "final")
    assert resolve(Objective("loss", mode="final")).mode == "final"
    assert resolve(Objective("loss", mode="final"), final=False).mode == "best"
    with pytest.raises(ValueError, match="minimize or maximize"):
        resolve(stored, goal="up")


def test_better_sign_and_value() -> None:
    low, high = Objective("m", "minimize"), Objective("m", "maximize", "final")
    assert low.better(1.0, 2.0) and not low.better(2.0, 1.0) and not low.better(1.0, 1.0)
    assert high.better(2.0, 1.0) and not high.better(1.0, 2.0) and not high.better(1.0, 1.0)
    assert (low.sign, high.sign) == (1.0, -1.0)
    t = _T(1, 0, "completed", best_value=0.9, final_value=0.4)
    assert (low.value(t), high.value(t), low.final, high.final) == (0.9, 0.4, False, True)


def test_ranking_puts_unusable_trials_last_and_breaks_ties_by_index_then_id() -> None:
    trials = [
        _T(1, 0, "failed", 0.1), _T(2, 1, "completed", 0.5), _T(3, 2, "completed", None),
        _T(4, 3, "completed", math.nan), _T(5, 4, "infeasible", 0.0), _T(6, 5, "completed", 0.2),
        _T(7, 6, "completed", 0.5), _T(8, 1, "completed", 0.5), _T(9, 7, "running", 0.0),
        _T(10, 8, "completed", math.inf),
    ]
    low, high = Objective("m", "minimize"), Objective("m", "maximize")
    assert [t.id for t in low.ranked(trials)] == [6, 2, 8, 7]
    assert [t.id for t in high.ranked(trials)] == [2, 8, 7, 6]
    ordered = sorted(trials, key=high.rank_key)
    assert [t.id for t in ordered] == [2, 8, 7, 6, 1, 3, 4, 5, 9, 10]
    assert all(not high.usable(t) for t in ordered[4:])


def test_best_of_and_best_point_skip_non_finite_and_keep_the_earliest_step() -> None:
    low, high = Objective("m", "minimize"), Objective("m", "maximize")
    values = [0.5, None, math.nan, 0.2, 0.9, math.inf]
    assert (low.best_of(values), high.best_of(values)) == (0.2, 0.9)
    assert low.best_of([None, math.nan]) is None and high.best_of([]) is None
    curve = [(30, 0.4), (10, 0.5), (20, 0.9), (40, 0.9), (50, math.nan)]
    assert high.best_point(curve) == (20, 0.9) and low.best_point(curve) == (30, 0.4)
    assert (high.best_step(curve), low.best_step([(1, math.nan)])) == (20, None)
    # Every value finite (the fast path): ties keep the earliest step too.
    finite_curve = [(30, 0.4), (10, 0.5), (20, 0.9), (40, 0.9), (5, 0.4)]
    assert low.best_point(finite_curve) == (5, 0.4) and high.best_point(finite_curve) == (20, 0.9)
    # A bool is not a usable number, an int is.
    assert high.best_point([(1, True), (2, 0.5), (3, 0)]) == (2, 0.5)
    assert low.best_point([(1, True), (2, 0.5), (3, 0)]) == (3, 0)


def test_summaries_of_a_curve() -> None:
    curve = [(3, 0.6), (1, 0.5), (2, 0.9), (4, math.nan)]
    assert summarize(curve, "maximize") == CurveSummary(2, 0.9, 4, None)
    assert summarize(curve) == CurveSummary(1, 0.5, 4, None)
    assert summarize([]) == CurveSummary(None, None, None, None)
    assert Objective("m", "maximize").summarize(curve).value(final=True) is None
    rows = [(1, 1, "m", 0.5), (1, 2, "m", 0.7), (1, 2, "other", 9.0), (2, 1, "other", 1.0)]
    got = Objective("m", "maximize").summaries(rows, [1, 2])
    assert got == {1: CurveSummary(2, 0.7, 2, 0.7), 2: CurveSummary(None, None, None, None)}


# ----------------------------------------------------------------------------- entry points

STEPS = (10, 20, 30, 40)
SHAPE = (0.2, 0.8, 0.6, 0.4)  # rises then falls: best and final rank differently


def accuracy_and_loss(hparams: dict[str, Any], trial: Trial) -> None:
    """Accuracy peaking at step 20 above 0.5 for x > 0.5, dipping below it for x < 0.5; the loss
    mirrors it. Trials with x > 0.85 are declared infeasible after one evaluation."""
    x = float(hparams["x"])
    for step, k in zip(STEPS, SHAPE, strict=True):
        acc = round(0.5 + (x - 0.5) * k, 9)
        trial.report(step, accuracy=acc, loss=round(1.0 - acc + 0.05 * k * x, 9))
        if x > 0.85:
            raise trial.infeasible("too good to be true")


def _expected(store: Store, name: str, metric: str, final: bool) -> dict[str, list[int]]:
    """Each study's completed trials best first, computed here from the raw curves with the
    direction a reader expects of the metric's name (not through tunebook's objective)."""
    maximize = metric == "accuracy"
    exp = store.require_experiment(name)
    curves: dict[int, list[tuple[int, float]]] = {}
    for tid, step, _, v in store.measurements(experiment_id=exp.id, metric=metric):
        curves.setdefault(tid, []).append((step, v))
    out: dict[str, list[tuple[float, int]]] = {}
    for t in store.trials(exp.id):
        if t.status != "completed":
            out.setdefault(t.study, [])
            continue
        values = [v for _, v in sorted(curves[t.id])]
        v = values[-1] if final else (max(values) if maximize else min(values))
        out.setdefault(t.study, []).append((-v if maximize else v, t.index))
    return {s: [i for _, i in sorted(vs)] for s, vs in out.items()}


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two stores of the same trials: the experiment maximises accuracy in one and minimises
    the loss in the other."""
    out = {}
    for metric, goal in (("accuracy", "maximize"), ("loss", "minimize")):
        tmp = tmp_path_factory.mktemp(metric)
        path = write_experiment(tmp, name=f"rank-{metric}", workload="test_objective:"
                                "accuracy_and_loss", objective={"metric": metric, "goal": goal},
                                search={"algorithm": "quasi_random", "trials": 7, "seed": 5})
        run(Experiment.from_yaml(path), root=tmp / "r", workers=0)
        out[metric] = tmp / "r"
    return out


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("metric", [None, "accuracy", "loss"])
@pytest.mark.parametrize("experiment_metric", ["accuracy", "loss"])
def test_every_entry_point_ranks_the_same_trials_the_same_way(
        runs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        experiment_metric: str, metric: str | None, final: bool) -> None:
    root, name = runs[experiment_metric], f"rank-{experiment_metric}"
    store = Store.at_root(root, create=False)
    chosen = metric or experiment_metric
    expected = _expected(store, name, chosen, final)
    assert sum(len(v) for v in expected.values()) >= 6, "too few completed trials to compare"
    assert any(t.status == "infeasible" for t in store.trials(store.require_experiment(name).id))
    flags = (["--metric", metric] if metric else []) + (["--final"] if final else [])

    # The analysis and the report.
    data = load(store, name, metric=metric, final=final)
    assert data.goal == ("maximize" if chosen == "accuracy" else "minimize")
    assert {s: [t.index for t in data.ranked(s)] for s in data.studies} == expected
    _, report = write_report(store, name, tmp_path / "report.html", metric=metric, final=final)
    rows = {r["study"]: r for r in csv.DictReader(io.StringIO(report.csv))}
    for study, order in expected.items():
        assert rows[study]["best_trial"] == f"{study} #{order[0]}"

    # `tunebook best` and its records.
    best = _cli_json(capsys, "best", name, "--root", str(root), "--top", "99", "--format",
                     "json", *flags)
    assert {s: [r["index"] for r in rs] for s, rs in best.items()} == expected
    records = trial_records(store, name, metric)
    assert {s: [r.index for r in rs] for s, rs in best_per_study(records, data.objective)
            .items()} == expected

    # `tunebook trials` and trial_records carry the same values as the analysis.
    listed = _cli_json(capsys, "trials", name, "--root", str(root), "--format", "json", *flags)
    by_trial = {(t.study, t.index): t for t in data.trials}
    assert len(listed) == len(records) == len(by_trial)
    for row, rec in zip(listed, records, strict=True):
        t = by_trial[(row["study"], row["index"])]
        assert (rec.study, rec.index) == (row["study"], row["index"])
        for key in ("best_step", "best_value", "final_step", "final_value"):
            assert row[key] == getattr(rec, key) == getattr(t, key), key

    # The store's own summaries (the runner's) and its best trial, for the experiment's
    # objective: what the progress line shows.
    if chosen == experiment_metric and not final:
        exp = store.require_experiment(name)
        for row_ in store.trials(exp.id):
            t = by_trial[(row_.study, row_.index)]
            assert (row_.best_step, row_.best_value) == (t.best_step, t.best_value)
        top = store.best_trial(exp.id, data.goal)
        assert top is not None and (top.study, top.index) == (
            data.ranked()[0].study, data.ranked()[0].index)
    store.close()


def test_a_metric_named_without_goal_is_ranked_in_its_own_direction(
        runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: best accuracy is the highest point of its curve everywhere."""
    store = Store.at_root(runs["loss"], create=False)
    records = trial_records(store, "rank-loss", "accuracy")
    data = load(store, "rank-loss", metric="accuracy")
    listed = _cli_json(capsys, "trials", "rank-loss", "--root", str(runs["loss"]), "--format",
                       "json", "--metric", "accuracy")
    for rec, t, row in zip(records, data.trials, listed, strict=True):
        curve = t.curves["accuracy"].finite().values
        assert rec.best_value == t.best_value == row["best_value"] == max(curve)
    store.close()

"""A tiny real procedure end to end: plan two experiments, run them, recommend, read it back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tunebook import procedures
from tunebook.analysis.findings import Finding
from tunebook.experiment import Experiment
from tunebook.procedures import Outcome, Procedure, Recommendation
from tunebook.store.sql import Store

from conftest import write_experiment


@procedures.procedure("test-eval-every")
class EvalEvery(Procedure):
    """Evaluate as often as the base does, and half as often: keep the cheaper one if it
    finds as good a best value."""

    def plan(self, base: Experiment) -> list[Experiment]:
        return [self.variant(base, f"every-{e}", eval_every=e)
                for e in (base.eval_every, 2 * base.eval_every)]

    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        evidence = {}
        for o in outcomes:
            assert o.best is not None and o.best.best_value is not None
            evidence[o.experiment.name] = {
                "eval_every": o.experiment.eval_every, "best_value": o.best.best_value,
                "completed": sum(t.status == "completed" for t in o.trials)}
        fine, coarse = (evidence[o.experiment.name] for o in outcomes)
        keep = coarse if coarse["best_value"] <= fine["best_value"] + 1e-9 else fine
        findings = () if keep is coarse else (Finding(
            "eval-every-too-coarse", "info", "evaluating less often missed the best step",
            {"difference": coarse["best_value"] - fine["best_value"]}),)
        return Recommendation(
            self.name, base.name, f"evaluate every {keep['eval_every']} steps", evidence,
            findings, tuple(o.experiment.name for o in outcomes))


def test_a_procedure_runs_its_experiments_and_its_recommendation_round_trips(
        tmp_path: Path) -> None:
    base = Experiment.from_yaml(write_experiment(tmp_path, scientific={}))
    root = tmp_path / "root"
    rec = procedures.run_procedure("test-eval-every", base, root=root, workers=2)
    assert rec is not None
    # The curve's best is its last step (40), which both schedules evaluate.
    assert rec.text == "evaluate every 20 steps"
    names = ("toy.test-eval-every.every-10", "toy.test-eval-every.every-20")
    assert rec.experiments == names
    assert rec.evidence[names[0]]["best_value"] == rec.evidence[names[1]]["best_value"]
    assert [rec.evidence[n]["completed"] for n in names] == [4, 4]
    store = Store.at_root(root, create=False)
    try:
        # Both experiments ran through the runner into the same store.
        assert [store.require_experiment(n).config["eval_every"] for n in names] == [10, 20]
        assert procedures.recommendations(store, "toy") == [rec]
        assert procedures.recommendations(store, "toy", procedure="other") == []
    finally:
        store.close()
    page = (root / "reports" / "toy--test-eval-every.md").read_text()
    assert page.startswith("# test-eval-every: toy\n\nevaluate every 20 steps\n")
    assert "- toy.test-eval-every.every-20" in page


def test_a_recommendation_with_findings_survives_the_store(tmp_path: Path) -> None:
    rec = Recommendation("p", "base", "do this", {"n": 3, "values": [0.5, None]},
                         (Finding("c", "warning", "look", {"k": 1}, "section", "act"),),
                         ("a", "b"))
    store = Store.at_root(tmp_path)
    try:
        first = store.add_recommendation("base", "p", rec.as_dict())
        assert store.add_recommendation("base", "p", rec.as_dict()) == first + 1
        assert procedures.recommendations(store, "base") == [rec, rec]
        with pytest.raises(ValueError):
            store.add_recommendation("base", "p", {"evidence": float("nan")})
    finally:
        store.close()
    assert "- **warning** look (act)" in rec.markdown()


def test_the_registry() -> None:
    assert "test-eval-every" in procedures.procedure_names()
    assert isinstance(procedures.make_procedure("test-eval-every"), EvalEvery)
    with pytest.raises(ValueError, match=r"unknown procedure 'nope'; one of .*test-eval-every"):
        procedures.make_procedure("nope")
    with pytest.raises(ValueError, match="already registered"):
        @procedures.procedure("test-eval-every")
        class Again(EvalEvery):
            pass


@procedures.procedure("test-staged")
class Staged(Procedure):
    """Run the base; only if its best value is above a threshold, run a second stage."""

    def plan(self, base: Experiment) -> list[Experiment]:
        return [self.variant(base, "first")]

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        if len(outcomes) == 1:
            return [self.variant(base, "second", eval_every=2 * base.eval_every)]
        return []

    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        return Recommendation(self.name, base.name, f"{len(outcomes)} stages",
                              {"stages": len(outcomes)},
                              experiments=tuple(o.experiment.name for o in outcomes),
                              values={"eval_every": outcomes[-1].experiment.eval_every})


def test_a_procedure_plans_more_from_its_outcomes_and_its_values_reach_scripts(
        tmp_path: Path) -> None:
    base = Experiment.from_yaml(write_experiment(tmp_path, scientific={}))
    root = tmp_path / "root"
    rec = procedures.run_procedure("test-staged", base, root=root, workers=0)
    assert rec is not None and rec.experiments == ("toy.test-staged.first",
                                                   "toy.test-staged.second")
    out = rec.as_json()
    assert out["recommendation"]["eval_every"] == 2 * base.eval_every
    assert out["evidence"]["stages"] == 2
    store = Store.at_root(root, create=False)
    try:
        (stored,) = procedures.recommendations(store, base.name, "test-staged")
        assert stored == rec and stored.values == {"eval_every": 2 * base.eval_every}
    finally:
        store.close()

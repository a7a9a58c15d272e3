"""The stability and clip procedures' checks, on hand-built evidence (what the procedures put in
their recommendation's evidence): what fires, what does not, thresholds from ``checks:``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunebook.analysis.checks import CHECKS, PROCEDURE_CHECKS, procedure_findings, registered
from tunebook.analysis.checks.stability import (
    StabilityThresholds,
    check_aggressive_clipping,
    check_clipped_run_unstable,
    check_long_warmup,
    check_unstable_learning_rate,
)
from tunebook.errors import ConfigError


def ref(label: str, i: int) -> dict[str, Any]:
    return {"id": i, "label": label}


def row(lr: float, best: float | None, why: str | None, i: int, **extra: Any) -> dict[str, Any]:
    return {"learning_rate": lr, "best_value": best, "unstable": why, "status": "completed",
            "trial": ref(f"lr={lr:g} #0", i), **extra}


SWEEP = [row(0.01, 0.9, None, 1), row(0.1, 0.5, None, 2), row(1.0, 0.3, None, 3),
         row(10.0, None, "diverged at step 3 (nan)", 4)]


def evidence(**changes: Any) -> dict[str, Any]:
    """The stability evidence of an unstable sweep whose 100-step warmup (of 1000) works."""
    doc: dict[str, Any] = {
        "sweep": SWEEP, "goal": "minimize", "unstable_base_learning_rate": 10.0,
        "base_max_train_steps": 1000,
        "early_run": {"steps": 50, "eval_every": 1, **row(10.0, None, "loss spike at step 2", 5)},
        "warmup_study": [
            {"warmup_steps": w, **row(100.0, None if w < 100 else 0.2,
                                      None if w >= 100 else "diverged", 10 + w)}
            for w in (1, 10, 100)],
    }
    doc.update(changes)
    return doc


def checks_of(found: list[Any]) -> list[str]:
    return [f.check for f in found]


def test_registered_as_procedure_checks_not_experiment_checks() -> None:
    names = {"unstable_learning_rate", "early_instability", "long_warmup",
             "warmup_did_not_help", "clipping_did_not_help", "aggressive_clipping",
             "clipped_run_unstable"}
    assert names <= set(PROCEDURE_CHECKS) and not names & set(CHECKS)
    specs = registered()
    assert {specs[n].procedure for n in names} == {"stability", "clip"}
    assert specs["aggressive_clipping"].procedure == "clip"
    for name in names:
        assert specs[name].function.__doc__ and specs[name].function.__name__ == f"check_{name}"


def test_an_unstable_sweep_with_a_long_warmup_fires_three_findings_with_advice() -> None:
    found = procedure_findings("stability", evidence())
    assert checks_of(found) == ["long_warmup", "unstable_learning_rate", "early_instability"]
    json.dumps([f.as_dict() for f in found])
    by = {f.check: f for f in found}
    # The best stable rate (1.0) is the largest stable one: the edge of instability.
    assert by["unstable_learning_rate"].severity == "warning"
    assert by["unstable_learning_rate"].trials == [ref("lr=10 #0", 4)]
    assert by["unstable_learning_rate"].advice == {"stability": "improve"}
    assert by["long_warmup"].advice == {"training_length": "longer"}
    assert by["long_warmup"].trials == [ref("lr=100 #0", 110)]
    assert by["long_warmup"].evidence["share"] == pytest.approx(0.1)
    assert by["early_instability"].trials == [ref("lr=10 #0", 5)]
    assert all(f.section == "How can optimization failures be debugged and mitigated?"
               for f in found)


def test_unstable_learning_rate_is_info_when_the_best_rate_is_far_below() -> None:
    sweep = [row(0.01, 0.3, None, 1), row(0.1, 0.2, None, 2), row(1.0, 0.5, None, 3),
             row(10.0, None, "diverged", 4)]
    found = check_unstable_learning_rate(evidence(sweep=sweep))
    assert found[0].severity == "info" and found[0].evidence["best_stable_learning_rate"] == 0.1
    # A maximised objective reads the other way: 1.0 (0.5) is then the best, at the edge.
    found = check_unstable_learning_rate(evidence(sweep=sweep, goal="maximize"))
    assert found[0].severity == "warning"


def test_a_stable_sweep_fires_nothing() -> None:
    stable = [row(0.01, 0.9, None, 1), row(0.1, 0.5, None, 2)]
    assert procedure_findings("stability", {"sweep": stable, "goal": "minimize",
                                            "unstable_base_learning_rate": None,
                                            "base_max_train_steps": 1000}) == []
    # Degenerate evidence: nothing raises, nothing fires.
    assert procedure_findings("stability", {}) == []
    assert procedure_findings("clip", {}) == []
    assert procedure_findings("stability", {"sweep": "x", "warmup_study": [1, None]}) == []


def test_long_warmup_threshold_from_the_checks_section() -> None:
    short = evidence(warmup_study=[{"warmup_steps": 40, **row(100.0, 0.2, None, 7)}])
    assert "long_warmup" not in checks_of(procedure_findings("stability", short))
    config = {"stability": {"long_warmup_share": 0.03}}
    found = procedure_findings("stability", short, config)
    assert "long_warmup" in checks_of(found)
    # "More than": 40 of 1000 is not more than 4%.
    assert check_long_warmup(short, StabilityThresholds(long_warmup_share=0.0399)) != []
    assert check_long_warmup(short, StabilityThresholds(long_warmup_share=0.04)) == []
    with pytest.raises(ConfigError, match=r"checks\.stability\.long_warmup"):
        procedure_findings("stability", short, {"stability": {"long_warmup": 0.1}}, "e.yaml")
    with pytest.raises(ConfigError, match="must be a number"):
        procedure_findings("stability", short, {"stability": {"long_warmup_share": "x"}})


def test_warmup_and_clipping_that_did_not_help_are_problems() -> None:
    failing = [{"warmup_steps": w, **row(100.0, None, "loss spike", 20 + w)} for w in (1, 10)]
    clip = {**row(100.0, None, "diverged", 30), "grad_clip": 4.5}
    found = procedure_findings("stability", evidence(warmup_study=failing, clipping=clip))
    assert [(f.severity, f.check) for f in found if f.severity == "problem"] == [
        ("problem", "clipping_did_not_help"), ("problem", "warmup_did_not_help")]
    by = {f.check: f for f in found}
    assert len(by["warmup_did_not_help"].trials) == 2
    assert by["clipping_did_not_help"].advice == {"stability": "improve", "grad_clip": "lower"}
    # A stable clipped run: only the warmup finding.
    fixed = {**clip, "unstable": None}
    found = procedure_findings("stability", evidence(warmup_study=failing, clipping=fixed))
    assert "clipping_did_not_help" not in checks_of(found)
    assert "warmup_did_not_help" in checks_of(found)


def clip_evidence(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"fraction_clipped": 0.1, "clip_threshold": 9.1, "quantile": 0.9,
                           "trial_refs": [ref("base #0", 1)],
                           "clipped_trials": [{"trial": ref("base #0", 8), "unstable": None,
                                               "status": "completed"}]}
    doc.update(changes)
    return doc


def test_clip_checks_fire_on_an_unusual_share_and_on_an_unstable_clipped_run() -> None:
    assert procedure_findings("clip", clip_evidence()) == []
    found = check_aggressive_clipping(clip_evidence(fraction_clipped=0.7, quantile=0.3))
    assert found[0].severity == "warning" and found[0].advice == {"grad_clip": "higher"}
    assert found[0].trials == [ref("base #0", 1)]
    assert check_aggressive_clipping(clip_evidence(fraction_clipped=0.0))[0].severity == "info"
    # The clipping family's aggressive_fraction is the threshold.
    assert procedure_findings("clip", clip_evidence(fraction_clipped=0.3),
                              {"clipping": {"aggressive_fraction": 0.25}})[0].severity == "warning"
    bad = clip_evidence(clipped_trials=[{"trial": ref("base #0", 8), "unstable": "diverged"},
                                        {"trial": ref("base #1", 9), "unstable": None}])
    found = check_clipped_run_unstable(bad)
    assert found[0].trials == [ref("base #0", 8)]
    assert found[0].advice == {"grad_clip": "lower", "stability": "improve"}
    # aggressive (higher) and still unstable (lower) contradict: reconciled, the warning kept
    both = procedure_findings("clip", {**bad, "fraction_clipped": 0.8})
    assert len(both) == 1 and both[0].evidence["superseded"]

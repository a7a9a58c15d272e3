"""The batch-size procedure checks: on evidence built by hand, what must fire and what not."""

from __future__ import annotations

from typing import Any

import pytest

from tunebook.analysis.checks import CHECKS, PROCEDURE_CHECKS, procedure_findings, registered
from tunebook.analysis.checks.batch_size import BatchSizeThresholds, scaling
from tunebook.errors import ConfigError

T = [{"id": 7, "label": "main #0"}, {"id": 8, "label": "main #1"}]


def _evidence(share: float = 0.2, recommended: int | None = 64,
              steps: list[int | None] | None = None) -> dict[str, Any]:
    sizes = [{"batch_size": b, "fits": True, "data_share": share, "trials": T}
             for b in (16, 32, 64, 128)]
    ev: dict[str, Any] = {"sizes": sizes, "recommended": recommended, "data_share": share}
    if steps is not None:
        ev["steps_to_result"] = [
            {"batch_size": b, "steps": s, "best_value": 0.4, "target": 0.5, "trials": 4,
             "trial": {"id": 100 + i, "label": f"main #{i}"}}
            for i, (b, s) in enumerate(zip((16, 32, 64, 128), steps, strict=True))]
    return ev


def _checks(ev: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {f.check: f for f in procedure_findings("batch-size", ev, config, "e.yaml")}


def test_they_are_procedure_checks_of_batch_size() -> None:
    names = {n for n, s in registered().items() if s.procedure == "batch-size"}
    assert names == {"batch_size_input_bound", "batch_size_retune",
                     "batch_size_target_not_reached", "batch_size_no_step_reduction"}
    assert names <= set(PROCEDURE_CHECKS) and not names & set(CHECKS)


def test_input_bound_uses_the_pipeline_threshold() -> None:
    assert "batch_size_input_bound" not in _checks(_evidence(share=0.5))  # 0.5 is not above
    found = _checks(_evidence(share=0.55))["batch_size_input_bound"]
    assert found.severity == "warning" and found.advice == {"input_pipeline": "speed_up"}
    assert found.trials == T and found.evidence["threshold"] == 0.5
    assert found.section == "Choosing the batch size"
    # The same key as the experiment check input_bound moves both.
    assert "batch_size_input_bound" in _checks(_evidence(share=0.3),
                                               {"pipeline": {"input_bound_share": 0.25}})


def test_retune_whenever_a_size_is_recommended() -> None:
    found = _checks(_evidence())["batch_size_retune"]
    assert found.severity == "info" and found.advice == {"choose:batch_size": "by_cost"}
    assert "re-tuning" in found.message and found.trials == T
    assert _checks(_evidence(recommended=None)) == {}


def test_target_not_reached_at_some_or_all_sizes() -> None:
    assert "batch_size_target_not_reached" not in _checks(_evidence(steps=[320, 160, 80, 60]))
    some = _checks(_evidence(steps=[None, 160, 80, 60]))["batch_size_target_not_reached"]
    assert some.severity == "info" and some.evidence["batch_sizes"] == [16]
    assert some.trials == [{"id": 100, "label": "main #0"}]
    every = _checks(_evidence(steps=[None] * 4))["batch_size_target_not_reached"]
    assert every.severity == "warning" and len(every.trials) == 4
    assert every.advice == {"training_length": "longer", "trials": "more"}


def test_no_step_reduction_where_the_steps_stop_falling() -> None:
    assert "batch_size_no_step_reduction" not in _checks(_evidence(steps=[320, 160, 80, 40]))
    found = _checks(_evidence(steps=[320, 160, 80, 76]))["batch_size_no_step_reduction"]
    assert found.evidence["batch_size"] == 128 and found.trials == [{"id": 103,
                                                                     "label": "main #3"}]
    # The threshold comes from the file's checks: batch_size section.
    assert "batch_size_no_step_reduction" in _checks(
        _evidence(steps=[320, 160, 80, 60]), {"batch_size": {"no_reduction": 0.5}})


def test_scaling_finds_the_region_within_the_tolerance() -> None:
    rows = [{"batch_size": b, "steps": s}
            for b, s in [(16, 320), (32, 170), (64, 90), (128, 60), (256, 58), (512, None)]]
    shape = scaling(rows)
    # 320/170 = 1.88 and 170/90 = 1.89 >= 2/1.25 = 1.6: perfect within 25%; 1.5 is not.
    assert (shape["perfect_up_to"], shape["diminishing_returns_at"],
            shape["no_reduction_at"]) == (64, 128, 256)
    assert shape["fall_per_doubling"]["128"] == pytest.approx(1.5)
    strict = scaling(rows, BatchSizeThresholds(scaling_tolerance=0.05))
    assert strict["perfect_up_to"] == 16 and strict["diminishing_returns_at"] == 32
    # Uneven steps between sizes count per doubling: 16 -> 64 at 4x fewer steps is perfect.
    assert scaling([{"batch_size": 16, "steps": 400},
                    {"batch_size": 64, "steps": 100}])["perfect_up_to"] == 64
    assert scaling([])["perfect_up_to"] is None
    # A plateau followed by a fall is noise, not the end of the reduction.
    assert scaling([{"batch_size": b, "steps": s} for b, s in
                    [(16, 320), (32, 160), (64, 160), (128, 80)]])["no_reduction_at"] is None


def test_bad_thresholds_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"checks\.batch_size\.scaling_tolerance"):
        _checks(_evidence(), {"batch_size": {"scaling_tolerance": -1}})
    with pytest.raises(ConfigError, match="unknown threshold"):
        _checks(_evidence(), {"batch_size": {"tolerance": 0.1}})


def test_degenerate_evidence_gives_no_finding_and_no_error() -> None:
    for ev in ({}, {"sizes": []}, {"recommended": 16}, {"steps_to_result": []},
               {"steps_to_result": [{"batch_size": 16, "steps": None, "target": 0.5}]}):
        found = procedure_findings("batch-size", ev)
        assert all(f.check in ("batch_size_retune", "batch_size_target_not_reached")
                   for f in found)

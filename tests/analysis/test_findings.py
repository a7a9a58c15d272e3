"""A finding: one fired check, its evidence and the playbook's suggested action."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tunebook.analysis.findings import SEVERITIES, Finding, contradictions


def test_severities_run_from_the_most_serious() -> None:
    assert SEVERITIES == ("problem", "warning", "info")


def test_as_dict_is_the_json_schema() -> None:
    f = Finding("boundary", "warning", "lr near its upper bound", {"trials": [3, 4]},
                "Identifying bad search space boundaries", "widen it", "lr", "arm=a")
    d = f.as_dict()
    assert d == {"check": "boundary", "severity": "warning",
                 "message": "lr near its upper bound", "evidence": {"trials": [3, 4]},
                 "section": "Identifying bad search space boundaries", "action": "widen it",
                 "hyperparameter": "lr", "study": "arm=a", "trials": [], "advice": {}}
    assert json.loads(json.dumps(d)) == d


def test_a_finding_is_immutable_and_its_defaults_are_its_own() -> None:
    a, b = Finding("x", "info", "m"), Finding("y", "info", "m")
    assert a.evidence == {} and a.evidence is not b.evidence
    assert (a.section, a.action, a.hyperparameter, a.study) == ("", "", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.message = "changed"  # type: ignore[misc]


def test_contradictions_are_opposite_advice_on_one_knob_in_one_scope() -> None:
    longer = Finding("still_improving", "warning", "m", study="a",
                     advice={"training_length": "longer"})
    shorter_a = Finding("saturated_early", "info", "m", study="a",
                        advice={"training_length": "shorter"})
    shorter_b = dataclasses.replace(shorter_a, study="b")
    everywhere = dataclasses.replace(shorter_a, study=None)
    more = Finding("overfitting", "problem", "m", study="a", advice={"regularization": "more"})
    assert contradictions([longer, shorter_a]) == [(longer, shorter_a, "training_length")]
    assert contradictions([longer, shorter_b]) == []  # other study
    assert contradictions([longer, everywhere]) == [(longer, everywhere, "training_length")]
    assert contradictions([longer, more]) == []  # other knob
    widen = Finding("boundary", "warning", "m", advice={"range:lr": "widen_high"})
    fix = Finding("no_effect", "info", "m", advice={"range:lr": "fix"})
    assert contradictions([widen, fix]) == [(widen, fix, "range:lr")]
    assert not contradictions([widen, dataclasses.replace(widen, advice={"range:lr": "widen_low"})])

"""Every check against every labeled scenario: fires exactly where planted, never contradicts."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from scenarios import SCENARIOS

from tunebook.analysis.checks import run_checks
from tunebook.analysis.findings import contradictions

# Importing the scenario modules registers their scenarios.
for _mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _mod.name.startswith("scenarios_"):
        importlib.import_module(_mod.name)


def test_the_suite_is_large_enough() -> None:
    assert len(SCENARIOS) >= 30, sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    sc = SCENARIOS[name]
    findings = run_checks(sc.build())
    fired = {f.check for f in findings}
    assert fired == sc.fires, "\n".join(f"{f.check} [{f.severity}] {f.message}"
                                        for f in findings)
    assert not [(a.check, b.check, knob) for a, b, knob in contradictions(findings)]
    for f in findings:
        json.dumps(f.as_dict(), allow_nan=False)
        assert f.message and f.action
    for check, predicate in sc.expect.items():
        assert predicate([f for f in findings if f.check == check]), (check, findings)

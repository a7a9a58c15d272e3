"""docs/notebooks.md runs as written: its experiment (the YAML block) is run, then every Python
block is executed in order, in one namespace, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tunebook.execution.runner import run
from tunebook.experiment import Experiment

pytest.importorskip("pandas")

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "notebooks.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(encoding="utf-8"),
                      flags=re.S | re.M)


def test_the_notebook_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (experiment,) = _blocks("yaml")
    code = _blocks("python")
    assert len(code) >= 5  # load, trials, measurements, findings, Jupyter
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quad.yaml").write_text(experiment, encoding="utf-8")
    run(Experiment.from_yaml(tmp_path / "quad.yaml"), root="tunebook", workers=0)
    namespace: dict[str, object] = {"__name__": "__guide__"}
    for i, block in enumerate(code):
        exec(compile(block, f"{GUIDE.name} block {i + 1}", "exec"), namespace)
    assert "tunebook-data" in (tmp_path / "quad-report.html").read_text(encoding="utf-8")
    assert not (tmp_path / "tunebook" / "tunebook.db-wal").exists()  # no connection left open

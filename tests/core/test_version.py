"""The version comes from the package metadata, read once and only when asked for."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import tunebook
from tunebook.core.version import UNKNOWN_VERSION, installed_version
from tunebook.execution.provenance import provenance

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_version_is_pyprojects() -> None:
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    assert installed_version() == declared
    assert tunebook.__version__ == declared


def test_a_distribution_that_is_not_installed_has_the_unknown_version() -> None:
    assert installed_version("tunebook-no-such-distribution") == UNKNOWN_VERSION


def test_provenance_records_the_installed_version(tmp_path: Path) -> None:
    assert provenance(str(tmp_path / "exp.yaml"), str(tmp_path), "h").tunebook_version == (
        installed_version())


def test_import_tunebook_does_not_read_the_metadata() -> None:
    code = ("import sys, tunebook; print('importlib.metadata' in sys.modules); "
            "print(tunebook.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", installed_version()]

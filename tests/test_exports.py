"""The public surface: sorted explicit exports, a light import, docstrings everywhere."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import tunebook


def test_all_is_sorted_and_resolves() -> None:
    assert list(tunebook.__all__) == sorted(tunebook.__all__)
    for name in tunebook.__all__:
        assert getattr(tunebook, name) is not None


def test_import_is_light() -> None:
    code = ("import sys, tunebook; heavy = [m for m in ('torch', 'ray', 'matplotlib', "
            "'sqlalchemy', 'sklearn', 'scipy', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_command_line_parser_is_light() -> None:
    # Every command builds the whole parser first: a heavy import there (the procedures load
    # NumPy and the store) made `tunebook status` twice as slow at 10,000 trials.
    code = ("import sys; from tunebook.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('numpy', 'sqlalchemy', 'tunebook.procedures', "
            "'tunebook.store.sql', 'tunebook.execution.runner') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for info in pkgutil.walk_packages(tunebook.__path__, "tunebook."):
        if info.name.startswith("tunebook.workloads."):
            continue  # they import torch; checked by their own tests
        module = importlib.import_module(info.name)
        if not module.__doc__:
            missing.append(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__doc__:
                missing.append(f"{info.name}.{name}")
    assert missing == []


def test_unknown_attribute() -> None:
    try:
        tunebook.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")

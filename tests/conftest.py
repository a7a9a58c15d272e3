"""Shared fixtures: experiments on disk, a fresh root, helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS = Path(__file__).parent


def write_experiment(folder: Path, **overrides: Any) -> Path:
    """Write a small experiment on the test ``curve`` workload; keys can be overridden."""
    doc: dict[str, Any] = {
        "name": "toy",
        "goal": "does the scientific value matter?",
        "workload": "toy:curve",
        "objective": {"metric": "loss", "goal": "minimize"},
        "max_train_steps": 40,
        "eval_every": 10,
        "search": {"algorithm": "quasi_random", "trials": 4, "seed": 3},
        "scientific": {"arm": ["a", "b"]},
        "nuisance": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "fixed": {},
    }
    doc.update(overrides)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def experiment_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``experiment_file(**overrides)`` writes an experiment under tmp_path."""
    return lambda **kw: write_experiment(tmp_path, **kw)


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: the test workloads are importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def run_cli(*args: str, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``tunebook ARGS`` in a subprocess and capture its output."""
    proc = subprocess.run([sys.executable, "-m", "tunebook.cli", *args], capture_output=True,
                          text=True, env=cli_env(), timeout=240, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"tunebook {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _postgres_server() -> Iterator[Any]:
    import pgserver

    if not pgserver.available():
        if os.environ.get("TUNEBOOK_SKIP_POSTGRES") == "1":
            pytest.skip("TUNEBOOK_SKIP_POSTGRES=1 and no PostgreSQL")
        pytest.fail("PostgreSQL binaries not found: `make test` installs Debian's postgresql "
                    "(or set TUNEBOOK_SKIP_POSTGRES=1 to skip these tests)")
    server = pgserver.PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL server for the whole session (fails clearly when PostgreSQL is missing)."""
    yield from _postgres_server()


@pytest.fixture(scope="module")
def dedicated_postgres() -> Iterator[Any]:
    """A PostgreSQL server of the test module's own, which its tests may stop and start again
    (``pause()``, ``resume()``) while the session's server stays up for the others."""
    yield from _postgres_server()


class MemorySink:
    """A trial's measurement sink in memory: every row it is given, its flushes, the
    checkpoint steps recorded; truncation as the store does it."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []
        self.flushes = 0
        self.checkpoint_steps: list[int] = []

    def add_measurements(self, trial_id: int, rows: list[tuple[int, str, float]]) -> None:
        self.rows.extend(rows)
        self.flushes += 1

    def set_checkpoint_step(self, trial_id: int, step: int) -> None:
        self.checkpoint_steps.append(step)

    def truncate_measurements(self, trial_id: int, after_step: int) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r[0] <= after_step]
        return before - len(self.rows)


def single_trial_curves(root: Path, name: str) -> tuple[Any, dict[str, list[tuple[int, float]]]]:
    """The one trial of experiment ``name`` under ``root`` and its curves, metric -> points."""
    from tunebook.store.sql import Store

    store = Store.at_root(root)
    try:
        (trial,) = store.trials(store.require_experiment(name).id)
        curves: dict[str, list[tuple[int, float]]] = {}
        for _, step, metric, value in store.measurements([trial.id]):
            curves.setdefault(metric, []).append((step, value))
    finally:
        store.close()
    return trial, {m: sorted(points) for m, points in curves.items()}


# --------------------------------------------------------------------------- browser
CHROMIUM = os.environ.get("TUNEBOOK_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A real headless Chromium (Debian's, which ``make test`` installs): a missing browser
    fails the test unless ``TUNEBOOK_SKIP_BROWSER=1``."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("TUNEBOOK_SKIP_BROWSER") == "1":
            pytest.skip("TUNEBOOK_SKIP_BROWSER=1 and no Chromium")
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium "
                    "(or set TUNEBOOK_CHROMIUM, or TUNEBOOK_SKIP_BROWSER=1 to skip)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()

"""The report's "Trial variance" section: replicate experiments only, the numbers of the
stored seeds, and its figure drawn in a real browser."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from test_browser import _open

from tunebook.analysis.data import load
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.report import write_report
from tunebook.report.trial_variance import variance_rows
from tunebook.store.sql import Store

from reportdata import synthetic


def _replicates(root: Path) -> Store:
    doc: dict[str, Any] = {
        "name": "seeds", "goal": "How much do seeds move <val_loss>?",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": 40, "eval_every": 10,
        "search": {"trials": 4, "seed": 0}, "nuisance": {},
        "configs": [{"name": "lr=0.1 #3", "learning_rate": 0.1},
                    {"name": "<b>big</b>", "learning_rate": 0.5}, {"name": "diverges",
                                                                   "learning_rate": 5.0}],
        "fixed": {"noise": 0.05},
    }
    run(Experiment.from_dict(doc, source="seeds.yaml"), root=root, workers=0)
    return Store.at_root(root)


def test_rows_are_the_seeds_statistics(tmp_path: Path) -> None:
    store = _replicates(tmp_path / "r")
    data = load(store, "seeds", current=True)
    rows = {r["study"]: r for r in variance_rows(data)}
    values = [t.best_value for t in data.trials if t.study == "lr=0.1 #3"]
    r = rows["lr=0.1 #3"]
    assert r["n"] == 4 and sorted(r["values"]) == sorted(values)
    assert r["mean"] == statistics.fmean(r["values"])
    assert r["sd"] == statistics.stdev(r["values"]) and r["sd"] > 0  # seeds differ
    assert (r["min"], r["max"]) == (min(values), max(values))
    assert rows["diverges"]["n"] == 0 and rows["diverges"]["infeasible"] == 4
    assert rows["diverges"]["mean"] is None


def test_only_replicate_experiments_have_the_section(tmp_path: Path) -> None:
    search = synthetic(tmp_path / "s", trials=3)
    _, report = write_report(search, "synthetic", tmp_path / "s.html")
    assert "id='variance'" not in report.html
    _, report = write_report(_replicates(tmp_path / "r"), "seeds", tmp_path / "r.html")
    assert "<section id='variance'><h2>Trial variance</h2>" in report.html
    assert "&lt;b&gt;big&lt;/b&gt;" in report.html and "<b>big</b>" not in report.html


def test_the_variance_figure_draws_every_seed(browser: Any, tmp_path: Path) -> None:
    path, _ = write_report(_replicates(tmp_path / "r"), "seeds", tmp_path / "r.html")
    page, errors, dialogs = _open(browser, path)
    assert errors == [] and dialogs == []
    rendered, expected, circles, bars = page.eval_on_selector(
        "[data-plot='variance']", "e => [e.dataset.rendered, e.dataset.expected, "
        "e.querySelectorAll('circle').length, e.querySelectorAll('line[stroke]').length]")
    # 4 seeds and a mean for each of the two configurations that completed.
    assert rendered == expected == "10" and circles == 10 and bars == 2
    labels = page.eval_on_selector_all("[data-plot='variance'] text.tick",
                                       "els => els.map(e => e.textContent)")
    assert "<b>big</b>" in labels  # shown as text, not markup

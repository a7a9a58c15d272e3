"""The procedure pages: the real procedures run on their small test workloads, each page opened
in headless Chromium (every plot drawn with the expected number of marks, no console error);
``tunebook report BASE`` for a base that never ran itself; the experiment report and the project
page linking to the pages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from tunebook import procedures
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.procedures import Recommendation
from tunebook.procedures.batch_size import BatchSize
from tunebook.procedures.clip import run_clip
from tunebook.procedures.stability import StabilityOptions, run_stability
from tunebook.procedures.steps import Steps
from tunebook.report import write_report
from tunebook.report.procedures import page_path, write_procedure_page
from tunebook.report.project import write_project
from tunebook.store.sql import Store

from conftest import run_cli, write_experiment

TESTS = Path(__file__).resolve().parents[1]



def _plots(browser: Any, path: Path) -> tuple[Any, list[list[Any]]]:
    """Open ``path``; every plot as [kind, rendered, expected, title, legend]; no console
    error and every plot drawn with its expected number of marks."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("document.querySelectorAll('[data-plot]:not([data-rendered])')"
                           ".length === 0")
    plots = page.eval_on_selector_all(
        "[data-plot]", "els => els.map(e => [e.dataset.plot, e.dataset.rendered, "
        "e.dataset.expected, (e.querySelector('.plot-title') || {}).textContent, "
        "(e.querySelector('.legend') || {}).textContent || ''])")
    assert errors == []
    for kind, rendered, expected, title, _ in plots:
        assert rendered not in (None, "error", "0"), (kind, title)
        assert rendered == expected, (kind, title, rendered, expected)
    return page, plots


def _titles(plots: list[list[Any]]) -> list[str]:
    return [str(p[3]) for p in plots]


def _warmup_base(folder: Path, **fixed: Any) -> Experiment:
    """tests/procedures/test_stability.py's base file on warmup_workload."""
    shutil.copy(TESTS / "procedures" / "warmup_workload.py", folder / "warmup_workload.py")
    doc = {"name": "base", "workload": "warmup_workload:train",
           "objective": {"metric": "val_loss", "goal": "minimize"},
           "max_train_steps": 1000, "eval_every": 100,
           "search": {"algorithm": "quasi_random", "trials": 3, "seed": 0},
           "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1,
                                          "scale": "log"}},
           "fixed": fixed}
    (folder / "base.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return Experiment.from_yaml(folder / "base.yaml")


def _page(root: Path, rec: Recommendation | None) -> Path:
    assert rec is not None
    store = Store.at_root(root, create=False)
    try:
        return write_procedure_page(store, rec, root)
    finally:
        store.close()


def test_stability_draws_the_sweep_the_early_run_and_the_warmup_study(
        browser: Any, tmp_path: Path) -> None:
    base = _warmup_base(tmp_path)
    root = tmp_path / "root"
    rec = run_stability(base, options=StabilityOptions(steps=200), root=root, workers=0)
    path = _page(root, rec)
    assert path == root / "reports" / "base--stability.html" == page_path(root, "base",
                                                                          "stability")
    page, plots = _plots(browser, path)
    titles = _titles(plots)
    assert titles == ["the sweep: one curve per learning rate",
                      "training loss against the learning rate",
                      "the early run, evaluated every step",
                      "the warmup study, one curve per warmup length"]
    sweep, _, early, warm = plots
    # The unstable rates (1, 3.16 and 10, which diverged at once) are marked in the legend;
    # the warmup runs too (1 and 10 blow up at 10x the rate, 100 is stable).
    assert sweep[4].count("(unstable)") == 3 and "lr=0.316lr=1 (unstable)" in sweep[4]
    assert "warmup=1 (unstable)" in warm[4] and "warmup=100" in warm[4]
    assert "warmup=100 (unstable)" not in warm[4]
    assert "(unstable)" in early[4]
    # The smallest unstable rate is marked; the unstable final losses are crosses.
    assert page.locator("[data-plot] >> nth=1 >> line.marker").count() == 1
    assert page.locator("[data-plot] >> nth=1 >> path.infeasible").count() == 2
    assert page.locator("[data-plot] >> nth=0 >> path[stroke-dasharray]").count() == 3
    # The recommendation in the experiment's own names, and the findings.
    assert "warmup_steps" in page.inner_text("#recommendation")
    assert "100" in page.inner_text("#recommendation table")
    checks = page.eval_on_selector_all("#findings .finding", "els => els.map(e => "
                                       "e.dataset.check)")
    assert checks == [f.check for f in rec.findings] and "unstable_learning_rate" in checks


def test_stability_without_a_working_warmup_draws_the_clipped_run(
        browser: Any, tmp_path: Path) -> None:
    base = _warmup_base(tmp_path, warmup_helps=False)
    root = tmp_path / "root"
    rec = run_stability(base, options=StabilityOptions(steps=200), root=root, workers=0)
    _, plots = _plots(browser, _page(root, rec))
    assert _titles(plots)[-1] == "the clipped run, no warmup"
    assert "(unstable)" not in plots[-1][4]  # clipping fixed it


def test_clip_draws_the_norms_with_the_threshold_and_the_clipped_run(
        browser: Any, tmp_path: Path) -> None:
    base = _warmup_base(tmp_path)
    root = tmp_path / "root"
    run(base, root=root, workers=0)  # the base ran: its norms are the ones clipped by
    rec = run_clip(base, root=root, workers=0)
    page, plots = _plots(browser, _page(root, rec))
    assert [p[0] for p in plots] == ["grad-norm-hist", "xy"]
    assert page.locator("[data-plot='grad-norm-hist'] line.marker").count() == 1
    legend = plots[1][4]
    assert legend.count("unclipped ") == 3 and legend.count("clipped ") == 6
    # The base ran, so its report links to the procedure's page beside it.
    store = Store.at_root(root, create=False)
    try:
        report, _ = write_report(store, "base", root / "reports" / "base.html")
    finally:
        store.close()
    assert "href='base--clip.html'" in report.read_text()


def test_steps_draws_the_sweep_with_the_recommended_steps(browser: Any, tmp_path: Path) -> None:
    path = write_experiment(
        tmp_path, name="fit", workload="steps_fit:train",
        objective={"metric": "val_error", "goal": "minimize"}, max_train_steps=200,
        eval_every=20, scientific={},
        nuisance={"learning_rate": {"type": "float", "low": 1e-2, "high": 1.0, "scale": "log"}},
        fixed={})
    root = tmp_path / "root"
    rec = procedures.run_procedure(Steps(trials=3), Experiment.from_yaml(path), root=root,
                                   workers=0)
    page, plots = _plots(browser, _page(root, rec))
    assert rec is not None and "max_train_steps" in rec.values
    assert _titles(plots) == ["the sweep's train_error"]
    assert plots[0][4].count("learning_rate=") == 3 and "fit step" in plots[0][4]
    # The fit threshold (horizontal) and the recommended max_train_steps (vertical).
    assert page.locator("[data-plot] line.marker").count() == 2


def test_batch_size_draws_throughput_the_data_share_and_steps_to_result(
        browser: Any, tmp_path: Path) -> None:
    doc = {"name": "sat", "workload": "batchload:saturating",
           "objective": {"metric": "loss", "goal": "minimize"},
           "max_train_steps": 100, "eval_every": 50,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {}, "fixed": {"batch_size": 16, "knee": 32, "data_share": 0.3}}
    (tmp_path / "sat.yaml").write_text(yaml.safe_dump(doc))
    root = tmp_path / "root"
    rec = procedures.run_procedure(
        BatchSize([16, 32, 64], warmup_steps=2, timed_steps=4, repeats=2),
        Experiment.from_yaml(tmp_path / "sat.yaml"), root=root, workers=0)
    page, plots = _plots(browser, _page(root, rec))
    assert _titles(plots) == ["throughput against the batch size",
                              "the input pipeline's share of the step time"]
    assert [int(p[1]) for p in plots] == [3 + 3, 3]  # measured + perfect scaling; shares
    assert page.locator("[data-plot] >> nth=0 >> line.marker").count() == 2
    # Steps to result, from a real --steps-to-result run: steps halve per doubling up to 96
    # (tests/batchload.py), so the figure marks the end of perfect scaling (64), diminishing
    # returns (128, also the recommendation: time per step doubles above it) and no
    # reduction (256).
    doc.update(name="scale", max_train_steps=480, eval_every=4,
               objective={"metric": "val_loss", "goal": "minimize"},
               nuisance={"learning_rate": {"type": "float", "low": 0.01, "high": 1.0,
                                           "scale": "log"}},
               fixed={"batch_size": 16, "knee": 128, "critical": 96, "steps16": 320,
                      "base_seconds": 0.002})
    (tmp_path / "scale.yaml").write_text(yaml.safe_dump(doc))
    rec = procedures.run_procedure(
        BatchSize([16, 32, 64, 128, 256], warmup_steps=2, timed_steps=4, repeats=1,
                  steps_to_result=0.5, result_trials=1),
        Experiment.from_yaml(tmp_path / "scale.yaml"), root=root, workers=0)
    assert rec is not None and rec.evidence["scaling"]["diminishing_returns_at"] == 128
    page, plots = _plots(browser, _page(root, rec))
    assert _titles(plots)[-1] == "steps to the target against the batch size"
    assert plots[-1][1] == str(5 + 5)  # measured + perfect scaling
    marks = page.locator("[data-plot] >> nth=-1 >> line.marker")
    assert marks.count() == 4


def test_another_procedure_gets_its_evidence_as_a_table(browser: Any, tmp_path: Path) -> None:
    store = Store.at_root(tmp_path / "root")
    store.close()
    rec = Recommendation("my-check", "mine", "use <b>7</b> layers", {"layers": [3, 5, 7],
                                                                     "why": "deeper is better"},
                         experiments=("mine.my-check.a",), values={"num_layers": 7})
    page, plots = _plots(browser, _page(tmp_path / "root", rec))
    assert plots == []
    assert page.inner_text("#recommendation p") == "use <b>7</b> layers"
    assert "deeper is better" in page.inner_text("#evidence")
    assert "num_layers" in page.inner_text("#recommendation table")


def test_report_base_writes_the_procedure_pages_and_the_project_page_lists_them(
        tmp_path: Path) -> None:
    _warmup_base(tmp_path)
    proc = run_cli("stability", "base.yaml", "--root", "root", "--steps", "100",
                   "--workers", "0", check=True, cwd=tmp_path)
    page = tmp_path / "root" / "reports" / "base--stability.html"
    assert proc.stdout.splitlines()[-1] == "procedure page: root/reports/base--stability.html"
    page.unlink()
    proc = run_cli("report", "base", "--root", "root", check=True, cwd=tmp_path)
    assert proc.stdout.splitlines() == ["procedure page: root/reports/base--stability.html"]
    assert page.exists() and "stability: base" in page.read_text()
    # --format json stays one JSON object (the page is written, not announced).
    out = run_cli("stability", "base.yaml", "--root", "root", "--steps", "100", "--workers",
                  "0", "--format", "json", check=True, cwd=tmp_path).stdout
    assert json.loads(out)["recommendation"]["procedure"] == "stability"
    store = Store.at_root(tmp_path / "root", create=False)
    try:
        index, _ = write_project(store, tmp_path / "root")
    finally:
        store.close()
    assert "href='base--stability.html'" in index.read_text()
    bad = run_cli("report", "base", "--root", "root", "--out", "x.html", cwd=tmp_path)
    assert bad.returncode != 0 and "--out" in bad.stderr

"""The report in a real browser: Debian's Chromium driven headless by Playwright.

No console error, every plot drawn with the expected number of marks, user strings shown as text,
a screenshot kept in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.report import write_report
from tunebook.store.sql import Store

from conftest import write_experiment
from reportdata import synthetic

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"



def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.resolve().as_uri())
    page.wait_for_function("document.querySelectorAll('[data-plot]:not([data-rendered])')"
                           ".length === 0")
    return page, errors, dialogs


def test_report_renders_every_plot(browser: Any, tmp_path: Path) -> None:
    store = synthetic(tmp_path / "r")
    path, _ = write_report(store, "synthetic", tmp_path / "report.html")
    page, errors, dialogs = _open(browser, path)
    assert errors == [] and dialogs == []
    plots = page.eval_on_selector_all(
        "[data-plot]", "els => els.map(e => [e.dataset.plot, e.dataset.rendered, "
        "e.dataset.expected, e.querySelectorAll('circle').length, "
        "e.querySelectorAll('path.infeasible').length])")
    kinds = [p[0] for p in plots]
    assert kinds.count("axis") == 3 and kinds.count("isolation") == 1
    assert kinds.count("bootstrap") == 1 and kinds.count("curve") >= 6
    # The clipping threshold's histogram, one per study (never pooled), drawn bar by bar.
    assert kinds.count("grad-norm-hist") == 2
    for kind, rendered, expected, circles, crosses in plots:
        assert rendered not in (None, "error", "0"), kind
        assert rendered == expected, (kind, rendered, expected)
        if kind == "axis":
            # Every trial is one mark: a circle if feasible, a red X if infeasible.
            assert int(rendered) == int(expected) == circles + crosses == 16
            assert crosses >= 1
    markers = page.eval_on_selector_all(
        "[data-plot='grad-norm-hist']", "els => els.map(e => e.querySelectorAll("
        "'line.marker').length)")
    assert markers == [1, 1]  # each study's threshold
    # Any trial on demand.
    label = page.eval_on_selector("#trial-picker option:nth-child(2)", "o => o.value")
    page.select_option("#trial-picker", label)
    assert int(page.get_attribute("#trial-curves", "data-rendered")) >= 3
    assert page.locator("#trial-curves svg").count() >= 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []


def test_user_strings_show_as_text(browser: Any, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    exp_path = write_experiment(tmp_path, name=evil, goal=evil, search={"trials": 2})
    run(Experiment.from_yaml(exp_path), root=tmp_path / "r", workers=0)
    store = Store.at_root(tmp_path / "r")
    store.add_note(store.require_experiment(evil).id, "<img src=x onerror=alert(2)>")
    path, _ = write_report(store, evil, tmp_path / "evil.html")
    page, errors, dialogs = _open(browser, path)
    assert dialogs == [] and errors == []
    assert page.inner_text("h1") == evil
    assert "<img src=x onerror=alert(2)>" in page.inner_text("#tracking")
    assert page.locator("#tracking img").count() == 0


def test_report_with_nothing_finished(browser: Any, tmp_path: Path) -> None:
    exp_path = write_experiment(tmp_path, workload="toy:diverge", search={"trials": 2})
    run(Experiment.from_yaml(exp_path), root=tmp_path / "r", workers=0)
    path, _ = write_report(Store.at_root(tmp_path / "r"), "toy", tmp_path / "empty.html")
    page, errors, _ = _open(browser, path)
    assert errors == []
    assert "No study has a completed trial" in page.inner_text("#isolation")
    shutil.copy(path, tmp_path / "kept.html")


def test_a_trial_whose_curves_are_in_a_shard_is_drawn(browser: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A large experiment's picker, in small: 3 trials' curves in the page, the rest in files
    # beside it, read by a script tag from file:// when picked.
    from tunebook.report import shards

    monkeypatch.setattr(shards, "INLINE_TRIALS", 3)
    monkeypatch.setattr(shards, "PER_SHARD", 5)
    store = synthetic(tmp_path / "r")
    path, _ = write_report(store, "synthetic", tmp_path / "big.html")
    page, errors, dialogs = _open(browser, path)
    labels = page.eval_on_selector_all("#trial-picker option[data-shard]",
                                       "os => os.map(o => [o.value, o.dataset.shard])")
    assert len(labels) == 13 and {n for _, n in labels} == {"0", "1", "2"}
    for label, _ in (labels[0], labels[-1]):
        page.select_option("#trial-picker", label)
        page.wait_for_function("Number(document.getElementById('trial-curves')"
                               ".dataset.rendered) > 0")
        drawn = int(page.get_attribute("#trial-curves", "data-rendered") or 0)
        assert page.locator("#trial-curves svg").count() == drawn
        title = page.inner_text("#trial-curves")
        assert label in title
    # Back to a trial of the page itself, then to one of the first shard again (loaded once).
    page.select_option("#trial-picker", page.eval_on_selector(
        "#trial-picker option:nth-child(2)", "o => o.value"))
    assert int(page.get_attribute("#trial-curves", "data-rendered") or 0) >= 3
    page.select_option("#trial-picker", labels[1][0])
    page.wait_for_function("Number(document.getElementById('trial-curves')"
                           ".dataset.rendered) > 0")
    assert page.eval_on_selector_all("script[src]", "s => s.length") == 2
    assert errors == [] and dialogs == []
    # Without its folder (a page copied alone, a notebook's view): it says where they are.
    shutil.rmtree(tmp_path / "big.files")
    page2, errors2, _ = _open(browser, path)
    page2.select_option("#trial-picker", labels[0][0])
    page2.wait_for_function("document.getElementById('trial-curves').dataset.rendered "
                            "=== 'missing'")
    assert "big.files/curves-" in page2.inner_text("#trial-curves")
    assert "big.files/" in page2.inner_text("#trial-files")
    assert all("big.files" in e or "ERR_FILE_NOT_FOUND" in e for e in errors2), errors2

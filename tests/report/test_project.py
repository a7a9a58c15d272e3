"""The project page: every experiment with its round, the rounds as chains, the launches;
escaped, self-contained, and clean in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_browser import _open

from replicatedata import fake
from tunebook.report.project import project_rows, rounds, write_project
from tunebook.store.sql import Store


def test_rounds_follow_the_links() -> None:
    follows = {"r1": None, "r2": "r1", "r3": "r2", "side": "r1", "orphan": "gone",
               "loop-a": "loop-b", "loop-b": "loop-a"}
    got = rounds(follows)
    assert (got["r1"], got["r2"], got["r3"], got["side"], got["orphan"]) == (1, 2, 3, 2, 1)
    assert {got["loop-a"], got["loop-b"]} == {1, 2}  # a cycle is counted once, never forever


def _project(root: Path) -> Store:
    s = Store.at_root(root)
    fake(s, "round-1", {"a": [0.3, 0.2], "b": [0.4, "infeasible", None]})
    fake(s, "round-1-retrain", {"a #1": [0.21, 0.19, 0.2]}, follows="round-1")
    fake(s, "round-2 <i>", {"a": [0.1, 0.12]}, follows="round-1")
    s.add_note(s.require_experiment("round-1").id, "</td><b>bold</b>")
    s.add_launch("round-1-retrain/a #1", "baseline & co", {
        "experiment": "round-1-retrain",
        "replicates": {"metric": "loss", "mean": 0.2, "sd": 0.01, "n": 3}})
    return s


def test_rows_count_statuses_and_find_the_best(tmp_path: Path) -> None:
    rows = {r.name: r for r in project_rows(_project(tmp_path / "root"))}
    r1 = rows["round-1"]
    assert r1.counts == {"completed": 3, "infeasible": 1, "failed": 1}
    assert (r1.best_value, r1.best_trial, r1.round) == (0.2, "a #1", 1)
    assert (rows["round-2 <i>"].round, rows["round-2 <i>"].follows) == (2, "round-1")
    assert r1.notes == ["</td><b>bold</b>"]


def test_project_page_in_a_browser(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = _project(root)
    path, rows = write_project(store, root)
    assert path == root / "reports" / "index.html" and len(rows) == 3
    html = path.read_text()
    assert "<b>bold</b>" not in html and "&lt;/td&gt;&lt;b&gt;bold" in html
    assert "round-2 &lt;i&gt;" in html and "<i>" not in html
    assert "http" not in html.replace("http-equiv", "")  # self-contained
    page, errors, dialogs = _open(browser, path)
    assert errors == [] and dialogs == []
    names = page.eval_on_selector_all("#experiments tbody tr",
                                      "els => els.map(e => e.dataset.experiment)")
    assert names == ["round-1", "round-1-retrain", "round-2 <i>"]
    chains = page.eval_on_selector_all(".round-chain", "els => els.map(e => e.textContent)")
    assert sorted(chains) == ["round 1: round-1 → round 2: round-1-retrain",
                              "round 1: round-1 → round 2: round-2 <i>"]
    launches = page.eval_on_selector_all("#launch-table tbody tr",
                                         "els => els.map(e => e.textContent)")
    assert len(launches) == 1 and "baseline & co" in launches[0] and "0.2 ± 0.01" in launches[0]
    # Every link leads to a page that was written beside it.
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute("
                                                     "'href'))"):
        assert (path.parent / href).exists(), href
    page.screenshot(path=str(tmp_path / "project.png"), full_page=True)

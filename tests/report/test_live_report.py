"""The live report: a real ``tunebook run`` rewrites the page while it works; the page says
running (and reloads), then finished or interrupted (and does not)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tunebook.core.paths import store_file
from tunebook.execution.runner import Progress, materialize, run
from tunebook.experiment import Experiment
from tunebook.report import write_report
from tunebook.report.live import RELOAD_SECONDS, LiveReport, run_state
from tunebook.store.api import RunOutcome
from tunebook.store.sql import Store, sqlite_url

from conftest import cli_env, write_experiment

STATE = re.compile(r'<meta name="tunebook-run-state" content="([a-z]+)">')
BANNER = re.compile(r"<section id='run-state' data-state='([a-z]+)'.*?</b> · (\d+)/(\d+) done "
                    r"\((\d+) completed")


def _slow(folder: Path, trials: int, sleep: float, steps: int = 10) -> Path:
    """An experiment of 2 studies of slow synthetic trials (``steps`` x ``sleep`` seconds)."""
    return write_experiment(
        folder, name="slow", workload="tunebook.workloads.synthetic:quadratic",
        objective={"metric": "val_loss", "goal": "minimize"}, max_train_steps=steps,
        eval_every=2, search={"algorithm": "quasi_random", "trials": trials, "seed": 0},
        scientific={"y": [0.0, 0.5]},
        nuisance={"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "scale": "log"}},
        fixed={"sleep": sleep})


def _start(path: Path, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root", str(root),
         "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env())


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _wait_for(proc: subprocess.Popen[str], path: Path, done: int) -> str:
    """The page once it says running with at least ``done`` trials done (while ``proc`` runs)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = _page(path)
        m = BANNER.search(page)
        if m and m[1] == "running" and int(m[2]) >= done:
            return page
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before its live page showed {done} trials "
                                 f"done:\n{out}\n{err}\nlast page state: {m and m.groups()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no live page in 120 s")


def test_the_page_is_rewritten_while_the_run_works_and_says_finished_at_the_end(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    report = root / "reports" / "slow.html"
    proc = _start(_slow(tmp_path, trials=6, sleep=0.25), root)
    try:
        page = _wait_for(proc, report, done=1)
    except BaseException:
        proc.kill()
        raise
    assert proc.poll() is None  # read while the run is live
    assert STATE.findall(page) == ["running"]
    assert "id='tunebook-reload'" in page and "location.reload()" in page
    m = BANNER.search(page)
    assert m is not None
    done, total, completed = int(m[2]), int(m[3]), int(m[4])
    assert total == 12 and 1 <= done < total and "ETA " in page
    # The trials done so far are in the page's body, not just counted in the banner: the
    # tracking table counts them per study (read before the banner, so never more).
    tracked = [int(n) for n in re.findall(r"<td class='num'>\d+ \((\d+) / \d+ / \d+\)</td>",
                                          page)]
    assert len(tracked) == 2 and 1 <= sum(tracked) <= completed
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    # The path is said from the start (before the first progress line) and at the end.
    assert err.splitlines()[0] == f"report (live): {report}"
    assert f"report: {report}" in out
    final = _page(report)
    assert STATE.findall(final) == ["finished"]
    assert "tunebook-reload" not in final and "location.reload" not in final
    m = BANNER.search(final)
    assert m is not None and (m[1], m[2], m[3]) == ("finished", "12", "12")
    # A plain `tunebook report` afterwards says the same.
    store = Store.at_root(root, create=False)
    try:
        again, _ = write_report(store, "slow", tmp_path / "again.html")
        assert STATE.findall(again.read_text()) == ["finished"]
    finally:
        store.close()


def test_a_stopped_run_leaves_an_interrupted_page_without_reload(tmp_path: Path) -> None:
    root = tmp_path / "root"
    report = root / "reports" / "slow.html"
    proc = _start(_slow(tmp_path, trials=6, sleep=0.3), root)
    try:
        _wait_for(proc, report, done=0)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    page = _page(report)
    assert STATE.findall(page) == ["interrupted"], page[:2000]
    assert "tunebook-reload" not in page
    m = BANNER.search(page)
    assert m is not None and m[1] == "interrupted" and int(m[2]) < 12


def _registered(root: Path, trials: int) -> tuple[Store, int]:
    """An experiment registered in a store, none of its trials run."""
    exp = Experiment.from_yaml(_slow(root, trials=trials, sleep=0.0))
    studies, rows = materialize(exp)
    store = Store.at_root(root)
    return store, store.register(exp.name, exp.identity(), exp.to_dict(), studies, rows)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_state_comes_from_the_run_records_and_the_trials(tmp_path: Path) -> None:
    store, exp_id = _registered(tmp_path, trials=2)
    try:
        # Never run: trials are left and no run is live.
        s = run_state(store, "slow")
        assert (s.state, s.total, s.counts["pending"], s.eta_seconds) == ("interrupted", 4, 4,
                                                                          None)
        # A run record of a live process on this host (ours): running.
        live = store.start_run(exp_id, socket.gethostname(), 1, {"pid": os.getpid()})
        assert run_state(store, "slow").state == "running"
        store.end_run(live, RunOutcome())
        # An open record whose process died (SIGKILL): not running.
        store.start_run(exp_id, socket.gethostname(), 1, {"pid": _dead_pid()})
        assert run_state(store, "slow").state == "interrupted"
        # On another host, an open record is live only while a trial's heartbeat is fresh.
        store.start_run(exp_id, "elsewhere", 1, {"pid": 1})
        assert run_state(store, "slow").state == "interrupted"
        trial = store.claim(exp_id, "elsewhere:123")
        assert trial is not None
        s = run_state(store, "slow")
        assert (s.state, s.counts["running"], s.counts["pending"]) == ("running", 1, 3)
    finally:
        store.close()


def test_a_finished_experiment_is_finished_even_with_a_dead_open_record(tmp_path: Path) -> None:
    exp = Experiment.from_yaml(_slow(tmp_path, trials=2, sleep=0.0, steps=2))
    run(exp, root=tmp_path, workers=0)
    store = Store.at_root(tmp_path)
    try:
        store.start_run(store.require_experiment("slow").id, socket.gethostname(), 1,
                        {"pid": _dead_pid()})
        s = run_state(store, "slow")
        assert (s.state, s.done, s.total) == ("finished", 4, 4)
    finally:
        store.close()


def test_a_write_that_fails_is_said_once_and_the_writer_goes_on(tmp_path: Path) -> None:
    stream = io.StringIO()
    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    live = LiveReport(missing, "slow", tmp_path / "r.html", stream=stream, min_interval=0.0)
    for n in range(3):
        live(Progress(4, {"completed": n}, None, 0.0, "val_loss"))
        deadline = time.monotonic() + 30
        while live.attempts <= n and time.monotonic() < deadline:
            time.sleep(0.01)
    live.close(final=True)
    assert live.attempts == 3 and live.writes == 0
    assert stream.getvalue().count("live report: could not write") == 1
    assert not (tmp_path / "r.html").exists()


def test_the_live_page_renders_in_a_browser(browser: Any, tmp_path: Path) -> None:
    exp = Experiment.from_yaml(_slow(tmp_path, trials=3, sleep=0.0, steps=4))
    run(exp, root=tmp_path, workers=0)
    store = Store.at_root(tmp_path)
    try:
        # The run's record as a live run leaves it (open, its process alive: ours).
        store.start_run(store.require_experiment("slow").id, socket.gethostname(), 1,
                        {"pid": os.getpid()})
        path, _ = write_report(store, "slow", tmp_path / "live.html")
    finally:
        store.close()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("document.querySelectorAll('[data-plot]:not([data-rendered])')"
                           ".length === 0")
    state = page.eval_on_selector("meta[name='tunebook-run-state']", "e => e.content")
    banner = page.inner_text("#run-state")
    # It reloads itself (within RELOAD_SECONDS) and the reader keeps their place on the page.
    page.evaluate("window.scrollTo(0, 700)")
    page.evaluate("window.tunebookBefore = true")
    page.wait_for_event("load", timeout=(RELOAD_SECONDS + 20) * 1000)
    page.wait_for_function("document.querySelectorAll('[data-plot]:not([data-rendered])')"
                           ".length === 0")
    reloaded = page.evaluate("window.tunebookBefore === undefined")
    scroll = page.evaluate("window.scrollY")
    page.close()
    assert errors == []
    assert state == "running"
    assert banner.startswith("RUNNING") and "6/6 done" in banner and "reloads every" in banner
    assert reloaded and abs(scroll - 700) < 5


@pytest.mark.parametrize("final", [False, True])
def test_close_writes_a_last_page_only_when_asked_and_after_a_live_one(
        tmp_path: Path, final: bool) -> None:
    exp = Experiment.from_yaml(_slow(tmp_path, trials=1, sleep=0.0, steps=2))
    run(exp, root=tmp_path, workers=0)
    out = tmp_path / "reports" / "slow.html"
    live = LiveReport(sqlite_url(store_file(tmp_path)), "slow", out)
    live(Progress(2, {"completed": 2}, None, 0.0, "val_loss"))
    deadline = time.monotonic() + 60
    while live.writes < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    out.unlink()
    live.close(final=final)
    assert out.exists() == final
    assert live.writes == (2 if final else 1)

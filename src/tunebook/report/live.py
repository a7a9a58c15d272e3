"""The report while its run goes on: the run's state at the top of the page, and a writer that
rewrites the page as trials finish.

What the store says the run's state is (:func:`run_state`):

* ``running``: a run of the experiment has an open record (started, not ended) whose process is
  alive. On the host that reads the store, that is its pid; a run on another host is live while
  one of the experiment's trials is ``running`` with a heartbeat younger than
  :data:`HEARTBEAT_BOUND` seconds (its workers beat every few seconds).
* ``finished``: no run is live and every trial within the studies' budgets reached a final state
  (completed, infeasible or failed).
* ``interrupted``: no run is live and trials are left (stopped by Ctrl-C or a signal, killed,
  or never run): the next ``tunebook run`` resumes them.

The page carries it as ``<meta name="tunebook-run-state" content="...">`` and as a banner under
its title with the counts (and, while running, an ETA from the rate of this run's finished
trials). While running, a small script reloads the page every :data:`RELOAD_SECONDS` seconds
(keeping the scroll position); a finished or interrupted page has no such script.

:class:`LiveReport` is what ``tunebook run`` hands the runner as a progress hook: the hook only
notes that the counts changed; a background thread of the run's process (at a lower CPU
priority on Linux) rewrites the page, at most once every ``max(MIN_INTERVAL, COST_FACTOR x the
last write's CPU time)`` seconds, so that writing costs at most about 2 % of one core; the
first live page comes ``MIN_INTERVAL`` after the first change (a shorter run gets only the page
written at its end). A failed write is said once on stderr and the run goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tunebook.core.processes import host_name, pid_alive
from tunebook.store.api import RunRow, StoreAPI, TrialRow

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData
    from tunebook.store.sql import Store

__all__ = ["COST_FACTOR", "HEARTBEAT_BOUND", "MIN_INTERVAL", "RELOAD_SECONDS", "LiveReport",
           "RunState", "run_state", "run_state_html", "with_run_state"]

RUN_STATES = ("running", "finished", "interrupted")
RELOAD_SECONDS = 10  # how often a live page reloads itself
MIN_INTERVAL = 5.0  # seconds between two live writes, at least
COST_FACTOR = 50.0  # ... and this many times the last write's CPU time: <= 2 % of a core
HEARTBEAT_BOUND = 120.0  # a running trial whose heartbeat is older has no live run (the runner's
# stale_after_seconds)
FINAL = ("completed", "infeasible", "failed")


@dataclass(frozen=True)
class RunState:
    """What the store says about an experiment's run, for the top of its report.

    Attributes:
        state: ``running``, ``finished`` or ``interrupted`` (see the module's docstring).
        total: trials the studies' budgets ask for.
        counts: ``completed``, ``infeasible``, ``failed``, ``running`` and ``pending`` (the
            trials left that are not running, including those not designed yet).
        eta_seconds: while running, the time left at this run's rate so far; None when unknown.
        at: when the state was read (seconds since the epoch).
    """

    state: str
    total: int
    counts: Mapping[str, int]
    eta_seconds: float | None
    at: float

    @property
    def done(self) -> int:
        """Trials in a final state."""
        return sum(self.counts.get(s, 0) for s in FINAL)


def _live_run(runs: tuple[RunRow, ...] | list[RunRow], rows: list[TrialRow],
              now: float) -> RunRow | None:
    """The newest open run record whose process is alive (see the module's docstring)."""
    host = host_name()
    for r in reversed(runs):
        if r.finished_at is not None:
            continue
        pid = r.provenance.get("pid")
        if r.host == host and isinstance(pid, int):
            if pid_alive(pid):
                return r
        elif any(t.status == "running" and t.heartbeat is not None
                 and now - t.heartbeat < HEARTBEAT_BOUND for t in rows):
            return r
    return None


def run_state(store: StoreAPI, name: str, data: ExperimentData | None = None) -> RunState:
    """The state of experiment ``name``'s run as the store says it (``data``: the experiment as
    already loaded, to reuse its run records)."""
    exp = store.require_experiment(name)
    budgets = {st.name: st.budget for st in store.studies(exp.id)}
    rows = [t for t in store.trials(exp.id) if t.index < budgets.get(t.study, 0)]
    runs = data.runs if data is not None else tuple(store.runs(exp.id))
    now = time.time()
    total = sum(budgets.values())
    counts = {s: sum(t.status == s for t in rows) for s in (*FINAL, "running")}
    counts["pending"] = max(0, total - sum(counts.values()))
    done = sum(counts[s] for s in FINAL)
    live = _live_run(runs, rows, now)
    state = "running" if live is not None else "finished" if done >= total else "interrupted"
    eta = None
    if live is not None:
        # This run's rate: trials finished since it started (earlier runs' do not count).
        n = sum(t.status in FINAL and (t.finished_at or 0.0) >= live.started_at for t in rows)
        if n > 0 and now > live.started_at:
            eta = (now - live.started_at) / n * max(0, total - done)
    return RunState(state, total, counts, eta, now)


def _clock(seconds: float) -> str:
    mins, secs = divmod(int(seconds), 60)
    hours, mins = divmod(mins, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


_COLOURS = {"running": ("#1d4ed8", "#eff6ff"), "finished": ("#15803d", "#f0fdf4"),
            "interrupted": ("#b45309", "#fffbeb")}
# Reloads only a top-level page (never inside a notebook's iframe); the scroll position is kept
# in sessionStorage across the reload when the browser allows it.
_RELOAD_JS = (
    "(function(){if(window.top!==window.self)return;var k='tunebook-scroll:'+location.pathname;"
    "try{var y=sessionStorage.getItem(k);if(y!==null){sessionStorage.removeItem(k);"
    "window.scrollTo(0,Number(y));}}catch(e){}"
    "setTimeout(function(){try{sessionStorage.setItem(k,String(window.scrollY));}catch(e){}"
    "location.reload();},%d);})();")


def run_state_html(s: RunState) -> str:
    """The banner at the top of the page (state, counts, ETA; the reload script while
    running)."""
    c = s.counts
    fg, bg = _COLOURS[s.state]
    parts = [f"{s.done}/{s.total} done ({c.get('completed', 0)} completed, "
             f"{c.get('infeasible', 0)} infeasible, {c.get('failed', 0)} failed)",
             f"{c.get('running', 0)} running", f"{c.get('pending', 0)} pending"]
    if s.state == "running":
        parts.append("ETA " + ("-" if s.eta_seconds is None else _clock(s.eta_seconds)))
    at = dt.datetime.fromtimestamp(s.at).strftime("%Y-%m-%d %H:%M:%S")
    note = {"running": f"written {at}; this page reloads every {RELOAD_SECONDS} s while the "
                       "run is live",
            "finished": f"written {at}",
            "interrupted": f"written {at}; no run is going: running the experiment again "
                           "resumes the trials left"}[s.state]
    script = (f"<script id='tunebook-reload'>{_RELOAD_JS % (RELOAD_SECONDS * 1000)}</script>"
              if s.state == "running" else "")
    return (f"<section id='run-state' data-state='{s.state}' style='border:2px solid {fg};"
            f"background:{bg};padding:0.5em 1em;border-radius:6px;margin:1em auto'>"
            f"<b style='color:{fg};text-transform:uppercase'>{s.state}</b> · "
            f"{html.escape(' · '.join(parts))} <span class='small muted'>({html.escape(note)})"
            f"</span>{script}</section>")


def with_run_state(page: str, store: StoreAPI, name: str,
                   data: ExperimentData | None = None) -> str:
    """``page`` (a report of experiment ``name``) with its run's state: the meta tag in its head,
    the banner after its title."""
    s = run_state(store, name, data)
    meta = f'<meta name="tunebook-run-state" content="{s.state}">'
    page = page.replace("</head>", meta + "</head>", 1)
    banner = run_state_html(s)
    anchor = "</header>"
    return (page.replace(anchor, anchor + banner, 1) if anchor in page
            else page.replace("</body>", banner + "</body>", 1))


class LiveReport:
    """Rewrites experiment ``name``'s report at ``out`` while its run goes on.

    Call it with each of the runner's progress snapshots (it only notes that the counts
    changed; it never blocks); a background thread writes the page as described in the module's
    docstring, with its own connection to the store at ``url``. :meth:`close` stops the thread
    (``final=True``: and writes the page once more, for a run that ended with an error).
    """

    def __init__(self, url: str, name: str, out: str | Path, *, stream: TextIO | None = None,
                 min_interval: float = MIN_INTERVAL, cost_factor: float = COST_FACTOR) -> None:
        self.url, self.name, self.out = url, name, Path(out)
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval, self.cost_factor = min_interval, cost_factor
        self.attempts = 0  # writes tried (tests, benchmarks)
        self.writes = 0  # pages written
        self.seconds = 0.0  # spent writing them (wall time)
        self.cpu_seconds = 0.0  # ... and CPU time
        self._key: tuple[tuple[str, int], ...] | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._next = 0.0  # monotonic time before which no write starts
        self._warned = False
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def __call__(self, progress: Any) -> None:
        key = tuple(sorted(progress.counts.items()))
        if key == self._key:
            return
        self._key = key
        if self._thread is None:
            # The first page waits min_interval too: a run shorter than that gets only the
            # page written at its end (a page while 500 no-op trials finish in 0.7 s cost 3%).
            self._next = time.monotonic() + self.min_interval
            self._thread = threading.Thread(target=self._loop, name="tunebook-live-report",
                                            daemon=True)
            self._thread.start()
        self._changed.set()

    def _loop(self) -> None:
        if sys.platform == "linux":
            # A lower priority for this thread alone: the workers' CPU comes first.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            # Imported before the first write is timed: a one-off cost, not a write's.
            import tunebook.report.html  # noqa: F401
        except Exception as exc:  # said once, as a failed write would be; the run goes on
            self._warn(exc)
            return
        try:
            while True:
                self._changed.wait()
                if self._stop.is_set():
                    return
                delay = self._next - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self._changed.clear()  # a change from now on asks for another write
                self._write()
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _write(self) -> None:
        from tunebook.report.html import write_report
        from tunebook.store.sql import Store

        # The cost is this thread's CPU time: its wall time also counts the waits for a CPU
        # that its lower priority gives the workers first.
        t0, c0 = time.monotonic(), time.thread_time()
        self.attempts += 1
        try:
            if self._store is None:
                # Short outage retries: the run's own store handles outages, this is a view.
                self._store = Store(self.url, create=False, outage_seconds=5.0)
            write_report(self._store, self.name, self.out)
            self.writes += 1
        except Exception as exc:
            self._warn(exc)
        finally:
            self.seconds += time.monotonic() - t0
            self.cpu_seconds += (cost := time.thread_time() - c0)
            self._next = time.monotonic() + max(self.min_interval, self.cost_factor * cost)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            print(f"tunebook: live report: could not write {self.out} ({exc}); the run goes on "
                  "(the report is written at the end)", file=self.stream)

    def close(self, final: bool = False) -> None:
        """Stop the writer (after the write under way, if any); with ``final``, write the page
        once more if a live page was written (its state then says how the run ended)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._changed.set()
        thread.join()
        if final and self.writes:
            self._write()
            if self._store is not None:
                self._store.close()
                self._store = None

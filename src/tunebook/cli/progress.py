"""The progress bar of ``tunebook run``: counts, rate, ETA and failures as they happen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from tunebook.core.formatting import error_line
from tunebook.core.formatting import format_value as _fmt


def _clock(seconds: float) -> str:
    mins, secs = divmod(int(seconds), 60)
    hours, mins = divmod(mins, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


class _ProgressBar:
    """One live line on a terminal; a line per change otherwise. Failures are printed above
    it as they happen (the first with the start of its traceback)."""

    def __init__(self, stream: TextIO, bar: bool = True, report: Path | None = None) -> None:
        self.stream = stream
        self.bar = bar  # False (--quiet): only the failures
        self.report = report  # the live report's path, said once before the first bar
        self.tty = stream.isatty()
        self.last = ""
        self.last_time = 0.0
        self.done_at_start: int | None = None
        self.traceback_shown = False  # the first traceback of the run, once

    def _eta(self, p: Any) -> str:
        if self.done_at_start is None:
            self.done_at_start = p.done
        finished = p.done - self.done_at_start
        left = p.total - p.done
        if left <= 0:
            return ""
        if finished <= 0 or p.elapsed <= 0:
            return ", ETA -"
        return f", ETA {_clock(p.elapsed / finished * left)}"

    def _failure(self, t: Any) -> None:
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
        self.stream.write(f"trial {t.study}#{t.index} failed: {error_line(t.error, 300)}\n")
        if not self.traceback_shown and t.error and "Traceback" in t.error:
            lines = t.error.strip().splitlines()
            shown = lines[:12] if len(lines) <= 12 else [*lines[:6], "  ...", *lines[-5:]]
            self.stream.write("".join(f"    {x}\n" for x in shown))
            self.traceback_shown = True
        self.last = ""

    def __call__(self, p: Any) -> None:
        for t in getattr(p, "new_failures", ()):
            self._failure(t)
        if not self.bar:
            return
        if self.report is not None:
            self.stream.write(f"report (live): {self.report}\n")
            self.report = None
        c = p.counts
        width = 24
        filled = int(width * p.done / p.total) if p.total else width
        bar = "#" * filled + "-" * (width - filled)
        best = "-"
        if p.best is not None:
            best = f"{_fmt(p.best.best_value)} ({p.best.study} #{p.best.index})"
        outage = f" | STORE UNREACHABLE: {p.outage}" if getattr(p, "outage", None) else ""
        line = (f"[{bar}] {p.done}/{p.total} done | {c.get('running', 0)} running | "
                f"{c.get('infeasible', 0)} infeasible | {c.get('failed', 0)} failed | "
                f"best {p.metric} {best}{outage} | {_clock(p.elapsed)}{self._eta(p)}")
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(len(self.last)))
            self.stream.flush()
            self.last = line[:200]
        else:
            key = line.split(" | ")[:-1]
            if key != self.last.split(" | ")[:-1] or time.monotonic() - self.last_time > 30:
                self.stream.write(line + "\n")
                self.stream.flush()
                self.last, self.last_time = line, time.monotonic()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()

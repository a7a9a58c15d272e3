"""Small helpers shared by the benchmarks: versions, machine description, tables, statistics."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata

__all__ = [
    "cpu_busy_fraction",
    "describe_machine",
    "median",
    "print_table",
    "quiet_optuna",
    "versions",
    "wait_for_quiet",
]


def versions() -> dict[str, str]:
    """Versions of the libraries the benchmarks compare, and of Python."""
    out = {"python": platform.python_version()}
    for dist in ("tunebook", "optuna", "sqlalchemy", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def describe_machine() -> str:
    """One line: CPU count, platform and current load (other work on the box skews results)."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return (f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"{platform.python_implementation()} {sys.version.split()[0]}, load avg {load}")


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table with right-aligned columns except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        first = r[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))


def quiet_optuna() -> None:
    """Silence Optuna's per-trial INFO log lines (they would be timed too)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def cpu_busy_fraction(interval: float = 1.0) -> float | None:
    """Fraction of all CPUs busy (any process) over ``interval`` seconds; None off Linux."""
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    if a is None or b is None or b[1] == a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_for_quiet(max_wait: float, threshold: float = 0.15, window: float = 2.0) -> float | None:
    """Wait up to ``max_wait`` s until the CPUs are less than ``threshold`` busy for ``window`` s.

    Benchmarks on a shared machine are skewed by whatever else runs; this waits for a lull.
    Returns the last busy fraction seen (None where it cannot be measured).
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy_fraction(window)
    while busy is not None and busy >= threshold and time.monotonic() < deadline:
        busy = cpu_busy_fraction(window)
    return busy

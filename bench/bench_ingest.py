"""The store under load: bulk ingestion, claims and the read commands at 10,000 trials x 100
evaluations x 3 metrics (3 M measurements), on SQLite and on PostgreSQL.

Targets (issue 14): bulk ingestion >= 1,000,000 points/s, not degrading as the store grows;
a claim's cost independent of the number of pending trials; ``tunebook status``, ``best`` and
``trials`` <= 1 s at that size.

- ingestion: ``Store.add_measurements_many`` (100 trials, 30,000 points, per call) fills the
  store; points/s over the first and the last 300,000 points (store at 0 and at 2.7 M points).
  The old path, ``add_measurements`` once per trial (300 points a call, what
  ``bench_report_page.py``'s fill did), is timed on 200 more trials at 0 and at 3 M points.
  Only the store calls are timed, not making the rows; each rate is given per wall second and
  per CPU second (this process plus, for PostgreSQL, the server's processes).
- claims: ms per ``claim`` + ``finish`` with 10,000 and with 100 pending trials.
- reads: wall and CPU seconds of the commands as a user runs them (a new process each,
  Python's start included).

The tunebook measured is the one on ``PYTHONPATH``: run it once with this tree's ``src`` and once
with an older tree's (whose store has no bulk path: its fill is one call per trial) to compare.

PostgreSQL is a throwaway server of tests/pgserver.py (fsync off, as in the tests: durability
costs are the disk's, not tunebook's). Timings depend on the machine and on what else runs there.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tunebook
from tunebook.store.sql import NewTrial, Store, StudySpec, TrialSummary, sqlite_url

from benchutil import describe_machine

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 100  # trials per add_measurements_many call
EDGE = 300_000  # points timed at the start and at the end of the fill
OLD = 200  # trials written through the old path, at 0 and at 3 M rows
METRICS = ("train_loss", "val_loss", "grad_norm")


def points(trial: int, evals: int) -> list[tuple[int, str, float]]:
    """One trial's measurements: ``evals`` evaluations of the 3 metrics."""
    rng = random.Random(trial)
    floor = 0.1 + rng.random()
    out = []
    for e in range(1, evals + 1):
        out += [(e * 100, "train_loss", floor * 0.8 + 2 / e + rng.gauss(0, 0.01)),
                (e * 100, "val_loss", floor + 2 / e + rng.gauss(0, 0.02)),
                (e * 100, "grad_norm", abs(rng.gauss(1, 0.3)))]
    return out


def register(store: Store, name: str, trials: int) -> list[int]:
    """An experiment of 2 studies sharing ``trials``; returns the trial ids in index order."""
    half = trials // 2
    specs = [StudySpec(arm, k, {"arm": arm}, "quasi_random", 0, half)
             for k, arm in enumerate(("a", "b"))]
    rows = {arm: [NewTrial(i, {"learning_rate": 10 ** (-4 + 4 * i / half)}, i)
                  for i in range(half)] for arm in ("a", "b")}
    config = {"name": name, "workload": "tunebook.workloads.synthetic:quadratic",
              "objective": {"metric": "val_loss", "goal": "minimize"},
              "max_train_steps": 10_000, "eval_every": 100, "search": {"trials": half},
              "scientific": {"arm": ["a", "b"]},
              "nuisance": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1,
                                             "scale": "log"}}}
    exp_id = store.register(name, "bench", config, specs, rows)
    return [t.id for t in store.trials(exp_id)]


class Meter:
    """Wall and CPU seconds of the timed calls. CPU counts this process and, for PostgreSQL,
    every process of the server (``server_pid``: the postmaster; its children do the work):
    on a shared machine the wall clock measures the neighbours too, the CPU seconds much less.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def cpu(self) -> float:
        """CPU seconds used so far by this process and the server's processes."""
        total = time.process_time()
        if self.server_pid is None:
            return total
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            # fields[1] is the parent pid; [11], [12] user and system time in ticks.
            if pid == self.server_pid or int(fields[1]) == self.server_pid:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def time(self, work: Callable[[], None]) -> tuple[float, float]:
        """``(wall, cpu)`` seconds of ``work()``."""
        c0, t0 = self.cpu(), time.perf_counter()
        work()
        return time.perf_counter() - t0, self.cpu() - c0


def write(store: Store, batch: dict[int, list[tuple[int, str, float]]]) -> None:
    """The bulk path; with a tunebook that has none (``--baseline``), one call per trial."""
    if hasattr(store, "add_measurements_many"):
        store.add_measurements_many(batch)
    else:
        for tid, rows in batch.items():
            store.add_measurements(tid, rows)


def ingest(store: Store, meter: Meter, ids: list[int], evals: int) -> dict[str, float]:
    """Fill the trials ``ids`` with the bulk path: points/s (wall and CPU) overall, over the
    first and over the last EDGE points."""
    per = 3 * evals
    edge = min(len(ids), max(CHUNK, EDGE // per))
    spent = {k: [0.0, 0.0] for k in ("all", "first", "last")}
    for lo in range(0, len(ids), CHUNK):
        batch = {tid: points(tid, evals) for tid in ids[lo:lo + CHUNK]}
        wall, cpu = meter.time(lambda b=batch: write(store, b))  # type: ignore[misc]
        for key, counts in (("all", True), ("first", lo < edge), ("last", lo >= len(ids) - edge)):
            if counts:
                spent[key][0] += wall
                spent[key][1] += cpu
    n = {"all": len(ids) * per, "first": edge * per, "last": edge * per}
    return {f"{k} {w}": n[k] / spent[k][i] for k in spent for i, w in enumerate(("wall", "cpu"))}


def old_path(store: Store, meter: Meter, ids: list[int], evals: int) -> tuple[float, float]:
    """Points/s (wall, CPU) of add_measurements once per trial."""
    wall = cpu = 0.0
    for tid in ids:
        rows = points(tid, evals)
        w, c = meter.time(lambda r=rows, t=tid: store.add_measurements(t, r))  # type: ignore[misc]
        wall += w
        cpu += c
    n = len(ids) * 3 * evals
    return n / wall, n / cpu


def finish_all(store: Store, ids: list[int], evals: int) -> None:
    """Every trial of the big experiment completed with its summaries (one transaction each
    for the status: a bench shortcut, not the workers' path; the claims are timed apart)."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE trials SET status = 'completed', attempts = 1, "
                             "worker = 'bench', finished_at = 1.0")
    summaries = []
    for tid in ids:
        vals = [v for _, m, v in points(tid, evals) if m == "val_loss"]
        best = min(range(len(vals)), key=vals.__getitem__)
        summaries.append(TrialSummary(tid, (best + 1) * 100, vals[best], evals * 100, vals[-1]))
    store.set_summaries(summaries)


def claims(store: Store, name: str, pending: int, n: int = 60) -> float:
    """Median ms of a claim, the experiment having ``pending`` trials (then one fewer each
    time); each claimed trial is finished, untimed. The first claim (which also reads the
    study names) is left out."""
    register(store, name, pending)
    exp_id = store.require_experiment(name).id
    times = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        t = store.claim(exp_id, "bench")
        times.append(time.perf_counter() - t0)
        assert t is not None
        store.finish(t.id, "bench", "completed", best_step=100, best_value=1.0)
    return statistics.median(times[1:]) * 1000


def cli_seconds(meter: Meter, url: str, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``tunebook ARGS --store URL`` in a new process (its CPU, and the
    server's for PostgreSQL)."""
    # The tunebook this bench runs (another tree's with --baseline).
    env = {**os.environ, "PYTHONPATH": str(Path(tunebook.__file__).resolve().parents[1])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = meter.cpu() - time.process_time()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tunebook.cli", *args, "--store", url], check=True,
                   env=env, stdout=subprocess.DEVNULL, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu + meter.cpu() - time.process_time() - server


def bench(backend: str, url: str, trials: int, evals: int, server_pid: int | None) -> None:
    """Everything above on one store."""
    store = Store(url)
    meter = Meter(server_pid)
    ids = register(store, "big", trials + 2 * OLD)
    fill_ids, old0, old1 = ids[:trials], ids[trials:trials + OLD], ids[trials + OLD:]
    old_0 = old_path(store, meter, old0, evals)
    r = ingest(store, meter, fill_ids, evals)
    old_n = old_path(store, meter, old1, evals)
    rows = (trials + 2 * OLD) * 3 * evals
    path = "add_measurements_many" if hasattr(store, "add_measurements_many") else (
        "add_measurements per trial (no bulk path in this tunebook)")
    print(f"{backend}: {rows:,} points. {path}, points/s wall (per CPU-second):"
          f" {r['all wall']:,.0f} ({r['all cpu']:,.0f}) overall, {r['first wall']:,.0f} "
          f"({r['first cpu']:,.0f}) over the first {EDGE:,}, {r['last wall']:,.0f} "
          f"({r['last cpu']:,.0f}) over the last; target >= 1,000,000")
    print(f"{backend}: add_measurements once per trial (old path): {old_0[0]:,.0f} "
          f"({old_0[1]:,.0f}) at 0 rows, {old_n[0]:,.0f} ({old_n[1]:,.0f}) at "
          f"{rows / 1e6:.1f} M; bulk/old {r['all wall'] / old_0[0]:.1f}x wall, "
          f"{r['all cpu'] / old_0[1]:.1f}x CPU")
    finish_all(store, ids, evals)
    slow = {}
    for cmd in (("status", "big"), ("best", "big"), ("trials", "big")):
        slow[cmd[0]] = min(cli_seconds(meter, url, *cmd) for _ in range(3))
    print(f"{backend}: " + ", ".join(f"tunebook {k} {w:.2f}s ({c:.2f} s CPU)"
                                     for k, (w, c) in slow.items())
          + " (best of 3, a new process each, Python's start included; target <= 1 s)")
    many = claims(store, "queue_big", 10_000)
    few = claims(store, "queue_small", 100)
    print(f"{backend}: claim {many:.2f} ms with 10,000 pending, {few:.2f} ms with 100 "
          f"(median of 60)")
    store.close()


def main() -> None:
    """Run the bench on the backends asked for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(describe_machine())
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in backends:
            bench("sqlite", sqlite_url(Path(tmp) / "tunebook.db"), args.trials, args.evals,
                  None)
        if "postgresql" in backends:
            sys.path.insert(0, str(ROOT / "tests"))
            import pgserver

            server = pgserver.PostgresServer()
            server.start()
            try:
                pid = int((server.data / "postmaster.pid").read_text().split()[0])
                bench("postgresql", server.new_database(), args.trials, args.evals, pid)
            finally:
                server.stop()


if __name__ == "__main__":
    main()

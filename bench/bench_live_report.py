"""What the live report costs a run: the same runs with and without it, interleaved.

``tunebook run`` hands the runner a progress hook; with the live report that hook is a
:class:`tunebook.report.live.LiveReport`, whose background thread rewrites the page as trials
finish (at most once every ``max(5 s, 50 x the last write's CPU time)``). Here both sides call
``run(experiment, workers=W, progress=hook)`` in a fresh folder, the baseline with a hook that
does nothing (the progress bar's place), the other with a ``LiveReport`` (its ``close()``
timed too). The page written at the end is not counted: ``tunebook run`` writes it with or
without the live report.

Workloads:

* noop: the overhead benchmark's no-op trials (``bench/noop.py``, ``bench_overhead.py``'s
  experiment): the most trials finishing per second, so the most changes to write.
* cpu: the synthetic workload with ``work`` (busy-loop iterations per step): trials that keep
  every worker's CPU busy, so the writer thread competes with them for the cores.

Reported per workload: the median wall time of each side over ``repeats`` runs, the ratio of
the medians (target <= 1.02), the pages written and the writer's CPU time per run, and that CPU
time as a share of the runs' wall time; and the CPU time of the run's own process (every thread:
the runner, the hook, the writer) without and with, the difference as a share of the run's wall
time. The CPU numbers are less sensitive to other work on a shared machine than the ratio.

    .venv/bin/python bench/bench_live_report.py [--repeats 3] [--workers 2] [--wait-quiet S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_overhead import noop_experiment
from tunebook.core.paths import default_report_path, store_file
from tunebook.execution.runner import run
from tunebook.execution.worker import limit_threads
from tunebook.experiment import Experiment
from tunebook.store.sql import sqlite_url

from benchutil import describe_machine, median, print_table, versions, wait_for_quiet

__all__ = ["TARGET_RATIO", "bench_live_report", "main"]

TARGET_RATIO = 1.02  # with / without the live report


@dataclass
class Side:
    """One side's runs: wall seconds, and (live side) pages written and writer CPU seconds."""

    seconds: list[float] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    parent_cpu: list[float] = field(default_factory=list)  # the run's process, every thread


def cpu_experiment(trials: int, work: int, steps: int) -> Experiment:
    """Synthetic trials of ``steps`` steps of ``work`` busy-loop iterations each."""
    return Experiment.from_dict({
        "name": "bench-live-cpu",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": steps, "eval_every": max(1, steps // 10),
        "search": {"algorithm": "quasi_random", "trials": trials, "seed": 0},
        "scientific": {"y": [0.0, 0.5]},
        "nuisance": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0,
                                       "scale": "log"}},
        "fixed": {"work": work},
    }, source="bench_live_report")


def _once(experiment: Experiment, workers: int, live: bool, side: Side) -> None:
    limit_threads()  # before the report's modules load NumPy, as `tunebook run` does
    from tunebook.report.live import LiveReport

    with tempfile.TemporaryDirectory(prefix="tunebook-bench-live-") as tmp:
        writer = (LiveReport(sqlite_url(store_file(tmp)), experiment.name,
                             default_report_path(tmp, experiment.name)) if live else None)
        hook: Callable[[Any], None] = writer if writer is not None else (lambda p: None)
        t0, c0 = time.perf_counter(), time.process_time()
        result = run(experiment, root=tmp, workers=workers, progress=hook)
        if writer is not None:
            writer.close()
        side.seconds.append(time.perf_counter() - t0)
        side.parent_cpu.append(time.process_time() - c0)
        if result.interrupted or result.counts.get("completed", 0) == 0:
            raise RuntimeError(f"the run did not complete: {result.counts}")
        if writer is not None:
            side.writes.append(writer.writes)
            side.cpu.append(writer.cpu_seconds)


def bench_live_report(experiment: Experiment, workers: int, repeats: int,
                      wait_quiet: float = 0.0) -> tuple[Side, Side]:
    """``repeats`` runs without and with the live report, interleaved (order alternating)."""
    without, with_live = Side(), Side()
    for i in range(repeats):
        for live in ((False, True) if i % 2 == 0 else (True, False)):
            if wait_quiet > 0:
                wait_for_quiet(wait_quiet)
            _once(experiment, workers, live, with_live if live else without)
    return without, with_live


def main(argv: Sequence[str] | None = None) -> float:
    """Command-line entry point; returns the largest ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per side and workload")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--noop-trials", type=int, default=500)
    p.add_argument("--cpu-trials", type=int, default=20, help="trials per study (2 studies)")
    p.add_argument("--work", type=int, default=200_000, help="busy-loop iterations per step")
    p.add_argument("--steps", type=int, default=40, help="steps per cpu trial")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for idle CPUs")
    args = p.parse_args(argv)
    print(f"# bench_live_report: {describe_machine()}")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    workloads = {
        f"noop, {args.noop_trials} trials": noop_experiment(args.noop_trials, "bench-live-noop"),
        f"cpu, {2 * args.cpu_trials} trials x {args.steps} steps x {args.work} iterations":
            cpu_experiment(args.cpu_trials, args.work, args.steps),
    }
    rows, worst = [], 0.0
    for name, exp in workloads.items():
        without, live = bench_live_report(exp, args.workers, args.repeats, args.wait_quiet)
        ratio = median(live.seconds) / median(without.seconds)
        worst = max(worst, ratio)
        extra = median(live.parent_cpu) - median(without.parent_cpu)
        rows.append([f"{name}, {args.workers} workers", f"{median(without.seconds):.2f}",
                     f"{median(live.seconds):.2f}", f"{ratio:.3f}",
                     " ".join(f"{s:.2f}" for s in without.seconds),
                     " ".join(f"{s:.2f}" for s in live.seconds),
                     " ".join(map(str, live.writes)),
                     " ".join(f"{c:.2f}" for c in live.cpu),
                     f"{100 * sum(live.cpu) / sum(live.seconds):.2f} %",
                     f"{median(without.parent_cpu):.2f} / {median(live.parent_cpu):.2f}",
                     f"{100 * extra / median(without.seconds):.2f} %"])
    print_table(["workload", "without s", "with s", "ratio", "each without", "each with",
                 "pages written", "writer CPU s", "writer CPU / run",
                 "run process CPU s (without / with)", "extra CPU / run"], rows)
    print(f"target: with / without <= {TARGET_RATIO} (the live report costs <= 2 % of the run): "
          f"{'MET' if worst <= TARGET_RATIO else 'MISSED'} (largest ratio {worst:.3f})")
    return worst


if __name__ == "__main__":
    main()

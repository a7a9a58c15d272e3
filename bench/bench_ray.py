"""Trials per hour with 1, 2 and 4 workers: local processes versus Ray actors, same machine.

The trials are those of ``bench_scaling.py`` (``tunebook.workloads.synthetic:quadratic``, a busy
loop calibrated so one trial costs about ``trial_seconds`` of CPU). For each worker count the same
experiment runs with ``run(..., workers=N)`` (local processes) and with ``run(..., workers=N,
executor="ray")``, alternately, each in a fresh root with a SQLite store, ``repeats`` times;
the medians are compared.

One local Ray (``ray.init(num_cpus=4)``) serves every Ray run: its start (printed apart) is a
once-per-session cost, not a per-run one. What each Ray run does include: creating its actors,
each one importing tunebook and the workload, and Ray's scheduling; local runs include spawning
their processes. Ray's overhead per trial = (Ray wall time - local wall time) x workers /
trials: the extra worker-seconds each trial cost.

With more workers than cores (4 workers on a 2-core machine) both executors share the cores;
the ratio between them is still meaningful, the absolute rate is not.

    .venv/bin/python bench/bench_ray.py [--trials 8] [--trial-seconds 1.0] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_scaling import calibrate_work, scaling_experiment
from tunebook.execution.runner import run

from benchutil import cpu_busy_fraction, describe_machine, median, print_table, versions

__all__ = ["RayBench", "bench_ray", "main"]

WORKER_COUNTS = (1, 2, 4)


@dataclass
class RayBench:
    """Wall times per (executor, workers), the calibration and Ray's start-up."""

    trials: int
    work: int
    ray_start_s: float
    walls: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    busy: list[float] = field(default_factory=list)

    def wall(self, executor: str, workers: int) -> float:
        """Median wall time of ``run()``."""
        return median(self.walls[(executor, workers)])

    def per_hour(self, executor: str, workers: int) -> float:
        """Completed trials per hour of ``run()`` wall time (median run)."""
        return self.trials / self.wall(executor, workers) * 3600

    def overhead_per_trial(self, workers: int) -> float:
        """Extra worker-seconds per trial under Ray (negative: Ray was faster)."""
        return (self.wall("ray", workers) - self.wall("local", workers)) * workers / self.trials


def _timed_run(trials: int, work: int, workers: int, executor: str) -> float:
    experiment = scaling_experiment(trials, work)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as root:
        t0 = time.perf_counter()
        result = run(experiment, root=Path(root), workers=workers, executor=executor)
        wall = time.perf_counter() - t0
    if result.counts != {"completed": trials}:
        raise RuntimeError(f"{executor} x{workers}: {result.counts}")
    return wall


def bench_ray(trials: int = 8, trial_seconds: float = 1.0, repeats: int = 2,
              counts: Sequence[int] = WORKER_COUNTS) -> RayBench:
    """Run every (executor, workers) pair ``repeats`` times, alternating the executors."""
    import logging

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a Ray of this process only
    work, _ = calibrate_work(trial_seconds)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(counts), include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)
    res = RayBench(trials, work, time.perf_counter() - t0)
    try:
        _timed_run(2, work, 1, "ray")  # warm-up: Ray's worker pool, imports on disk cache
        for _ in range(repeats):
            for workers in counts:
                for executor in ("local", "ray"):
                    busy = cpu_busy_fraction(0.5)
                    if busy is not None:
                        res.busy.append(busy)
                    res.walls.setdefault((executor, workers), []).append(
                        _timed_run(trials, work, workers, executor))
    finally:
        ray.shutdown()
    return res


def print_ray(res: RayBench) -> None:
    """The table, the ratios and Ray's overhead per trial."""
    rows = []
    for workers in sorted({w for _, w in res.walls}):
        local, through_ray = res.per_hour("local", workers), res.per_hour("ray", workers)
        rows.append([workers, f"{local:.0f}", f"{through_ray:.0f}", f"{through_ray / local:.2f}",
                     f"{res.overhead_per_trial(workers):+.2f}"])
    print_table(["workers", "local trials/h", "ray trials/h", "ray/local",
                 "ray overhead s/trial"], rows)
    counts = sorted({w for _, w in res.walls})
    for executor in ("local", "ray"):
        scale = ", ".join(f"{w}: {res.per_hour(executor, w) / res.per_hour(executor, 1):.2f}x"
                          for w in counts)
        print(f"{executor}: trials/hour relative to 1 worker: {scale}")
    print(f"Ray start (once per session, not in the runs): {res.ray_start_s:.1f} s")
    if res.busy:
        print(f"CPU busy just before the runs: median {median(res.busy):.0%}, "
              f"max {max(res.busy):.0%}")


def main(argv: Sequence[str] | None = None) -> RayBench:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per run")
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe_machine())
    print(versions())
    res = bench_ray(args.trials, args.trial_seconds, args.repeats)
    print(f"{res.trials} trials per run, {args.trial_seconds:g} s of CPU each "
          f"(work={res.work} iterations per step), {args.repeats} runs per row (medians)")
    print_ray(res)
    return res


if __name__ == "__main__":
    main()

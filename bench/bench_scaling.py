"""Trials per hour with 1 versus 2 local workers on CPU-bound trials.

The workload is ``tunebook.workloads.synthetic:quadratic`` with a fixed ``work`` (busy-loop
iterations per step), calibrated on this machine so one trial costs about ``trial_seconds`` of
CPU. The same experiment (``trials`` trials) runs with ``tunebook.execution.runner.run(...,
workers=1)`` and then ``workers=2``, each in a fresh root. Nothing is excluded from the headline
rate: the wall time of ``run()`` includes registering the trials, spawning the worker processes
(each imports tunebook), the runner's polling and the workers' exit.

Also reported, from the store's per-trial ``started_at`` / ``finished_at`` / ``worker``:

* steady-state rate: for each worker, the trials it finished after its first one divided by the
  time between its first and last finish, summed over workers (start-up and tail excluded);
* mean trial duration (``run_seconds``): if it grows with 2 workers, the cores were not free
  (another process was using them), which lowers the 2-worker rate;
* the CPU seconds the worker processes used (``RUSAGE_CHILDREN``) and the share of the machine
  busy just before the run: on a shared machine, compare them before trusting a ratio.

``--wait-quiet S`` waits up to S seconds before each run for the CPUs to be idle.

    .venv/bin/python bench/bench_scaling.py [--trials 8] [--trial-seconds 1.5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store, TrialRow
from tunebook.workloads.synthetic import _burn

from benchutil import (
    cpu_busy_fraction,
    describe_machine,
    median,
    print_table,
    versions,
    wait_for_quiet,
)

__all__ = ["ScalingResult", "bench_scaling", "calibrate_work", "main", "scaling_experiment"]

TARGET_RATIO = 1.8
BUSY_LIMIT = 0.25  # share of the machine busy before a run above which it is flagged
SLOWDOWN_LIMIT = 1.15  # a run whose trials take this much longer than with 1 worker is flagged
BENCH_DIR = Path(__file__).resolve().parent
STEPS = 20
EVAL_EVERY = 5


@dataclass
class ScalingRun:
    """One ``run()`` with a given number of workers."""

    workers: int
    trials: int
    wall_s: float
    steady_per_hour: float | None
    mean_trial_s: float
    startup_s: float
    worker_cpu_s: float
    busy_before: float | None

    @property
    def cores_used(self) -> float:
        """Worker CPU seconds per wall second (2 workers on 2 free cores: close to 2)."""
        return self.worker_cpu_s / self.wall_s

    @property
    def per_hour(self) -> float:
        """Completed trials per hour of ``run()`` wall time."""
        return self.trials / self.wall_s * 3600


@dataclass
class ScalingResult:
    """Every run, the calibrated work and the medians."""

    work: int
    ns_per_iteration: float
    runs: dict[int, list[ScalingRun]] = field(default_factory=dict)

    def rate(self, workers: int) -> float:
        """Median trials/hour (whole ``run()``) for ``workers``."""
        return median([r.per_hour for r in self.runs[workers]])

    def steady(self, workers: int) -> float | None:
        """Median steady-state trials/hour for ``workers`` (None: no worker ran 2 trials)."""
        values = [r.steady_per_hour for r in self.runs[workers] if r.steady_per_hour is not None]
        return median(values) if values else None

    @property
    def ratio(self) -> float:
        """2-worker over 1-worker trials/hour, whole ``run()`` wall time."""
        return self.rate(2) / self.rate(1)

    @property
    def steady_ratio(self) -> float | None:
        """2-worker over 1-worker steady-state trials/hour (None when undefined)."""
        one, two = self.steady(1), self.steady(2)
        return None if one is None or two is None else two / one

    @property
    def target_met(self) -> bool:
        """Whole-run ratio reaches 1.8x."""
        return self.ratio >= TARGET_RATIO

    @property
    def contended(self) -> bool:
        """Some run found the CPUs busy beforehand, or its trials ran much slower than alone.

        Trials of identical work that take longer with 2 workers than with 1 mean the cores
        were shared with something else.
        """
        alone = median([r.mean_trial_s for r in self.runs.get(1, [])] or [0.0])
        return any((r.busy_before or 0.0) > BUSY_LIMIT
                   or (alone > 0 and r.mean_trial_s > SLOWDOWN_LIMIT * alone)
                   for runs in self.runs.values() for r in runs)


def calibrate_work(trial_seconds: float, steps: int = STEPS) -> tuple[int, float]:
    """``work`` per step so that ``steps`` steps burn ``trial_seconds`` of CPU; and ns/iteration."""
    n = 2_000_000
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        _burn(n)
        best = min(best, time.process_time() - t0)
    ns = best / n * 1e9
    return max(1, round(trial_seconds / steps / (ns * 1e-9))), ns


def scaling_experiment(trials: int, work: int) -> Experiment:
    """``trials`` CPU-bound synthetic trials (feasible learning rates: none stops early)."""
    return Experiment.from_dict({
        "name": "bench-scaling",
        "workload": "tunebook.workloads.synthetic:quadratic",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": STEPS,
        "eval_every": EVAL_EVERY,
        "search": {"algorithm": "quasi_random", "trials": trials, "seed": 0},
        "nuisance": {
            "learning_rate": {"type": "float", "low": 0.003, "high": 0.3, "scale": "log"},
            "x": {"type": "float", "low": -1.0, "high": 1.0},
        },
        "fixed": {"work": work, "noise": 0.01},
    }, source="bench_scaling", base_dir=str(BENCH_DIR))


def steady_rate(rows: Sequence[TrialRow]) -> float | None:
    """Trials/hour after each worker's first finish (sum over workers); None if undefined."""
    by_worker: dict[str, list[float]] = {}
    for r in rows:
        if r.finished_at is not None:
            by_worker.setdefault(r.worker or "?", []).append(r.finished_at)
    total, defined = 0.0, False
    for ends in by_worker.values():
        ends.sort()
        if len(ends) >= 2 and ends[-1] > ends[0]:
            total += (len(ends) - 1) / (ends[-1] - ends[0])
            defined = True
    return total * 3600 if defined else None


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_once(experiment: Experiment, workers: int, wait_quiet: float) -> ScalingRun:
    busy = (wait_for_quiet(wait_quiet) if wait_quiet > 0 else cpu_busy_fraction(0.5))
    cpu0 = _children_cpu()
    with tempfile.TemporaryDirectory(prefix=f"tunebook-bench-scaling-{workers}w-") as tmp:
        started_wall = time.time()
        t0 = time.perf_counter()
        result = run(experiment, root=tmp, workers=workers)
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - cpu0
        done = result.counts.get("completed", 0)
        if done != experiment.search.trials:
            raise RuntimeError(f"expected {experiment.search.trials} completed trials, "
                               f"got {result.counts}")
        store = Store.at_root(tmp, create=False)
        try:
            rows = store.trials(result.experiment_id)
        finally:
            store.close()
    first_start = min(r.started_at for r in rows if r.started_at is not None)
    return ScalingRun(workers=workers, trials=done, wall_s=wall, steady_per_hour=steady_rate(rows),
                      mean_trial_s=sum(r.run_seconds for r in rows) / len(rows),
                      startup_s=first_start - started_wall, worker_cpu_s=cpu,
                      busy_before=busy)


def bench_scaling(trials: int = 8, trial_seconds: float = 1.5, repeats: int = 2,
                  worker_counts: Sequence[int] = (1, 2), wait_quiet: float = 0.0) -> ScalingResult:
    """Calibrate, then run each worker count ``repeats`` times (interleaved)."""
    if wait_quiet > 0:
        wait_for_quiet(wait_quiet)
    work, ns = calibrate_work(trial_seconds)
    experiment = scaling_experiment(trials, work)
    res = ScalingResult(work, ns, {w: [] for w in worker_counts})
    for _ in range(repeats):
        for w in worker_counts:
            res.runs[w].append(_run_once(experiment, w, wait_quiet))
    return res


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_scaling(res: ScalingResult) -> None:
    """Print the table and the ratio."""
    rows = []
    for w, runs in res.runs.items():
        for i, r in enumerate(runs):
            rows.append([f"{w} worker{'s' if w > 1 else ''} (run {i + 1})", r.trials,
                         f"{r.wall_s:.2f}", f"{r.per_hour:,.0f}", _fmt(r.steady_per_hour, ",.0f"),
                         f"{r.mean_trial_s:.2f}", f"{r.startup_s:.2f}",
                         f"{r.worker_cpu_s:.1f}", f"{r.cores_used:.2f}",
                         "n/a" if r.busy_before is None else f"{r.busy_before:.0%}"])
    print(f"work={res.work:,} iterations/step x {STEPS} steps "
          f"({res.ns_per_iteration:.1f} ns/iteration measured here)")
    print_table(["configuration", "trials", "wall s", "trials/h", "steady trials/h",
                 "mean trial s", "to 1st start s", "worker CPU s", "cores used",
                 "busy before"], rows)
    print()
    print(f"trials/hour, whole run(): 1 worker {res.rate(1):,.0f}, 2 workers {res.rate(2):,.0f}"
          f" -> ratio {res.ratio:.2f}x (median of {len(res.runs[1])} runs each)")
    ratio = "n/a" if res.steady_ratio is None else f"{res.steady_ratio:.2f}x"
    print(f"trials/hour, steady state: 1 worker {_fmt(res.steady(1), ',.0f')}, 2 workers "
          f"{_fmt(res.steady(2), ',.0f')} -> ratio {ratio}")
    print(f"target >= {TARGET_RATIO}x (whole run()): {'MET' if res.target_met else 'MISSED'} "
          f"({res.ratio:.2f}x)")
    if res.contended:
        print("WARNING: other processes were using the CPUs during these runs (see 'busy "
              "before' and 'mean trial s'); the ratio understates tunebook's scaling. Rerun on "
              "an idle machine or with --wait-quiet 60.")
    if (os.cpu_count() or 1) < 2:
        print("note: fewer than 2 CPUs: 2 workers cannot scale here")


def main(argv: Sequence[str] | None = None) -> ScalingResult:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8, help="trials per configuration")
    p.add_argument("--trial-seconds", type=float, default=1.5, help="CPU seconds per trial")
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration (median)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for idle CPUs")
    args = p.parse_args(argv)
    print(f"# bench_scaling: {describe_machine()}")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    res = bench_scaling(args.trials, args.trial_seconds, args.repeats,
                        wait_quiet=args.wait_quiet)
    print_scaling(res)
    print(f"# after: {describe_machine()}")
    return res


if __name__ == "__main__":
    main()

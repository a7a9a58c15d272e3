"""Per-trial orchestration overhead on SQLite: tunebook versus Optuna, same run.

tunebook
  ``tunebook.execution.runner.run(experiment, root=tmp, workers=0)`` on ``trials`` no-op trials
  (``bench/noop.py``: report one metric once and return) with three nuisance hyperparameters
  (float, int, categorical). Reported per trial:

  * total: the whole ``run()`` wall time / trials (store creation, registering every trial,
    claiming, recording the outcome, the final checks: nothing is excluded);
  * outside the workload: the same minus the time spent inside the workload function;
  * loop: first trial's ``started_at`` to last trial's ``finished_at`` / trials (setup excluded).

Optuna
  ``study.optimize(objective, n_trials=optuna_trials)`` on a ``sqlite:///`` study, the objective
  suggesting the same three hyperparameters and returning at once; with the default sampler (TPE)
  and with ``RandomSampler`` (no model, closest to pure storage cost). ``create_study`` is not
  timed. Reported: ``optimize`` wall time / trials.

Each configuration runs ``repeats`` times in a fresh folder; medians are compared. Wall time is
the headline; the process CPU time is printed beside it (less sensitive to other work on a shared
machine; the difference is waiting, mostly on the file system). ``--wait-quiet S`` waits up to S
seconds before each run for the CPUs to be idle.
``--breakdown`` runs tunebook once more with its store methods timed (diagnostic only).

    .venv/bin/python bench/bench_overhead.py [--trials 500] [--optuna-trials 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

import noop
from benchutil import describe_machine, median, print_table, quiet_optuna, versions, wait_for_quiet

__all__ = ["OverheadResult", "bench_overhead", "main", "noop_experiment"]

TARGET_MS = 2.0
BENCH_DIR = Path(__file__).resolve().parent
NUISANCE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
    "width": {"type": "int", "low": 32, "high": 512, "scale": "log"},
    "activation": {"type": "categorical", "values": ["relu", "gelu", "tanh"]},
}


@dataclass
class TunebookRun:
    """One tunebook run of no-op trials."""

    trials: int
    total_s: float
    inside_s: float
    loop_s: float
    cpu_s: float

    @property
    def total_ms(self) -> float:
        """Whole ``run()`` per trial, in ms."""
        return self.total_s / self.trials * 1e3

    @property
    def outside_ms(self) -> float:
        """``run()`` minus time inside the workload, per trial, in ms."""
        return (self.total_s - self.inside_s) / self.trials * 1e3

    @property
    def loop_ms(self) -> float:
        """First start to last finish per trial, in ms."""
        return self.loop_s / self.trials * 1e3

    @property
    def cpu_ms(self) -> float:
        """Process CPU time of the whole ``run()`` per trial, in ms."""
        return self.cpu_s / self.trials * 1e3


@dataclass
class OverheadResult:
    """Medians over repeats, and every run."""

    tunebook: list[TunebookRun]
    optuna_tpe_ms: list[float]
    optuna_random_ms: list[float]
    optuna_trials: int
    optuna_tpe_cpu_ms: list[float] = field(default_factory=list)
    optuna_random_cpu_ms: list[float] = field(default_factory=list)
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def tunebook_ms(self) -> float:
        """Median total ``run()`` per trial (the headline number), in ms."""
        return median([r.total_ms for r in self.tunebook])

    @property
    def tunebook_outside_ms(self) -> float:
        """Median per-trial time outside the workload function, in ms."""
        return median([r.outside_ms for r in self.tunebook])

    @property
    def tunebook_loop_ms(self) -> float:
        """Median per-trial time from first start to last finish, in ms."""
        return median([r.loop_ms for r in self.tunebook])

    @property
    def tpe_ms(self) -> float:
        """Median Optuna (TPE) ms per trial."""
        return median(self.optuna_tpe_ms)

    @property
    def random_ms(self) -> float:
        """Median Optuna (RandomSampler) ms per trial."""
        return median(self.optuna_random_ms)

    @property
    def target_met(self) -> bool:
        """tunebook's whole-run per-trial time is within the 2 ms target."""
        return self.tunebook_ms <= TARGET_MS


def noop_experiment(trials: int, name: str = "bench-noop") -> Experiment:
    """An experiment of ``trials`` no-op trials, workload ``noop:noop`` from ``bench/``."""
    return Experiment.from_dict({
        "name": name,
        "workload": "noop:noop",
        "objective": {"metric": "loss", "goal": "minimize"},
        "max_train_steps": 1,
        "eval_every": 1,
        "search": {"algorithm": "quasi_random", "trials": trials, "seed": 0},
        "nuisance": NUISANCE,
    }, source="bench_overhead", base_dir=str(BENCH_DIR))


def _tunebook_once(trials: int) -> TunebookRun:
    experiment = noop_experiment(trials)
    with tempfile.TemporaryDirectory(prefix="tunebook-bench-overhead-") as tmp:
        noop.reset()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = run(experiment, root=tmp, workers=0)
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0
        inside = noop.INSIDE_SECONDS[0]
        done = result.counts.get("completed", 0)
        if done != trials or noop.INSIDE_SECONDS[1] != trials:
            raise RuntimeError(f"expected {trials} completed no-op trials, got {result.counts}")
        store = Store.at_root(tmp, create=False)
        try:
            rows = store.trials(result.experiment_id)
        finally:
            store.close()
        starts = [r.started_at for r in rows if r.started_at is not None]
        ends = [r.finished_at for r in rows if r.finished_at is not None]
        loop = max(ends) - min(starts)
    return TunebookRun(trials, total, inside, loop, cpu)


@contextmanager
def _timed_store_methods(acc: dict[str, float]) -> Iterator[None]:
    """Temporarily wrap Store methods to accumulate the seconds spent in each."""
    names = ("claim", "trial", "truncate_measurements", "add_measurements", "measurements",
             "finish", "register", "counts", "trials", "get_experiment")
    originals = {n: getattr(Store, n) for n in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[name] += time.perf_counter() - t0
        return timed

    for n, fn in originals.items():
        setattr(Store, n, wrap(n, fn))
    try:
        yield
    finally:
        for n, fn in originals.items():
            setattr(Store, n, fn)


def _breakdown(trials: int) -> dict[str, float]:
    """ms per trial spent in each Store method during one (separate, untimed) tunebook run."""
    acc: dict[str, float] = collections.defaultdict(float)
    with _timed_store_methods(acc):
        res = _tunebook_once(trials)
    out = {f"Store.{k}": v / trials * 1e3 for k, v in acc.items()}
    # Store.claim calls Store.trial once: report claim's own share without it.
    out["Store.claim"] = out.get("Store.claim", 0.0) - out.get("Store.trial", 0.0)
    out["(total run() per trial)"] = res.total_ms
    out["(not in any Store method)"] = res.total_ms - sum(
        v / trials * 1e3 for k, v in acc.items() if k != "trial")
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _optuna_once(trials: int, sampler_name: str) -> tuple[float, float]:
    """(wall ms, CPU ms) per trial of ``study.optimize``."""
    import optuna

    quiet_optuna()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
        trial.suggest_int("width", 32, 512, log=True)
        trial.suggest_categorical("activation", ["relu", "gelu", "tanh"])
        return lr

    sampler = (optuna.samplers.RandomSampler(seed=0) if sampler_name == "random"
               else optuna.samplers.TPESampler(seed=0))
    with tempfile.TemporaryDirectory(prefix="tunebook-bench-optuna-") as tmp:
        study = optuna.create_study(storage=f"sqlite:///{tmp}/optuna.db", sampler=sampler)
        c0 = time.process_time()
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=trials)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        del study
    return elapsed / trials * 1e3, cpu / trials * 1e3


def bench_overhead(trials: int = 500, optuna_trials: int = 100, repeats: int = 3,
                   breakdown: bool = False, wait_quiet: float = 0.0) -> OverheadResult:
    """Run every configuration ``repeats`` times (interleaved) and collect the results."""
    res = OverheadResult([], [], [], optuna_trials)

    def quiet() -> None:
        if wait_quiet > 0:
            wait_for_quiet(wait_quiet)

    for _ in range(repeats):
        quiet()
        res.tunebook.append(_tunebook_once(trials))
        quiet()
        wall, cpu = _optuna_once(optuna_trials, "tpe")
        res.optuna_tpe_ms.append(wall)
        res.optuna_tpe_cpu_ms.append(cpu)
        quiet()
        wall, cpu = _optuna_once(optuna_trials, "random")
        res.optuna_random_ms.append(wall)
        res.optuna_random_cpu_ms.append(cpu)
    if breakdown:
        quiet()
        res.breakdown = _breakdown(trials)
    return res


def print_overhead(res: OverheadResult) -> None:
    """Print the table and the ratios."""
    n = res.tunebook[0].trials

    def row(name: str, values: list[float], cpu: list[float] | None) -> list[str]:
        m = median(values)
        return [name, f"{m:.2f}", " ".join(f"{x:.2f}" for x in values),
                "" if cpu is None else f"{median(cpu):.2f}",
                f"{res.tpe_ms / m:.1f}x", f"{res.random_ms / m:.1f}x"]

    cpu = [r.cpu_ms for r in res.tunebook]
    rows = [
        row(f"tunebook run(workers=0), {n} no-op trials: total",
            [r.total_ms for r in res.tunebook], cpu),
        row("  of which outside the workload function", [r.outside_ms for r in res.tunebook],
            None),
        row("  loop only (first start -> last finish)", [r.loop_ms for r in res.tunebook], None),
        row(f"Optuna optimize, TPESampler, {res.optuna_trials} trials", res.optuna_tpe_ms,
            res.optuna_tpe_cpu_ms),
        row(f"Optuna optimize, RandomSampler, {res.optuna_trials} trials",
            res.optuna_random_ms, res.optuna_random_cpu_ms),
    ]
    print_table(["per-trial overhead, SQLite file", "median ms", "each run (ms)", "CPU ms",
                 "Optuna TPE / this", "Optuna Random / this"], rows)
    print()
    print(f"ratio Optuna (TPE) / tunebook:    {res.tpe_ms / res.tunebook_ms:.1f}x "
          f"({res.tpe_ms:.2f} ms vs {res.tunebook_ms:.2f} ms per trial)")
    print(f"ratio Optuna (Random) / tunebook: {res.random_ms / res.tunebook_ms:.1f}x "
          f"({res.random_ms:.2f} ms vs {res.tunebook_ms:.2f} ms per trial)")
    print(f"target <= {TARGET_MS:.1f} ms per trial (total run() / trials): "
          f"{'MET' if res.target_met else 'MISSED'} ({res.tunebook_ms:.2f} ms)")
    if res.breakdown:
        print()
        print("breakdown of one extra tunebook run (ms per trial; Store methods timed):")
        print_table(["where", "ms/trial"], [[k, f"{v:.3f}"] for k, v in res.breakdown.items()])


def main(argv: Sequence[str] | None = None) -> OverheadResult:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500, help="tunebook no-op trials per run")
    p.add_argument("--optuna-trials", type=int, default=100, help="Optuna trials per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    p.add_argument("--breakdown", action="store_true",
                   help="also time tunebook's Store methods in one extra run")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for idle CPUs")
    args = p.parse_args(argv)
    print(f"# bench_overhead: {describe_machine()}")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    res = bench_overhead(args.trials, args.optuna_trials, args.repeats, args.breakdown,
                         args.wait_quiet)
    print_overhead(res)
    return res


if __name__ == "__main__":
    main()

"""Exploitation designers on synthetic functions with diverging regions, and on a real workload.

Synthetic suite (minimised; NaN = the trial diverged, observed as infeasible):

* ``diverging`` (6 dims): a bowl whose optimum, at learning rate 0.1, borders the region
  lr > 0.15 where every trial returns NaN (the top 18% of the log-lr range);
* ``log_valley`` (4 dims): Rosenbrock's curved valley in the log10 of four log-scaled
  hyperparameters (optimum at 0.01 each);
* ``categorical`` (5 dims): a categorical activation whose choice shifts the continuous optimum,
  a discrete batch size and an int depth; NaN for ``sigmoid`` with x0 > 0.8.

Each algorithm spec ``NAME[@K]`` runs ``K x --trials`` trials (K = 1 by default) for every seed,
driven the way the runner drives a designer (:func:`run_serial`: consecutive indices, each
finished trial observed once, infeasible ones without a value). Reported per function: the
median simple regret (best feasible value found minus the known minimum; inf when no trial was
feasible) and its interquartile range, and the ratio of the first available algorithm's median
to each other's (< 1: the first is better). Then ms per suggestion after ``--timing-trials``
completed trials on ``diverging`` without its NaN region (``bowl6``: 6 dims, every trial
feasible), and a parallel check on ``diverging``: ``k`` simulated workers (2 and 8), each
suggestion asked while the other ``k - 1`` trials are pending, trials finishing in a seeded
random order; a duplicate is a suggestion equal to a pending one, a near one lies within
0.5% of every range of a pending one (same categories).

``--workload``: the built-in digits MLP (``tunebook.workloads.digits:train_mlp``) at a short
step budget through the runner (in-process), best validation error after ``--trials`` trials.

An algorithm that is not registered (``bayesian`` before it is merged) or whose packages are
missing is skipped with a message. Defaults: ``bayesian@1 quasi_random@1 quasi_random@2
optuna:TPESampler@1 optuna:GPSampler@1``, 30 trials, 10 seeds::

    .venv/bin/python bench/bench_bayes.py [--trials 30] [--seeds 10] [--options JSON]
                                          [ALGORITHM[@K] ...]
    .venv/bin/python bench/bench_bayes.py --workload [--trials 12] [--seeds 3] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook.search.designers import Observation, OptionError, designer_class, make_designer
from tunebook.search.space import (
    Categorical,
    Discrete,
    Float,
    Int,
    SearchSpace,
    Value,
    position,
)

from benchutil import describe_machine, print_table, quiet_optuna, versions

__all__ = ["BOWL6", "FUNCTIONS", "Synthetic", "available", "main", "parallel_check", "quartiles",
           "run_serial", "simple_regret"]

DEFAULT_ALGORITHMS = ("bayesian@1", "quasi_random@1", "quasi_random@2", "optuna:TPESampler@1",
                      "optuna:GPSampler@1")
LR_MAX = 0.15  # `diverging` returns NaN above this learning rate


@dataclass(frozen=True)
class Synthetic:
    """A test function: its space, its value (NaN where it diverges) and its known minimum."""

    name: str
    space: SearchSpace
    f: Callable[[Mapping[str, Value]], float]
    minimum: float
    optimum: Mapping[str, Value]

    def __call__(self, params: Mapping[str, Value]) -> float:
        return self.f(params)


def _diverging(p: Mapping[str, Value]) -> float:
    return math.nan if float(p["lr"]) > LR_MAX else _bowl6(p)


def _bowl6(p: Mapping[str, Value]) -> float:
    return ((math.log10(float(p["lr"])) + 1) ** 2 + 0.3 * (math.log10(float(p["wd"])) + 4) ** 2
            + (float(p["x1"]) - 0.3) ** 2 + (float(p["x2"]) - 0.7) ** 2
            + (float(p["x3"]) - 0.5) ** 2 + 0.05 * (int(p["layers"]) - 3) ** 2)


def _log_valley(p: Mapping[str, Value]) -> float:
    u = [math.log10(float(p[f"p{i}"])) + 3 for i in range(4)]  # each in [-2, 2], optimum 1
    return sum(100 * (u[i + 1] - u[i] ** 2) ** 2 + (1 - u[i]) ** 2 for i in range(3))


_ACT_OFFSET = {"relu": 0.3, "gelu": 0.0, "tanh": 0.5, "sigmoid": 1.0}
_ACT_OPT = {"relu": 0.8, "gelu": 0.25, "tanh": 0.5, "sigmoid": 0.1}


def _categorical(p: Mapping[str, Value]) -> float:
    act, x0, x1 = str(p["act"]), float(p["x0"]), float(p["x1"])
    if act == "sigmoid" and x0 > 0.8:
        return math.nan
    return (_ACT_OFFSET[act] + 4 * (x0 - _ACT_OPT[act]) ** 2 + (x1 - 0.6) ** 2
            + 0.2 * abs(math.log2(float(p["batch"]) / 64)) + 0.05 * abs(int(p["depth"]) - 3))


_SPACE6 = SearchSpace({
    "lr": Float(1e-4, 1.0, "log"), "wd": Float(1e-6, 1e-2, "log"), "x1": Float(0.0, 1.0),
    "x2": Float(0.0, 1.0), "x3": Float(0.0, 1.0), "layers": Int(1, 8)})
_OPT6 = {"lr": 0.1, "wd": 1e-4, "x1": 0.3, "x2": 0.7, "x3": 0.5, "layers": 3}
# `diverging` without its NaN region: every trial completes (the timing's 100 completed trials).
BOWL6 = Synthetic("bowl6", _SPACE6, _bowl6, 0.0, _OPT6)
FUNCTIONS: dict[str, Synthetic] = {f.name: f for f in (
    Synthetic("diverging", _SPACE6, _diverging, 0.0, _OPT6),
    Synthetic("log_valley", SearchSpace({f"p{i}": Float(1e-5, 1e-1, "log") for i in range(4)}),
              _log_valley, 0.0, {f"p{i}": 0.01 for i in range(4)}),
    Synthetic("categorical", SearchSpace({
        "act": Categorical(("relu", "gelu", "tanh", "sigmoid")), "x0": Float(0.0, 1.0),
        "x1": Float(0.0, 1.0), "batch": Discrete((16, 32, 64, 128, 256)), "depth": Int(1, 8)}),
        _categorical, 0.0, {"act": "gelu", "x0": 0.25, "x1": 0.6, "batch": 64, "depth": 3}),
)}


def simple_regret(values: Sequence[float], minimum: float) -> float:
    """Best finite value minus the known minimum; inf when no value is finite."""
    feasible = [v for v in values if math.isfinite(v)]
    return min(feasible) - minimum if feasible else math.inf


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), inclusive method; inf sorts last."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    ordered = sorted(values)
    if math.inf in ordered:  # statistics.quantiles cannot interpolate towards inf
        def at(q: float) -> float:
            x = q * (len(ordered) - 1)
            lo, hi = ordered[math.floor(x)], ordered[math.ceil(x)]
            return lo if lo == hi else lo + (hi - lo) * (x - math.floor(x))
        return at(0.25), at(0.5), at(0.75)
    q1, q2, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, q2, q3


def _observation(i: int, p: dict[str, Value], v: float) -> Observation:
    ok = math.isfinite(v)
    return Observation(i, p, v if ok else None, "completed" if ok else "infeasible")


def run_serial(algorithm: str, fn: Synthetic, budget: int, seed: int,
               options: Mapping[str, Any] | None = None) -> list[float]:
    """Every trial's value (NaN: infeasible), one trial at a time, as a one-worker run."""
    d = make_designer(algorithm, fn.space, seed, budget, "minimize", options)
    values: list[float] = []
    for i in range(budget):
        got = d.suggest([i])
        if not got:
            raise RuntimeError(f"{algorithm} suggested nothing for trial {i} although every "
                               "earlier trial was observed")
        values.append(fn(got[0]))
        d.observe([_observation(i, got[0], values[-1])])
    return values


def _close(space: SearchSpace, a: Mapping[str, Value], b: Mapping[str, Value],
           tol: float) -> bool:
    for name, hp in space.items():
        ua, ub = position(hp, a[name]), position(hp, b[name])
        if ua is None or ub is None:
            if a[name] != b[name]:
                return False
        elif abs(ua - ub) > tol:
            return False
    return True


def parallel_check(algorithm: str, fn: Synthetic, budget: int, seed: int, workers: int,
                   options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(duplicates, near duplicates) of pending trials with ``workers`` simulated workers."""
    d = make_designer(algorithm, fn.space, seed, budget, "minimize", options)
    order = random.Random(seed)
    pending: dict[int, dict[str, Value]] = {}
    nxt = dup = near = done = 0
    while done < budget:
        want = min(workers - len(pending), budget - nxt)
        if want > 0:
            for p in d.suggest(range(nxt, nxt + want)):
                if any(p == q for q in pending.values()):
                    dup += 1
                elif any(_close(fn.space, p, q, 0.005) for q in pending.values()):
                    near += 1
                pending[nxt] = p
                nxt += 1
        if not pending:
            raise RuntimeError(f"{algorithm} suggested nothing with no trial pending")
        i = order.choice(sorted(pending))
        p = pending.pop(i)
        d.observe([_observation(i, p, fn(p))])
        done += 1
    return dup, near


def ms_per_suggestion(algorithm: str, fn: Synthetic, completed: int, repeats: int = 5,
                      options: Mapping[str, Any] | None = None) -> float:
    """Median ms of ``suggest`` for one trial after ``completed`` .. + repeats - 1 observed."""
    d = make_designer(algorithm, fn.space, 0, completed + repeats, "minimize", options)
    times = []
    for i in range(completed + repeats):
        t0 = time.perf_counter()
        (p,) = d.suggest([i])
        if i >= completed:
            times.append((time.perf_counter() - t0) * 1e3)
        d.observe([_observation(i, p, fn(p))])
    return statistics.median(times)


def available(spec: str, options: Mapping[str, Mapping[str, Any]] | None = None
              ) -> tuple[str, int] | None:
    """``(algorithm, budget multiple)`` of ``NAME[@K]``, or None (with a message) when the
    algorithm is not registered, cannot run here or refuses its ``options[NAME]``."""
    name, _, k = spec.partition("@")
    try:
        cls, variant = designer_class(name)
        cls.check_options((options or {}).get(name, {}), FUNCTIONS["diverging"].space, variant)
    except ValueError as exc:  # OptionError is one
        why = (f"search.options.{exc.key}: {exc.message}" if isinstance(exc, OptionError) and
               exc.key else exc.message if isinstance(exc, OptionError) else str(exc))
        print(f"skipping {name}: {why}")
        return None
    return name, int(k or 1)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def synthetic(specs: Sequence[tuple[str, int]], trials: int, seeds: int,
              functions: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> None:
    """The regret tables, one per function (``options``: search.options per algorithm)."""
    for fname in functions:
        fn = FUNCTIONS[fname]
        medians: dict[str, float] = {}
        rows = []
        for name, k in specs:
            label = f"{name} @{k}N"
            t0 = time.perf_counter()
            runs = [run_serial(name, fn, k * trials, s, options.get(name))
                    for s in range(seeds)]
            regrets = [simple_regret(v, fn.minimum) for v in runs]
            q1, med, q3 = quartiles(regrets)
            medians[label] = med
            infeasible = sum(not math.isfinite(x) for v in runs for x in v) / sum(map(len, runs))
            rows.append([label, k * trials, _fmt(med), f"{_fmt(q1)} - {_fmt(q3)}",
                         f"{infeasible:.0%}", f"{time.perf_counter() - t0:.1f}"])
        print(f"\n{fname} ({len(fn.space)} dims), N = {trials}, {seeds} seeds: simple regret")
        print_table(["algorithm", "trials", "median", "IQR", "infeasible", "s"], rows)
        first, *others = medians
        for other in others:
            ratio = (medians[first] / medians[other] if medians[other] not in (0, math.inf)
                     else math.nan)
            print(f"  median regret {first} / {other}: {ratio:.2f}")


def workload(specs: Sequence[tuple[str, int]], trials: int, seeds: int, steps: int,
             options: Mapping[str, Mapping[str, Any]]) -> None:
    """Best validation error of the digits MLP after ``trials`` trials, per algorithm."""
    from tunebook.execution.runner import run
    from tunebook.experiment import Experiment
    from tunebook.store.sql import Store

    rows, medians = [], {}
    for name, k in specs:
        best = []
        t0 = time.perf_counter()
        for seed in range(seeds):
            doc = {"name": "bench", "workload": "tunebook.workloads.digits:train_mlp",
                   "objective": {"metric": "val_error", "goal": "minimize"},
                   "max_train_steps": steps, "eval_every": max(1, steps // 2),
                   "search": {"algorithm": name, "trials": k * trials, "seed": seed,
                              **({"options": dict(options[name])} if options.get(name) else {})},
                   "nuisance": {
                       "learning_rate": {"type": "float", "low": 1e-4, "high": 3.0,
                                         "scale": "log"},
                       "beta1": {"type": "float", "low": 0.5, "high": 0.999,
                                 "scale": "one_minus_log"},
                       "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1,
                                        "scale": "log"}},
                   "fixed": {"width": 64, "batch_size": 64}}
            with tempfile.TemporaryDirectory() as tmp:
                run(Experiment.from_dict(doc), root=Path(tmp), workers=0)
                store = Store.at_root(Path(tmp))
                try:
                    row = store.best_trial(store.require_experiment("bench").id, "minimize")
                    best.append(math.inf if row is None or row.best_value is None
                                else float(row.best_value))
                finally:
                    store.close()
        q1, med, q3 = quartiles(best)
        medians[f"{name} @{k}N"] = med
        rows.append([f"{name} @{k}N", k * trials, _fmt(med), f"{_fmt(q1)} - {_fmt(q3)}",
                     " ".join(_fmt(b) for b in best), f"{time.perf_counter() - t0:.0f}"])
    print(f"\ndigits MLP, {steps} steps, N = {trials}, {seeds} seeds: best val_error")
    print_table(["algorithm", "trials", "median", "IQR", "per seed", "s"], rows)
    first, *others = medians
    for other in others:
        print(f"  median {first} / {other}: {medians[first] / medians[other]:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the suite (or the workload mode)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("algorithms", nargs="*", help="NAME[@K]: K x N trials (default: "
                    f"{' '.join(DEFAULT_ALGORITHMS)})")
    ap.add_argument("--trials", type=int, default=None, help="N (30; 12 with --workload)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (10; 3 with --workload)")
    ap.add_argument("--functions", nargs="+", choices=sorted(FUNCTIONS), default=list(FUNCTIONS))
    ap.add_argument("--timing-trials", type=int, default=100,
                    help="completed trials before timing a suggestion (0: skip)")
    ap.add_argument("--workers", type=int, nargs="*", default=[2, 8],
                    help="simulated workers for the duplicate check (none: skip)")
    ap.add_argument("--workload", action="store_true", help="the digits workload mode")
    ap.add_argument("--steps", type=int, default=200, help="training steps per digits trial")
    ap.add_argument("--options", type=json.loads, default={},
                    help='search.options per algorithm, JSON: {"bayesian": {"initial": 8}}')
    args = ap.parse_args(argv)
    opts: dict[str, dict[str, Any]] = args.options
    quiet_optuna()
    print(describe_machine())
    print(" ".join(f"{k} {v}" for k, v in versions().items()))
    if args.workload:
        picked = args.algorithms or ["bayesian", "quasi_random"]
        specs = [s for p in picked for s in [available(p, opts)] if s is not None]
        if not specs:
            raise SystemExit("no algorithm to run")
        workload(specs, args.trials or 12, args.seeds or 3, args.steps, opts)
        return
    specs = [s for p in args.algorithms or DEFAULT_ALGORITHMS for s in [available(p, opts)]
             if s is not None]
    if not specs:
        raise SystemExit("no algorithm to run")
    trials, seeds = args.trials or 30, args.seeds or 10
    synthetic(specs, trials, seeds, args.functions, opts)
    fn = FUNCTIONS["diverging"]
    names = list(dict.fromkeys(name for name, _ in specs))
    if args.timing_trials:
        print(f"\nms per suggestion after {args.timing_trials} completed trials (all feasible: "
              f"{BOWL6.name}), {len(BOWL6.space)} dims (median of 5; a shared machine is noisy)")
        print_table(["algorithm", "ms"], [
            [n, f"{ms_per_suggestion(n, BOWL6, args.timing_trials, options=opts.get(n)):.1f}"]
            for n in names])
    if args.workers:
        rows = []
        for n in names:
            for w in args.workers:
                counts = [parallel_check(n, fn, trials, s, w, opts.get(n))
                          for s in range(min(seeds, 3))]
                rows.append([n, w, sum(c[0] for c in counts), sum(c[1] for c in counts)])
        print(f"\nparallel workers, {trials} trials x {min(seeds, 3)} seeds on {fn.name}: "
              "suggestions equal to (near) a pending trial")
        print_table(["algorithm", "workers", "duplicates", "near"], rows)


if __name__ == "__main__":
    main()

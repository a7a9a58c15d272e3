"""Which GP for the ``bayesian`` designer: tunebook's NumPy/SciPy one or BoTorch/GPyTorch.

Both run the same method on the same problems: a GP on the feasible trials' values, a GP on
+-1 feasibility labels, log expected improvement plus the log probability of feasibility
(BoTorch: ``LogConstrainedExpectedImprovement`` over a ``ModelListGP``, ``optimize_acqf``),
the same quasi-random start and the same unit-cube encoding (BoTorch sees a categorical as
its slice of the unit interval: ``optimize_acqf`` needs a continuous input). Measured:

* ms per suggestion (fit + acquisition) with 100 completed trials in 6 dimensions;
* simple regret after N trials, 10 seeds, median and IQR, on three synthetic functions with a
  diverging (NaN) region: a 6-d "training" function whose divergence depends on learning rate
  over (1 - momentum), a 2-d log-scale banana valley, and a 4-d function with a categorical;
  quasi-random at N and 2N for scale.

Needs ``pip install botorch`` (not a tunebook dependency). CPU times are noisy on a shared
machine: the script prints the load average.

    python bench/bench_gp_choice.py [--seeds 10] [--trials 30] [--skip-botorch]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tunebook.search.designers import Observation, make_designer
from tunebook.search.halton import scrambled_halton
from tunebook.search.space import Categorical, Float, Int, SearchSpace, Value

Problem = tuple[SearchSpace, Callable[[Mapping[str, Value]], float | None], float]


def _training() -> Problem:
    space = SearchSpace({"lr": Float(1e-4, 1.0, "log"), "m": Float(0.5, 0.999, "one_minus_log"),
                         "wd": Float(1e-6, 1e-2, "log"), "a": Float(0.0, 1.0),
                         "b": Float(0.0, 1.0), "c": Float(0.0, 1.0)})

    def f(p: Mapping[str, Value]) -> float | None:
        lr, m = float(p["lr"]), float(p["m"])
        if lr / (1 - m) > 2.0:  # diverges: the optimum (effective lr 1) borders it
            return None
        return ((math.log10(lr) + 1.5) ** 2 + 0.5 * (math.log10(1 - m) + 1.5) ** 2
                + 0.2 * (math.log10(float(p["wd"])) + 4) ** 2
                + sum((float(p[k]) - 0.3) ** 2 for k in "abc"))
    return space, f, 0.0


def _banana() -> Problem:
    space = SearchSpace({"lr": Float(1e-5, 1.0, "log"), "wd": Float(1e-6, 1e-1, "log")})

    def f(p: Mapping[str, Value]) -> float | None:
        a = (math.log10(float(p["lr"])) + 2.5) / 1.25  # optimum lr = 10**-1.25
        b = (math.log10(float(p["wd"])) + 3.5) / 1.25
        if float(p["lr"]) > 0.2:
            return None
        return (1 - a) ** 2 + 5 * (b - a * a) ** 2
    return space, f, 0.0


def _categorical() -> Problem:
    space = SearchSpace({"act": Categorical(("relu", "gelu", "tanh", "elu")),
                         "lr": Float(1e-4, 1.0, "log"), "width": Int(8, 512, "log"),
                         "dropout": Float(0.0, 0.8)})
    offset = {"relu": 0.3, "gelu": 0.0, "tanh": 1.0, "elu": 0.5}

    def f(p: Mapping[str, Value]) -> float | None:
        lr = float(p["lr"])
        if lr > 0.05 and p["act"] != "tanh":  # unbounded activations diverge
            return None
        return (offset[str(p["act"])] + (math.log10(lr) + 1.7) ** 2
                + (math.log2(int(p["width"])) - 7) ** 2 / 8 + (float(p["dropout"]) - 0.2) ** 2)
    return space, f, 0.0


PROBLEMS = {"training-6d": _training, "banana-2d": _banana, "categorical-4d": _categorical}


def run_tunebook(space: SearchSpace, f: Any, seed: int, n: int, algorithm: str = "bayesian"
                 ) -> list[float | None]:
    d = make_designer(algorithm, space, seed, n)
    out = []
    for i in range(n):
        (p,) = d.suggest([i])
        v = f(p)
        d.observe([Observation(i, p, v, "completed" if v is not None else "infeasible")])
        out.append(v)
    return out


def botorch_suggest(space: SearchSpace, units: np.ndarray, values: list[float | None],
                    seed: int) -> np.ndarray:
    """One BoTorch suggestion (unit point) from the trials so far."""
    import torch
    from botorch.acquisition.analytic import LogConstrainedExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from tunebook.search.gp import half_rank_warp

    torch.manual_seed(seed)
    x = torch.tensor(_ordinal(space, units), dtype=torch.float64)
    ok = np.array([v is not None for v in values])
    y = half_rank_warp(np.array([v for v in values if v is not None]))
    labels = torch.tensor(np.where(ok, 1.0, -1.0), dtype=torch.float64)[:, None]
    with warnings.catch_warnings():  # all-feasible labels are constant: BoTorch warns
        warnings.simplefilter("ignore")
        models = [SingleTaskGP(x[ok], torch.tensor(-y, dtype=torch.float64)[:, None],
                               outcome_transform=Standardize(1)),
                  SingleTaskGP(x, labels, outcome_transform=Standardize(1))]
        for m in models:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
    acq = LogConstrainedExpectedImprovement(ModelListGP(*models), best_f=float((-y).max()),
                                            objective_index=0, constraints={1: (0.0, None)})
    bounds = torch.stack([torch.zeros(len(space)), torch.ones(len(space)) - 1e-9]).double()
    cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=4, raw_samples=256)
    return np.asarray(cand[0].detach().numpy())


def _ordinal(space: SearchSpace, units: np.ndarray) -> np.ndarray:
    """Unit points snapped to their values' positions; a categorical as its slice centre."""
    out = units.copy()
    for j, hp in enumerate(space.values()):
        if hp.choices is not None:
            k = len(hp.choices)
            out[:, j] = (np.minimum((units[:, j] * k).astype(int), k - 1) + 0.5) / k
        elif hp.integer:
            out[:, j] = [hp.to_unit(hp.from_unit(u)) for u in units[:, j]]
    return out


def run_botorch(space: SearchSpace, f: Any, seed: int, n: int) -> list[float | None]:
    initial = min(max(5, 2 * len(space)), n // 2)
    units = scrambled_halton(seed, len(space), list(range(initial)))
    values = [f(space.from_unit(u.tolist())) for u in units]
    while len(values) < n:
        if all(v is None for v in values):
            u = scrambled_halton(seed, len(space), [len(values)])[0]
        else:
            u = botorch_suggest(space, units, values, seed * 1000 + len(values))
        units = np.vstack([units, u[None, :]])
        values.append(f(space.from_unit(u.tolist())))
    return values


def timing(n: int = 100, repeats: int = 5, botorch: bool = True) -> dict[str, float]:
    space, f, _ = _training()
    rng = np.random.default_rng(0)
    units = rng.random((n, len(space)))
    values = [f(space.from_unit(u.tolist())) for u in units]
    out = {}
    d = make_designer("bayesian", space, 0, n + 1)
    d.restore({"units": units.tolist(), "given": n,
               "observed": [[i, "completed" if v is not None else "infeasible", v]
                            for i, v in enumerate(values)]})
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        d._plan(n)
        ms.append(1000 * (time.perf_counter() - t))
    out["tunebook"] = statistics.median(ms)
    if botorch:
        ms = []
        for r in range(repeats):
            t = time.perf_counter()
            botorch_suggest(space, units, values, r)
            ms.append(1000 * (time.perf_counter() - t))
        out["botorch"] = statistics.median(ms)
    return out


def _summary(regrets: list[float]) -> str:
    q = np.percentile(regrets, [25, 50, 75])
    return f"{q[1]:.4g} [{q[0]:.3g}, {q[2]:.3g}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--skip-botorch", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"load average: {os.getloadavg()}")
    t = timing(botorch=not args.skip_botorch)
    print("ms per suggestion, 100 trials, 6 dims (median of 5): "
          + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))
    n = args.trials
    algs: dict[str, Callable[[SearchSpace, Any, int], list[float | None]]] = {
        "bayesian (numpy)": lambda s, f, seed: run_tunebook(s, f, seed, n),
        "quasi_random N": lambda s, f, seed: run_tunebook(s, f, seed, n, "quasi_random"),
        "quasi_random 2N": lambda s, f, seed: run_tunebook(s, f, seed, 2 * n, "quasi_random"),
    }
    if not args.skip_botorch:
        algs["bayesian (botorch)"] = lambda s, f, seed: run_botorch(s, f, seed, n)
    print(f"simple regret after N = {n} trials, median [IQR] over {args.seeds} seeds; "
          "infeasible share after the start")
    for name, make in PROBLEMS.items():
        space, f, best = make()
        for alg, go in algs.items():
            t0 = time.perf_counter()
            regrets, shares = [], []
            for seed in range(args.seeds):
                values = go(space, f, seed)
                feasible = [v for v in values if v is not None]
                regrets.append((min(feasible) if feasible else math.inf) - best)
                start = min(max(5, 2 * len(space)), n // 2)
                shares.append(sum(v is None for v in values[start:]) / len(values[start:]))
            print(f"  {name:15s} {alg:19s} {_summary(regrets):32s} "
                  f"infeasible {statistics.median(shares):.2f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

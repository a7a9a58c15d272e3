"""Metric points per second into a SQLite file on disk: tunebook versus Optuna, same run.

tunebook
  (a) ``Trial.report(step, **metrics)`` with the store as sink: ``steps`` steps x ``metrics``
      metrics, timed up to and including the final ``flush()`` (every point is in the database
      when the clock stops).
  (b) ``Store.add_measurements`` with every point in one call (the bulk path ``Trial`` uses).
  (c) for reference, ``Store.add_measurements`` with one point per call: one transaction per
      point, which is what Optuna does.
Optuna
  ``trial.report(value, step)`` on a ``sqlite:///`` study, ``optuna_calls`` times on one trial
  (Optuna stores one intermediate value per step, so each call is one point).

Each measurement is repeated ``repeats`` times on a fresh trial; the median wall time is reported
(the median process CPU time beside it: the rest is waiting, e.g. Optuna's SQLite commits use
SQLite's default rollback journal with a sync per commit, tunebook's use WAL with
``synchronous=NORMAL``).

    .venv/bin/python bench/bench_report.py [--steps 20000] [--metrics 5] [--optuna-calls 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunebook.execution.trial import Trial
from tunebook.store.sql import Store, StudySpec

from benchutil import describe_machine, median, print_table, quiet_optuna, versions

__all__ = ["ReportResult", "bench_report", "main"]

TARGET_POINTS_PER_S = 100_000.0


@dataclass
class Row:
    """One method's measurement: points written and the median seconds it took."""

    name: str
    points: int
    seconds: float
    all_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Points per second."""
        return self.points / self.seconds


@dataclass
class ReportResult:
    """Everything ``bench_report`` measured."""

    trial_report: Row
    bulk: Row
    unbuffered: Row
    optuna: Row

    @property
    def ratio_report(self) -> float:
        """tunebook ``Trial.report`` points/s over Optuna's ``trial.report`` points/s."""
        return self.trial_report.rate / self.optuna.rate

    @property
    def ratio_bulk(self) -> float:
        """tunebook bulk ``add_measurements`` points/s over Optuna's."""
        return self.bulk.rate / self.optuna.rate

    @property
    def target_met(self) -> bool:
        """Both bulk paths reach the target of 100,000 points/s."""
        return min(self.trial_report.rate, self.bulk.rate) >= TARGET_POINTS_PER_S


def _store_with_trials(root: Path, n: int) -> tuple[Store, list[int]]:
    """A fresh SQLite store under ``root`` holding ``n`` pending trials (measurements need one)."""
    store = Store.at_root(root)
    study = StudySpec("main", 0, {}, "random", 0, n)
    exp_id = store.register("bench-report", "bench", {}, [study],
                            {"main": [(i, {}, i) for i in range(n)]})
    return store, [t.id for t in store.trials(exp_id)]


def _time_trial_report(store: Store, trial_id: int, folder: Path, steps: int,
                       names: Sequence[str]) -> tuple[float, float]:
    trial = Trial(hparams={}, max_train_steps=steps, eval_every=1, seed=0, dir=folder,
                  sink=store, trial_id=trial_id)
    values = {name: 0.0 for name in names}
    c0, t0 = time.process_time(), time.perf_counter()
    for step in range(steps):
        for i, name in enumerate(names):
            values[name] = step * 1e-3 + i
        trial.report(step, **values)
    trial.flush()
    return time.perf_counter() - t0, time.process_time() - c0


def _time_bulk(store: Store, trial_id: int, steps: int,
               names: Sequence[str]) -> tuple[float, float]:
    rows = [(step, name, step * 1e-3 + i) for step in range(steps)
            for i, name in enumerate(names)]
    c0, t0 = time.process_time(), time.perf_counter()
    store.add_measurements(trial_id, rows)
    return time.perf_counter() - t0, time.process_time() - c0


def _time_unbuffered(store: Store, trial_id: int, calls: int) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    for step in range(calls):
        store.add_measurements(trial_id, [(step, "loss", 1.0 / (step + 1))])
    return time.perf_counter() - t0, time.process_time() - c0


def _time_optuna(db: Path, calls: int, repeats: int) -> list[tuple[float, float]]:
    import optuna

    quiet_optuna()
    study = optuna.create_study(storage=f"sqlite:///{db}")
    out = []
    for _ in range(repeats):
        trial = study.ask()
        c0, t0 = time.process_time(), time.perf_counter()
        for step in range(calls):
            trial.report(1.0 / (step + 1), step)
        out.append((time.perf_counter() - t0, time.process_time() - c0))
        study.tell(trial, 0.0)
    return out


def bench_report(steps: int = 20_000, metrics: int = 5, optuna_calls: int = 300,
                 unbuffered_calls: int = 300, repeats: int = 3) -> ReportResult:
    """Run every measurement (in temporary folders) and return the medians."""
    names = [f"metric_{i}" for i in range(metrics)]
    points = steps * metrics
    tr: list[tuple[float, float]] = []
    bulk: list[tuple[float, float]] = []
    unbuf: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="tunebook-bench-report-") as tmp:
        root = Path(tmp)
        store, ids = _store_with_trials(root / "tunebook", 3 * repeats)
        try:
            for r in range(repeats):
                tr.append(_time_trial_report(store, ids[3 * r], root / f"trial-{r}", steps,
                                             names))
                bulk.append(_time_bulk(store, ids[3 * r + 1], steps, names))
                unbuf.append(_time_unbuffered(store, ids[3 * r + 2], unbuffered_calls))
        finally:
            store.close()
        opt = _time_optuna(root / "optuna.db", optuna_calls, repeats)
    def row(name: str, n: int, timings: list[tuple[float, float]]) -> Row:
        walls = [w for w, _ in timings]
        return Row(name, n, median(walls), walls, median([c for _, c in timings]))

    return ReportResult(
        trial_report=row(f"tunebook Trial.report ({metrics} metrics/step, buffered)", points,
                         tr),
        bulk=row("tunebook Store.add_measurements (one bulk call)", points, bulk),
        unbuffered=row("tunebook Store.add_measurements (1 point/call)", unbuffered_calls,
                       unbuf),
        optuna=row("Optuna trial.report (1 value/call)", optuna_calls, opt),
    )


def print_report(res: ReportResult) -> None:
    """Print the table and the ratios."""
    rows = []
    for row in (res.trial_report, res.bulk, res.unbuffered, res.optuna):
        rows.append([row.name, f"{row.points:,}", f"{row.seconds:.4f}", f"{row.rate:,.0f}",
                     f"{1e6 / row.rate:.2f}", f"{row.cpu_seconds / row.points * 1e6:.2f}",
                     f"{row.rate / res.optuna.rate:,.1f}x"])
    print_table(["method (SQLite file, median)", "points", "seconds", "points/s", "us/point",
                 "CPU us/point", "vs Optuna"], rows)
    print()
    print(f"ratio tunebook Trial.report / Optuna trial.report: {res.ratio_report:,.0f}x")
    print(f"ratio tunebook bulk add_measurements / Optuna:     {res.ratio_bulk:,.0f}x")
    print(f"target >= {TARGET_POINTS_PER_S:,.0f} points/s in bulk: "
          f"{'MET' if res.target_met else 'MISSED'} "
          f"(Trial.report {res.trial_report.rate:,.0f}, bulk {res.bulk.rate:,.0f})")


def main(argv: Sequence[str] | None = None) -> ReportResult:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20_000, help="steps per tunebook trial")
    p.add_argument("--metrics", type=int, default=5, help="metrics reported per step")
    p.add_argument("--optuna-calls", type=int, default=300, help="Optuna trial.report calls")
    p.add_argument("--unbuffered-calls", type=int, default=300,
                   help="tunebook add_measurements calls of one point each")
    p.add_argument("--repeats", type=int, default=3, help="repetitions (median reported)")
    args = p.parse_args(argv)
    print(f"# bench_report: {describe_machine()}")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    res = bench_report(args.steps, args.metrics, args.optuna_calls, args.unbuffered_calls,
                       args.repeats)
    print_report(res)
    return res


if __name__ == "__main__":
    main()

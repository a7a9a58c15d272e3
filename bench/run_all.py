"""Run every tunebook benchmark and print a combined summary against the targets.

    .venv/bin/python bench/run_all.py [--quick] [--wait-quiet S] [--breakdown]

(``make bench`` runs it with the defaults.) About 1.5-2 minutes on 2 cores; ``--quick`` runs
smaller sizes in about 30 s (noisier numbers). On a shared machine, ``--wait-quiet 60`` waits up
to a minute before each timed run for the CPUs to be idle.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench_overhead import TARGET_MS, bench_overhead, print_overhead
from bench_report import TARGET_POINTS_PER_S, bench_report, print_report
from bench_scaling import TARGET_RATIO, bench_scaling, print_scaling

from benchutil import describe_machine, print_table, versions

__all__ = ["main"]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three benchmarks; returns 0 (targets are reported, not enforced)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each timed run, wait up to S seconds for idle CPUs")
    p.add_argument("--breakdown", action="store_true",
                   help="also time tunebook's Store methods (bench_overhead)")
    args = p.parse_args(argv)
    q = args.quick
    print(f"# machine: {describe_machine()}")
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))

    print("\n== 1. metric points per second (bench_report.py) ==")
    rep = bench_report(steps=5_000 if q else 20_000, metrics=5, optuna_calls=100 if q else 300,
                       repeats=1 if q else 3)
    print_report(rep)

    print("\n== 2. per-trial orchestration overhead (bench_overhead.py) ==")
    ovh = bench_overhead(trials=200 if q else 500, optuna_trials=50 if q else 100,
                         repeats=1 if q else 3, breakdown=args.breakdown,
                         wait_quiet=args.wait_quiet)
    print_overhead(ovh)

    print("\n== 3. trials per hour, 1 vs 2 workers (bench_scaling.py) ==")
    sc = bench_scaling(trials=4 if q else 8, trial_seconds=1.0 if q else 1.5,
                       repeats=1 if q else 2, wait_quiet=args.wait_quiet)
    print_scaling(sc)

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print("\n== summary ==")
    print_table(["target", "tunebook", "Optuna (same run)", "ratio", "verdict"], [
        [f"report(): >= {TARGET_POINTS_PER_S:,.0f} points/s (Trial.report, bulk)",
         f"{rep.trial_report.rate:,.0f} pts/s", f"{rep.optuna.rate:,.0f} pts/s",
         f"{rep.ratio_report:,.0f}x", verdict(rep.trial_report.rate >= TARGET_POINTS_PER_S)],
        ["  Store.add_measurements, one bulk call", f"{rep.bulk.rate:,.0f} pts/s",
         f"{rep.optuna.rate:,.0f} pts/s", f"{rep.ratio_bulk:,.0f}x",
         verdict(rep.bulk.rate >= TARGET_POINTS_PER_S)],
        [f"per-trial overhead <= {TARGET_MS:.0f} ms (SQLite, whole run())",
         f"{ovh.tunebook_ms:.2f} ms", f"{ovh.tpe_ms:.2f} ms (TPE)",
         f"{ovh.tpe_ms / ovh.tunebook_ms:.1f}x less", verdict(ovh.target_met)],
        ["  vs Optuna RandomSampler", f"{ovh.tunebook_ms:.2f} ms",
         f"{ovh.random_ms:.2f} ms (Random)", f"{ovh.random_ms / ovh.tunebook_ms:.1f}x less", ""],
        [f"2 workers >= {TARGET_RATIO}x trials/h of 1 (whole run())",
         f"{sc.rate(2):,.0f} vs {sc.rate(1):,.0f} /h", "-", f"{sc.ratio:.2f}x",
         verdict(sc.target_met) + (" (CPUs busy)" if sc.contended else "")],
        ["  steady state (after each worker's first trial)",
         f"{_fmt(sc.steady(2), ',.0f')} vs {_fmt(sc.steady(1), ',.0f')} /h", "-",
         "n/a" if sc.steady_ratio is None else f"{sc.steady_ratio:.2f}x", ""],
    ])
    # The two benchmarks of the report and of the PyTorch toolkit print their own verdicts.
    here = Path(__file__).parent
    for title, script, extra in (
            ("4. PyTorch toolkit vs a bare loop (bench_toolkit.py)", "bench_toolkit.py",
             ["--repeats", "3" if q else "7"]),
            ("5. the HTML report on 1,000 trials (bench_report_page.py)",
             "bench_report_page.py", ["--trials", "200"] if q else [])):
        print(f"\n== {title} ==", flush=True)
        subprocess.run([sys.executable, str(here / script), *extra], check=False)
    print(f"# machine after: {describe_machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

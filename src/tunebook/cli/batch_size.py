"""``tunebook batch-size FILE [--sizes 16,32,...]``: the playbook's batch-size probe.

Runs one short experiment per batch size through the ordinary runner (resumable: run the same
command again after a stop) and prints the recommendation (``--format json``: one JSON object,
``{"recommendation": {"batch_size": B, ...}, "evidence": {...}}``). See
:mod:`tunebook.procedures.batch_size` and ``docs/procedures-batch-size.md``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tunebook.cli.common import (
    _check_root,
    _non_negative,
    _positive,
    finish_procedure,
    positive_number,
)

__all__ = ["add_parser", "cmd_batch_size"]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers, got {text!r}")
    return sizes


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``batch-size`` on the ``tunebook`` parser's subcommands."""
    p = sub.add_parser("batch-size", parents=[common],
                       help="measure throughput, input-pipeline share and fit per batch size, "
                            "and recommend one")
    p.add_argument("file", help="base experiment YAML file")
    p.add_argument("--sizes", type=_sizes, default=None, metavar="B1,B2,...",
                   help="batch sizes to probe (default: powers of two from the file's "
                        "batch_size up to the first that does not fit, or --max-size)")
    p.add_argument("--max-size", type=_positive, default=4096,
                   help="largest size of the default doubling (default 4096)")
    p.add_argument("--warmup-steps", type=_positive, default=5,
                   help="untimed updates before timing, at least --timed-steps (default 5)")
    p.add_argument("--timed-steps", type=_positive, default=20,
                   help="timed updates per trial, the same for every size (default 20)")
    p.add_argument("--repeats", type=_positive, default=3,
                   help="trials per size, for the spread (default 3)")
    p.add_argument("--memory-limit", type=positive_number("MiB"), default=None, metavar="MIB",
                   help="CPU ceiling: a size whose peak memory growth exceeds this does not "
                        "fit (default: half of the machine's RAM)")
    p.add_argument("--min-gain", type=positive_number(), default=1.5,
                   help="throughput gain per doubling below which returns diminish "
                        "(default 1.5)")
    p.add_argument("--steps-to-result", type=_finite, default=None, metavar="TARGET",
                   help="then run a short tuned search (the file's nuisance space, which must "
                        "search learning_rate) at each size that fits, measure the steps to "
                        "reach TARGET of the objective, and recommend the size with the least "
                        "training time to it")
    p.add_argument("--result-trials", type=_positive, default=4,
                   help="trials of that search per size (default 4)")
    p.add_argument("--learning-rate-name", default="learning_rate", metavar="NAME",
                   help="the learning rate's name in the file, which --steps-to-result "
                        "re-tunes per size (default learning_rate)")
    p.add_argument("--cost-per-hour", type=positive_number(), default=None, metavar="X",
                   help="price of one device-hour: with --steps-to-result, give the cost to "
                        "the result and recommend by it (one device per size)")
    p.add_argument("--workers", type=_non_negative, default=0,
                   help="worker processes (default 0: in this process, so that sizes do not "
                        "compete for the CPU while timed)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_batch_size)


def cmd_batch_size(args: argparse.Namespace) -> int:
    """Run the probe; see the module docstring."""
    from tunebook.core.paths import store_file
    from tunebook.experiment import Experiment
    from tunebook.procedures.batch_size import BatchSize, run_batch_size
    from tunebook.store.sql import sqlite_url

    _check_root(args, writing=True)
    base = Experiment.from_yaml(args.file)
    proc = BatchSize(args.sizes, max_size=args.max_size, warmup_steps=args.warmup_steps,
                     timed_steps=args.timed_steps, repeats=args.repeats,
                     memory_limit_mb=args.memory_limit, min_gain=args.min_gain,
                     steps_to_result=args.steps_to_result, result_trials=args.result_trials,
                     cost_per_hour=args.cost_per_hour, learning_rate=args.learning_rate_name)
    proc.validate(base)
    url = args.store or sqlite_url(store_file(args.root))
    rec = run_batch_size(proc, base, root=args.root, store=url, workers=args.workers)
    return finish_procedure(args, url, rec, _tables)


def _tables(rec: Any) -> None:
    """The probe's measurements per size, and the steps and time to the result."""
    print()
    print(f"{'batch':>7} {'fits':>5} {'examples/s':>11} {'spread':>21} {'data':>6} {'gain':>6}")
    for s in rec.evidence["sizes"]:
        if "examples_per_second" in s:
            spread = f"{s['spread'][0]:.4g}-{s['spread'][1]:.4g}"
            gain = f"{s['gain_per_doubling']:.2f}" if "gain_per_doubling" in s else "-"
            print(f"{s['batch_size']:>7} {'yes' if s['fits'] else 'no':>5} "
                  f"{s['examples_per_second']:>11.4g} {spread:>21} "
                  f"{100 * s['data_share']:>5.0f}% {gain:>6}")
        if not s["fits"]:
            print(f"{s['batch_size']:>7} {'no':>5}  {s['reason']}")
    if "time_to_result" in rec.evidence:
        print()
        print(f"{'batch':>7} {'steps':>7} {'fall':>6} {'s/step':>9} {'time s':>9} "
              f"{'cost':>9}  best trial")
        for t, r in zip(rec.evidence["time_to_result"], rec.evidence["steps_to_result"],
                        strict=True):
            def fmt(v: Any, f: str) -> str:
                return "-" if v is None else format(v, f)
            print(f"{t['batch_size']:>7} {fmt(t['steps'], 'd'):>7} "
                  f"{fmt(t['fall_per_doubling'], '.2f'):>6} {t['step_seconds']:>9.3g} "
                  f"{fmt(t['seconds'], '.3g'):>9} {fmt(t['cost'], '.3g'):>9}  "
                  f"{r['trial']['label'] if r['trial'] else '-'} "
                  f"(best {fmt(r['best_value'], '.4g')})")


"""``tunebook steps FILE``: an initial ``max_train_steps`` from a constant learning-rate sweep.

Runs :class:`tunebook.procedures.steps.Steps` on the experiment file (resumable: run it again
after a stop) and prints its recommendation in words, or with ``--format json`` one object
``{"recommendation": {"max_train_steps": N, ...}, "evidence": {...}}``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tunebook.cli.common import _at_least, _check_root, _non_negative, finish_procedure
from tunebook.core.hparams import REGULARIZERS

__all__ = ["add_parser", "cmd_steps"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``steps`` on the ``tunebook`` parser's subcommands."""
    p = sub.add_parser("steps", parents=[common],
                       help="recommend max_train_steps from a constant learning-rate sweep")
    p.add_argument("file", help="base experiment YAML file")
    p.add_argument("--workers", type=_non_negative, default=1,
                   help="local worker processes (0: run in this process)")
    p.add_argument("--trials", type=_at_least(2), default=8,
                   help="learning rates in the sweep (a log grid; default 8)")
    p.add_argument("--learning-rate-name", default="learning_rate", metavar="NAME",
                   help="the learning rate's name in the file (default learning_rate)")
    p.add_argument("--regularizers", default=",".join(REGULARIZERS), metavar="A,B",
                   help="hyperparameters set to 0 in the sweep when the file names them "
                        f"(default {','.join(REGULARIZERS)})")
    p.add_argument("--metric", default=None,
                   help="training metric (default train_error if reported, else train_loss)")
    p.add_argument("--error-threshold", type=_fraction, default=0.01,
                   help="an error metric fits the training set at or below this (0.01)")
    p.add_argument("--loss-fraction", type=_fraction, default=0.01,
                   help="a loss fits at or below this fraction of its first value (0.01)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_steps)


def cmd_steps(args: argparse.Namespace) -> int:
    """Run the steps procedure; see the module docstring."""
    from tunebook.core.paths import store_file
    from tunebook.experiment import Experiment
    from tunebook.procedures import run_procedure
    from tunebook.procedures.steps import Steps
    from tunebook.store.sql import sqlite_url

    _check_root(args, writing=True)
    base = Experiment.from_yaml(args.file)
    proc = Steps(trials=args.trials, learning_rate=args.learning_rate_name,
                 regularizers=[n.strip() for n in args.regularizers.split(",") if n.strip()],
                 metric=args.metric, error_threshold=args.error_threshold,
                 loss_fraction=args.loss_fraction)
    url = args.store or sqlite_url(store_file(args.root))
    rec = run_procedure(proc, base, root=args.root, store=url, workers=args.workers)
    return finish_procedure(args, url, rec)

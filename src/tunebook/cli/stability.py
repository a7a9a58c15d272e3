"""``tunebook stability FILE`` and ``tunebook clip FILE``: the playbook's instability, warmup and
gradient-clipping procedures (:mod:`tunebook.procedures.stability`,
:mod:`tunebook.procedures.clip`), their recommendation in words or, with ``--format json``,
``{"recommendation": {...}, "evidence": {...}}``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from tunebook.cli.common import _check_root, _non_negative, _positive, finish_procedure

__all__ = ["add_parsers", "cmd_clip", "cmd_stability"]


def _factor(minimum: float, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _fraction(text: str) -> float:
    value: float = _factor(0.0, "a number in (0, 1]")(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _warmups(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated step counts, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be step counts >= 1, got {text!r}")
    return values


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``stability`` and ``clip`` on the ``tunebook`` parser's subcommands."""
    for cmd, helptext in (
            ("stability", "find the learning rate where training becomes unstable; study "
                          "warmup (and clipping) at 10x it"),
            ("clip", "the 90th-percentile gradient-clipping threshold of the recorded norms, "
                     "and a run with it")):
        p = sub.add_parser(cmd, parents=[common], help=helptext)
        p.add_argument("file", help="the base experiment's YAML file")
        p.add_argument("--steps", type=_positive, default=None,
                       help="max_train_steps of the sweep (stability) or of the runs (clip); "
                            "default: the base's")
        p.add_argument("--workers", type=_non_negative, default=1,
                       help="local worker processes (0: run in this process)")
        p.add_argument("--format", choices=["text", "json"], default="text")
        p.add_argument("--grad-clip-name", default="grad_clip", metavar="NAME",
                       help="the clipping-threshold hyperparameter (default grad_clip)")
        p.add_argument("--grad-norm-metric", default="grad_norm", metavar="NAME",
                       help="the unclipped per-step gradient norm metric (default grad_norm)")
        # The default (2) lives in tunebook.procedures.stability.SPIKE_FACTOR: None keeps it.
        p.add_argument("--spike-factor", type=_factor(1.0, "a number >= 1"), default=None,
                       help="a training loss above this times its running minimum is a "
                            "spike, an instability (default 2)")
        p.add_argument("--loss-metric", default="train_loss", metavar="NAME",
                       help="the training loss the spike rule reads (default train_loss)")
        if cmd == "stability":
            p.add_argument("--extend", type=_factor(1.0, "a number >= 1"), default=100.0,
                           help="sweep up to the top of the base's learning-rate range "
                                "times this (default 100)")
            p.add_argument("--per-decade", type=_positive, default=2,
                           help="learning rates per decade in the sweep (default 2)")
            p.add_argument("--warmups", type=_warmups, default=(),
                           help="warmup_steps to try, comma-separated (default: powers of ten "
                                "up to 10%% of max_train_steps)")
            p.add_argument("--lr-name", default="learning_rate", metavar="NAME")
            p.add_argument("--warmup-name", default="warmup_steps", metavar="NAME")
            p.add_argument("--schedule-name", default="schedule", metavar="NAME")
            p.add_argument("--constant-schedule", default="constant", metavar="VALUE",
                           help="the schedule value of a constant rate (default constant)")
            p.set_defaults(func=cmd_stability)
        else:
            p.add_argument("--quantile", type=_fraction, default=0.9,
                           help="the quantile of the norms (default 0.9, the playbook's)")
            p.set_defaults(func=cmd_clip)


def _prepare(args: argparse.Namespace) -> tuple[Any, str]:
    from tunebook.core.paths import store_file
    from tunebook.experiment import Experiment
    from tunebook.store.sql import sqlite_url

    _check_root(args, writing=True)
    return Experiment.from_yaml(args.file), args.store or sqlite_url(store_file(args.root))


def cmd_stability(args: argparse.Namespace) -> int:
    """Run the stability procedure; see the module docstring."""
    from tunebook.procedures.stability import (
        Names,
        StabilityOptions,
        learning_rate_range,
        run_stability,
    )

    base, url = _prepare(args)
    names = Names(learning_rate=args.lr_name, warmup_steps=args.warmup_name,
                  grad_clip=args.grad_clip_name, schedule=args.schedule_name,
                  constant=args.constant_schedule, loss=args.loss_metric,
                  grad_norm=args.grad_norm_metric)
    spike = {} if args.spike_factor is None else {"spike_factor": args.spike_factor}
    options = StabilityOptions(steps=args.steps, extend=args.extend, per_decade=args.per_decade,
                               warmups=args.warmups, names=names, **spike)
    learning_rate_range(base, names.learning_rate)  # a bad file fails before a store is made
    return finish_procedure(args, url, run_stability(base, options=options, root=args.root,
                                                     store=url, workers=args.workers))


def cmd_clip(args: argparse.Namespace) -> int:
    """Run the clip procedure; see the module docstring."""
    from tunebook.procedures.clip import ClipOptions, run_clip
    from tunebook.procedures.stability import Names

    base, url = _prepare(args)
    spike = {} if args.spike_factor is None else {"spike_factor": args.spike_factor}
    options = ClipOptions(steps=args.steps, quantile=args.quantile,
                          names=Names(grad_clip=args.grad_clip_name,
                                      grad_norm=args.grad_norm_metric, loss=args.loss_metric),
                          **spike)
    return finish_procedure(args, url, run_clip(base, options=options, root=args.root,
                                                store=url, workers=args.workers))

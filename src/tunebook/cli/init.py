"""``tunebook init``: write an experiment file whose search space fits the trial budget.

Which optimizer hyperparameters to search comes from the trial budget, as the playbook's
guidance for Adam (and its equivalent for SGD with momentum) says; see
:mod:`tunebook.procedures.init`. The file is checked by loading it as an experiment before it
is written, and an existing file is not overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tunebook.cli.common import _at_least, _file_name, _folder_problem
from tunebook.errors import TunebookError

__all__ = ["add_parser", "cmd_init"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``init`` on the ``tunebook`` parser's subcommands."""
    p = sub.add_parser("init", parents=[common],
                       help="write an experiment file whose search space fits the trial budget")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--workload", metavar="MODULE:FUNCTION",
                       help="the workload (e.g. tunebook.workloads.digits:train_mlp)")
    which.add_argument("--command", metavar="COMMAND",
                       help="a command workload (a program taking --name=value flags)")
    p.add_argument("--trials", type=_at_least(1), default=20,
                   help="planned trials per study (default 20)")
    p.add_argument("--optimizer", choices=("adam", "sgd", "momentum", "nesterov"),
                   default="adam", help="the optimizer (default adam)")
    p.add_argument("--out", type=_file_name, default=Path("experiment.yaml"), metavar="FILE",
                   help="the file to write (default experiment.yaml)")
    p.add_argument("--name", help="the experiment's name (default: the file's name)")
    p.add_argument("--objective", default="val_error", metavar="METRIC",
                   help="the metric to optimise (default val_error)")
    p.add_argument("--goal", choices=("minimize", "maximize"), default="minimize")
    p.add_argument("--steps", type=_at_least(1), default=1000,
                   help="max_train_steps (default 1000)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    """Write the experiment file; see the module docstring."""
    import yaml

    from tunebook.experiment import Experiment
    from tunebook.procedures.init import experiment_yaml, plan_search

    if args.workload is None and args.command is None:
        raise TunebookError("init: give --workload MODULE:FUNCTION or --command COMMAND")
    if args.workload is not None and ":" not in args.workload:
        raise TunebookError(f"--workload: must be MODULE:FUNCTION, got {args.workload!r}")
    if args.command is not None and not args.command.strip():
        raise TunebookError(f"--command: must be a command line, got {args.command!r}")
    out: Path = args.out
    if out.is_dir():
        raise TunebookError(f"--out: {str(out)!r} is a folder; give a file name")
    if out.exists() and not args.force:
        raise TunebookError(f"--out: {str(out)!r} exists; pass --force to overwrite it")
    problem = _folder_problem(out.parent)
    if problem:
        raise TunebookError(f"--out: {problem}")
    name = args.name if args.name is not None else out.stem
    plan = plan_search(args.optimizer, args.trials)
    text = experiment_yaml(plan, name=name, workload=args.workload, command=args.command,
                           metric=args.objective, goal=args.goal, max_train_steps=args.steps)
    # The same validation as `tunebook run FILE`, before anything is written.
    Experiment.from_dict(yaml.safe_load(text), source=str(out), base_dir=str(out.parent))
    out.write_text(text, encoding="utf-8")
    for line in plan.why:
        print(line)
    print(f"searching: {', '.join(plan.searched)}; wrote {out}")
    sys.stdout.flush()
    return 0

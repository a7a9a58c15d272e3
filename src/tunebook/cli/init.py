"""``tunebook init``: write an experiment file whose search space fits the trial budget.

Which optimizer hyperparameters to search comes from the trial budget, as the playbook's
guidance for Adam (and its equivalent for SGD with momentum) says; see
:mod:`tunebook.procedures.init`. The file is checked by loading it as an experiment before it
is written, and an existing file is not overwritten without ``--force``.

``--interactive`` asks for the workload (a built-in name or ``MODULE:FUNCTION``), the metric,
the trial budget and the optimizer instead (the flags given are the answers' defaults), shows
the budget advice and asks before writing. It is a flag, never guessed from a terminal on
stdin, so that a script or CI job never blocks on a question. An invalid answer prints the
flag's error and is asked again; end of input or Ctrl-C writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebook.cli.common import _at_least, _file_name, _folder_problem
from tunebook.errors import TunebookError

if TYPE_CHECKING:  # the command imports it when it runs: `tunebook --help` stays light
    from tunebook.procedures.init import Answers, InitPlan

__all__ = ["add_parser", "cmd_init"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``init`` on the ``tunebook`` parser's subcommands."""
    p = sub.add_parser("init", parents=[common],
                       help="write an experiment file whose search space fits the trial budget")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--workload", metavar="MODULE:FUNCTION",
                       help="the workload (e.g. tunebook.workloads.digits:train_mlp, or a "
                            "built-in name: digits, mnist1d-mlp, mnist1d-cnn, text, "
                            "synthetic)")
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
    p.add_argument("--interactive", action="store_true",
                   help="ask for the workload, metric, trials and optimizer (the flags are "
                        "the defaults), show the budget advice, then write")
    p.set_defaults(func=cmd_init)


def _interview(args: argparse.Namespace,
               workload: str | None) -> tuple[Answers, InitPlan] | None:
    """The answers of ``--interactive`` (see the module docstring), or None if declined."""
    from tunebook.procedures.init import Answers, interview

    def complain(message: str) -> None:
        print(f"tunebook: {message}; try again", file=sys.stderr, flush=True)

    def say(line: str) -> None:
        print(line, flush=True)

    defaults = Answers(workload=workload, metric=args.objective, trials=args.trials,
                       optimizer=args.optimizer)
    try:
        return interview(defaults, input, say, complain, command=args.command is not None)
    except EOFError:
        print(file=sys.stderr)
        raise TunebookError("init --interactive: the input ended before every answer was "
                            "given; nothing written") from None


def cmd_init(args: argparse.Namespace) -> int:
    """Write the experiment file; see the module docstring."""
    import yaml

    from tunebook.experiment import Experiment
    from tunebook.procedures.init import experiment_yaml, parse_metric, parse_workload, plan_search

    if args.workload is None and args.command is None and not args.interactive:
        raise TunebookError("init: give --workload MODULE:FUNCTION or --command COMMAND "
                            "(or --interactive)")
    workload = args.workload
    try:
        workload = None if workload is None else parse_workload(workload)
    except ValueError as exc:
        raise TunebookError(f"--workload: {exc}") from None
    try:
        parse_metric(args.objective)
    except ValueError as exc:
        raise TunebookError(f"--objective: {exc}") from None
    if args.command is not None and not args.command.strip():
        raise TunebookError(f"--command: must be a command line, got {args.command!r}")
    out: Path = args.out
    _check_out(out, args.force)
    if args.interactive:
        answered = _interview(args, workload)
        if answered is None:
            print(f"nothing written to {out}")
            return 0
        answers, plan = answered
        workload, metric = answers.workload, answers.metric
        _check_out(out, args.force)  # the folder may have changed while we asked
    else:
        plan, metric = plan_search(args.optimizer, args.trials), args.objective
    name = args.name if args.name is not None else out.stem
    text = experiment_yaml(plan, name=name, workload=workload, command=args.command,
                           metric=metric, goal=args.goal, max_train_steps=args.steps)
    # The same validation as `tunebook run FILE`, before anything is written.
    Experiment.from_dict(yaml.safe_load(text), source=str(out), base_dir=str(out.parent))
    out.write_text(text, encoding="utf-8")
    if not args.interactive:  # the interview showed the advice already
        for line in plan.why:
            print(line)
    print(f"searching: {', '.join(plan.searched)}; wrote {out}")
    sys.stdout.flush()
    return 0


def _check_out(out: Path, force: bool) -> None:
    if out.is_dir():
        raise TunebookError(f"--out: {str(out)!r} is a folder; give a file name")
    if out.exists() and not force:
        raise TunebookError(f"--out: {str(out)!r} exists; pass --force to overwrite it")
    problem = _folder_problem(out.parent)
    if problem:
        raise TunebookError(f"--out: {problem}")

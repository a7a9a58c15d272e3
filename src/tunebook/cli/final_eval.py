"""``tunebook final-eval NAME [--trial REF | --best] [--again]``: the test set, looked at once.

The playbook touches the test set only when exploration has ended; every look is recorded in
the store (``final_evals``) with the selection that led to it, and a second look at the same
experiment, of any trial, is refused unless ``--again`` says it is deliberate (the count of
earlier looks is in the message, the report and the stored selection).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from tunebook.cli.common import _seconds, _store, _table, _visible
from tunebook.cli.run import checkpoint_location
from tunebook.core.processes import host_name
from tunebook.errors import TunebookError

__all__ = ["add_parser", "cmd_final_eval"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``final-eval`` on the ``tunebook`` parser's subcommands."""
    p = sub.add_parser("final-eval", parents=[common],
                       help="evaluate the chosen trial's best checkpoint on the test set "
                            "(once exploration has ended)")
    p.add_argument("name", help="experiment name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", metavar="REF",
                       help="the trial to evaluate: STUDY#INDEX (INDEX with one study)")
    which.add_argument("--best", action="store_true",
                       help="the best trial of the experiment under its objective (default)")
    p.add_argument("--again", action="store_true",
                   help="look at the test set again although it has been looked at before")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="stop the evaluation after this many seconds")
    p.add_argument("--checkpoint-root", type=checkpoint_location, default=None, metavar="URL",
                   help="the shared checkpoints the trials published (default: checkpoint_root "
                        "in the experiment file): the best one is fetched from there when this "
                        "machine does not hold it")
    p.set_defaults(func=cmd_final_eval)


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_final_eval(args: argparse.Namespace) -> int:
    """Run a final evaluation; see the module docstring."""
    from tunebook.analysis.selection import checkpoint_of, experiment_folder, select_trial
    from tunebook.core.paths import cache_dir, trial_dir
    from tunebook.execution.ckptstore import CheckpointRootError
    from tunebook.execution.final_eval import (
        FinalEvalTrial,
        check_entry,
        entry_for,
        run_command,
        run_final_eval,
    )

    store = _store(args)
    exp = store.require_experiment(args.name)
    earlier = store.final_evals(exp.id)
    if earlier and not args.again:
        last = earlier[-1]
        raise TunebookError(
            f"the test set of {args.name} has already been looked at {len(earlier)} time(s) "
            f"(last: {last.selection.get('trial', '?')} on {_when(last.created_at)}); pass "
            "--again to look again")
    entry = entry_for(exp.config, args.name)  # None: a command workload
    chosen = select_trial(store, args.name, args.trial)
    base_dir = experiment_folder(store, exp.id)
    if entry is not None:
        check_entry(entry, base_dir)
    t = chosen.trial
    if t.status != "completed":
        raise TunebookError(f"trial {t.label} of {args.name!r} is {t.status}, not completed: "
                            "only a finished trial has a checkpoint to evaluate")
    shared = args.checkpoint_root or exp.config.get("checkpoint_root")
    try:
        found = checkpoint_of(args.root, args.name, t, chosen.objective, shared, base_dir)
    except CheckpointRootError as exc:
        raise TunebookError(f"--checkpoint-root: {exc}" if args.checkpoint_root else str(exc)
                            ) from None
    if found is None:
        folder = trial_dir(args.root, args.name, t.study, t.index)
        raise TunebookError(f"trial {t.label} of {args.name!r} has no checkpoint at its best "
                            f"step {t.best_step} nor one with a recorded "
                            f"objective value in {str(folder)!r} (is --root the folder the "
                            "run used?)")
    step, checkpoint = found
    view = FinalEvalTrial(
        hparams=dict(t.params), seed=t.seed, study=t.study, index=t.index, trial_id=t.id,
        dir=trial_dir(args.root, args.name, t.study, t.index),
        cache_dir=cache_dir(args.root), checkpoint=checkpoint, step=step,
        objective=chosen.objective.metric, goal=chosen.objective.goal,
        max_train_steps=int(exp.config["max_train_steps"]),
        eval_every=int(exp.config["eval_every"]))
    if entry is None:
        metrics = run_command(exp.config["command"], view, base_dir, timeout=args.timeout)
    else:
        metrics = run_final_eval(entry, view, base_dir, timeout=args.timeout)
    selection = {**chosen.rule, "trial": t.label, "checkpoint_step": step,
                 "validation": {chosen.objective.metric: t.best_value},
                 "looked_before": len(earlier)}
    store.add_final_eval(exp.id, t.id, selection, metrics, host=host_name())
    count = len(earlier) + 1
    how = ("best trial by " + chosen.objective.metric if chosen.rule["rule"] == "best"
           else "--trial " + str(args.trial))
    print(_visible(f"final evaluation of {args.name}: trial {t.label} ({how}), checkpoint at "
                   f"step {step}"))
    _table(["test metric", "value"], sorted(metrics.items()), sys.stdout)
    print(f"the test set of {_visible(args.name)} has now been looked at {count} time(s)")
    return 0

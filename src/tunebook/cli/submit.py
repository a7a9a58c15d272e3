"""``tunebook submit FILE --store URL``: register an experiment and its trials, run nothing.

For clusters where a scheduler starts the workers (a Slurm array, a Kubernetes Job): the
experiment goes into the shared store here, and ``tunebook worker`` processes started anywhere
join it (docs/running-on-a-cluster.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tunebook.cli.common import _OPENED, _check_root, _positive, _visible

__all__ = ["add_parser", "cmd_submit"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``tunebook submit``."""
    p = sub.add_parser("submit", parents=[common],
                       help="register an experiment and its trials without running them "
                            "(workers: tunebook worker)")
    p.add_argument("file", help="experiment YAML file")
    p.add_argument("--search-seeds", type=_positive, default=None, metavar="N",
                   help="study variance: repeat each study's search with N quasi-random seeds "
                        "(as for tunebook run)")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    """Check the experiment (its workload loaded), register it, say how to start workers."""
    from tunebook.cli.run import _again, _without_password
    from tunebook.core.paths import store_file
    from tunebook.execution.remote import submit
    from tunebook.experiment import Experiment
    from tunebook.store.sql import Store, sqlite_url

    _check_root(args, writing=True)
    experiment = Experiment.from_yaml(args.file)
    if args.search_seeds:
        from tunebook.experiment.seeds import with_search_seeds

        experiment = with_search_seeds(experiment, args.search_seeds)
    if experiment.checks:
        from tunebook.analysis.checks import thresholds_from_config

        thresholds_from_config(experiment.checks, experiment.source)
    # The workload is loaded before the store is opened: a typo leaves no trace.
    from tunebook.execution.workload import load_workload

    load_workload(experiment)
    store = Store(args.store or sqlite_url(store_file(args.root)))
    _OPENED.append(store)
    done = submit(experiment, store, ["tunebook", *_without_password(sys.argv[1:])])
    print(_visible(
        f"submitted experiment {experiment.name!r} to {store.display_url}: {done.studies} "
        f"stud{'y' if done.studies == 1 else 'ies'}, {done.budget} trials, {done.left} left "
        "to run"))
    print("start workers (on any machine that reaches the store) with:")
    print("  " + _again("worker", experiment.name, args))
    return 0

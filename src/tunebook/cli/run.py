"""``tunebook run``: run an experiment, print its progress and what to do next."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tunebook.cli.common import (
    _OPENED,
    EXIT_FAILED_TRIALS,
    EXIT_INTERRUPTED,
    EXIT_SIGNAL,
    _check_root,
    _findings_line,
    _print_best,
    _seconds,
    _visible,
)
from tunebook.cli.progress import _ProgressBar
from tunebook.core.paths import store_file
from tunebook.errors import TunebookError
from tunebook.store.api import StoreAPI

if TYPE_CHECKING:
    from tunebook.experiment import Experiment


def _warn_idle_workers(experiment: Experiment, workers: int) -> None:
    """Say at the start when the designer hands out fewer trials at once than there are
    workers per study (Bayesian optimisation with ``batch`` 1 and ``--workers 4``)."""
    from tunebook.search.designers import designer_class

    cls, _ = designer_class(experiment.search.algorithm)
    at_once = cls.parallel(experiment.search.options)
    studies = len(experiment.studies())
    if at_once is not None and workers > at_once * studies:
        print(f"tunebook: warning: {experiment.search.algorithm} hands out {at_once} trial(s) "
              f"of a study at a time (search.options.batch) and waits for their results; "
              f"with {studies} stud{'y' if studies == 1 else 'ies'} at most "
              f"{at_once * studies} of the {workers} workers can have a trial at a time after the "
              f"quasi-random start: set search.options.batch to "
              f"{-(-workers // studies)} to keep them busy", file=sys.stderr)


def checkpoint_location(text: str) -> str:
    """The argparse type of ``--checkpoint-root``: a path (made absolute: workers may start
    elsewhere) or an fsspec URL of a known protocol."""
    from pathlib import Path

    from tunebook.core.storage import split_location, storage_location_problem

    if (problem := storage_location_problem(text)) is not None:
        raise argparse.ArgumentTypeError(problem)
    protocol, path = split_location(text)
    return str(Path(path).resolve()) if protocol is None else text


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """``--stale-after`` and ``--checkpoint-root``: the options of every command that runs
    trials beside workers on other machines (``run``, ``worker``)."""
    p.add_argument("--stale-after", type=_seconds, default=120.0, metavar="SECONDS",
                   help="a running trial whose worker sent no heartbeat for this long is "
                        "released to another worker (the only sign of life of a worker on "
                        "another machine; default 120)")
    p.add_argument("--checkpoint-root", type=checkpoint_location, default=None, metavar="URL",
                   help="also publish checkpoints there (a shared-mount path or an fsspec URL "
                        "such as s3://bucket/prefix), so a trial resumes on any machine "
                        "(default: checkpoint_root in the experiment file, else local only)")


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--address``: where a command's workers run (``run``, ``worker``)."""
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the workers run: local processes, or Ray actors (one per "
                        "--workers slot, each with the experiment's resources; needs "
                        "pip install 'tunebook[ray]')")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT",
                   help="with --executor ray: the running Ray cluster to use (default: a "
                        "local Ray started for the run and stopped after it)")


def _check_checkpoint_root(args: argparse.Namespace, experiment: Experiment | None) -> None:
    """Open and probe the checkpoint root before anything is written; an error names the
    option or the file's key, and the value (no experiment: the option alone, as ``tunebook
    worker`` checks it first)."""
    from tunebook.errors import ConfigError
    from tunebook.execution.ckptstore import CheckpointRootError, open_checkpoint_root

    if experiment is None and not args.checkpoint_root:
        return
    location = args.checkpoint_root or (experiment.checkpoint_root if experiment else None)
    try:
        shared = open_checkpoint_root(location, experiment.base_dir if experiment else ".")
        if shared is not None:
            shared.probe()
    except CheckpointRootError as exc:
        if args.checkpoint_root:
            raise TunebookError(f"--checkpoint-root: {exc}") from None
        assert experiment is not None  # without one, the location is the option's
        raise ConfigError(experiment.source, "checkpoint_root", str(exc)) from None
def _check_executor(args: argparse.Namespace, experiment: Experiment | None) -> None:
    """--address needs --executor ray, which needs Ray; ``resources`` are for Ray only (said
    once; no experiment: the options alone, as ``tunebook worker`` checks them first)."""
    if args.address is not None and args.executor != "ray":
        raise TunebookError(f"--address: a Ray cluster's address needs --executor ray, got "
                            f"{args.address!r}")
    if args.executor == "ray":
        import importlib.util

        # Before anything is written: the store is not touched for a run that cannot start.
        try:
            found = importlib.util.find_spec("ray") is not None
        except ValueError:  # set to None in sys.modules: hidden
            found = False
        if not found:
            from tunebook.execution.ray_executor import INSTALL_HINT

            raise TunebookError(INSTALL_HINT)
    if experiment is not None and experiment.resources and args.executor == "local":
        print("tunebook: note: the experiment's resources are for --executor ray; local "
              "workers take one CPU each", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from tunebook.execution.runner import run
    from tunebook.experiment import Experiment
    from tunebook.store.sql import Store, sqlite_url

    _check_root(args, writing=True)
    experiment = Experiment.from_yaml(args.file)
    if getattr(args, "search_seeds", None):  # study variance (tunebook.experiment.seeds)
        from tunebook.experiment.seeds import with_search_seeds

        experiment = with_search_seeds(experiment, args.search_seeds)
    if experiment.checks:
        from tunebook.analysis.checks import thresholds_from_config

        # A misspelt threshold fails now, not at the report after hours of training.
        thresholds_from_config(experiment.checks, experiment.source)
    _warn_idle_workers(experiment, args.workers)
    _check_checkpoint_root(args, experiment)
    _check_executor(args, experiment)
    url = args.store or sqlite_url(store_file(args.root))
    live = None
    # The report, rewritten as trials finish (tunebook.report.live); --workers 0 runs trials
    # in this process and shows no progress until the end.
    if not args.no_report and args.workers > 0:
        from tunebook.core.paths import default_report_path
        from tunebook.execution.worker import limit_threads

        # The report's modules load NumPy into this process: with one compute thread, as
        # run() would have set before it (its threads would compete with the workers).
        limit_threads()
        from tunebook.report.live import LiveReport

        live = LiveReport(url, experiment.name, default_report_path(args.root, experiment.name))
    bar = _ProgressBar(sys.stderr, bar=not args.quiet, report=live.out if live else None)
    ended = False
    try:
        result = run(experiment, root=args.root, store=url, workers=args.workers,
                     max_attempts=args.max_attempts, progress=_hooks(bar, live),
                     argv=["tunebook", *_without_password(sys.argv[1:])],
                     retry_failed=args.retry_failed, trial_timeout=args.trial_timeout,
                     stale_after_seconds=args.stale_after, executor=args.executor,
                     address=args.address, options=_worker_options(args))
        ended = True
    finally:
        bar.close()
        if live is not None:
            # After a normal end the summary writes the final page; after an error, this does.
            live.close(final=not ended)
    try:
        # After a stop, a store that is down is waited for a few seconds, not ten minutes.
        store = Store(url, outage_seconds=5.0) if result.interrupted else Store(url)
        _summarise(args, experiment, result, store)
    except TunebookError as exc:
        if not result.interrupted:
            raise
        # Stopped during a store outage, say: the stop is the news, not the summary.
        print(f"tunebook: no summary ({_visible(str(exc))})", file=sys.stderr)
    if result.interrupted:
        left = result.counts.get("interrupted", 0) + result.counts.get("pending", 0)
        how = result.signal or "interrupted"
        print(f"{how}: {left} trials will run (resuming from checkpoints) next time: "
              f"{_again('run', args.file, args)}", file=sys.stderr)
        return EXIT_SIGNAL.get(result.signal or "", EXIT_INTERRUPTED)
    failed = result.counts.get("failed", 0)
    if failed:
        print(f"{failed} trials failed (causes: {_again('findings', experiment.name, args)}"
              f"); after fixing the cause, re-queue them with: "
              f"{_again('run', args.file, args)} --retry-failed", file=sys.stderr)
        return EXIT_FAILED_TRIALS
    return 0


def _worker_options(args: argparse.Namespace) -> Any:
    """The workers' options the command line sets (``--checkpoint-root``), or None."""
    if not args.checkpoint_root:
        return None
    from tunebook.execution.worker import WorkerOptions

    return WorkerOptions(checkpoint_root=args.checkpoint_root)


def _hooks(bar: _ProgressBar, live: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """The runner's progress hook: the bar, then the live report (which only notes a change)."""
    if live is None:
        return bar

    def both(p: Any) -> None:
        bar(p)
        live(p)
    return both


def _summarise(args: argparse.Namespace, experiment: Any, result: Any, store: StoreAPI) -> None:
    """The end-of-run summary: counts, the best trials, the findings and the report."""
    from tunebook.analysis.results import trial_records

    _OPENED.append(store)
    records = trial_records(store, experiment.name)
    failed = result.counts.get("failed", 0)
    retried = f", {result.retried} failed trials re-queued" if result.retried else ""
    print(f"experiment {experiment.name!r}: {result.counts.get('completed', 0)} completed, "
          f"{result.counts.get('infeasible', 0)} infeasible, {failed} "
          f"failed in {result.elapsed:.1f}s ({args.workers} workers{retried})")
    _print_best(records, experiment.objective, args.top, sys.stdout)
    if not args.no_report:
        from tunebook.report import default_report_path, write_report

        path, report = write_report(store, experiment.name,
                                    default_report_path(args.root, experiment.name))
        print(_findings_line(report.findings, _again("findings", experiment.name, args)))
        print(f"report: {path}")


def _again(command: str, target: str, args: argparse.Namespace) -> str:
    """A command line that can be pasted as is: the same root, store and run options.

    A store URL's password is left out (libpq then reads ``PGPASSWORD`` or ``~/.pgpass``):
    a masked one would fail, a real one does not belong on a terminal.
    """
    import shlex

    import sqlalchemy as sa

    argv = ["tunebook", command]
    if str(args.root) != "tunebook":
        argv += ["--root", str(args.root)]
    if args.store:
        try:
            u = sa.engine.make_url(args.store)
            bare = sa.engine.URL.create(u.drivername, u.username, None, u.host, u.port,
                                        u.database, u.query)
            argv += ["--store", bare.render_as_string(hide_password=False)]
        except Exception:
            argv += ["--store", "URL"]
    if command == "run" and getattr(args, "trial_timeout", None) is not None:
        argv += ["--trial-timeout", f"{args.trial_timeout:g}"]
    if command == "run" and getattr(args, "stale_after", 120.0) != 120.0:
        argv += ["--stale-after", f"{args.stale_after:g}"]
    if command == "run" and getattr(args, "checkpoint_root", None):
        argv += ["--checkpoint-root", str(args.checkpoint_root)]
    if command == "run" and getattr(args, "search_seeds", None):
        argv += ["--search-seeds", str(args.search_seeds)]
    if command == "run" and getattr(args, "workers", 1) != 1:
        argv += ["--workers", str(args.workers)]
    if command == "run" and getattr(args, "executor", "local") != "local":
        argv += ["--executor", args.executor]
        if args.address is not None:
            argv += ["--address", args.address]
    # "--" keeps a name that starts with "-" from being read as an option.
    argv += ["--", str(target)] if str(target).startswith("-") else [str(target)]
    return shlex.join(argv)


def _without_password(argv: Sequence[str]) -> list[str]:
    """The command line as recorded for reproduction: a --store URL loses its password."""
    import sqlalchemy as sa

    out = list(argv)
    for i, arg in enumerate(out):
        value = None
        if arg == "--store" and i + 1 < len(out):
            i, value = i + 1, out[i + 1]
        elif arg.startswith("--store="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                safe = sa.engine.make_url(value).render_as_string(hide_password=True)
            except Exception:
                safe = "<store URL>"
            out[i] = safe if arg == "--store" or not arg.startswith("--store=") else (
                "--store=" + safe)
    return out

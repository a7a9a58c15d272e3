"""The ``tunebook`` command line: the only module that prints or exits.

Exit codes:

* 0: success (for ``run``: every trial reached a result, completed or infeasible);
* 1: ``run`` finished but some trials failed (``tunebook run FILE --retry-failed`` re-queues
  them once the cause is fixed);
* 2: bad input (experiment file, command-line options, a workload that cannot start, store),
  one line on stderr;
* 130: interrupted by Ctrl-C; 143: stopped by SIGTERM (129: SIGHUP) — running trials resume on
  the next run;
* 141: the reader of standard output went away (``tunebook trials X | head -1``), like a
  program killed by SIGPIPE.

Every bad input gives exactly one line on stderr, ``tunebook: error: WHERE: WHAT, got VALUE``,
and leaves the store as it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tunebook.cli.batch_size import add_parser as _add_batch_size
from tunebook.cli.common import (
    _OPENED,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    _error_line,
    _file_name,
    _non_negative,
    _Parser,
    _positive,
    _seconds,
)
from tunebook.cli.decide import add_parsers as _add_decide_parsers
from tunebook.cli.decide import cmd_report_or_project
from tunebook.cli.final_eval import add_parser as _add_final_eval
from tunebook.cli.init import add_parser as _add_init
from tunebook.cli.read import cmd_best, cmd_findings, cmd_note, cmd_report, cmd_status, cmd_trials
from tunebook.cli.rounds import add_parser as add_next_round
from tunebook.cli.run import add_cluster_options, add_executor_options, cmd_run
from tunebook.cli.stability import add_parsers as _add_stability_parsers
from tunebook.cli.steps import add_parser as _add_steps
from tunebook.cli.submit import add_parser as _add_submit
from tunebook.cli.worker import add_parser as _add_worker
from tunebook.errors import TunebookError

__all__ = ["main"]


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks every command shares, and those of options whose parser entries belong to others
    (the ``run`` options)."""
    # Bytes that are not UTF-8 reach Python as lone surrogates (and NUL through main(argv)):
    # no store can hold them, SQLite's driver raises on them.
    texts = [("name", getattr(args, "name", None)), ("text", getattr(args, "text", None)),
             ("--study", getattr(args, "study", None)), ("--metric", getattr(args, "metric", None)),
             ("--store", getattr(args, "store", None))]
    texts += [("NAME", name) for name in getattr(args, "names", None) or []]
    for option, value in texts:
        if isinstance(value, str) and any(
                c == "\0" or unicodedata.category(c) == "Cs" for c in value):
            parser.error(f"{option}: must be UTF-8 text without NUL characters, got {value!r}")
    for option, value, minimum in (("--top", getattr(args, "top", None), 1),
                                   ("--max-attempts", getattr(args, "max_attempts", None), 1)):
        if isinstance(value, int) and value < minimum:
            parser.error(f"{option}: must be >= {minimum}, got {value}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tunebook`` command."""
    parser = _Parser(
        prog="tunebook", description="The Deep Learning Tuning Playbook as software.")
    common = _Parser(add_help=False)
    common.add_argument("--root", default="tunebook", type=Path,
                        help="folder with the SQLite store and trial folders (default ./tunebook)")
    common.add_argument("--store", default=None,
                        help="SQLAlchemy URL of another store (e.g. postgresql+psycopg://...)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", parents=[common], help="run or resume every study of an experiment")
    p.add_argument("file", help="experiment YAML file")
    p.add_argument("--workers", type=_non_negative, default=1,
                   help="local worker processes (0: run in this process)")
    p.add_argument("--max-attempts", type=_positive, default=3,
                   help="a trial whose worker dies this many times fails")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-queue the failed trials first (after fixing their cause); "
                        "infeasible trials are results and are not retried")
    p.add_argument("--trial-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="stop an attempt after this many seconds and mark it failed "
                        "(default: trial_timeout in the experiment file, else no limit)")
    add_cluster_options(p)
    add_executor_options(p)
    p.add_argument("--top", type=int, default=3, help="best trials shown per study")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (failures are still printed as they happen)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the HTML report at the end")
    p.add_argument("--search-seeds", type=_positive, default=None, metavar="N",
                   help="study variance: repeat each study's search with N quasi-random seeds "
                        "(search.seed and the N-1 after it; like search.seeds in the file)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", parents=[common], help="trial counts per study")
    p.add_argument("name", nargs="?", help="experiment name (default: all)")
    p.set_defaults(func=cmd_status)

    for cmd, helptext, func in (("best", "best trials per study", cmd_best),
                                ("trials", "every trial with its summary", cmd_trials),
                                ("report", "write the HTML report and tracking table",
                                 cmd_report),
                                ("findings", "the playbook's checks as findings",
                                 cmd_findings)):
        p = sub.add_parser(cmd, parents=[common], help=helptext)
        if cmd == "report":  # without a name (or with --all): the project page
            p.add_argument("name", nargs="?", help="experiment name (default: the project page)")
            p.add_argument("--all", action="store_true",
                           help="also write the project page, <root>/reports/index.html")
            func = cmd_report_or_project
        else:
            p.add_argument("name", help="experiment name")
        p.add_argument("--metric", help="objective metric (default: the experiment's)")
        p.add_argument("--goal", choices=["min", "max", "minimize", "maximize"])
        p.add_argument("--final", action="store_true",
                       help="rank by the final value instead of the best over training")
        if cmd == "best":
            p.add_argument("--study", help="only this study")
            p.add_argument("--top", type=_positive, default=1, help="trials shown per study")
            p.add_argument("--format", choices=["table", "json"], default="table")
        elif cmd == "report":
            p.add_argument("--out", type=_file_name,
                           help="HTML file to write (default <root>/reports/<name>.html)")
        elif cmd == "findings":
            p.add_argument("--format", choices=["text", "json"], default="text")
        else:
            p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        p.set_defaults(func=func)

    p = sub.add_parser("note", parents=[common], help="attach a note to an experiment")
    p.add_argument("name")
    p.add_argument("text")
    p.add_argument("--study")
    p.set_defaults(func=cmd_note)
    add_next_round(sub, common)
    _add_decide_parsers(sub, common)
    _add_final_eval(sub, common)
    _add_stability_parsers(sub, common)
    _add_steps(sub, common)
    _add_batch_size(sub, common)
    _add_init(sub, common)
    _add_submit(sub, common)
    _add_worker(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunebook`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_args(parser, args)
    except SystemExit as exc:  # --help (0) or a bad option (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a reader that went away shows up here, not at exit
        return code
    except TunebookError as exc:
        return _error_line(str(exc))
    except KeyboardInterrupt:
        print("tunebook: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `tunebook trials X | head -1`: the reader has what it wanted. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again, and go quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    finally:
        while _OPENED:
            _OPENED.pop().close()


if __name__ == "__main__":
    sys.exit(main())

"""``tunebook next-round``: the next round's experiment file, longer runs around the best.

The logic is :mod:`tunebook.experiment.rounds` (the document, the narrowed space, the
schedule rule) and :mod:`tunebook.analysis.rounds` (the best trials); this module reads the
options, writes the file, shows it and says what to do next.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tunebook.cli.common import _file_name, _folder_problem, _positive, _store
from tunebook.errors import TunebookError

__all__ = ["DEFAULT_TOP", "add_parser", "cmd_next_round"]

#: The best trials of each study a narrowed space is built around when --top is not given.
DEFAULT_TOP = 3


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``next-round`` with the ``tunebook`` parser."""
    p = sub.add_parser(
        "next-round", parents=[common],
        help="write the next round's experiment file: longer runs around the best trials")
    p.add_argument("name", help="the finished experiment (the round to follow)")
    p.add_argument("--steps", type=_positive, required=True, metavar="S",
                   help="max_train_steps of the next round (usually more than this round's)")
    p.add_argument("--top", type=_positive, default=None, metavar="K",
                   help="keep the K best configurations as configs: entries, one study each, "
                        "no nuisance search (with --narrow: narrow around each study's K best)")
    p.add_argument("--narrow", action="store_true",
                   help="narrow the nuisance space around each study's K best trials (K=3 "
                        "without --top; the default when --top is not given)")
    p.add_argument("--output", type=_file_name, default=None, metavar="FILE",
                   help="file to write (default ./<new name>.yaml; never overwritten)")
    p.set_defaults(func=cmd_next_round)


def cmd_next_round(args: argparse.Namespace) -> int:
    """Write, show and explain the next round's experiment file."""
    from tunebook.analysis import load
    from tunebook.analysis.rounds import best_configs, top_configs
    from tunebook.experiment.rounds import next_name, next_round

    store = _store(args)
    data = load(store, args.name, current=True, curves=False)
    old = data.experiment.max_train_steps
    if args.steps <= old:
        print(f"tunebook: warning: --steps {args.steps} is not more than the max_train_steps "
              f"of {args.name!r} ({old}); rounds usually grow", file=sys.stderr)
    listed = args.top is not None and not args.narrow
    k = DEFAULT_TOP if args.top is None else args.top
    top = {} if listed else top_configs(data, k)
    best = best_configs(data, k) if listed else None
    name = next_name(args.name, [e.name for e in store.experiments()])
    out: Path = args.output or Path(f"{name}.yaml")
    if out.exists():
        raise TunebookError(f"--output: {str(out)!r} exists and is never overwritten; give "
                            "another --output")
    problem = _folder_problem(out.parent)
    if problem:
        raise TunebookError(f"--output: {problem}")
    text = next_round(data.experiment, top, args.steps, name, best).to_yaml()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TunebookError(f"--output: cannot write {str(out)!r}: {exc.strerror or exc}"
                            ) from None
    sys.stdout.write(text)
    print(f"# wrote {out}: edit it, then `tunebook run {out}`")
    return 0

"""Shared pieces of the command line: exit codes, one-line errors, opening the store, checks
of paths and options, tables."""

from __future__ import annotations

import argparse
import math
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from tunebook.core.formatting import format_value as _fmt
from tunebook.errors import TunebookError
from tunebook.objective import Objective, resolve
from tunebook.store.api import StoreAPI

EXIT_FAILED_TRIALS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_SIGNAL = {"SIGHUP": 129, "SIGTERM": 143}
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


# Stores opened by the command being run, closed by main(): a SQLite store left open keeps its
# -wal and -shm files beside the database.
_OPENED: list[StoreAPI] = []


class _Parser(argparse.ArgumentParser):
    """argparse with tunebook's one-line errors: ``tunebook: error: --top: must be >= 1``."""

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        raise SystemExit(_error_line(message))


def _error_line(message: str) -> int:
    # One line, always: a workload's import error may span several; control characters
    # (a name's terminal escape codes) are shown, not sent to the terminal.
    text = "; ".join(s.strip() for s in str(message).splitlines() if s.strip())
    print(f"tunebook: error: {_visible(text)}", file=sys.stderr)
    return EXIT_BAD_INPUT


_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(text: str) -> str:
    """``text`` with control characters (terminal escapes, newlines, bidi overrides) written as
    escapes like ``\\x1b``: what tables and messages print to a terminal."""
    def hidden(c: str) -> bool:
        return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI

    if not any(hidden(c) for c in text):
        return text
    return "".join(repr(c)[1:-1] if hidden(c) else c for c in text)


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder tunebook writes into; None when it can."""
    if path.exists() and not path.is_dir():
        return f"{str(path)!r} is not a folder"
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {str(path)!r}: {str(existing)!r} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{str(existing)!r} is not writable"
    return None


def _check_root(args: argparse.Namespace, writing: bool) -> None:
    """Refuse a --root (and a SQLite --store) tunebook cannot use, before anything is created."""
    root = Path(args.root)
    if writing:
        problem = _folder_problem(root)
    else:
        problem = f"{str(root)!r} is not a folder" if root.exists() and not root.is_dir() else None
    if problem:
        raise TunebookError(f"--root: {problem}")
    if writing and args.store:
        import sqlalchemy as sa

        try:
            url = sa.engine.make_url(args.store)
        except Exception:
            return  # the store says why
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            db = Path(url.database or "")
            problem = (f"{str(db)!r} is a folder" if db.is_dir()
                       else _folder_problem(db.parent))
            if problem:
                raise TunebookError(f"--store: {problem}")


def _store(args: argparse.Namespace) -> StoreAPI:
    from tunebook.store.sql import Store

    _check_root(args, writing=False)
    store = (Store(args.store, create=False) if args.store
             else Store.at_root(args.root, create=False))
    store.on_outage = _OutageNotice(store.outage_seconds)
    _OPENED.append(store)
    return store


class _OutageNotice:
    """Says on stderr, every 10 s at most, that a command waits for an unreachable store."""

    def __init__(self, bound: float) -> None:
        self.bound = bound
        self.said = -math.inf

    def __call__(self, elapsed: float, cause: str) -> None:
        if elapsed - self.said >= 10:
            self.said = elapsed
            print(f"tunebook: store unreachable for {elapsed:.0f} s, retrying for up to "
                  f"{self.bound:.0f} s ({_visible(cause)})", file=sys.stderr, flush=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    cells = [[_visible(str(h)) for h in headers]] + [[_visible(_fmt(c)) for c in r]
                                                     for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _print_best(records: Sequence[Any], objective: Objective, top: int, out: TextIO) -> None:
    from tunebook.analysis.results import best_per_study

    best = best_per_study(records, objective)
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        counts.setdefault(r.study, {}).setdefault(r.status, 0)
        counts[r.study][r.status] += 1
    final = objective.final
    which = "final" if final else "best"
    rows = []
    for study, ranked in best.items():
        rs = ranked[:top]
        c = counts.get(study, {})
        tally = f"{c.get('completed', 0)}/{c.get('infeasible', 0)}/{c.get('failed', 0)}"
        if not rs:
            rows.append([study, "-", "-", "-", tally, "no completed trial"])
        for r in rs:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items())
            step = r.final_step if final else r.best_step
            rows.append([study, str(r.index), _fmt(r.value(final)), _fmt(step), tally, params])
    _table(["study", "trial", f"{which} {objective.metric}", "step", "ok/inf/fail", "params"],
           rows, out)


def _findings_line(findings: Sequence[Any], command: str) -> str:
    if not findings:
        return "findings: none of the playbook's checks fired"
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    tally = ", ".join(f"{n} {sev}" for sev, n in sorted(counts.items()))
    return f"findings: {tally} ({command})"


def _check_out(out: Path) -> None:
    """Refuse a report path that cannot be written, before anything is computed."""
    if out.is_dir():
        raise TunebookError(f"--out: {str(out)!r} is a folder; give a file name such as "
                            f"{str(out / 'report.html')!r}")
    if out.suffix.lower() in (".csv", ".md"):
        raise TunebookError(f"--out: {str(out)!r} would be overwritten by the tracking table "
                            "written beside the page (.csv and .md); give an .html name")
    for side in (out.with_suffix(".csv"), out.with_suffix(".md")):
        if side.is_dir():
            raise TunebookError(f"--out: the tracking table {str(side)!r} would replace a "
                                "folder; give another name")
    problem = _folder_problem(out.parent)
    if problem:
        raise TunebookError(f"--out: {problem}")


def _check_metric(store: StoreAPI, exp_id: int, name: str, metric: str | None) -> None:
    """A --metric nobody reported is a typo: one clear line, not a table of dashes."""
    if metric is None:
        return
    names = store.metric_names(exp_id)
    if names and metric not in names:
        import difflib

        close = difflib.get_close_matches(metric, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TunebookError(f"--metric: no trial of {name!r} reported {metric!r}{hint}; "
                            f"reported: {', '.join(names)}")


def _objective(args: argparse.Namespace, store: StoreAPI) -> Objective:
    """The objective ``best`` and ``trials`` rank by (see :func:`tunebook.objective.resolve`)."""
    exp = store.require_experiment(args.name)
    _check_metric(store, exp.id, args.name, args.metric)
    return resolve(exp.config["objective"], args.metric, args.goal, args.final)


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


_non_negative = _at_least(0)


_positive = _at_least(1)


def _file_name(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must be a file name, got {text!r}")
    return Path(text)


def positive_number(unit: str = "") -> Callable[[str], float]:
    """An argparse type for a finite number > 0; ``unit`` (``"seconds"``) goes in its errors."""
    of = f" of {unit}" if unit else ""
    after = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number{of}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0{after}, got {text!r}")
        return value

    parse.__name__ = unit or "number"
    return parse


_seconds = positive_number("seconds")


def finish_procedure(args: argparse.Namespace, url: str, rec: Any,
                     details: Callable[[Any], None] | None = None) -> int:
    """The end of every procedure command: an interrupted run says how to resume (exit 130);
    else the procedure's page is written and, with ``--format json``, the recommendation and
    its evidence printed as one object, or the text, ``details(rec)`` (a command's own table),
    every finding, the experiments run and the page's path."""
    if rec is None:
        print("tunebook: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    import json

    from tunebook.report.procedures import write_procedure_page

    page = write_procedure_page(url, rec, args.root)
    if args.format == "json":
        print(json.dumps(rec.as_json(), indent=2))
        return 0
    print(_visible(rec.text))
    if details is not None:
        details(rec)
    for f in rec.findings:
        print(_visible(f"- {f.severity}: {f.message}"))
    print("experiments: " + _visible(", ".join(rec.experiments)))
    print(f"procedure page: {page}")
    return 0

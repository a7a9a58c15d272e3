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
import csv
import io
import json
import math
import os
import sys
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from tunebook.core.formatting import error_line, finite_json
from tunebook.core.formatting import format_value as _fmt
from tunebook.core.paths import store_file
from tunebook.errors import TunebookError
from tunebook.objective import Objective, resolve
from tunebook.store.api import StoreAPI

__all__ = ["main"]

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


def _clock(seconds: float) -> str:
    mins, secs = divmod(int(seconds), 60)
    hours, mins = divmod(mins, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


class _ProgressBar:
    """One live line on a terminal; a line per change otherwise. Failures are printed above
    it as they happen (the first with the start of its traceback)."""

    def __init__(self, stream: TextIO, bar: bool = True) -> None:
        self.stream = stream
        self.bar = bar  # False (--quiet): only the failures
        self.tty = stream.isatty()
        self.last = ""
        self.last_time = 0.0
        self.done_at_start: int | None = None
        self.failures_shown = 0

    def _eta(self, p: Any) -> str:
        if self.done_at_start is None:
            self.done_at_start = p.done
        finished = p.done - self.done_at_start
        left = p.total - p.done
        if left <= 0:
            return ""
        if finished <= 0 or p.elapsed <= 0:
            return ", ETA -"
        return f", ETA {_clock(p.elapsed / finished * left)}"

    def _failure(self, t: Any) -> None:
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
        self.stream.write(f"trial {t.study}#{t.index} failed: {error_line(t.error, 300)}\n")
        if self.failures_shown == 0 and t.error and "Traceback" in t.error:
            lines = t.error.strip().splitlines()
            shown = lines[:12] if len(lines) <= 12 else [*lines[:6], "  ...", *lines[-5:]]
            self.stream.write("".join(f"    {x}\n" for x in shown))
        self.failures_shown += 1
        self.last = ""

    def __call__(self, p: Any) -> None:
        for t in getattr(p, "new_failures", ()):
            self._failure(t)
        if not self.bar:
            return
        c = p.counts
        width = 24
        filled = int(width * p.done / p.total) if p.total else width
        bar = "#" * filled + "-" * (width - filled)
        best = "-"
        if p.best is not None:
            best = f"{_fmt(p.best.best_value)} ({p.best.study} #{p.best.index})"
        outage = f" | STORE UNREACHABLE: {p.outage}" if getattr(p, "outage", None) else ""
        line = (f"[{bar}] {p.done}/{p.total} done | {c.get('running', 0)} running | "
                f"{c.get('infeasible', 0)} infeasible | {c.get('failed', 0)} failed | "
                f"best {p.metric} {best}{outage} | {_clock(p.elapsed)}{self._eta(p)}")
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(len(self.last)))
            self.stream.flush()
            self.last = line[:200]
        else:
            key = line.split(" | ")[:-1]
            if key != self.last.split(" | ")[:-1] or time.monotonic() - self.last_time > 30:
                self.stream.write(line + "\n")
                self.stream.flush()
                self.last, self.last_time = line, time.monotonic()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


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


# ----------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from tunebook.execution.runner import run
    from tunebook.experiment import Experiment
    from tunebook.store.sql import Store, sqlite_url

    _check_root(args, writing=True)
    experiment = Experiment.from_yaml(args.file)
    url = args.store or sqlite_url(store_file(args.root))
    bar = _ProgressBar(sys.stderr, bar=not args.quiet)
    try:
        result = run(experiment, root=args.root, store=url, workers=args.workers,
                     max_attempts=args.max_attempts, progress=bar,
                     argv=["tunebook", *_without_password(sys.argv[1:])],
                     retry_failed=args.retry_failed, trial_timeout=args.trial_timeout)
    finally:
        bar.close()
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
    if command == "run" and getattr(args, "workers", 1) != 1:
        argv += ["--workers", str(args.workers)]
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


def cmd_report(args: argparse.Namespace) -> int:
    from tunebook.report import default_report_path, write_report

    if args.out is not None:
        _check_out(args.out)
    store = _store(args)
    _check_metric(store, store.require_experiment(args.name).id, args.name, args.metric)
    out = args.out or default_report_path(args.root, args.name)
    try:
        path, report = write_report(store, args.name, out, metric=args.metric,
                                    goal=args.goal, final=args.final)
    except OSError as exc:
        option = "--out" if args.out is not None else "--root"
        raise TunebookError(f"{option}: cannot write the report {str(out)!r}: "
                            f"{exc.strerror or exc}") from None
    print(_findings_line(report.findings, _again("findings", args.name, args)))
    print(f"report: {path}")
    print(f"tracking table: {path.with_suffix('.csv')}, {path.with_suffix('.md')}")
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from tunebook.analysis import load
    from tunebook.analysis.checks import run_checks

    store = _store(args)
    _check_metric(store, store.require_experiment(args.name).id, args.name, args.metric)
    data = load(store, args.name, metric=args.metric, goal=args.goal, final=args.final,
                current=True)
    findings = run_checks(data)
    if args.format == "json":
        # Strict JSON for other tools: non-finite numbers in the evidence become null.
        json.dump([finite_json(f.as_dict()) for f in findings], sys.stdout, indent=2,
                  default=str, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    if not findings:
        print("None of the playbook's checks fired.")
    for f in findings:
        where = " ".join(x for x in (f.hyperparameter or "", f.study or "") if x)
        print(_visible(f"[{f.severity}] {f.check}{' (' + where + ')' if where else ''}: "
                       f"{f.message}"))
        print(_visible(f"    action: {f.action}"))
        print(f"    playbook: {f.section}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    exps = [store.require_experiment(args.name)] if args.name else store.experiments()
    if not exps:
        print(f"no experiments in {store.display_url}")
        return 0
    rows = []
    for e in exps:
        for st in store.studies(e.id):
            c: dict[str, int] = {}
            # Only the study's current budget: trials past a lowered search.trials stay in the
            # store, dormant, until the budget grows again.
            for t in store.trials(e.id, study=st.name):
                if t.index >= st.budget:
                    continue
                c[t.status] = c.get(t.status, 0) + 1
            rows.append([e.name, st.name, sum(c.values()), c.get("completed", 0),
                         c.get("running", 0), c.get("pending", 0) + c.get("interrupted", 0),
                         c.get("infeasible", 0), c.get("failed", 0)])
    _table(["experiment", "study", "trials", "completed", "running", "pending", "infeasible",
            "failed"], rows, sys.stdout)
    return 0


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


def cmd_best(args: argparse.Namespace) -> int:
    from tunebook.analysis.results import best_per_study, trial_records

    store = _store(args)
    obj = _objective(args, store)
    records = trial_records(store, args.name, obj.metric, obj.goal)
    if args.study:
        records = [r for r in records if r.study == args.study]
        if not records:
            raise TunebookError(f"experiment {args.name!r} has no study {args.study!r}")
    if args.format == "json":
        best = best_per_study(records, obj)
        # Strict JSON for other tools: a non-finite number becomes null.
        top = {s: [r.as_dict() for r in rs[:args.top]] for s, rs in best.items()}
        json.dump(finite_json(top), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        _print_best(records, obj, args.top, sys.stdout)
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from tunebook.analysis.results import csv_cell, trial_records

    store = _store(args)
    obj = _objective(args, store)
    records = [r.as_dict() for r in trial_records(store, args.name, obj.metric, obj.goal)]
    if args.format == "json":
        # Strict JSON for other tools: a non-finite number becomes null.
        json.dump(finite_json(records), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    param_names = sorted({k for r in records for k in r["params"]})
    base = ["study", "index", "status", "seed", "attempts", "best_step", "best_value",
            "final_step", "final_value", "run_seconds"]
    rows = [[r[k] for k in base] + [r["params"].get(p) for p in param_names] for r in records]
    if args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([csv_cell(h) for h in base + param_names])
        # Spreadsheet-safe: a cell starting with = + - @ is not run as a formula.
        w.writerows([[csv_cell(c) for c in row] for row in rows])
        sys.stdout.write(buf.getvalue())
    else:
        _table(base + param_names, rows, sys.stdout)
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise TunebookError(f"text: must not be empty, got {args.text!r}")
    store = _store(args)
    exp = store.require_experiment(args.name)
    if args.study is not None:
        known = [st.name for st in store.studies(exp.id)]
        if args.study not in known:
            import difflib

            close = difflib.get_close_matches(args.study, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TunebookError(f"--study: experiment {args.name!r} has no study "
                                f"{args.study!r}{hint}; its studies: {', '.join(known)}")
    store.add_note(exp.id, args.text, study=args.study)
    print(f"note added to {args.name!r}")
    return 0


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


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks every command shares, and those of options whose parser entries belong to others
    (the ``run`` options)."""
    # Bytes that are not UTF-8 reach Python as lone surrogates (and NUL through main(argv)):
    # no store can hold them, SQLite's driver raises on them.
    for option, value in (("name", getattr(args, "name", None)),
                          ("text", getattr(args, "text", None)),
                          ("--study", getattr(args, "study", None)),
                          ("--metric", getattr(args, "metric", None)),
                          ("--store", getattr(args, "store", None))):
        if isinstance(value, str) and any(
                c == "\0" or unicodedata.category(c) == "Cs" for c in value):
            parser.error(f"{option}: must be UTF-8 text without NUL characters, got {value!r}")
    for option, value, minimum in (("--top", getattr(args, "top", None), 1),
                                   ("--max-attempts", getattr(args, "max_attempts", None), 1)):
        if isinstance(value, int) and value < minimum:
            parser.error(f"{option}: must be >= {minimum}, got {value}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


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
    p.add_argument("--top", type=int, default=3, help="best trials shown per study")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (failures are still printed as they happen)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the HTML report at the end")
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

"""The commands that turn a search into a decision: ``retrain``, ``compare``, ``launch``,
``launches`` (see docs/decisions.md)."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from tunebook.cli.common import _OPENED, _check_root, _folder_problem, _store, _table, _visible
from tunebook.core.formatting import finite_json
from tunebook.core.formatting import format_value as _fmt
from tunebook.errors import TunebookError
from tunebook.store.api import StoreAPI


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``retrain``, ``compare``, ``launch`` and ``launches`` on ``sub``."""
    from tunebook.cli.common import _file_name, _non_negative, _positive, _seconds

    p = sub.add_parser("retrain", parents=[common],
                       help="re-run the best trials with new training seeds (trial variance)")
    p.add_argument("name", help="experiment whose trials are retrained")
    p.add_argument("--top", type=_positive, default=1,
                   help="best completed trials of each study to retrain (default 1)")
    p.add_argument("--seeds", type=_positive, default=5,
                   help="training seeds per configuration (default 5)")
    p.add_argument("--trial", action="append", default=[], metavar="STUDY#INDEX",
                   help="retrain this trial instead of the top ones (repeatable)")
    p.add_argument("--as", dest="retrain_as", default=None, metavar="NEW_NAME",
                   help="name of the retrain experiment (default NAME-retrain)")
    p.add_argument("--out", type=_file_name, default=None,
                   help="experiment file to write (default: NAME-retrain.yaml beside the file "
                        "NAME was last run from, else under --root)")
    p.add_argument("--workers", type=_non_negative, default=1,
                   help="local worker processes (0: run in this process)")
    p.add_argument("--max-attempts", type=_positive, default=3,
                   help="a trial whose worker dies this many times fails")
    p.add_argument("--trial-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="stop an attempt after this many seconds and mark it failed")
    p.add_argument("--write-only", action="store_true",
                   help="write the experiment file and stop (run it with tunebook run FILE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the HTML report at the end")
    p.set_defaults(func=cmd_retrain, retry_failed=False)

    p = sub.add_parser("compare", parents=[common],
                       help="is a candidate better than the baseline, beyond trial variance?")
    p.add_argument("candidate", help="EXPERIMENT, EXPERIMENT/STUDY or EXPERIMENT/STUDY#INDEX")
    p.add_argument("--baseline", required=True, help="reference of the baseline (same forms)")
    p.add_argument("--baseline-store", default=None, metavar="URL",
                   help="the baseline's store, when it is not the candidate's")
    p.add_argument("--final", action="store_true",
                   help="compare final values instead of the best over training")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("launch", parents=[common],
                       help="record a result as the new baseline, with its evidence")
    p.add_argument("ref", help="EXPERIMENT, EXPERIMENT/STUDY or EXPERIMENT/STUDY#INDEX")
    p.add_argument("--note", required=True, help="why it is launched (kept with the record)")
    p.add_argument("--over", default=None, metavar="BASELINE",
                   help="the previous baseline: the comparison is recorded with the launch")
    p.add_argument("--force", action="store_true",
                   help="launch even when the comparison with --over is not 'better'")
    p.add_argument("--final", action="store_true",
                   help="judge final values instead of the best over training")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("launches", parents=[common], help="the launch history, oldest first")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_launches)


# ----------------------------------------------------------------- report
def cmd_report_or_project(args: argparse.Namespace) -> int:
    """``tunebook report NAME``: the experiment's page; without a name (or with ``--all``):
    every experiment's page and the project page, ``<root>/reports/index.html``."""
    from tunebook.cli.read import cmd_report
    from tunebook.report.project import write_project

    if args.name is not None and not args.all:
        return cmd_report(args)
    if args.name is not None:
        raise TunebookError(f"--all: writes every experiment's page; give a name or --all, "
                            f"not both (got {args.name!r})")
    for option, value in (("--metric", args.metric), ("--goal", args.goal),
                          ("--out", args.out), ("--final", args.final or None)):
        if value is not None:
            raise TunebookError(f"{option}: the project page shows each experiment under its "
                                "own objective at <root>/reports/; give an experiment name to "
                                f"use {option}")
    store = _store(args)
    _check_root(args, writing=True)
    try:
        path, rows = write_project(store, args.root)
    except OSError as exc:
        raise TunebookError(f"--root: cannot write the project page under "
                            f"{str(args.root)!r}: {exc.strerror or exc}") from None
    print(f"project page: {path} ({len(rows)} experiments, "
          f"{len(store.launches())} launches)")
    return 0


# ----------------------------------------------------------------- compare
def _other_store(url: str) -> StoreAPI:
    from tunebook.store.sql import Store

    store = Store(url, create=False)
    _OPENED.append(store)
    return store


def _judge(cand_store: StoreAPI, cand: str, base_store: StoreAPI, base: str,
           final: bool, base_option: str) -> tuple[Any, Any, Any]:
    """Both sides' replicates and the comparison (one-line errors for bad references, a
    metric or goal mismatch, a side without a completed replicate)."""
    from tunebook.analysis.compare import compare_replicates
    from tunebook.analysis.replicates import replicates

    a = replicates(cand_store, cand, final, where="CANDIDATE" if base_option == "--baseline"
                   else "REF")
    b = replicates(base_store, base, final, where=base_option)
    if (a.objective.metric, a.objective.goal) != (b.objective.metric, b.objective.goal):
        raise TunebookError(
            f"{base_option}: {base!r} is judged by {b.objective.goal} {b.objective.metric!r}, "
            f"{cand!r} by {a.objective.goal} {a.objective.metric!r}; only results of the same "
            "metric and goal can be compared")
    for side, r, text in (("candidate", a, cand), ("baseline", b, base)):
        if not r.values:
            raise TunebookError(
                f"{side} {text!r}: no completed replicate ({r.infeasible} infeasible, "
                f"{r.failed} failed, {r.unfinished} unfinished)")
    return a, b, compare_replicates(a.values, b.values, a.objective.goal)


def _side_line(label: str, r: Any) -> str:
    from tunebook.analysis.replicates import study_stats

    st = study_stats(r.values)
    spread = f" ± {_fmt(st['sd'])} sd" if st["sd"] is not None else " (variance unknown)"
    fails = r.infeasible + r.failed
    failed = (f"; {fails} of {r.n + fails} replicates infeasible or failed (counted as "
              "failures)" if fails else "")
    source = f" from {r.source}" if r.source != str(r.ref) else ""
    # A searched study's trials differ by their hyperparameters: not the trial variance.
    what = (f"seed{'s' if r.n != 1 else ''}" if r.seeds_only else
            "trials of a nuisance search (not seed replicates: retrain its best trial for the "
            "trial variance)")
    return (f"{label:<10} {r.ref}{source}: mean {_fmt(st['mean'])}{spread} over {r.n} {what} "
            f"[min {_fmt(st['min'])}, max {_fmt(st['max'])}]{failed}")


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + _fmt(x)


def comparison_text(a: Any, b: Any, c: Any) -> list[str]:
    """The lines ``tunebook compare`` prints."""
    lines = [_side_line("candidate", a), _side_line("baseline", b)]
    metric = a.objective.metric
    effect = f"{_signed(c.effect)} {metric} ({a.objective.goal}, candidate - baseline)"
    if c.se is not None and c.low is not None and c.high is not None:
        df = f", Welch df {c.df:.1f}" if c.df is not None else ""
        effect += (f", standard error {_fmt(c.se)}, 95% interval [{_signed(c.low)}, "
                   f"{_signed(c.high)}]{df}")
    lines.append(f"{'effect':<10} {effect}")
    lines.append(f"{'verdict':<10} {c.verdict.upper()}: {c.reason}")
    return [_visible(s) for s in lines]


def cmd_compare(args: argparse.Namespace) -> int:
    store = _store(args)
    base_store = _other_store(args.baseline_store) if args.baseline_store else store
    a, b, c = _judge(store, args.candidate, base_store, args.baseline, args.final,
                     "--baseline")
    if args.format == "json":
        doc = {"candidate": a.as_dict(), "baseline": b.as_dict(), "comparison": c.as_dict(),
               "method": "Welch t interval, two-sided 95%; seeds for 80% power"}
        json.dump(finite_json(doc), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print("\n".join(comparison_text(a, b, c)))
    return 0


# ----------------------------------------------------------------- launch
def cmd_launch(args: argparse.Namespace) -> int:
    from tunebook.analysis.replicates import replicates, study_stats

    if not args.note.strip():
        raise TunebookError(f"--note: must not be empty, got {args.note!r}")
    store = _store(args)
    comparison = None
    if args.over is not None:
        a, b, c = _judge(store, args.ref, store, args.over, args.final, "--over")
        print("\n".join(comparison_text(a, b, c)))
        if c.verdict != "better" and not args.force:
            raise TunebookError(
                f"--over: {args.ref!r} is {c.verdict} against {args.over!r}, not better; the "
                "playbook adopts only a change that beats the baseline by more than the trial "
                "variance (retrain with more seeds, or launch anyway with --force)")
        comparison = {"over": args.over, "baseline": b.as_dict(), **c.as_dict()}
    else:
        a = replicates(store, args.ref, args.final)
        if not a.values:
            raise TunebookError(f"REF {args.ref!r}: no completed replicate")
    previous = store.launches()
    exp = store.require_experiment(a.ref.experiment)
    payload = {"experiment": a.ref.experiment, "study": a.ref.study, "trial": a.ref.index,
               "source": a.source, "params": a.params,
               "workload": exp.config.get("workload") or exp.config.get("command"),
               "max_train_steps": exp.config.get("max_train_steps"),
               "replicates": a.as_dict(), "comparison": comparison}
    clean: dict[str, Any] = finite_json(payload)  # type: ignore[assignment]
    store.add_launch(str(a.ref), args.note, clean)
    st = study_stats(a.values)
    print(_visible(f"launched {a.ref}: mean {_fmt(st['mean'])} {a.objective.metric} over "
                   f"{a.n} seed{'s' if a.n != 1 else ''}"
                   + (f", {comparison['verdict']} than {args.over}" if comparison else "")))
    if a.n == 1:
        print("note: a single replicate, its trial variance is unknown; before comparing "
              "against it, retrain it with seeds (tunebook retrain NAME --trial STUDY#INDEX)")
    if comparison is None and previous:
        print(_visible(f"note: no comparison recorded against the previous baseline "
                       f"{previous[-1].ref} (launch with --over {previous[-1].ref} to keep it)"))
    return 0


def launch_rows(store: StoreAPI) -> list[list[Any]]:
    """The launch history as table rows: time (UTC), reference, mean ± sd (n), over, verdict,
    note."""
    rows = []
    for launch in store.launches():
        rep = launch.payload.get("replicates") or {}
        comp = launch.payload.get("comparison") or {}
        sd = rep.get("sd")
        value = (f"{_fmt(rep.get('mean'))}" + (f" ± {_fmt(sd)}" if sd is not None else "")
                 + f" (n={rep.get('n', 0)})")
        when = datetime.datetime.fromtimestamp(launch.created_at, datetime.UTC)
        rows.append([when.strftime("%Y-%m-%d %H:%M"), launch.ref,
                     f"{rep.get('metric', '')} {value}", comp.get("over") or "-",
                     comp.get("verdict") or "-", launch.note])
    return rows


def cmd_launches(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.format == "json":
        doc = [{"id": r.id, "ref": r.ref, "created_at": r.created_at, "note": r.note,
                **r.payload} for r in store.launches()]
        json.dump(finite_json(doc), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    rows = launch_rows(store)
    if not rows:
        print("no launches yet (tunebook launch REF --note ...)")
        return 0
    _table(["when (UTC)", "launched", "objective", "over", "verdict", "note"], rows, sys.stdout)
    return 0


# ----------------------------------------------------------------- retrain
def _default_out(store: StoreAPI, name: str, new_name: str, root: Path) -> Path:
    """``NEW_NAME.yaml`` beside the file ``NAME`` was last run from (when it is still there,
    seen from here), else under the root."""
    from tunebook.core.paths import slug

    file_name = f"{slug(new_name)}.yaml"
    runs = store.runs(store.require_experiment(name).id)
    for run in reversed(runs):
        source = Path(str(run.provenance.get("file", "")))
        if source.suffix in (".yaml", ".yml") and source.is_file():
            return source.with_name(file_name)
    return root / file_name


def cmd_retrain(args: argparse.Namespace) -> int:
    import yaml

    from tunebook.analysis.retrain import retrain_document
    from tunebook.cli.run import cmd_run
    from tunebook.experiment import Experiment

    store = _store(args)
    doc = retrain_document(store, args.name, args.top, args.seeds, args.trial,
                           new_name=args.retrain_as)
    out = args.out or _default_out(store, args.name, doc["name"], Path(args.root))
    command = ["tunebook", "retrain", args.name, "--top", str(args.top), "--seeds",
               str(args.seeds), *(x for t in args.trial for x in ("--trial", t)),
               *(["--as", args.retrain_as] if args.retrain_as is not None else [])]
    header = f"# Written by {_visible(shlex.join(command))}\n"
    text = header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    # The rules of an experiment file, before anything is written (a study name past the
    # store's limit, say): the file is never left half right.
    Experiment.from_dict(yaml.safe_load(text), source=str(out), base_dir=str(out.parent))
    if out.is_dir():
        raise TunebookError(f"--out: {str(out)!r} is a folder; give a file name")
    if out.exists():
        # The same command again resumes the same experiment; a different file is the user's.
        if out.read_text(encoding="utf-8") != text:
            raise TunebookError(f"--out: {str(out)!r} exists with other content (edited, or "
                                "written for other trials); remove it, or run it with "
                                f"tunebook run {out}")
    else:
        problem = _folder_problem(out.parent)
        if problem:
            raise TunebookError(f"--out: {problem}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    n = len(doc["configs"])
    print(_visible(f"retrain experiment {doc['name']!r}: {n} configuration{'s' * (n != 1)} "
                   f"x {args.seeds} seed{'s' * (args.seeds != 1)}, written to {out}"))
    if args.write_only:
        return 0
    _check_root(args, writing=True)
    # The run opens the store itself and, on SQLite, tidies its -wal and -shm files at the
    # end: a connection of this process still open then would see "disk I/O error".
    _OPENED.remove(store)
    store.close()
    args.file = str(out)
    # The run options retrain does not offer: their defaults (local processes, checkpoints in
    # the trial folders, the usual staleness bound).
    for option, default in (("stale_after", 120.0), ("checkpoint_root", None),
                            ("executor", "local"), ("address", None)):
        vars(args).setdefault(option, default)
    return cmd_run(args)

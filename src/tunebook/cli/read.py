"""The commands that read a store: ``report``, ``findings``, ``status``, ``best``, ``trials``,
``note``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from tunebook.cli.common import (
    _check_metric,
    _check_out,
    _findings_line,
    _objective,
    _print_best,
    _store,
    _table,
    _visible,
)
from tunebook.cli.run import _again
from tunebook.core.formatting import finite_json
from tunebook.errors import TunebookError


def cmd_report(args: argparse.Namespace) -> int:
    from tunebook.report import default_report_path, write_report

    if args.out is not None:
        _check_out(args.out)
    store = _store(args)
    from tunebook.report.procedures import write_procedure_pages

    if store.get_experiment(args.name) is None and store.recommendations(args.name):
        # A procedure's base experiment (never run itself): its procedures' pages.
        if args.out is not None:
            raise TunebookError(f"--out: {args.name!r} is a procedure's base experiment, not "
                                "one that ran: its procedure pages go to <root>/reports/")
        for page in write_procedure_pages(store, args.name, args.root):
            print(f"procedure page: {page}")
        return 0
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
    for page in write_procedure_pages(store, args.name, args.root):  # linked from the report
        print(f"procedure page: {page}")
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from tunebook.analysis.findings import trials_text
    from tunebook.analysis.rows import experiment_findings

    store = _store(args)
    _check_metric(store, store.require_experiment(args.name).id, args.name, args.metric)
    # The same findings as the report's and tunebook.load(...).findings() (one function).
    findings = experiment_findings(store, args.name, metric=args.metric, goal=args.goal,
                                   final=args.final)
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
        if f.trials:
            print(_visible(f"    trials: {trials_text(f.trials)}"))
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
        # Only each study's current budget: trials past a lowered search.trials stay in the
        # store, dormant, until the budget grows again. Counted in SQL: no trial row is read.
        counts = store.study_counts(e.id)
        for st in store.studies(e.id):
            c = counts.get(st.name, {})
            rows.append([e.name, st.name, sum(c.values()), c.get("completed", 0),
                         c.get("running", 0), c.get("pending", 0) + c.get("interrupted", 0),
                         c.get("infeasible", 0), c.get("failed", 0)])
    _table(["experiment", "study", "trials", "completed", "running", "pending", "infeasible",
            "failed"], rows, sys.stdout)
    return 0


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
    from tunebook.analysis.results import csv_cell
    from tunebook.analysis.rows import trial_rows

    store = _store(args)
    obj = _objective(args, store)
    # The JSON rows are tunebook.load(...).trials_frame()'s (one function): with each trial's
    # best checkpoint folder (None when none is kept), one directory listing per trial.
    records = trial_rows(store, args.name, obj, root=args.root if args.format == "json" else None)
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

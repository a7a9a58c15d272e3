"""One self-contained HTML page per experiment, plus the tracking table as CSV and Markdown.

The page opens offline: its style and its plotting script are embedded once, the data of every
plot is one JSON document in the page. Every string that comes from a user (names, goals, notes,
hyperparameter values, error messages) is escaped.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunebook.analysis.data import ExperimentData, load
from tunebook.analysis.findings import Finding, trials_text
from tunebook.analysis.plots import (
    AxisPlot,
    BootstrapBox,
    IsolationPlot,
    axis_plots,
    best_of_k,
    curve_plots,
    downsample,
    isolation,
)
from tunebook.analysis.results import csv_cell
from tunebook.core.formatting import finite_json
from tunebook.core.formatting import format_value as _fmt
from tunebook.core.numeric import finite as _finite
from tunebook.core.paths import default_report_path, slug
from tunebook.report.exploitation import exploitation_section, exploration_data
from tunebook.report.shards import Shards, folder_for, round_values, split, write_shards
from tunebook.report.trial_variance import variance_section
from tunebook.store.api import StoreAPI

if TYPE_CHECKING:
    from tunebook.procedures import Recommendation

__all__ = ["Report", "build_report", "default_report_path", "render_report", "tracking_rows",
           "write_report"]

TOP_CURVES = 3
ON_DEMAND_LIMIT = 2000  # trials whose curves are embedded for the "any trial" picker
POINTS_PER_CURVE = 200
#: Points of each metric the report reads over all trials (:func:`tunebook.analysis.data.load`'s
#: ``budget``): a large experiment's curves beyond each study's FULL_CURVES best are a sample.
CURVE_BUDGET = 100_000
#: Trials of each study whose every point the report reads (the checks' and plots' best trials).
FULL_CURVES = 10


@dataclass(frozen=True)
class Report:
    """A rendered report: the page, the tracking table (CSV, Markdown) and the findings."""

    html: str
    csv: str
    markdown: str
    findings: tuple[Finding, ...]
    #: the picker's curves that are not in the page (:mod:`tunebook.report.shards`)
    shards: Shards = field(default_factory=lambda: Shards({}))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_for_html(data: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a user string would end the element early.
    # A non-finite number (a trial that reported inf, a stored value) becomes null.
    try:
        # The bulky parts (curves, axis points) arrive rounded, non-finite values as None:
        # the walk that replaces NaN and inf is only needed when json refuses one.
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(finite_json(data), separators=(",", ":"), allow_nan=False,
                          default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("tunebook.report").joinpath(name).read_text(encoding="utf-8")


def _latest_provenance(data: ExperimentData) -> dict[str, Any]:
    return dict(data.runs[-1].provenance) if data.runs else {}


def reproduction(data: ExperimentData) -> str:
    """A command (and its context) that reproduces the experiment."""
    p = _latest_provenance(data)
    cmd = p.get("command") or f"tunebook run {data.experiment.source}"
    parts = [cmd, f"tunebook {p.get('tunebook_version', '?')}",
             f"config {p.get('config_hash', data.experiment.identity())}"]
    if p.get("git_commit"):
        git = f"git {p['git_commit'][:12]}"
        # git_modified and git_untracked are absent from provenance stored by older versions.
        modified, untracked = p.get("git_modified") or [], p.get("git_untracked") or []
        if p.get("git_dirty"):
            git += " + uncommitted changes" + (f" to {_and(modified)}" if modified else "")
        parts.append(git)
        if untracked:
            parts.append(f"{_and(untracked)} untracked")
    return "; ".join(parts)


def _and(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def tracking_rows(data: ExperimentData) -> list[dict[str, Any]]:
    """The playbook's tracking table: one row per study."""
    notes_by_study: dict[str | None, list[str]] = {}
    for _, study, text in data.notes:
        notes_by_study.setdefault(study, []).append(text)
    rows = []
    repro = reproduction(data)
    source = _latest_provenance(data).get("file") or data.experiment.source
    for study in data.studies:
        trials = [t for t in data.trials if t.study == study]
        ranked = data.ranked(study)
        best = ranked[0] if ranked else None
        rows.append({
            "study": study,
            "config": f"{source} (config {data.experiment.identity()})",
            "notes": " | ".join(notes_by_study.get(study, []) + notes_by_study.get(None, [])),
            "trials": len(trials),
            "completed": sum(t.status == "completed" for t in trials),
            "infeasible": sum(t.status == "infeasible" for t in trials),
            "failed": sum(t.status == "failed" for t in trials),
            "best_value": None if best is None else data.value(best),
            "best_step": None if best is None else (best.final_step if data.final
                                                    else best.best_step),
            "best_trial": None if best is None else best.label,
            "reproduce": repro,
        })
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        # Spreadsheet-safe: a cell starting with = + - @ is not run as a formula.
        w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _md_cell(v: Any) -> str:
    """One Markdown table cell: no raw HTML, no cell or row breaks."""
    text = html.escape(_fmt(v), quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _markdown(data: ExperimentData, rows: list[dict[str, Any]]) -> str:
    cell = _md_cell
    head = ["study", "config", "notes", "trials (ok/inf/fail)", f"best {data.metric}",
            "best step", "best trial", "reproduce"]
    out = [f"# {cell(data.name)}", "", f"Goal: {cell(data.experiment.goal or '-')}", "",
           "| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(cell(c) for c in [
            r["study"], r["config"], r["notes"] or "-",
            f"{r['trials']} ({r['completed']}/{r['infeasible']}/{r['failed']})",
            r["best_value"], r["best_step"], r["best_trial"], r["reproduce"]]) + " |")
    return "\n".join(out) + "\n"


def _header(data: ExperimentData) -> str:
    exp = data.experiment
    role_rows = []
    for name, values in exp.scientific_values.items():
        role_rows.append(("scientific", name, ", ".join(_fmt(v) for v in values)))
    for name, hp in exp.nuisance.items():
        role_rows.append(("nuisance", name, hp.describe(_fmt)))
    for cond, block in exp.nuisance_for.items():
        role_rows.extend((f"nuisance if {cond}", name, hp.describe(_fmt))
                         for name, hp in block.items())
    for name, value in exp.fixed.items():
        role_rows.append(("fixed", name, _fmt(value)))
    roles = "".join(f"<tr><td>{_e(r)}</td><td><code>{_e(n)}</code></td><td>{_e(v)}</td></tr>"
                    for r, n, v in role_rows)
    search = exp.search
    seeds = (f"seeds {', '.join(map(str, search.seeds))}" if search.seeds
             else f"seed {search.seed}")
    facts = [("workload", exp.workload or " ".join(exp.command or ())),
             ("objective", f"{data.metric} ({data.goal}, "
                           f"{'final value' if data.final else 'best over training'})"),
             ("search", f"{search.algorithm}, {seeds}, {search.trials} trials per "
                        f"study, {len(data.studies)} studies"),
             ("max_train_steps", exp.max_train_steps), ("eval_every", exp.eval_every),
             ("reproduce", reproduction(data))]
    facts_html = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    config = json.dumps(exp.to_dict(), indent=2)
    return (f"<header><div class='inner'><h1>{_e(data.name)}</h1>"
            f"<p class='goal'>{_e(exp.goal or 'No goal was written for this round.')}</p>"
            f"<nav class='small'><a href='#tracking'>tracking</a><a href='#isolation'>"
            f"isolation</a><a href='#axis'>axis plots</a><a href='#curves'>training curves</a>"
            f"<a href='#enough'>enough trials?</a><a href='#findings'>findings</a></nav>"
            f"</div></header><section id='setup'><h2>Setup</h2><div class='grid'>"
            f"<table><tbody>{facts_html}</tbody></table>"
            f"<table><thead><tr><th>role</th><th>hyperparameter</th><th>values</th></tr></thead>"
            f"<tbody>{roles}</tbody></table></div>"
            f"<details><summary>configuration</summary><pre>{_e(config)}</pre></details>"
            f"</section>")


def _tracking(data: ExperimentData, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(r['study'])}</td><td class='small'>{_e(r['config'])}</td>"
        f"<td>{_e(r['notes'] or '-')}</td><td class='num'>{r['trials']} "
        f"({r['completed']} / {r['infeasible']} / {r['failed']})</td>"
        f"<td class='num'>{_e(_fmt(r['best_value']))}</td>"
        f"<td class='num'>{_e(_fmt(r['best_step']))}</td><td>{_e(r['best_trial'] or '-')}</td>"
        f"<td class='small'><code>{_e(r['reproduce'])}</code></td></tr>" for r in rows)
    notes = "".join(
        f"<li>{_e(dt.datetime.fromtimestamp(at).strftime('%Y-%m-%d %H:%M'))}"
        f"{' [' + _e(study) + ']' if study else ''}: {_e(text)}</li>"
        for at, study, text in data.notes)
    notes_html = f"<h3>Notes</h3><ul>{notes}</ul>" if notes else (
        "<p class='muted small'>Add notes with <code>tunebook note NAME \"text\"</code>.</p>")
    which = "final value" if data.final else "best checkpoint, chosen retrospectively"
    return (f"<section id='tracking'><h2>Tracking</h2><table><thead><tr><th>study</th>"
            f"<th>config</th><th>notes</th><th>trials (completed / infeasible / failed)</th>"
            f"<th>{_e(data.metric)} ({_e(which)})</th><th>step</th><th>trial</th>"
            f"<th>reproduce</th></tr></thead><tbody>{body}</tbody></table>{notes_html}"
            f"</section>")


def _thresholds_html(thresholds: dict[str, dict[str, Any]]) -> str:
    """The checks' thresholds, family by family (the experiment's ``checks:`` overrides)."""
    rows = "".join(
        f"<tr><td>{_e(family)}</td><td><code>"
        + _e(", ".join(f"{k}={v}" for k, v in values.items())) + "</code></td></tr>"
        for family, values in thresholds.items() if values)
    return (f"<details class='small'><summary>thresholds used (change them in the experiment "
            f"file's <code>checks:</code> section)</summary><table>{rows}</table></details>")


def _findings_html(findings: tuple[Finding, ...], thresholds: dict[str, dict[str, Any]]) -> str:
    # The isolation verdict is stated once, in the isolation section.
    findings = tuple(f for f in findings if f.check != "isolation")
    if not findings:
        return ("<section id='findings'><h2>Findings</h2><p class='empty'>None of the "
                f"playbook's checks fired.</p>{_thresholds_html(thresholds)}</section>")
    return (f"<section id='findings'><h2>Findings</h2>{''.join(map(_finding_html, findings))}"
            f"{_thresholds_html(thresholds)}</section>")


def _finding_html(f: Finding) -> str:
    evidence = json.dumps(f.evidence, indent=1, default=str)
    return (f"<div class='finding {_e(f.severity)}' data-check='{_e(f.check)}'>"
            f"<span class='sev'>{_e(f.severity)}</span><b>{_e(f.check)}</b>"
            f"{' · <code>' + _e(f.hyperparameter) + '</code>' if f.hyperparameter else ''}"
            f"{' · ' + _e(f.study) if f.study else ''}<p>{_e(f.message)}</p>"
            f"<p><b>Action:</b> {_e(f.action)}</p>"
            f"{'<p><b>Trials:</b> ' + _e(trials_text(f.trials)) + '</p>' if f.trials else ''}"
            f"<p class='small muted'>Playbook: "
            f"{_e(f.section)}</p><details><summary>evidence</summary><pre>{_e(evidence)}</pre>"
            f"</details></div>")


def _recommendations_html(recs: Sequence[Recommendation]) -> str:
    """What the playbook's procedures concluded about this experiment, newest first."""
    if not recs:
        return ""
    items = []
    for r in reversed(recs):
        evidence = json.dumps(r.evidence, indent=1, default=str)
        ran = ", ".join(r.experiments) or "none"
        items.append(
            f"<div class='recommendation' data-procedure='{_e(r.procedure)}'><h3>"
            f"{_e(r.procedure)}</h3><p>{_e(r.text)}</p><p class='small muted'>Experiments run: "
            f"{_e(ran)}</p><p class='small'><a class='procedure-page' href='"
            f"{_e(slug(r.experiment))}--{_e(slug(r.procedure))}.html'>the procedure's page, its "
            f"evidence drawn</a></p><details><summary>evidence</summary><pre>{_e(evidence)}</pre>"
            f"</details>{''.join(map(_finding_html, r.findings))}</div>")
    return f"<section id='recommendations'><h2>Recommendations</h2>{''.join(items)}</section>"


HISTOGRAM_BINS = 30  # bars of each study's gradient-norm histogram (counts, not the norms)


def _histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Bin edges and counts of the finite ``values``: the page gets ``bins`` numbers, not one
    per step. Log-spaced when the positive values span more than two decades (early norms can
    be orders of magnitude above the late ones; a norm that underflowed to exactly 0 at zero
    training loss is counted in the first bar)."""
    arr = np.asarray([v for v in values if _finite(v) is not None], dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    positive = arr[arr > 0]
    log = positive.size > 0 and hi / float(positive.min()) > 100
    if log:
        lo = float(positive.min())
        edges = np.geomspace(lo, hi, bins + 1)
        arr = np.maximum(arr, lo)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts, edges = np.histogram(arr, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(n) for n in counts], "log": log}


def _grad_norm(data: ExperimentData) -> list[dict[str, Any]]:
    """Per study: the playbook's clipping threshold and the histogram it is read from."""
    from tunebook.analysis.checks import thresholds_from_config
    from tunebook.analysis.checks.clipping import clip_fraction, study_thresholds

    # The experiment's `checks: {clipping: ...}`, as the clipping finding uses them.
    th = thresholds_from_config(data.experiment.checks, data.experiment.source)["clipping"]
    out = []
    for st in study_thresholds(data, th):
        pooled = [v for t in st.trials for v in t.curves["grad_norm"].values]
        unit = "steps" if st.per_step else "evaluations"
        fractions = [clip_fraction(data, t) for t in st.trials]
        out.append({
            **st.as_dict(), "trials": [t.label for t in st.trials],
            "clip_fraction": [None if f is None else f.fraction for f in fractions],
            "histogram": {**_histogram(pooled), "marker": st.threshold, "ylabel": unit,
                          "xlabel": "unclipped gradient norm",
                          "title": f"{st.study}: grad_norm over the best {len(st.trials)} "
                                   f"trials' {unit} (red: {100 * st.quantile:.0f}th "
                                   f"percentile, the threshold)"}})
    return out


def build_report(data: ExperimentData, findings: list[Finding] | None = None,
                 recommendations: Sequence[Recommendation] = (),
                 exploration: ExperimentData | None = None, folder: str | None = None
                 ) -> Report:
    """Render the page, the tracking table and the findings for ``data`` (and what procedures
    recommended about it, if any; ``exploration``: the exploration round an adaptive search
    follows, for its "Exploitation" section). ``folder``: where the page finds the picker's
    curves beyond its best trials', relative to it (default ``NAME.files``, ``NAME`` the
    page's default file name)."""
    from tunebook.analysis.checks import run_checks, thresholds_used
    from tunebook.analysis.variance import primary, study_variance
    from tunebook.report.variance import variance_html

    # With search.seeds, everything but the "Study variance" section reads the primary seed.
    seeds_html = variance_html(study_variance(data), data.metric)
    data = primary(data)
    if findings is None:
        findings = run_checks(data)
    rows = tracking_rows(data)
    boxes = best_of_k(data)
    iso = isolation(data, boxes=boxes)
    axes = axis_plots(data)
    shards = split(_trial_curves(data), folder or f"{slug(data.name)}.files", _json_for_html)
    payload = _payload(data, boxes, iso, axes, shards)
    sections = [_header(data), _recommendations_html(recommendations), _tracking(data, rows),
                _isolation_html(iso), exploitation_section(data, axes, exploration), seeds_html,
                variance_section(data),
                _axis_html(axes, payload["objective_label"]), _curves_html(payload, shards),
                _enough_html(boxes), _findings_html(tuple(findings), thresholds_used(data))]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(data.name)} · tunebook report</title><style>{_asset('style.css')}</style>"
        f"</head><body>{''.join(sections)}<section class='small muted'>Generated by tunebook "
        f"on {_e(dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</section>"
        f"<script type='application/json' id='tunebook-data'>{_json_for_html(payload)}</script>"
        f"<script>{_asset('plots.js')}</script></body></html>")
    return Report(page, _csv(rows), _markdown(data, rows), tuple(findings), shards)


def _trial_curves(data: ExperimentData) -> dict[str, dict[str, list[list[Any]]]]:
    """The "any trial" picker's curves, best trial first: at most 100 points a curve, values
    to 5 significant digits."""
    on_demand: dict[str, dict[str, list[list[Any]]]] = {}
    for t in sorted(data.trials, key=data.sort_key)[:ON_DEMAND_LIMIT]:
        if t.curves:
            on_demand[t.label] = {}
            for m, c in t.curves.items():
                steps, vals = downsample(c.steps, c.values, 100)
                on_demand[t.label][m] = [list(steps), round_values(vals)]
    return on_demand


def _payload(data: ExperimentData, boxes: list[BootstrapBox], iso: IsolationPlot,
             axes: list[AxisPlot], shards: Shards) -> dict[str, Any]:
    """Everything the page's script draws, as JSON-ready data."""
    curves: list[dict[str, Any]] = []
    for study in data.studies:
        best = data.ranked(study)[:TOP_CURVES]
        curves.append({"study": study, "plots": [
            {"metric": p.metric,
             "series": [[s[0], list(s[1]), round_values(s[2])] for s in p.series]}
            for p in curve_plots(data, best, POINTS_PER_CURVE)]})
    return {
        "studies": list(data.studies), "goal": data.goal, "metric": data.metric,
        "objective_label": data.metric + (" (final)" if data.final else ""),
        "axis": [{"hyperparameter": a.hyperparameter, "scale": a.scale, "low": a.low,
                  "high": a.high, "categories": list(a.categories) if a.categories else None,
                  "points": [[x, y, s, lab, ok] for (x, _, s, lab, ok), y in zip(
                      a.points, round_values([_finite(p[1]) for p in a.points]), strict=True)],
                  "buckets": [list(b) for b in a.buckets]}
                 for a in axes],
        "isolation": {"scientific": list(iso.scientific), "groups": [
            {**g, "values": [[lab, v] for (lab, _), v in zip(
                g["values"], round_values([_finite(x) for _, x in g["values"]]), strict=True)
                if v is not None]}
            for g in iso.groups]},
        "curves": curves,
        "bootstrap": [{"study": b.study, "n": b.n, "stats": [list(s) for s in b.stats]}
                      for b in boxes],
        "grad_norm": _grad_norm(data),
        "trials": shards.inline,
        "shards": shards.urls(),
    }


def _isolation_html(iso: IsolationPlot) -> str:
    """A faint mark per completed trial, a large one per study's best; the comparison's verdict
    (the ``isolation`` finding, shown here and not again in the findings list) with the numbers
    behind it."""
    any_done = any(g["best"] for g in iso.groups)
    iso_marks = sum(sum(1 for _, v in g["values"] if _finite(v) is not None)
                    + (1 if g["best"] else 0) for g in iso.groups)
    return (
        "<section id='isolation'><h2>Isolation plot</h2><p class='muted small'>The best trial "
        "of each study after optimising the nuisance hyperparameters away (large dots), every "
        "completed trial behind it (grey).</p>"
        + ("<div class='grid'><div class='plot' data-plot='isolation' data-expected='"
           + str(iso_marks) + "'></div></div>"
           if any_done else "<p class='empty'>No completed trial yet.</p>")
        + f"<p class='summary' data-verdict='{_e(iso.verdict or '')}'>{_e(iso.summary)}</p>"
        + _verdict_numbers_html(iso.numbers) + "</section>")


def _verdict_numbers_html(n: dict[str, Any]) -> str:
    """The numbers behind the isolation verdict, one row each (nothing without a comparison);
    the verdict itself is in the summary above them."""
    if not n:
        return ""
    share = "-" if n["share"] is None else f"{n['share']:.0%}"
    rows = [
        ("gap", _fmt(n["gap"]) + (f" ({n['gap_examples']})" if n["gap_examples"] else "")),
        ("seed pairs (replicates)" if n.get("replicates") else "shared nuisance points (pairs)",
         f"{n['n_pairs']} ({n['n_feasible']} feasible in both)"),
        (f"{n['best']} better / worse / tied", f"{n['wins']} / {n['losses']} / {n['ties']} "
                                                f"(top half: {n['top_half_wins']} / "
                                                f"{n['top_half_losses']} of {n['top_half']})"),
        ("sign test p (all pairs / top half)",
         f"{n['sign_p']:.2g} / {n['top_half_sign_p']:.2g} (differ needs <= "
         f"{n['sign_alpha']:g})"),
        ("paired bootstrap: best study's best is better", f"{share} of {n['draws']} resamples"),
        ("step noise (late, best trials)", _fmt(n["step_noise"])),
        ("best-of-n sampling IQR", _fmt(n["sampling"])),
        ("resolution of the metric", _fmt(n["resolution"]) if n["resolution"] else "continuous"),
        ("spread (largest part)", _fmt(n["spread"])),
        ("what limits the comparison", _fmt(n["limit"])),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td class='num'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table class='small verdict'><tbody>{body}</tbody></table>"


def _axis_html(axes: list[AxisPlot], objective_label: str) -> str:
    """The basic axis plots, one per varied hyperparameter."""
    if any(a.points for a in axes):
        axis_divs = "".join(f"<div class='plot' data-plot='axis' data-index='{i}' "
                            f"data-expected='{len(a.points)}'></div>"
                            for i, a in enumerate(axes) if a.points)
        axis_html = f"<div class='grid'>{axis_divs}</div>"
    else:
        axis_html = "<p class='empty'>No finished trial to plot yet.</p>"
    return (
        "<section id='axis'><h2>Basic hyperparameter axis plots</h2><p class='muted small'>"
        f"{_e(objective_label)} of every trial against each varied hyperparameter, "
        "all studies; infeasible trials are red X at the edge, dashed circles are beyond the "
        "zoomed range. The grey steps are the playbook's approximate isolation plot: the best "
        f"trial in each slice of the range.</p>{axis_html}</section>")


def _curves_html(payload: dict[str, Any], shards: Shards) -> str:
    """The best trials' curves per study, the gradient norm, and a picker for any trial."""
    curve_html = []
    for si, study_curves in enumerate(payload["curves"]):
        name, cplots = study_curves["study"], study_curves["plots"]
        if not cplots:
            curve_html.append(f"<h3>{_e(name)}</h3><p class='empty'>No completed trial "
                              "with measurements.</p>")
            continue
        divs = "".join(f"<div class='plot' data-plot='curve' data-study='{si}' "
                       f"data-index='{pi}' data-expected='"
                       f"{sum(len(series[1]) for series in cplots[pi]['series'])}'></div>"
                       for pi in range(len(cplots)))
        shown = min(TOP_CURVES, len(cplots[0]["series"]))
        curve_html.append(f"<h3>{_e(name)}: best {shown} trials</h3>"
                          f"<div class='grid'>{divs}</div>")
    if payload["grad_norm"]:
        curve_html.append(_clipping_html(payload["grad_norm"]))
    options = "".join(f"<option value='{_e(label)}'>{_e(label)}</option>"
                      for label in payload["trials"]) + "".join(
        f"<option value='{_e(label)}' data-shard='{n}'>{_e(label)}</option>"
        for label, n in shards.where.items())
    where = (f"<p class='muted small' id='trial-files'>The curves of the trials after the best "
             f"{len(shards.inline)} are in <code>{_e(shards.folder)}/</code> beside the "
             f"written page (<code>tunebook report</code>), loaded when picked.</p>"
             if shards.where else "")
    picker = (f"<h3>Any trial</h3>{where}<select id='trial-picker'><option value=''>choose a "
              f"trial</option>{options}</select><div id='trial-curves' class='grid'></div>"
              if payload["trials"] else "")
    return (f"<section id='curves'><h2>Training curves</h2>{''.join(curve_html)}"
            f"{picker}</section>")


def _clipping_html(studies: list[dict[str, Any]]) -> str:
    """The playbook's clipping threshold, study by study: a sentence and a histogram each."""
    lines, divs = [], []
    for i, st in enumerate(studies):
        what = ("every update of" if st["per_step"]
                else "the evaluations (this workload does not report every update) of")
        clip = ""
        used = [(lab, g, f) for lab, g, f in zip(st["trials"], st["grad_clip"],
                                                 st["clip_fraction"], strict=True)
                if g is not None]
        if used:
            clip = " These trials clip: " + ", ".join(
                f"{lab} at {_fmt(g)}" + ("" if f is None else f" ({100 * f:.0f}% of updates)")
                for lab, g, f in used) + "."
        lines.append(
            f"<li><b>{_e(st['study'])}</b>: <b>{_e(_fmt(st['threshold']))}</b>, the "
            f"{100 * st['quantile']:.0f}th percentile of {st['n_norms']} unclipped norms from "
            f"{what} its best {len(st['trials'])} trials ({_e(', '.join(st['trials']))}); "
            f"median {_e(_fmt(st['median']))}.{_e(clip)}</li>")
        divs.append(f"<div class='plot' data-plot='grad-norm-hist' data-index='{i}' "
                    f"data-expected='{len(st['histogram']['counts'])}'></div>")
    return ("<h3 id='clipping'>Gradient clipping</h3><p class='muted small'>The playbook's "
            "clipping threshold, just above the typical gradient norm: the 90th percentile of "
            "the unclipped norms over the whole training of each study's best trials. Per "
            "study, since norms of different models are not comparable; trials that clipped "
            "more than half of their updates are listed by the <code>clipping</code> finding."
            f"</p><ul class='summary'>{''.join(lines)}</ul><div class='grid'>{''.join(divs)}"
            "</div>")


def _enough_html(boxes: list[BootstrapBox]) -> str:
    """The playbook's Figure 3: best-of-k boxes per study."""
    has_boxes = any(b.stats for b in boxes)
    return (
        "<section id='enough'><h2>Enough trials?</h2><p class='muted small'>The playbook's "
        "Figure 3: for each k, the best value among k trials drawn with replacement from each "
        "study (1,000 draws; boxes are quartiles, whiskers the 5th-95th percentiles). If the "
        "boxes are still wide at the study's size, more trials would change the result."
        "</p>" + ("<div class='grid'><div class='plot' data-plot='bootstrap' data-expected='"
                  + str(sum(len(b.stats) for b in boxes)) + "'></div></div>"
                  if has_boxes else "<p class='empty'>No completed trial yet.</p>")
        + "</section>")


def render_report(store: StoreAPI, name: str, metric: str | None = None,
                  goal: str | None = None, final: bool = False, folder: str | None = None
                  ) -> Report:
    """The report of experiment ``name`` exactly as :func:`write_report` writes it, in memory
    (what a notebook's :meth:`tunebook.report.view.ExperimentView._repr_html_` shows; ``folder``
    as in :func:`build_report`)."""
    # Only the trials within each study's current budget, like status, best and trials.
    data = load(store, name, metric=metric, goal=goal, final=final, current=True,
                budget=CURVE_BUDGET, full_top=FULL_CURVES)
    from tunebook.procedures import recommendations

    report = build_report(data, recommendations=recommendations(store, name),
                          exploration=exploration_data(store, data), folder=folder)
    import dataclasses

    from tunebook.report.final_evals import with_final_evals
    from tunebook.report.live import with_run_state

    page = with_run_state(with_final_evals(report.html, store, name), store, name, data)
    return dataclasses.replace(report, html=page)


def write_report(store: StoreAPI, name: str, out: str | Path, metric: str | None = None,
                 goal: str | None = None, final: bool = False) -> tuple[Path, Report]:
    """Build the report of experiment ``name`` and write ``out`` plus its ``.csv`` and ``.md``
    tracking tables beside it (and the picker's curves beyond the best trials', in
    ``NAME.files/``: :mod:`tunebook.report.shards`); returns the page's path and the report."""
    out = Path(out)
    report = render_report(store, name, metric=metric, goal=goal, final=final,
                           folder=folder_for(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    # The shards first, the page that names them next, the files it does not name last: a
    # reader never sees a page whose curves are missing or half written.
    stale = write_shards(out, report.shards, _write)
    for path, text in ((out, report.html), (out.with_suffix(".csv"), report.csv),
                       (out.with_suffix(".md"), report.markdown)):
        _write(path, text)
    for path in stale:
        path.unlink(missing_ok=True)
    return out, report


def _write(path: Path, text: str) -> None:
    # Written to a temporary name first: a reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

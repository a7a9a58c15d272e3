"""The project page: every experiment of a store, its rounds and the launch history.

The playbook's tracking spreadsheet across rounds, as one self-contained HTML page
(``<root>/reports/index.html``, written by ``tunebook report`` without a name or with
``--all``): per experiment its goal, status counts, best result on its objective (a
validation metric), notes and the experiment it ``follows``; the chains of ``follows`` links
as rounds (``round 1 -> 2``); and every launch (``tunebook launch``) with its evidence. Each
experiment links to its own page beside it. Every user string is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebook.analysis.data import load
from tunebook.core.formatting import format_value as _fmt
from tunebook.core.paths import default_report_path, slug
from tunebook.errors import TunebookError
from tunebook.store.api import LaunchRow, StoreAPI

if TYPE_CHECKING:
    from tunebook.procedures import Recommendation

__all__ = ["ProjectRow", "project_page", "project_rows", "rounds", "write_project"]

PROJECT_PAGE = "index.html"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class ProjectRow:
    """One experiment as the project page lists it."""

    name: str
    goal: str
    metric: str
    direction: str
    follows: str | None
    round: int
    counts: dict[str, int]
    best_value: float | None
    best_trial: str | None
    notes: list[str] = field(default_factory=list)


def rounds(follows: dict[str, str | None]) -> dict[str, int]:
    """Each experiment's round: 1 without a ``follows`` link (or one to an experiment not in
    the store), else one more than the experiment it follows (a cycle counts once)."""
    out: dict[str, int] = {}

    def round_of(name: str, seen: frozenset[str]) -> int:
        if name in out:
            return out[name]
        parent = follows.get(name)
        r = 1 if parent is None or parent not in follows or parent in seen else (
            round_of(parent, seen | {name}) + 1)
        out[name] = r
        return r

    for name in follows:
        round_of(name, frozenset({name}))
    return out


def project_rows(store: StoreAPI) -> list[ProjectRow]:
    """Every experiment of ``store`` in the order they were created."""
    exps = store.experiments()
    follows = {e.name: e.config.get("follows") for e in exps}
    by_round = rounds(follows)
    out = []
    for e in exps:
        data = load(store, e.name, curves=False, current=True)
        counts: dict[str, int] = {}
        for t in data.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        ranked = data.ranked()
        best = ranked[0] if ranked else None
        out.append(ProjectRow(
            name=e.name, goal=data.experiment.goal, metric=data.metric, direction=data.goal,
            follows=follows[e.name], round=by_round[e.name], counts=counts,
            best_value=data.value(best) if best else None,
            best_trial=best.label if best else None,
            notes=[text if study is None else f"[{study}] {text}"
                   for _, study, text in data.notes]))
    return out


def _chains(rows: list[ProjectRow]) -> list[list[ProjectRow]]:
    """The rounds as chains from each first round, following ``follows`` links forward."""
    children: dict[str, list[ProjectRow]] = {}
    names = {r.name for r in rows}
    for r in rows:
        if r.follows in names and r.round > 1:
            children.setdefault(str(r.follows), []).append(r)
    chains = []

    def walk(row: ProjectRow, path: list[ProjectRow]) -> None:
        kids = children.get(row.name, [])
        if not kids:
            chains.append(path)
        for k in kids:
            walk(k, [*path, k])

    for r in rows:
        if r.round == 1 and r.name in children:
            walk(r, [r])
    return chains


def _link(name: str) -> str:
    return f"<a href='{_e(slug(name))}.html'>{_e(name)}</a>"


def _launches_html(launches: list[LaunchRow]) -> str:
    if not launches:
        return ("<p class='empty'>No launch yet: <code>tunebook launch REF --note \"...\""
                "</code> records the baseline with its evidence.</p>")
    rows = []
    for launch in launches:
        rep = launch.payload.get("replicates") or {}
        comp = launch.payload.get("comparison") or {}
        sd = rep.get("sd")
        value = _fmt(rep.get("mean")) + (f" ± {_fmt(sd)}" if sd is not None else "")
        over = (f"{_e(comp.get('verdict', '-'))} than {_e(comp.get('over', '-'))} "
                f"(effect {_e(_fmt(comp.get('effect')))}, 95% [{_e(_fmt(comp.get('low')))}, "
                f"{_e(_fmt(comp.get('high')))}])" if comp else "-")
        when = dt.datetime.fromtimestamp(launch.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        experiment = str(launch.payload.get("experiment") or launch.ref)
        rows.append(
            f"<tr><td>{_e(when)}</td><td>{_link(experiment)}"
            f"{_e(launch.ref[len(experiment):])}</td><td>{_e(rep.get('metric', ''))}</td>"
            f"<td class='num'>{_e(value)}</td><td class='num'>{_e(rep.get('n', 0))}</td>"
            f"<td>{over}</td><td>{_e(launch.note)}</td></tr>")
    return ("<table id='launch-table'><thead><tr><th>when (UTC)</th><th>launched</th>"
            "<th>metric</th><th>mean ± sd</th><th>seeds</th><th>against the previous "
            "baseline</th><th>note</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _procedures_html(recs: Sequence[Recommendation]) -> str:
    """One row per procedure page (the latest run of each procedure on each base)."""
    if not recs:
        return ""
    rows = "".join(
        f"<tr data-procedure='{_e(r.procedure)}'><td><a href='{_e(slug(r.experiment))}--"
        f"{_e(slug(r.procedure))}.html'>{_e(r.procedure)}</a></td><td>{_e(r.experiment)}</td>"
        f"<td><code>{_e(', '.join(f'{k}={_fmt(v)}' for k, v in r.values.items()) or '-')}"
        f"</code></td><td class='small'>{_e(r.text)}</td></tr>" for r in recs)
    return ("<section id='procedures'><h2>Procedures</h2><table><thead><tr><th>procedure</th>"
            "<th>base experiment</th><th>recommends</th><th>in words</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def project_page(rows: list[ProjectRow], launches: list[LaunchRow], where: str,
                 procedures: Sequence[Recommendation] = ()) -> str:
    """The page's HTML for ``rows`` and ``launches`` (``where`` names the store), and the
    pages of the ``procedures`` run."""
    body = []
    for r in rows:
        tally = " / ".join(str(r.counts.get(s, 0)) for s in ("completed", "infeasible",
                                                             "failed"))
        unfinished = sum(r.counts.get(s, 0) for s in ("pending", "running", "interrupted"))
        notes = "".join(f"<li>{_e(n)}</li>" for n in r.notes)
        body.append(
            f"<tr data-experiment='{_e(r.name)}'><td>{_link(r.name)}</td>"
            f"<td class='num'>{r.round}</td>"
            f"<td>{_link(r.follows) if r.follows else '-'}</td>"
            f"<td>{_e(r.goal or '-')}</td><td class='num'>{tally}"
            f"{f' ({unfinished} to run)' if unfinished else ''}</td>"
            f"<td>{_e(r.metric)} ({_e(r.direction)})</td>"
            f"<td class='num'>{_e(_fmt(r.best_value))}</td><td>{_e(r.best_trial or '-')}</td>"
            f"<td class='small'>{'<ul>' + notes + '</ul>' if notes else '-'}</td></tr>")
    chains = "".join(
        "<li class='round-chain'>" + " → ".join(
            f"round {r.round}: {_link(r.name)}" for r in chain) + "</li>"
        for chain in _chains(rows))
    css = resources.files("tunebook.report").joinpath("style.css").read_text(encoding="utf-8")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>tunebook project</title><style>{css}</style></head><body>"
        f"<header><div class='inner'><h1>Project</h1><p class='goal'>Every experiment of "
        f"{_e(where)}, its rounds and the launches.</p></div></header>"
        "<section id='experiments'><h2>Experiments</h2><table><thead><tr><th>experiment</th>"
        "<th>round</th><th>follows</th><th>goal</th><th>completed / infeasible / failed</th>"
        "<th>objective</th><th>best (validation)</th><th>trial</th><th>notes</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        + ("<p class='empty'>No experiment yet.</p>" if not rows else "") + "</section>"
        "<section id='rounds'><h2>Rounds</h2>"
        + (f"<ul>{chains}</ul>" if chains else "<p class='empty'>No experiment follows "
           "another yet (<code>follows: NAME</code> in an experiment file).</p>")
        + "</section>" + _procedures_html(procedures) + "<section id='launches'><h2>Launches</h2>"
        + _launches_html(launches) + "</section>"
        f"<section class='small muted'>Generated by tunebook on "
        f"{_e(dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</section></body></html>")


def write_project(store: StoreAPI, root: str | Path,
                  pages: bool = True) -> tuple[Path, list[ProjectRow]]:
    """Write ``<root>/reports/index.html`` (and, with ``pages``, every experiment's own page
    beside it, which the project page links to); returns the path and the rows."""
    from tunebook.report.html import write_report
    from tunebook.report.procedures import procedure_pages, write_procedure_page

    rows = project_rows(store)
    out = Path(root) / "reports" / PROJECT_PAGE
    clash = [r.name for r in rows if default_report_path(root, r.name) == out]
    if clash:
        raise TunebookError(f"experiment {clash[0]!r}'s page would be the project page "
                            f"{str(out)!r}; write its report elsewhere with tunebook report "
                            "NAME --out FILE")
    recs = procedure_pages(store)
    if pages:
        for r in rows:
            write_report(store, r.name, default_report_path(root, r.name))
        for rec in recs:
            write_procedure_page(store, rec, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(project_page(rows, store.launches(), store.display_url, recs),
                   encoding="utf-8")
    tmp.replace(out)
    return out, rows

"""One HTML page per procedure run: the recommendation, its findings and its evidence drawn.

``<root>/reports/<base>--<procedure>.html``, beside the Markdown page the procedure writes,
in the experiment report's style (its page frame, style and plotting script): the
recommendation in words and in the experiment's own names, the findings, and per procedure the
plots of its evidence, drawn from the stored recommendation and from the curves of the
experiments it ran (``rec.experiments``, read from the store):

* ``stability``: the sweep's training-loss curves (unstable rates dashed), final and largest
  loss against the learning rate, the early run, the warmup study, the clipping run;
* ``clip``: the recorded gradient norms' histogram with the threshold, the clipped run;
* ``steps``: the sweep's training-metric curves with the fit threshold and the recommended
  ``max_train_steps``;
* ``batch-size``: throughput (with the repeats' spread) and the input pipeline's share against
  the batch size, and steps to the target against the batch size when measured.

Any other procedure (a user's own) gets its text, values, findings and evidence as a table. A
piece of evidence that is missing leaves its plot out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebook.core.formatting import format_value as _fmt
from tunebook.core.paths import default_report_path, slug
from tunebook.errors import TunebookError
from tunebook.report.html import _asset, _e, _finding_html, _json_for_html
from tunebook.report.procedure_evidence import DRAWN
from tunebook.store.api import StoreAPI

if TYPE_CHECKING:
    from tunebook.procedures import Recommendation

__all__ = ["page_path", "procedure_page", "procedure_pages", "write_procedure_page",
           "write_procedure_pages"]


def page_path(root: str | Path, base: str, procedure: str) -> Path:
    """Where the page of ``procedure`` run on ``base`` goes: ``<root>/reports/<base>--<proc>.html``
    (the Markdown page's name with ``.html``)."""
    return Path(root) / "reports" / f"{slug(base)}--{slug(procedure)}.html"


# ----------------------------------------------------------------- the page
def _value_table(values: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th><code>{_e(k)}</code></th><td class='num'>{_e(_fmt(v))}</td></tr>"
                   for k, v in values.items())
    return f"<table class='values'><tbody>{rows}</tbody></table>" if rows else (
        "<p class='muted'>No value recommended.</p>")


def _evidence_table(evidence: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td><code>{_e(_short(v))}</code></td></tr>"
        for k, v in evidence.items())
    return f"<table class='small'><tbody>{rows}</tbody></table>"


def _short(v: Any, limit: int = 400) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= limit else text[:limit] + " ..."


def procedure_page(rec: Recommendation, store: StoreAPI, linked: Sequence[str] = ()) -> str:
    """The page of ``rec`` (its plots read the curves of its experiments in ``store``); the
    experiments in ``linked`` link to their own pages beside it."""
    drawer = DRAWN.get(rec.procedure)
    try:
        parts = drawer(rec, store) if drawer else []
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # Evidence of another shape (an older or newer procedure): the table still shows it.
        parts = [("Evidence", f"could not draw this evidence ({type(exc).__name__}: {exc})",
                  [])]
    payload: dict[str, Any] = {"studies": [], "goal": "minimize", "plots": [], "grad_norm": []}
    sections = []
    for title, text, figs in parts:
        divs = []
        for fig in figs:
            if fig["kind"] == "hist":
                divs.append(f"<div class='plot' data-plot='grad-norm-hist' data-index="
                            f"'{len(payload['grad_norm'])}' data-expected='"
                            f"{len(fig['counts'])}'></div>")
                payload["grad_norm"].append({"histogram": fig})
            else:
                divs.append(f"<div class='plot' data-plot='xy' data-index='"
                            f"{len(payload['plots'])}' data-expected='"
                            f"{sum(len(s['x']) for s in fig['series'])}'></div>")
                payload["plots"].append(fig)
        body = (f"<div class='grid'>{''.join(divs)}</div>" if divs else
                "<p class='empty'>Nothing to draw: the runs are not in the store.</p>")
        sections.append(f"<h3>{_e(title)}</h3><p class='muted small'>{_e(text)}</p>{body}")
    ran = "".join(f"<li><a href='{_e(slug(n))}.html'>{_e(n)}</a></li>" if n in linked
                  else f"<li>{_e(n)}</li>" for n in rec.experiments)
    findings = "".join(map(_finding_html, rec.findings)) or (
        "<p class='empty'>No finding qualifies this recommendation.</p>")
    title = f"{rec.procedure}: {rec.experiment}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · tunebook procedure</title><style>{_asset('style.css')}</style>"
        f"</head><body><header><div class='inner'><h1>{_e(title)}</h1><p class='goal'>The "
        f"{_e(rec.procedure)} procedure run on the base experiment {_e(rec.experiment)}.</p>"
        "<nav class='small'><a href='#recommendation'>recommendation</a><a href='#evidence'>"
        "evidence</a><a href='#findings'>findings</a><a href='#experiments'>experiments</a>"
        "</nav></div></header><section id='recommendation'><h2>Recommendation</h2>"
        f"<p class='summary'>{_e(rec.text)}</p>{_value_table(rec.values)}</section>"
        f"<section id='evidence'><h2>Evidence</h2>{''.join(sections)}"
        f"<details{'' if sections else ' open'}><summary>the numbers</summary>"
        f"{_evidence_table(rec.evidence)}</details></section>"
        f"<section id='findings'><h2>Findings</h2>{findings}</section>"
        f"<section id='experiments'><h2>Experiments run</h2><ul>{ran}</ul></section>"
        f"<section class='small muted'>Generated by tunebook on "
        f"{_e(dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</section>"
        f"<script type='application/json' id='tunebook-data'>{_json_for_html(payload)}</script>"
        f"<script>{_asset('plots.js')}</script></body></html>")


def write_procedure_page(store: StoreAPI | str, rec: Recommendation,
                         root: str | Path) -> Path:
    """Write ``rec``'s page to :func:`page_path` (``store``: a store or its URL, to read the
    curves from); returns its path."""
    from tunebook.store.sql import Store

    opened = Store(store, create=False) if isinstance(store, str) else store
    try:
        out = page_path(root, rec.experiment, rec.procedure)
        linked = [n for n in rec.experiments if default_report_path(root, n).exists()]
        text = procedure_page(rec, opened, linked)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")  # a reader never sees half a page
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            raise TunebookError(f"--root: cannot write the procedure page {str(out)!r}: "
                                f"{exc.strerror or exc}") from None
        return out
    finally:
        if opened is not store:
            opened.close()


def procedure_pages(store: StoreAPI) -> list[Recommendation]:
    """The latest recommendation of each (base, procedure) in ``store``: the bases are read
    from the names of the procedures' experiments (``<base>.<procedure>.<stage>``)."""
    from tunebook.procedures import procedure_names, recommendations

    bases: dict[str, None] = {}
    for e in store.experiments():
        for proc in procedure_names():
            head, sep, _ = e.name.rpartition(f".{proc}.")
            if sep and head:
                bases[head] = None
    latest: dict[tuple[str, str], Recommendation] = {}
    for base in bases:
        for rec in recommendations(store, base):
            latest[(rec.experiment, rec.procedure)] = rec
    return list(latest.values())


def write_procedure_pages(store: StoreAPI, name: str, root: str | Path) -> list[Path]:
    """Write the page of the latest recommendation of each procedure run on ``name``."""
    from tunebook.procedures import recommendations

    latest = {r.procedure: r for r in recommendations(store, name)}
    return [write_procedure_page(store, r, root) for r in latest.values()]

"""The report's "Final evaluation (test set)" section: every look at the test set, kept apart
from the validation numbers.

Shown only once ``tunebook final-eval`` has run. It sits in a box of its own, before the
tracking table, and says what it is: test-set numbers, never used for a choice; the tracking
table, the plots and the findings stay on the validation set (the test metrics are not
measurements, so no validation column can show them).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any

from tunebook.core.formatting import format_value
from tunebook.store.api import FinalEvalRow, StoreAPI

__all__ = ["final_evals_html", "with_final_evals"]

_ANCHOR = "<section id='tracking'>"
_STYLE = ("border:2px solid #b45309;background:#fffbeb;padding:0.6em 1em;border-radius:6px;"
          "margin:1em 0")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rule(selection: dict[str, Any]) -> str:
    if selection.get("rule") == "best":
        return (f"the best trial by {selection.get('metric', '?')} "
                f"({selection.get('goal', '?')}), best checkpoint")
    if selection.get("rule") == "trial":
        return f"--trial {selection.get('ref', '?')}, best checkpoint"
    return str(selection.get("rule", "?"))


def final_evals_html(rows: Iterable[FinalEvalRow], labels: dict[int, str]) -> str:
    """The section for ``rows`` (``labels``: trial id -> ``study #index``); "" when none."""
    rows = list(rows)
    if not rows:
        return ""
    names = sorted({k for r in rows for k in r.metrics})
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td>{n}</td>"
        f"<td>{_e(dt.datetime.fromtimestamp(r.created_at, dt.UTC).strftime('%Y-%m-%d %H:%M'))}"
        f" UTC</td><td>{_e(labels.get(r.trial_id, r.selection.get('trial', r.trial_id)))}</td>"
        f"<td>{_e(_rule(r.selection))}, step {_e(r.selection.get('checkpoint_step', '?'))}</td>"
        + "".join(f"<td class='num'>{_e(format_value(r.metrics.get(k)))}</td>" for k in names)
        + "</tr>" for n, r in enumerate(rows, 1))
    times = f"{len(rows)} time{'' if len(rows) == 1 else 's'}"
    return (f"<section id='final-eval' style='{_STYLE}'><h2>Final evaluation (test set)</h2>"
            f"<p><strong>The test set has been looked at {times}.</strong> These are test-set "
            "numbers of trials chosen on the validation set; nothing else on this page uses the "
            "test set, and choosing among these numbers would make them validation numbers "
            "(docs/final-evaluation.md).</p><table><thead><tr><th>#</th><th>when</th>"
            f"<th>trial</th><th>selection</th>{head}</tr></thead><tbody>{body}</tbody></table>"
            "</section>")


def with_final_evals(page: str, store: StoreAPI, experiment: str) -> str:
    """``page`` with the final-evaluation section of ``experiment`` inserted before the
    tracking table (unchanged when the test set has not been looked at)."""
    exp = store.require_experiment(experiment)
    rows = store.final_evals(exp.id)
    if not rows:
        return page
    labels = {t.id: f"{t.study} #{t.index}" for t in store.trials(exp.id)}
    section = final_evals_html(rows, labels)
    return page.replace(_ANCHOR, section + _ANCHOR, 1) if _ANCHOR in page else page + section

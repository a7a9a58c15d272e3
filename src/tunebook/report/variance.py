"""The report's "Study variance" section (experiments with ``search.seeds``)."""

from __future__ import annotations

import html

from tunebook.analysis.variance import StudyVariance
from tunebook.core.formatting import format_value

__all__ = ["variance_html"]


def _cell(v: float | None) -> str:
    return "-" if v is None else html.escape(format_value(v))


def variance_html(sv: StudyVariance | None, metric: str) -> str:
    """The section: per scientific study, its best value under each search seed, their mean ±
    sd, and one sentence on whether the comparison holds across seeds ("" without seeds)."""
    if sv is None:
        return ""
    head = "".join(f"<th class='num'>seed {s}</th>" for s in sv.seeds)
    rows = []
    for st in sv.studies:
        cells = "".join(f"<td class='num'>{_cell(v)}</td>" for _, v in st.bests)
        spread = (f"{_cell(st.mean)} ± {_cell(st.sd)}" if st.sd is not None
                  else _cell(st.mean))
        rows.append(f"<tr><td>{html.escape(st.study)}</td>{cells}"
                    f"<td class='num'>{spread}</td></tr>")
    return (
        "<section id='study-variance'><h2>Study variance</h2>"
        f"<p class='small muted'>Each study's search repeated with {len(sv.seeds)} quasi-random "
        f"seeds: the best {html.escape(metric)} of each study under each seed (the first seed "
        "is the search the rest of this report reads), and their mean ± sd.</p>"
        f"<table><thead><tr><th>study</th>{head}<th class='num'>mean ± sd</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<p class='verdict'>{html.escape(sv.sentence())}</p></section>")

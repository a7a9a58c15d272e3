"""The report's "Trial variance" section, for experiments whose studies are seed replicates.

An experiment without a nuisance search (``nuisance: {}``, what ``tunebook retrain`` writes)
runs every trial of a study with the same hyperparameters and its own training seed: the
spread within a study is the trial variance the playbook asks for before a launch decision.
The section tabulates, per configuration (study), the mean ± sample standard deviation over
the seeds, min, max and n (infeasible and failed seeds counted apart), and draws each seed
(grey) with the mean and a ±1 sd error bar (the ``variance`` plot of plots.js).
"""

from __future__ import annotations

import html
import json
from typing import Any

from tunebook.analysis.data import ExperimentData
from tunebook.analysis.replicates import study_stats
from tunebook.core.formatting import finite_json
from tunebook.core.formatting import format_value as _fmt
from tunebook.core.numeric import finite

__all__ = ["variance_rows", "variance_section"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def variance_rows(data: ExperimentData) -> list[dict[str, Any]]:
    """Per study: ``study``, ``values`` (the completed seeds' objective values), ``n``,
    ``mean``, ``sd``, ``min``, ``max``, ``infeasible``, ``failed``."""
    rows = []
    for study in data.studies:
        trials = [t for t in data.trials if t.study == study]
        values = [float(v) for t in trials if t.status == "completed"
                  for v in [finite(data.value(t))] if v is not None]
        rows.append({"study": study, "values": values, "n": len(values),
                     **study_stats(values),
                     "infeasible": sum(t.status == "infeasible" for t in trials),
                     "failed": sum(t.status == "failed" for t in trials)})
    return rows


def variance_section(data: ExperimentData) -> str:
    """The section's HTML, or ``""`` when the experiment searches nuisance hyperparameters
    (its studies are then not replicates)."""
    if not data.experiment.replicates:
        return ""
    rows = variance_rows(data)
    body = "".join(
        f"<tr><td>{_e(r['study'])}</td><td class='num'>{_e(_fmt(r['mean']))}"
        f"{' ± ' + _e(_fmt(r['sd'])) if r['sd'] is not None else ''}</td>"
        f"<td class='num'>{_e(_fmt(r['min']))}</td><td class='num'>{_e(_fmt(r['max']))}</td>"
        f"<td class='num'>{r['n']}</td><td class='num'>{r['infeasible'] + r['failed']}</td>"
        f"</tr>" for r in rows)
    spec = {"label": data.metric + (" (final)" if data.final else ""),
            "groups": [{"study": r["study"], "values": r["values"], "mean": r["mean"],
                        "sd": r["sd"]} for r in rows]}
    marks = sum(r["n"] + (1 if r["n"] else 0) for r in rows)
    spec_json = json.dumps(finite_json(spec), allow_nan=False)
    plot = (f"<div class='grid'><div class='plot' data-plot='variance' data-expected='{marks}' "
            f"data-spec='{_e(spec_json)}'></div></div>" if marks else
            "<p class='empty'>No completed seed yet.</p>")
    which = "final value" if data.final else "best over training"
    return (
        "<section id='variance'><h2>Trial variance</h2><p class='muted small'>Every trial of a "
        "study has the same hyperparameters and its own training seed: the spread is the trial "
        "variance. The playbook adopts a change only when it beats the baseline by more than "
        "this (<code>tunebook compare</code>). Mean ± sample standard deviation over the "
        f"seeds of {_e(data.metric)} ({which}); infeasible and failed seeds are counted "
        f"apart.</p>{plot}<table><thead><tr><th>configuration</th><th>mean ± sd</th>"
        "<th>min</th><th>max</th><th>n</th><th>infeasible / failed</th></tr></thead>"
        f"<tbody>{body}</tbody></table></section>")

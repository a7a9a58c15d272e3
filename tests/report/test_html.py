"""The report as HTML text: sections, escaping, partial data, tracking table files."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tunebook.analysis import load
from tunebook.core.formatting import format_value
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.report import build_report, write_report
from tunebook.store.sql import Store

from conftest import write_experiment
from reportdata import synthetic

EVIL = "<script>alert(1)</script>"


def _data_json(page: str) -> dict:  # type: ignore[type-arg]
    m = re.search(r"<script type='application/json' id='tunebook-data'>(.*?)</script>", page,
                  re.S)
    assert m is not None
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def test_sections_and_files(tmp_path: Path) -> None:
    store = synthetic(tmp_path / "r")
    path, report = write_report(store, "synthetic", tmp_path / "out" / "report.html")
    page = path.read_text()
    for anchor in ("setup", "tracking", "isolation", "axis", "curves", "enough", "findings"):
        assert f"id='{anchor}'" in page
    assert page.count("<script>") == 1  # the plotting script is embedded once
    data = _data_json(page)
    assert [a["hyperparameter"] for a in data["axis"]] == ["act", "learning_rate", "x"]
    assert all(len(a["points"]) == 16 for a in data["axis"])
    infeasible = [p for p in data["axis"][1]["points"] if not p[4]]
    assert infeasible and all(p[1] is None and p[0] > 2.0 for p in infeasible)
    assert len(data["curves"]) == 2 and len(data["curves"][0]["plots"][0]["series"]) == 3
    rows = list(csv.DictReader(io.StringIO(path.with_suffix(".csv").read_text())))
    assert [r["study"] for r in rows] == ["y=0.0", "y=-0.2"]
    assert {"config", "notes", "trials", "best_value", "best_step", "reproduce"} <= set(rows[0])
    assert "synthetic.yaml" in rows[0]["config"] and "tunebook run" in rows[0]["reproduce"]
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# synthetic") and "| y=0.0 |" in md
    assert report.findings == tuple(report.findings)


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, name=EVIL, goal=EVIL, scientific={"arm": [EVIL, "b"]},
                            search={"trials": 2})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    store = Store.at_root(tmp_path / "r")
    store.add_note(store.require_experiment(EVIL).id, EVIL)
    page = build_report(load(store, EVIL)).html
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Inside the JSON data block the string is escaped too, so it cannot close the element.
    assert "\\u003cscript\\u003ealert(1)" in page
    assert _data_json(page)["studies"][0] == f"arm={EVIL}"


def test_no_completed_trial_all_infeasible_and_one_evaluation(tmp_path: Path) -> None:
    # All infeasible.
    path = write_experiment(tmp_path, workload="toy:diverge", search={"trials": 2})
    run(Experiment.from_yaml(path), root=tmp_path / "a", workers=0)
    page = build_report(load(Store.at_root(tmp_path / "a"), "toy")).html
    assert "No study has a completed trial" in page
    assert "No completed trial yet." in page
    # Registered but never run: every trial pending.
    store = Store.at_root(tmp_path / "b")
    exp = Experiment.from_yaml(path)
    from tunebook.execution.runner import materialize

    studies, trials = materialize(exp)
    store.register(exp.name, exp.identity(), exp.to_dict(), studies, trials)
    page = build_report(load(store, "toy")).html
    assert "No finished trial to plot yet." in page and "No completed trial yet." in page
    # One evaluation per trial.
    path = write_experiment(tmp_path, max_train_steps=10, eval_every=10, search={"trials": 2})
    run(Experiment.from_yaml(path), root=tmp_path / "c", workers=0)
    report = build_report(load(Store.at_root(tmp_path / "c"), "toy"))
    assert "reached the best loss" in report.html


def test_objective_can_change_without_rerunning(tmp_path: Path) -> None:
    store = synthetic(tmp_path / "r", trials=4)
    by_final = _data_json(build_report(load(store, "synthetic", final=True)).html)
    by_train = _data_json(build_report(load(store, "synthetic", metric="train_loss")).html)
    assert by_final["objective_label"] == "val_loss (final)"
    assert by_train["metric"] == "train_loss"
    assert by_train["axis"][0]["points"] != by_final["axis"][0]["points"]


def test_recommendations_of_procedures_are_shown_newest_first(tmp_path: Path) -> None:
    from tunebook.analysis.findings import Finding
    from tunebook.procedures import Recommendation

    store = synthetic(tmp_path / "r")
    path, _ = write_report(store, "synthetic", tmp_path / "out" / "report.html")
    assert "id='recommendations'" not in path.read_text()  # no procedure ran: no section
    older = Recommendation("batch_size", "synthetic", "Use batch size 64.", {"steps_s": 12.5})
    newer = Recommendation(
        "steps", "synthetic", "Train for <2000> steps.", {"max_train_steps": 2000},
        (Finding(check="still_improving", severity="warning", message="still improving",
                 action="train longer", section="Deciding how long to train"),),
        ("synthetic-lr-sweep",))
    for rec in (older, newer):
        store.add_recommendation(rec.experiment, rec.procedure, rec.as_dict())
    page = write_report(store, "synthetic", tmp_path / "out" / "report.html")[0].read_text()
    section = page[page.index("id='recommendations'"):page.index("id='tracking'")]
    assert section.index("data-procedure='steps'") < section.index("data-procedure='batch_size'")
    assert "Train for &lt;2000&gt; steps." in section and "synthetic-lr-sweep" in section
    assert "data-check='still_improving'" in section and "Use batch size 64." in section


# ----------------------------------------------------------------------------- clipping
def _digits(tmp_path: Path, fixed: dict[str, object] | None = None) -> Store:
    """A linear model and an MLP on digits (4 trials each, 300 steps): grad_norm every step."""
    path = write_experiment(
        tmp_path, name="clip", workload="tunebook.workloads.digits:train_mlp",
        objective={"metric": "val_error", "goal": "minimize"}, max_train_steps=300,
        eval_every=100, scientific={"num_layers": [0, 2]},
        nuisance={"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2,
                                    "scale": "log"}},
        search={"algorithm": "quasi_random", "trials": 4, "seed": 1},
        fixed={"width": 32, **(fixed or {})})
    run(Experiment.from_yaml(path), root=tmp_path / "r", workers=0)
    return Store.at_root(tmp_path / "r")


def test_clipping_threshold_per_study_from_every_step_of_the_best_three(tmp_path: Path) -> None:

    store = _digits(tmp_path)
    data = load(store, "clip")
    report = build_report(data)
    payload = _data_json(report.html)
    got = {g["study"]: g for g in payload["grad_norm"]}
    assert set(got) == {"num_layers=0", "num_layers=2"}
    # Recomputed from the store: the 3 best trials by val_error, every update's norm.
    rows = store.measurements(metric="grad_norm")
    for study, g in got.items():
        best = sorted((t for t in data.trials if t.study == study),
                      key=lambda t: (t.best_value, t.index))[:3]
        norms = [v for tid, _, _, v in rows if tid in {t.id for t in best}]
        steps = [s for tid, s, _, _ in rows if tid == best[0].id]
        assert steps == list(range(1, 301))  # one norm per update
        assert g["trials"] == [t.label for t in best]
        assert g["n_norms"] == len(norms) == 900 and g["per_step"]
        assert g["threshold"] == pytest.approx(np.quantile(norms, 0.9), rel=1e-9)
        assert g["histogram"]["marker"] == g["threshold"]
        assert sum(g["histogram"]["counts"]) == 900 and len(g["histogram"]["counts"]) == 30
        assert f"<b>{format_value(g['threshold'])}</b>, the 90th percentile" in report.html
    # Not pooled: a linear model and an MLP have different norms.
    assert got["num_layers=0"]["threshold"] != pytest.approx(got["num_layers=2"]["threshold"],
                                                             rel=0.05)
    assert report.html.count("data-plot='grad-norm-hist'") == 2
    # The page stays small: per-step norms travel as 30 bin counts per study, and as curves
    # downsampled to at most 200 points (best trials) or 100 (the any-trial picker).
    assert len(json.dumps(payload["grad_norm"])) < 8000
    for study in payload["curves"]:
        for plot in study["plots"]:
            assert all(len(series[1]) <= 200 for series in plot["series"])
    assert all(len(c["grad_norm"][0]) <= 100 for c in payload["trials"].values())
    assert "clipping" not in {f.check for f in report.findings}  # no grad_clip: silent


def test_aggressive_clipping_is_a_finding_with_every_trial(tmp_path: Path) -> None:
    store = _digits(tmp_path, {"grad_clip": 1e-3})  # far below any norm: every step clipped
    report = build_report(load(store, "clip"))
    found = [f for f in report.findings if f.check == "clipping"]
    assert sorted(f.study or "" for f in found) == ["num_layers=0", "num_layers=2"]
    # The share each trial reported at its last evaluation (every update counted).
    last = {tid: v for tid, _, _, v in store.measurements(metric="clip_fraction")}
    for f in found:
        assert len(f.trials) == 4 and f.advice == {"grad_clip": "higher"}
        for e in f.evidence["trials"]:
            assert e["source"] == "clip_fraction" and e["grad_clip"] == 1e-3
            assert e["clip_fraction"] == last[e["id"]] > 0.5
    assert report.html.count("data-check='clipping'") == 2
    assert "num_layers=0 #0 at 0.001 (100% of updates)" in report.html


def test_the_isolation_verdict_is_shown_once_with_its_numbers(tmp_path: Path) -> None:
    from tunebook.analysis.comparison import compare

    store = synthetic(tmp_path / "r")
    data = load(store, "synthetic")
    report = build_report(data)
    cmp = compare(data)
    assert cmp is not None
    iso = [f for f in report.findings if f.check == "isolation"]
    assert len(iso) == 1 and iso[0].evidence["verdict"] == cmp.verdict  # in findings.json
    page = report.html
    section = page[page.index("<section id='isolation'>"):]
    section = section[:section.index("</section>")]
    assert f"data-verdict='{cmp.verdict}'" in section
    assert html_text(cmp.summary()) in section
    for row in ("gap", "shared nuisance points (pairs)", "step noise (late, best trials)",
                "best-of-n sampling IQR", "resolution of the metric", "spread (largest part)",
                "what limits the comparison"):
        assert f"<th>{html_text(row)}</th>" in section
    # stated once: the findings list leaves the isolation finding to this section
    assert page.count("Verdict: ") == 1
    assert "data-check='isolation'" not in page


def html_text(text: str) -> str:
    import html

    return html.escape(text)


def test_gradient_norm_histogram_goes_log_when_positive_norms_span_decades() -> None:
    from tunebook.report.html import _histogram

    # late norms underflowed to exactly 0 at zero training loss, early ones near 30
    norms = [0.0] * 50 + [0.01 * 1.1 ** i for i in range(80)]
    h = _histogram(norms)
    assert h["log"] and h["edges"][0] == pytest.approx(0.01)
    assert sum(h["counts"]) == 130 and h["counts"][0] >= 50  # the zeros in the first bar
    flat = _histogram([1.0 + 0.01 * i for i in range(100)])
    assert not flat["log"] and sum(flat["counts"]) == 100

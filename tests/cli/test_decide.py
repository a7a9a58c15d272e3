"""``tunebook compare``, ``launch``, ``launches`` and the project page, on constructed
replicates (SQLite; the launch table's PostgreSQL round trip is in tests/store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replicatedata import fake
from tunebook.cli import main
from tunebook.store.sql import Store


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    s = Store.at_root(r)
    fake(s, "base", {"a": [0.30, 0.25, 0.20]})
    fake(s, "base-retrain", {"a #2": [0.200, 0.210, 0.190, 0.205, 0.195]}, follows="base",
         replicates=True)
    fake(s, "round2", {"x": [0.150, 0.155, 0.145, 0.152, 0.148, "infeasible"],
                       "y": [0.205, 0.190, 0.215, 0.200, 0.195]}, follows="base",
         replicates=True)
    fake(s, "acc", {"a": [0.9, 0.91]}, metric="accuracy", goal="maximize")
    s.close()
    return r


def test_compare_clearly_better_in_text(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "compare", "round2/x", "--baseline", "base/a#2",
                         "--root", str(root))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("candidate  round2/x: mean 0.1") and "over 5 seeds" in lines[0]
    assert "1 of 6 replicates infeasible or failed" in lines[0]
    # The trial reference reads its retrain's replicates.
    assert lines[1].startswith("baseline   base/a#2 from base-retrain/a #2: mean 0.2")
    assert "95% interval" in lines[2] and "Welch df" in lines[2]
    assert lines[3].startswith("verdict    BETTER:")
    # A searched study's spread is not the trial variance, and the output says so.
    code, out, _ = cli(capsys, "compare", "round2/x", "--baseline", "base/a", "--root",
                       str(root))
    assert "over 3 trials of a nuisance search (not seed replicates" in out.splitlines()[1]


def test_compare_within_variance_as_json(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "compare", "round2/y", "--baseline", "base/a#2", "--root",
                       str(root), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    c = doc["comparison"]
    assert c["verdict"] == "not proven" and c["low"] < 0 < c["high"]
    assert c["needed_seeds"] > 5
    assert doc["candidate"]["n"] == 5 and doc["baseline"]["source"] == "base-retrain/a #2"
    assert doc["method"].startswith("Welch")


def test_compare_worse_and_one_replicate(root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "compare", "base/a#2", "--baseline", "round2/x", "--root",
                       str(root))
    assert code == 0 and "verdict    WORSE" in out
    code, out, _ = cli(capsys, "compare", "base/a#0", "--baseline", "round2/x", "--root",
                       str(root))
    assert code == 0 and "(variance unknown)" in out.splitlines()[0]
    assert "NOT PROVEN" in out and "single replicate" in out and "retrain" in out


def test_compare_refuses_another_metric(root: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "compare", "acc", "--baseline", "base", "--root", str(root))
    assert code == 2 and len(err.splitlines()) == 1
    assert "only results of the same metric and goal" in err and "'accuracy'" in err


def test_compare_across_stores(root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    other = Store.at_root(tmp_path / "other")
    fake(other, "elsewhere", {"s": [0.5, 0.52, 0.51]})
    other.close()
    code, out, _ = cli(capsys, "compare", "round2/x", "--baseline", "elsewhere",
                       "--baseline-store", f"sqlite:///{tmp_path / 'other' / 'tunebook.db'}",
                       "--root", str(root))
    assert code == 0 and "BETTER" in out


def test_launch_records_the_evidence_and_refuses_what_is_not_better(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "launch", "base/a#2", "--note", "first baseline", "--root",
                       str(root))
    assert code == 0 and out.startswith("launched base/a#2: mean 0.2")
    code, _, err = cli(capsys, "launch", "round2/y", "--over", "base/a#2", "--note", "meh",
                       "--root", str(root))
    assert code == 2 and "not proven against 'base/a#2', not better" in err
    code, out, _ = cli(capsys, "launch", "round2/x", "--over", "base/a#2", "--note",
                       "<b>shorter</b> & better", "--root", str(root))
    assert code == 0 and "better than base/a#2" in out
    code, out, _ = cli(capsys, "launches", "--root", str(root))
    assert code == 0
    rows = out.splitlines()[2:]
    assert len(rows) == 2 and "base/a#2" in rows[0] and "first baseline" in rows[0]
    assert "round2/x" in rows[1] and "better" in rows[1] and "(n=5)" in rows[1]
    code, out, _ = cli(capsys, "launches", "--root", str(root), "--format", "json")
    doc = json.loads(out)
    assert doc[0]["replicates"]["source"] == "base-retrain/a #2"
    assert doc[1]["comparison"]["over"] == "base/a#2"
    assert doc[1]["params"] == {"arm": "x", "learning_rate": 0.1, "noise": 0.01}
    code, out, _ = cli(capsys, "launch", "round2/y", "--over", "base/a#2", "--note", "anyway",
                       "--force", "--root", str(root))
    assert code == 0 and len(Store.at_root(root).launches()) == 3
    code, out, _ = cli(capsys, "launch", "base/a#0", "--note", "one seed", "--root", str(root))
    assert code == 0 and "single replicate" in out
    assert "no comparison recorded against the previous baseline round2/y" in out


def test_project_page_lists_rounds_and_launches(root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "launch", "round2/x", "--note", "<script>x</script>", "--root",
               str(root))[0] == 0
    assert cli(capsys, "note", "base", "lr & more", "--root", str(root))[0] == 0
    code, out, _ = cli(capsys, "report", "--root", str(root))
    assert code == 0 and out.startswith("project page: ")
    page = (root / "reports" / "index.html").read_text()
    for name in ("base", "base-retrain", "round2", "acc"):
        assert f"<a href='{name}.html'>{name}</a>" in page
        assert (root / "reports" / f"{name}.html").exists()
    assert "round 1: <a href='base.html'>base</a> → round 2: <a href='round2.html'>" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "lr &amp; more" in page
    assert "id='launch-table'" in page
    # --all writes the same page.
    assert cli(capsys, "report", "--all", "--root", str(root))[0] == 0


def test_retrain_writes_under_the_root_runs_and_feeds_compare(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunebook.experiment import Experiment

    argv = ["retrain", "round2", "--trial", "x#1", "--trial", "round2/y#3", "--seeds", "3",
            "--root", str(root), "--workers", "1", "--quiet", "--no-report"]
    code, out, _ = cli(capsys, *argv, "--write-only")
    # No file round2 was run from: the file goes under the root.
    path = root / "round2-retrain.yaml"
    assert code == 0 and f"2 configurations x 3 seeds, written to {path}" in out
    exp = Experiment.from_yaml(path)
    assert [s.name for s in exp.studies()] == ["x #1", "y #3"] and exp.search.trials == 3
    assert exp.follows == "round2" and dict(exp.fixed) == {"noise": 0.01}
    assert Store.at_root(root).get_experiment("round2-retrain") is None  # written, not run
    code, out, _ = cli(capsys, *argv)
    assert code == 0 and "6 completed" in out
    # The trial reference now means its retrain's three seeds.
    code, out, _ = cli(capsys, "compare", "round2/x#1", "--baseline", "round2/y#3", "--root",
                       str(root), "--format", "json")
    doc = json.loads(out)
    assert doc["candidate"]["source"] == "round2-retrain/x #1" and doc["candidate"]["n"] == 3
    assert doc["baseline"]["source"] == "round2-retrain/y #3"
    # An edited file is the user's: the command refuses to overwrite or run it.
    path.write_text(path.read_text().replace("trials: 3", "trials: 4"))
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "exists with other content" in err and len(err.splitlines()) == 1
    # Another retrain of the same experiment under its own name and file.
    code, out, _ = cli(capsys, *argv, "--as", "round2 seeds")
    assert code == 0 and str(root / "round2_seeds-") in out
    assert Store.at_root(root).get_experiment("round2 seeds") is not None

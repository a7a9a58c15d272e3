"""Study variance (search.seeds, run --search-seeds) and next-round, end to end through the CLI
with the synthetic workload; bad inputs are one line on stderr (test_bad_input.py's contract)."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.analysis import load
from tunebook.analysis.variance import primary, study_variance
from tunebook.cli import main
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

BASE: dict[str, Any] = {
    "name": "sv",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "max_train_steps": 40,
    "eval_every": 10,
    "search": {"trials": 5, "seeds": [0, 1, 2]},
    "scientific": {"y": [0.0, -0.2]},
    "nuisance": {"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "scale": "log"},
                 "x": {"type": "float", "low": -1, "high": 1}},
    "fixed": {"schedule": "linear", "warmup_steps": 5, "decay_steps": 30},
}


def write(folder: Path, doc: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunebook: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "reports" not in p.parts}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study-variance experiment run to the end: 2 studies x 3 search seeds x 5 trials."""
    tmp = tmp_path_factory.mktemp("sv")
    path = write(tmp, BASE)
    assert main(["run", str(path), "--root", str(tmp / "tb"), "--workers", "0", "--quiet"]) == 0
    return tmp


def test_every_study_is_repeated_per_search_seed(finished: Path) -> None:
    store = Store.at_root(finished / "tb", create=False)
    exp = store.require_experiment("sv")
    studies = {s.name: s.seed for s in store.studies(exp.id)}
    assert studies == {"y=0.0": 0, "y=-0.2": 0, "y=0.0@seed=1": 1, "y=-0.2@seed=1": 1,
                       "y=0.0@seed=2": 2, "y=-0.2@seed=2": 2}
    data = load(store, "sv")
    assert len(data.trials) == 30 and all(t.status == "completed" for t in data.trials)

    def points(study: str) -> list[tuple[float, float]]:
        return [(t.params["learning_rate"], t.params["x"]) for t in data.trials
                if t.study == study]
    # Paired within a seed (the same nuisance points), other points under another seed.
    assert points("y=0.0") == points("y=-0.2")
    assert points("y=0.0@seed=1") == points("y=-0.2@seed=1")
    assert points("y=0.0") != points("y=0.0@seed=1") != points("y=0.0@seed=2")
    # The report's other sections read the primary seed only, and so do the checks, however
    # they are called (trials pair by index only within one seed).
    assert primary(data).studies == ("y=0.0", "y=-0.2")
    from tunebook.analysis.checks import run_checks

    assert run_checks(data) == run_checks(primary(data))
    iso = [f for f in run_checks(data) if f.check == "isolation"]
    assert all(set(f.evidence.get("others", [])) == set() for f in iso)
    sv = study_variance(data)
    assert sv is not None and sv.seeds == (0, 1, 2)
    for st in sv.studies:
        bests = [min(t.best_value for t in data.trials  # type: ignore[type-var]
                     if t.study == (st.study if s == 0 else f"{st.study}@seed={s}"))
                 for s in (0, 1, 2)]
        assert [v for _, v in st.bests] == pytest.approx(bests)
        assert st.sd is not None and st.sd > 0
    # Synthetic: y's optimum is -0.2, by more than the search's luck here.
    assert sv.holds is True and "holds" in sv.sentence()


def test_resume_adds_nothing_and_search_seeds_option_is_the_same_experiment(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = copy.deepcopy(BASE)
    doc["search"] = {"trials": 5}
    path = write(finished, doc, "plain.yaml")
    store = Store.at_root(finished / "tb", create=False)
    before = [(t.id, t.attempts, t.best_value) for t in
              store.trials(store.require_experiment("sv").id)]
    code, out, err = cli(capsys, "run", str(path), "--root", str(finished / "tb"),
                         "--workers", "0", "--quiet", "--no-report", "--search-seeds", "3")
    assert code == 0, err
    assert "experiment 'sv': 30 completed" in out
    # The same trials, none run again.
    assert [(t.id, t.attempts, t.best_value) for t in
            store.trials(store.require_experiment("sv").id)] == before
    assert Experiment.from_yaml(write(finished, BASE, "again.yaml")).identity() == \
        Experiment.from_dict(store.require_experiment("sv").config).identity()


def test_report_has_the_study_variance_section(finished: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out_file = finished / "report.html"
    code, out, err = cli(capsys, "report", "sv", "--root", str(finished / "tb"),
                         "--out", str(out_file))
    assert code == 0, err
    page = out_file.read_text()
    section = page[page.index("id='study-variance'"):]
    section = section[:section.index("</section>")]
    text = re.sub(r"<[^>]+>", " ", section)
    assert "Study variance" in text and "seed 2" in text and "±" in text
    assert "quasi_random, seeds 0, 1, 2, 5 trials per study" in page
    assert "y=0.0" in text and "@seed" not in text
    assert "comparison holds across search seeds" in text
    # The comparison and tracking table read the primary search only.
    tracking = page[page.index("id='tracking'"):page.index("id='study-variance'")]
    assert "@seed=" not in tracking
    code, out, err = cli(capsys, "findings", "sv", "--root", str(finished / "tb"))
    assert code == 0 and "@seed=" not in out


def test_one_seed_experiment_has_no_section_and_keeps_its_identity() -> None:
    doc = copy.deepcopy(BASE)
    doc["search"] = {"trials": 5, "seed": 0}
    exp = Experiment.from_dict(doc)
    assert "seeds" not in exp.to_dict()["search"]
    old_identity = exp.identity()
    doc["search"] = {"trials": 5, "seeds": [0, 1]}
    assert Experiment.from_dict(doc).identity() != old_identity


def test_next_round_writes_a_valid_linked_file(finished: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out_file = finished / "rounds" / "next.yaml"
    code, out, err = cli(capsys, "next-round", "sv", "--steps", "160", "--top", "2",
                         "--narrow", "--root", str(finished / "tb"), "--output", str(out_file))
    assert code == 0 and err == ""
    text = out_file.read_text()
    assert out.startswith(text) and "tunebook run" in out
    new = Experiment.from_yaml(out_file)
    assert (new.name, new.follows, new.max_train_steps, new.eval_every) == ("sv-r2", "sv", 160,
                                                                            40)
    assert new.fixed["warmup_steps"] == 5
    assert new.fixed["decay_steps"] == round(30 * 155 / 35)
    data = load(Store.at_root(finished / "tb", create=False), "sv")
    for study in data.studies:
        for t in data.ranked(study)[:2]:
            for name, hp in new.nuisance.items():
                lo, hi = hp.bounds  # type: ignore[misc]
                assert lo <= t.params[name] <= hi
    # Never overwritten.
    code, _, err = cli(capsys, "next-round", "sv", "--steps", "160",
                       "--root", str(finished / "tb"), "--output", str(out_file))
    one_error(code, err, "--output", "exists")


def test_next_round_top_k_keeps_the_best_configurations(
        finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = finished / "listed.yaml"
    code, out, err = cli(capsys, "next-round", "sv", "--steps", "400", "--top", "3",
                         "--root", str(finished / "tb"), "--output", str(out_file))
    assert code == 0, err
    new = Experiment.from_yaml(out_file)
    data = load(Store.at_root(finished / "tb", create=False), "sv")
    best = data.ranked()[:3]
    assert [c["name"] for c in new.configs] == ["top1", "top2", "top3"]
    for entry, t in zip(new.configs, best, strict=True):
        assert {k: v for k, v in entry.items() if k != "name"} == {
            k: v for k, v in t.params.items() if k not in new.fixed}
        assert t.study in out_file.read_text()  # the comment says where it came from
    assert len(new.nuisance) == 0 and new.search.trials == 1 and not new.scientific
    assert new.fixed["decay_steps"] == round(30 * 395 / 35)
    assert (new.follows, new.max_train_steps, new.eval_every) == ("sv", 400, 100)
    # It runs: one long run per configuration.
    code, out, err = cli(capsys, "run", str(out_file), "--root", str(finished / "tb"),
                         "--workers", "0", "--quiet", "--no-report")
    assert code == 0, err
    assert "sv-r2" in out and "3 completed" in out


def test_steps_not_larger_warns_on_one_line(finished: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "next-round", "sv", "--steps", "40", "--root",
                         str(finished / "tb"), "--output", str(finished / "same.yaml"))
    assert code == 0
    assert err.count("\n") == 1 and "warning" in err and "rounds usually grow" in err


@pytest.mark.parametrize(("argv", "fragments"), [
    ("next-round nope --steps 10", ("'nope'",)),
    ("next-round sv --steps 0", ("--steps", "must be >= 1", "got 0")),
    ("next-round sv --steps -5", ("--steps", "got -5")),
    ("next-round sv --steps many", ("--steps", "'many'")),
    ("next-round sv", ("--steps",)),
    ("next-round sv --steps 100 --top 0", ("--top", "got 0")),
    ("next-round sv --steps 100 --top 6 --narrow", ("--top", "6 is more than the 5 completed",
                                                    "--narrow --top 5")),
    ("next-round sv --steps 100 --top 31", ("--top", "31 is more than the 30 distinct")),
    ("next-round sv --steps 100 --output |", ("--output", "file name")),
    ("next-round sv --steps 4294967296", ("--steps", "valid experiment")),
])
def test_next_round_bad_input(finished: Path, capsys: pytest.CaptureFixture[str], argv: str,
                              fragments: tuple[str, ...]) -> None:
    before = snapshot(finished / "tb")
    args = [" " if a == "|" else a for a in argv.split()]  # "|": a blank file name
    code, _, err = cli(capsys, *args, "--root", str(finished / "tb"))
    one_error(code, err, *fragments)
    assert snapshot(finished / "tb") == before


@pytest.mark.parametrize(("search", "fragments"), [
    ({"seeds": [0, 0]}, ("search.seeds", "must differ", "0 twice")),
    ({"seeds": [3]}, ("search.seeds", "2 to 100", "got 1")),
    ({"seeds": []}, ("search.seeds", "list of integers")),
    ({"seeds": "0,1"}, ("search.seeds", "list of integers")),
    ({"seeds": [0, "one"]}, ("search.seeds[1]", "integer")),
    ({"seeds": [0, -1]}, ("search.seeds[1]",)),
    ({"seed": 4, "seeds": [0, 1]}, ("search.seed", "first of search.seeds")),
    ({"trials": 20000, "seeds": [0, 1, 2]}, ("search.seeds", "100000")),
    ({"algorithm": "grid", "seeds": [0, 1]}, ("search.seeds", "grid")),
    ({"trials": 1, "seeds": [0, 1]}, ("search.seeds", "nuisance space is empty")),
])
def test_bad_search_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          search: dict[str, Any], fragments: tuple[str, ...]) -> None:
    doc = copy.deepcopy(BASE)
    doc["search"] = search
    if search.get("trials") == 1:
        doc["nuisance"] = {}
    code, _, err = cli(capsys, "run", str(write(tmp_path, doc)), "--root", str(tmp_path / "tb"))
    one_error(code, err, *fragments)
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize(("value", "fragment"), [("0", "got 0"), ("x", "'x'"), ("101", "2 to")])
def test_bad_search_seeds_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 value: str, fragment: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["search"] = {"trials": 2}
    code, _, err = cli(capsys, "run", str(write(tmp_path, doc)), "--root", str(tmp_path / "tb"),
                       "--search-seeds", value)
    one_error(code, err, "seeds", fragment)
    assert not (tmp_path / "tb").exists()

"""tunebook.load: the notebook view's frames are the command line's JSON, row for row; its
findings are ``tunebook findings``'s; it renders in Jupyter; it holds no store connection
outside a ``with`` block; pandas missing and a wrong name are one clear line each."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

import tunebook
from tunebook.cli import main
from tunebook.core.formatting import finite_json
from tunebook.errors import StoreError, TunebookError
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.report.view import PARAM_PREFIX
from tunebook.store.sql import Store

pd = pytest.importorskip("pandas")

NAME = "view"
DOC: dict[str, Any] = {
    "name": NAME,
    "goal": "does x matter?",
    "workload": "tunebook.workloads.synthetic:quadratic",
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "max_train_steps": 20,
    "eval_every": 5,
    "search": {"algorithm": "quasi_random", "trials": 4, "seed": 0},
    "scientific": {"x": [0.0, 0.3]},
    # Up to 5.0: the learning rates above 2.0 diverge, so some trials are infeasible (NaN).
    "nuisance": {"learning_rate": {"type": "float", "low": 0.001, "high": 5.0, "scale": "log"}},
    # Only one study searches y: its column is empty in the other study's rows.
    "nuisance_for": {"x=0.3": {"y": {"type": "float", "low": -0.5, "high": 0.5}}},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("view")
    path = tmp / "experiment.yaml"
    path.write_text(yaml.safe_dump(DOC, sort_keys=False))
    run(Experiment.from_yaml(path), root=tmp / "tunebook", workers=0)
    return tmp / "tunebook"


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _plain(value: Any) -> Any:
    """A frame cell as the JSON has it: missing and NaN are null, NumPy scalars are Python's."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("options", [[], ["--metric", "train_loss", "--final"]])
def test_trials_frame_is_the_trials_json_row_for_row(
        root: Path, capsys: pytest.CaptureFixture[str], options: list[str]) -> None:
    rows = _cli_json(capsys, "trials", NAME, "--root", str(root), "--format", "json", *options)
    metric = options[1] if options else None
    frame = tunebook.load(NAME, root=root, metric=metric, final=bool(options)).trials_frame()
    assert len(rows) == len(frame) == 8
    statuses = {r["status"] for r in rows}
    assert statuses == {"completed", "infeasible"}  # both kinds of row are compared
    names = sorted({p for r in rows for p in r["params"]})
    assert names == ["learning_rate", "x", "y"]
    assert any("y" not in r["params"] for r in rows)  # a conditional column's empty cells
    assert list(frame.columns) == ["trial_id", *[k for k in rows[0] if k not in (
        "params", "trial_id")], *[PARAM_PREFIX + p for p in names]]
    for row, (_, cells) in zip(rows, frame.iterrows(), strict=True):
        for key, value in row.items():
            if key == "params":
                cell = {p: _plain(cells[PARAM_PREFIX + p]) for p in names}
                assert {p: v for p, v in cell.items() if p in value} == value
                assert all(cell[p] is None for p in names if p not in value)
            else:
                assert _plain(cells[key]) == value, key
    assert str(frame["best_step"].dtype) == "Int64"


def test_trials_frame_groups_like_a_frame(root: Path) -> None:
    frame = tunebook.load(NAME, root=root).trials_frame()
    best = frame[frame.status == "completed"].groupby("study")["best_value"].min()
    with closing(Store.at_root(root)) as store:
        records = tunebook.trial_records(store, NAME)
    for study, value in best.items():
        assert value == min(r.best_value for r in records
                            if r.study == study and r.status == "completed"
                            and r.best_value is not None)


@pytest.fixture
def store(root: Path) -> Iterator[Store]:
    """The root's store, closed after the test even when it fails (an open SQLite store keeps
    the -wal file that test_no_connection_is_held_outside_a_with_block looks for)."""
    with closing(Store.at_root(root)) as opened:
        yield opened


def test_measurements_frame_reads_only_the_metrics_asked_for(root: Path, store: Store) -> None:
    asked: list[str | None] = []
    real = store.measurements

    def recording(*args: Any, **kw: Any) -> list[tuple[int, int, str, float]]:
        asked.append(kw.get("metric"))
        return real(*args, **kw)

    store.measurements = recording  # type: ignore[method-assign]
    view = tunebook.load(NAME, root=root, store=store)
    asked.clear()
    one = view.measurements_frame("val_loss")
    assert set(asked) == {"val_loss"}
    assert list(one.columns) == ["trial_id", "study", "index", "step", "metric", "value"]
    assert set(one.metric) == {"val_loss"}
    everything = view.measurements_frame()
    assert None in asked
    assert set(everything.metric) >= {"val_loss", "train_loss", "grad_norm"}
    same = everything[everything.metric == "val_loss"].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, same)
    # One row per stored value; each trial's study and index are its row's in trials_frame.
    stored = real(experiment_id=store.require_experiment(NAME).id, metric="val_loss")
    assert len(one) == len(stored)
    trials = view.trials_frame().set_index("trial_id")
    for tid, group in one.groupby("trial_id"):
        assert set(group.study) == {trials.loc[tid, "study"]}
        assert list(group.step) == sorted(group.step)
    two = view.measurements_frame(["val_loss", "train_loss"])
    assert set(two.metric) == {"val_loss", "train_loss"}


def test_an_unknown_metric_names_the_nearest(root: Path) -> None:
    view = tunebook.load(NAME, root=root)
    with pytest.raises(TunebookError, match=r"'val_los'.*did you mean 'val_loss'"):
        view.measurements_frame(["val_los"])
    with pytest.raises(TunebookError, match=r"metric: .*'val_eror'.*did you mean 'val_error'"):
        tunebook.load(NAME, root=root, metric="val_eror")


def test_findings_are_the_findings_command(root: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    expected = _cli_json(capsys, "findings", NAME, "--root", str(root), "--format", "json")
    found = tunebook.load(NAME, root=root).findings()
    assert expected  # the infeasible trials alone make a finding
    assert [json.loads(json.dumps(finite_json(f.as_dict()), default=str)) for f in found
            ] == expected


def test_repr_html_shows_the_best_trial_the_findings_and_the_report(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    best = _cli_json(capsys, "best", NAME, "--root", str(root), "--format", "json")
    top = min((rs[0] for rs in best.values()), key=lambda r: r["best_value"])
    view = tunebook.load(NAME, root=root)
    page = view._repr_html_()
    assert f"Best trial: <b>{top['study']} #{top['index']}</b> (id {top['trial_id']})" in page
    for f in view.findings():
        assert f"] {f.check}</b>" in page
    # The report itself (its plots' data and script), escaped into a sandboxed frame.
    assert "<iframe sandbox='allow-scripts'" in page
    assert "id=&#x27;tunebook-data&#x27;" in page
    assert "tunebook-data" in view.report_html()


def test_no_connection_is_held_outside_a_with_block(root: Path) -> None:
    wal = root / "tunebook.db-wal"
    view = tunebook.load(NAME, root=root)
    view.trials_frame()
    view.findings()
    assert not wal.exists()  # SQLite keeps its -wal file only while a connection is open
    with tunebook.load(NAME, root=root) as held:
        n = len(held.trials_frame())
        assert wal.exists()
        held.measurements_frame("val_loss")
    assert not wal.exists()
    assert len(held.trials_frame()) == n  # a read after close opens the store again
    assert not wal.exists()
    held.close()  # closing twice is harmless


def test_missing_pandas_is_one_line_with_the_install_command(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = tunebook.load(NAME, root=root)  # loading needs no pandas
    monkeypatch.setitem(sys.modules, "pandas", None)
    for read in (view.trials_frame, view.measurements_frame):
        with pytest.raises(ImportError) as info:
            read()
        assert "\n" not in str(info.value)
        assert "pip install 'tunebook[frames]'" in str(info.value)


def test_an_unknown_experiment_names_the_store_and_the_known_ones(root: Path) -> None:
    with pytest.raises(StoreError) as info:
        tunebook.load("veiw", root=root)
    message = str(info.value)
    assert "'veiw'" in message and "tunebook.db" in message and "known: view" in message
    with pytest.raises(StoreError):
        tunebook.load(NAME, root=root.parent / "nowhere")

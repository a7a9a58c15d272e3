"""``tunebook final-eval`` on a ``command:`` workload: the program is started with
TUNEBOOK_MODE=final_eval and the best checkpoint, answers with test_* measurement lines; one
that does not know the mode trains nothing and is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook.cli import main
from tunebook.store.sql import Store

SCRIPT = '''\
import json
import sys

from tunebook import script

hp = script.hparams()
folder = script.final_eval()
if folder is not None and AWARE:
    w = json.loads((folder / "w.json").read_text())["w"]
    script.report(script.start_step(), test_error=abs(w - 0.3), test_examples=10)
    sys.exit(0)
w = 0.0
for step in range(script.start_step() + 1, script.max_train_steps() + 1):
    w += hp["x"] / 10
    if step % script.eval_every() == 0:
        script.report(step, val_error=abs(w - 0.25))
        with script.checkpoint(step) as out:
            (out / "w.json").write_text(json.dumps({"w": w}))
print("training done at", script.max_train_steps())
'''


def _run(tmp_path: Path, aware: bool) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT.replace("AWARE", str(aware)))
    doc: dict[str, Any] = {
        "name": "cmd", "command": "python train.py",
        "objective": {"metric": "val_error", "goal": "minimize"}, "max_train_steps": 6,
        "eval_every": 2, "search": {"algorithm": "quasi_random", "trials": 3, "seed": 0},
        "nuisance": {"x": {"type": "float", "low": 0.01, "high": 0.2}}}
    path = tmp_path / "cmd.yaml"
    path.write_text(yaml.safe_dump(doc))
    root = tmp_path / "root"
    assert main(["run", str(path), "--root", str(root), "--workers", "0", "--quiet",
                 "--no-report"]) == 0
    return root


def test_a_command_answers_with_test_metrics_of_its_best_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _run(tmp_path, aware=True)
    capsys.readouterr()
    assert main(["trials", "cmd", "--root", str(root), "--format", "json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    best = min(trials, key=lambda t: (t["best_value"], t["index"]))
    checkpoint = Path(best["checkpoint"])
    assert checkpoint.name == f"step-{best['best_step']:010d}"
    w = json.loads((checkpoint / "w.json").read_text())["w"]
    assert main(["final-eval", "cmd", "--root", str(root)]) == 0
    assert "looked at 1 time(s)" in capsys.readouterr().out
    store = Store.at_root(root, create=False)
    try:
        [row] = store.final_evals(store.require_experiment("cmd").id)
    finally:
        store.close()
    assert row.trial_id == best["trial_id"]
    assert row.metrics == pytest.approx({"test_error": abs(w - 0.3), "test_examples": 10.0})


def test_a_command_unaware_of_the_mode_trains_nothing_and_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _run(tmp_path, aware=False)
    folders = sorted(p.name for p in root.rglob("step-*"))
    capsys.readouterr()
    assert main(["final-eval", "cmd", "--root", str(root)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "reported no test_* metric" in line and "TUNEBOOK_MODE=final_eval" in line
    assert sorted(p.name for p in root.rglob("step-*")) == folders  # no new checkpoint
    log = next(root.rglob("log.txt")).read_text()
    assert "--- final-eval:" in log
    store = Store.at_root(root, create=False)
    try:
        assert store.final_evals(store.require_experiment("cmd").id) == []
    finally:
        store.close()

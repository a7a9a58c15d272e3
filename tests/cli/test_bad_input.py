"""Every bad input gets one line on stderr, exit code 2, and leaves the store as it was.

The contract, checked the same way for every case: exit code 2; exactly one line on stderr,
``tunebook: error: WHERE: WHAT``, naming the key (or option) and the bad value; no traceback;
and the store byte-identical before and after (SQLite: every file under the root; PostgreSQL:
every row of every table), no store created where there was none.

The cases run in-process (``tunebook.cli.main``) to keep the suite fast; a few that need a real
process (a closed pipe) run the command.
"""

from __future__ import annotations

import copy
import csv
import gc
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tunebook.cli import main
from tunebook.experiment import MAX_TRIALS
from tunebook.store.sql import Store, StudySpec, TrialSummary

EXIT_BAD_INPUT = 2
NAME = "bad-input"
WORKLOAD = "tunebook.workloads.synthetic:quadratic"

BASE: dict[str, Any] = {
    "name": NAME,
    "goal": "does the arm matter?",
    "workload": WORKLOAD,
    "objective": {"metric": "val_error", "goal": "minimize"},
    "max_train_steps": 20,
    "eval_every": 10,
    "search": {"algorithm": "quasi_random", "trials": 2, "seed": 0},
    "scientific": {"arm": ["a", "b"]},
    "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "scale": "log"}},
}
# The same experiment as text, for cases YAML's emitter cannot write (unquoted yes/no, anchors,
# syntax errors): each case edits one line.
BASE_TEXT = """\
name: bad-input
goal: does the arm matter?
workload: tunebook.workloads.synthetic:quadratic
objective:
  metric: val_error
  goal: minimize
max_train_steps: 20
eval_every: 10
search:
  algorithm: quasi_random
  trials: 2
  seed: 0
scientific:
  arm: [a, b]
nuisance:
  learning_rate: {type: float, low: 0.01, high: 0.1, scale: log}
"""
assert yaml.safe_load(BASE_TEXT) == BASE


# ----------------------------------------------------------------------------- helpers
def doc(**overrides: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(overrides))
    return d


def setk(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted ``path`` set to ``value``."""
    d = doc()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return d


def delk(path: str) -> dict[str, Any]:
    """BASE without the dotted ``path``."""
    d = doc()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    del node[last]
    return d


def hp(**spec: Any) -> dict[str, Any]:
    """BASE whose only nuisance hyperparameter ``learning_rate`` is ``spec``."""
    return doc(nuisance={"learning_rate": spec})


def edit(old: str, new: str) -> str:
    """BASE_TEXT with one piece of text replaced (it must be there)."""
    assert old in BASE_TEXT, old
    return BASE_TEXT.replace(old, new, 1)


Content = dict[str, Any] | str | bytes | Callable[[Path], Path]


def write(folder: Path, content: Content, name: str = "experiment.yaml") -> Path:
    """Write an experiment file; a callable makes its own path (a folder, a missing file)."""
    if callable(content):
        return content(folder)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``tunebook ARGV`` in this process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # main() returns codes; a SystemExit would be a bug here too
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code: int, err: str, *fragments: str) -> str:
    """Exit 2 and exactly one line on stderr, ``tunebook: error: ...``, with every fragment."""
    assert code == EXIT_BAD_INPUT, (code, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("tunebook: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` (connections closed first)."""
    if any(p.name.endswith(("-wal", "-shm")) for p in root.rglob("*")):
        gc.collect()  # a store left unreferenced by an error closes its connections (and -wal)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a database, in a stable order."""
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(
                        sa.select(t).order_by(*t.columns)).all()]
                    for name, t in sorted(meta.tables.items())}
    finally:
        engine.dispose()


def run_argv(path: Path, root: Path, *extra: str) -> list[str]:
    return ["run", str(path), "--root", str(root), "--workers", "0", "--quiet", *extra]


# ----------------------------------------------------------------------------- stores
@dataclass
class Backend:
    """An existing store with completed trials of NAME (do not modify it)."""

    kind: str
    root: Path
    url: str | None  # None: the SQLite store inside root
    folder: Path  # where the experiment files of the populated run live

    def store_args(self) -> list[str]:
        return ["--root", str(self.root)] + (["--store", self.url] if self.url else [])

    def state(self) -> Any:
        return snapshot(self.root) if self.url is None else (dump(self.url),
                                                               snapshot(self.root))


def populate(folder: Path, root: Path, url: str | None) -> None:
    store = ["--store", url] if url else []
    for d in (doc(), doc(name="other", scientific={})):
        path = write(folder, d, f"{d['name']}.yaml")
        code = main(["run", str(path), "--root", str(root), "--workers", "0", "--quiet", *store])
        assert code == 0
    # A note, so that the notes table has a row too.
    assert main(["note", NAME, "first round", "--root", str(root), *store]) == 0


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    folder = tmp_path_factory.mktemp("sqlite")
    populate(folder, folder / "root", None)
    gc.collect()
    assert (folder / "root" / "tunebook.db").exists()
    return Backend("sqlite", folder / "root", None, folder)


@pytest.fixture(scope="module")
def pg_backend(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    folder = tmp_path_factory.mktemp("pg")
    url = postgres.new_database()
    populate(folder, folder / "root", url)
    gc.collect()
    assert not (folder / "root" / "tunebook.db").exists()
    return Backend("postgresql", folder / "root", url, folder)


# ----------------------------------------------------------------------------- experiment files
@dataclass(frozen=True)
class Case:
    """A bad experiment file: its content, the key the error names, fragments of the line."""

    id: str
    content: Content
    key: str
    fragments: tuple[str, ...] = ()


def C(id: str, content: Content, key: str, *fragments: str) -> Case:
    return Case(id, content, key, fragments)


HINT = "YAML reads unquoted yes/no/on/off as booleans: quote it"


def lol(indent: int) -> str:
    """Billion laughs: ten lists of ten aliases of the previous one (10**10 'lol' expanded)."""
    return "".join(f"{' ' * indent}- &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 10)}]\n"
                   for i in range(10))



def _folder(tmp: Path) -> Path:
    (tmp / "a-folder.yaml").mkdir()
    return tmp / "a-folder.yaml"


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-experiment.yaml"


FILE_CASES: list[Case] = [
    # --- the file itself
    C("missing-file", _missing, "", "cannot read file", "No such file"),
    C("folder-as-file", _folder, "", "cannot read file", "directory"),
    C("empty-file", "", "", "empty"),
    C("comments-only", "# nothing yet\n\n", "", "empty"),
    C("not-utf8", edit("name: bad-input", "name: café").encode("latin-1"), "", "UTF-8",
      "byte 9"),
    C("utf16", BASE_TEXT.encode("utf-16"), "", "UTF-8"),
    C("scalar-document", "just a string\n", "", "must be a mapping", "'just a string'"),
    C("list-document", "- name: x\n- name: y\n", "", "must be a mapping", "[{'name': 'x'}"),
    C("two-documents", BASE_TEXT + "---\n" + BASE_TEXT, "", "YAML syntax error",
      "single document"),
    # --- YAML syntax
    C("bad-indentation", edit("eval_every: 10", "  eval_every: 10"), "", "YAML syntax error",
      "line 8,"),
    C("unclosed-bracket", edit("arm: [a, b]", "arm: [a, b"), "", "YAML syntax error", "line "),
    C("unclosed-quote", edit("name: bad-input", 'name: "bad-input'), "", "YAML syntax error",
      "line "),
    C("tab-indentation", edit("  metric: val_error", "\tmetric: val_error"), "",
      "YAML syntax error", "line 5,"),
    C("python-tag", edit("name: bad-input", "name: !!python/object:os.system x"), "",
      "YAML syntax error", "python/object"),
    C("undefined-alias", edit("arm: [a, b]", "arm: [*nowhere, b]"), "", "YAML syntax error",
      "nowhere"),
    C("duplicate-top-key", BASE_TEXT + "eval_every: 5\n", "eval_every", "duplicate key",
      "line 17", "first at line 8"),
    C("duplicate-nested-key", edit("  metric: val_error", "  metric: val_error\n  metric: x"),
      "metric", "duplicate key 'metric'", "line 6"),
    C("duplicate-boolean-keys", BASE_TEXT + "yes: 1\non: 2\n", "True", "duplicate key", HINT),
    C("nested-20000-deep", "a: " + "[" * 20000 + "]" * 20000 + "\n", "", "nested deeper than",
      "line 1"),
    C("nested-mappings-deep", "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200
      + "x\n", "", "nested deeper than"),
    C("billion-laughs-goal", edit("goal: does the arm matter?", "goal:\n" + lol(2)), "goal",
      "must be a string", "[['lol'"),
    C("billion-laughs-key", "lols:\n" + lol(2) + BASE_TEXT, "lols", "unknown key 'lols'"),
    C("billion-laughs-value", edit("arm: [a, b]", "arm: [a, b]\nfixed:\n  x:\n" + lol(4)),
      "fixed.x", "must be a string, number or boolean", "[['lol'"),
    C("billion-laughs-categorical", edit("nuisance:", "nuisance:\n  act:\n" + lol(4)),
      "nuisance.act.values[0]", "must be a string, number or boolean", "['lol'"),
    C("int-5000-digits", BASE_TEXT + "fixed: {x: " + "9" * 5000 + "}\n", "",
      "cannot read a value", "4300"),
    # --- top level
    C("unknown-key", doc(nuisanse=BASE["nuisance"]), "nuisanse", "unknown key 'nuisanse'",
      "did you mean 'nuisance'"),
    C("unknown-key-typo-scientific", doc(scientfic={"arm": [1]}), "scientfic",
      "did you mean 'scientific'"),
    C("unknown-key-capitalised", doc(Name="x"), "Name", "unknown key 'Name'",
      "did you mean 'name'"),
    C("unknown-key-trials", doc(trials=5), "trials", "unknown key 'trials'",
      "did you mean 'search.trials'"),
    C("boolean-top-key", BASE_TEXT + "on: 3\n", "", "keys must be strings", "got True", HINT),
    C("integer-top-key", BASE_TEXT + "3: x\n", "", "keys must be strings", "got 3"),
    C("missing-name", delk("name"), "name", "missing"),
    C("missing-objective", delk("objective"), "objective", "missing"),
    C("missing-max-train-steps", delk("max_train_steps"), "max_train_steps", "missing"),
    C("missing-eval-every", delk("eval_every"), "eval_every", "missing"),
    C("missing-nuisance", delk("nuisance"), "nuisance", "missing"),
    C("missing-workload-and-command", delk("workload"), "workload", "exactly one of"),
    C("workload-and-command", doc(command="python train.py"), "workload", "exactly one of"),
    # --- name
    C("name-list", setk("name", ["a"]), "name", "must be a non-empty string", "['a']"),
    C("name-mapping", setk("name", {"a": 1}), "name", "must be a non-empty string", "{'a': 1}"),
    C("name-empty", setk("name", ""), "name", "must be a non-empty string", "got ''"),
    C("name-blank", setk("name", "   "), "name", "must be a non-empty string", "got '   '"),
    C("name-null", setk("name", None), "name", "got None"),
    C("name-yes", edit("name: bad-input", "name: yes"), "name", "got True", HINT),
    C("name-no", edit("name: bad-input", "name: NO"), "name", "got False", HINT),
    C("name-date", edit("name: bad-input", "name: 2024-01-31"), "name",
      "datetime.date(2024, 1, 31)"),
    C("name-newline", setk("name", "a\nb"), "name", "control character", "'a\\nb'"),
    C("name-nul", setk("name", "a\0b"), "name", "control character", "'a\\x00b'"),
    C("name-escape-codes", setk("name", "a\x1b[31mred"), "name", "control character",
      "'a\\x1b[31mred'"),
    C("name-tab", setk("name", "a\tb"), "name", "control character", "'a\\tb'"),
    C("name-line-separator", setk("name", "a\u2028b"), "name", "control character",
      "'a\\u2028b'"),
    C("name-delete-char", setk("name", "a\x7fb"), "name", "control character", "'a\\x7fb'"),
    C("name-lone-surrogate", edit("name: bad-input", 'name: "bad\\ud800"'), "name",
      "lone surrogate", "'\\ud800'"),
    C("name-256-chars", setk("name", "n" * 256), "name", "256 characters", "at most 255",
      "'nnnnnnnn"),
    C("name-10000-chars", setk("name", "n" * 10000), "name", "10000 characters", "at most 255"),
    # --- goal
    C("goal-number", setk("goal", 5), "goal", "must be a string", "got 5"),
    C("goal-list", setk("goal", ["a"]), "goal", "must be a string", "['a']"),
    C("goal-no", edit("goal: does the arm matter?", "goal: no"), "goal", "got False", HINT),
    C("goal-nul", setk("goal", "a\0b"), "goal", "'\\x00'"),
    # --- workload and command
    C("workload-number", setk("workload", 5), "workload", "must be a non-empty string", "got 5"),
    C("workload-empty", setk("workload", ""), "workload", "must be a non-empty string"),
    C("workload-no-colon", setk("workload", "tunebook.workloads.synthetic"), "workload",
      "module:function", "'tunebook.workloads.synthetic'"),
    C("workload-no-function", setk("workload", "mod:"), "workload", "module:function", "'mod:'"),
    C("workload-list", setk("workload", ["a:b"]), "workload", "['a:b']"),
    C("command-unbalanced-quote", edit(f"workload: {WORKLOAD}", "command: python 'train.py"),
      "command", "No closing quotation", "\"python 'train.py\""),
    C("command-unbalanced-double-quote", edit(f"workload: {WORKLOAD}",
                                              "command: 'python \"train.py --lr 1'"),
      "command", "No closing quotation", "python \"train.py"),
    C("command-trailing-backslash", edit(f"workload: {WORKLOAD}", "command: 'python \\'"),
      "command", "No escaped character", "'python \\\\'"),
    C("command-number", edit(f"workload: {WORKLOAD}", "command: 5"), "command",
      "string or a list of strings", "got 5"),
    C("command-list-of-numbers", edit(f"workload: {WORKLOAD}", "command: [1, 2]"), "command",
      "string or a list of strings", "[1, 2]"),
    C("command-empty-list", edit(f"workload: {WORKLOAD}", "command: []"), "command",
      "must not be empty"),
    C("command-blank", edit(f"workload: {WORKLOAD}", "command: '  '"), "command",
      "got '  '"),
    C("command-mapping", edit(f"workload: {WORKLOAD}", "command: {a: b}"), "command",
      "{'a': 'b'}"),
    C("command-nul", edit(f"workload: {WORKLOAD}", 'command: ["python", "a\\0b"]'),
      "command[1]", "'\\x00'"),
    # --- objective
    C("objective-string", setk("objective", "val_error"), "objective", "must be a mapping",
      "'val_error'"),
    C("objective-list", setk("objective", ["val_error"]), "objective", "must be a mapping"),
    C("objective-missing-metric", setk("objective", {"goal": "minimize"}), "objective.metric",
      "missing"),
    C("objective-unknown-key", setk("objective", {"metrc": "val_error"}), "objective.metrc",
      "did you mean 'metric'"),
    C("metric-number", setk("objective.metric", 5), "objective.metric",
      "must be a non-empty string", "got 5"),
    C("metric-empty", setk("objective.metric", ""), "objective.metric", "got ''"),
    C("metric-on", edit("metric: val_error", "metric: on"), "objective.metric", "got True",
      HINT),
    C("metric-129-chars", setk("objective.metric", "m" * 129), "objective.metric",
      "129 characters", "at most 128"),
    C("metric-nul", setk("objective.metric", "val\0error"), "objective.metric",
      "'val\\x00error'"),
    C("metric-newline", setk("objective.metric", "val\nerror"), "objective.metric",
      "'val\\nerror'"),
    C("goal-unknown", setk("objective.goal", "up"), "objective.goal",
      "minimize or maximize", "'up'"),
    C("goal-yes", edit("goal: minimize", "goal: yes"), "objective.goal", "got True", HINT),
    C("objective-goal-number", setk("objective.goal", 1), "objective.goal", "got 1"),
    # --- training length
    C("steps-string", setk("max_train_steps", "twenty"), "max_train_steps",
      "must be an integer", "'twenty'"),
    C("steps-zero", setk("max_train_steps", 0), "max_train_steps", ">= 1", "got 0"),
    C("steps-negative", setk("max_train_steps", -20), "max_train_steps", "got -20"),
    C("steps-float", setk("max_train_steps", 20.5), "max_train_steps", "got 20.5"),
    C("steps-bool", setk("max_train_steps", True), "max_train_steps", "got True"),
    C("steps-null", setk("max_train_steps", None), "max_train_steps", "got None"),
    C("steps-2**31", setk("max_train_steps", 2**31), "max_train_steps", "<= 2147483647",
      "got 2147483648"),
    C("steps-huge", setk("max_train_steps", 10**30), "max_train_steps", "<= 2147483647"),
    C("eval-every-zero", setk("eval_every", 0), "eval_every", ">= 1", "got 0"),
    C("eval-every-above-steps", setk("eval_every", 50), "eval_every", "max_train_steps (20)",
      "got 50"),
    C("eval-every-string", setk("eval_every", "10"), "eval_every", "must be an integer",
      "'10'"),
    C("eval-every-2**31", doc(max_train_steps=2**31 - 1, eval_every=2**31), "eval_every",
      "<= 2147483647", "got 2147483648"),
    # --- search
    C("search-string", setk("search", "fast"), "search", "must be a mapping", "'fast'"),
    C("search-unknown-key", setk("search.trails", 5), "search.trails", "unknown key 'trails'",
      "did you mean 'trials'"),
    C("algorithm-unknown", setk("search.algorithm", "bayes"), "search.algorithm",
      "unknown algorithm 'bayes'"),
    C("algorithm-typo", setk("search.algorithm", "quasirandom"), "search.algorithm",
      "did you mean 'quasi_random'"),
    C("algorithm-off", edit("algorithm: quasi_random", "algorithm: off"), "search.algorithm",
      "False", HINT),
    C("algorithm-number", setk("search.algorithm", 3), "search.algorithm", "unknown algorithm 3"),
    C("trials-zero", setk("search.trials", 0), "search.trials", ">= 1", "got 0"),
    C("trials-negative", setk("search.trials", -3), "search.trials", "got -3"),
    C("trials-string", setk("search.trials", "many"), "search.trials", "'many'"),
    C("trials-float", setk("search.trials", 2.5), "search.trials", "got 2.5"),
    C("trials-billion", setk("search.trials", 1_000_000_000), "search.trials",
      f"<= {MAX_TRIALS}", "got 1000000000", "written to the store"),
    C("trials-just-over", setk("search.trials", MAX_TRIALS + 1), "search.trials",
      f"got {MAX_TRIALS + 1}"),
    C("trials-times-studies", doc(search={"trials": 40_000}, scientific={"arm": [1, 2, 3]}),
      "search.trials", "3 studies x 40,000 trials = 120,000", "at most 100,000"),
    C("studies-product", doc(scientific={k: list(range(10)) for k in "abcdef"}), "scientific",
      "1,000,000 studies", "at most 100,000"),
    C("grid-too-many-points", doc(search={"algorithm": "grid", "trials": 4}, scientific={},
                                  nuisance={"a": list(range(400)), "b": list(range(400))}),
      "nuisance", "160,000 grid points", "at most 100,000"),
    C("seed-negative", setk("search.seed", -1), "search.seed", ">= 0", "got -1"),
    C("seed-2**63", setk("search.seed", 2**63), "search.seed", "<= 9223372036854775807",
      "got 9223372036854775808"),
    C("seed-huge", setk("search.seed", 10**100), "search.seed", "<= 9223372036854775807"),
    C("seed-string", setk("search.seed", "lucky"), "search.seed", "'lucky'"),
    C("seed-float", setk("search.seed", 1.5), "search.seed", "got 1.5"),
    C("grid-three-dims", doc(search={"algorithm": "grid", "trials": 8}, nuisance={
        "x": {"type": "float", "low": 0.0, "high": 1.0},
        "y": {"type": "float", "low": 0.0, "high": 1.0},
        "z": {"type": "float", "low": 0.0, "high": 1.0}}), "search.algorithm", "grid",
      "got 3"),
    # --- trial_timeout
    C("timeout-zero", doc(trial_timeout=0), "trial_timeout", "> 0", "got 0"),
    C("timeout-negative", doc(trial_timeout=-5), "trial_timeout", "> 0", "got -5"),
    C("timeout-string", doc(trial_timeout="soon"), "trial_timeout", "must be a number",
      "'soon'"),
    C("timeout-nan", doc(trial_timeout=math.nan), "trial_timeout", "finite", "nan"),
    C("timeout-inf", doc(trial_timeout=math.inf), "trial_timeout", "finite", "inf"),
    C("timeout-bool", edit("eval_every: 10", "eval_every: 10\ntrial_timeout: yes"),
      "trial_timeout", "must be a number", "True"),
    C("timeout-list", doc(trial_timeout=[60]), "trial_timeout", "[60]"),
    C("timeout-too-long", doc(trial_timeout=1e12), "trial_timeout", "<= 1e+09",
      "1000000000000"),
    # --- scientific
    C("scientific-string", setk("scientific", "arm"), "scientific", "must be a mapping",
      "'arm'"),
    C("scientific-list", setk("scientific", ["a", "b"]), "scientific", "must be a mapping"),
    C("scientific-empty-values", setk("scientific.arm", []), "scientific.arm",
      "at least one value"),
    C("scientific-duplicates", setk("scientific.arm", ["a", "a"]), "scientific.arm",
      "distinct", "['a', 'a']"),
    C("scientific-nested-list", setk("scientific.arm", [["a"], "b"]), "scientific.arm[0]",
      "string, number or boolean", "['a']"),
    C("scientific-mapping-value", setk("scientific.arm", [{"a": 1}]), "scientific.arm[0]",
      "{'a': 1}"),
    C("scientific-null-value", setk("scientific.arm", [None, "b"]), "scientific.arm[0]",
      "got None"),
    C("scientific-nan", edit("arm: [a, b]", "arm: [.nan, 1.0]"), "scientific.arm[0]",
      "finite", "nan"),
    C("scientific-inf", edit("arm: [a, b]", "arm: [1.0, .inf]"), "scientific.arm[1]",
      "finite", "inf"),
    C("scientific-overflowing-exponent", edit("arm: [a, b]", "arm: [1e999, 1]"),
      "scientific.arm[0]", "finite", "inf"),
    C("scientific-boolean-key", edit("  arm: [a, b]", "  on: [a, b]"), "scientific",
      "keys must be strings", "True", HINT),
    C("scientific-key-nul", setk("scientific", {"a\0m": [1, 2]}), "scientific.a\\x00m",
      "control character", "'a\\x00m'"),
    C("scientific-key-256", setk("scientific", {"k" * 256: [1, 2]}), "scientific.",
      "256 characters", "at most 255"),
    C("scientific-value-newline", setk("scientific.arm", ["a\nb", "c"]), "scientific.arm[0]",
      "control character", "'a\\nb'"),
    C("scientific-value-escape", setk("scientific.arm", ["\x1b[2J", "c"]), "scientific.arm[0]",
      "control character", "'\\x1b[2J'"),
    C("study-name-too-long", setk("scientific.arm", ["v" * 260, "b"]), "scientific",
      "study name", "264 characters", "at most 255"),
    C("study-name-collision", setk("scientific.arm", ["1", 1]), "scientific.arm",
      "same study name", "'arm=1'"),
    C("study-name-collision-bool", setk("scientific.arm", ["True", True]), "scientific.arm",
      "same study name", "'arm=True'"),
    # --- roles
    C("scientific-and-nuisance", setk("scientific", {"learning_rate": [0.01, 0.1]}),
      "nuisance.learning_rate", "both scientific and nuisance"),
    C("nuisance-and-fixed", doc(fixed={"learning_rate": 0.1}), "fixed.learning_rate",
      "both nuisance and fixed"),
    C("scientific-and-fixed", doc(fixed={"arm": "a"}), "fixed.arm", "both scientific and fixed"),
    # --- fixed
    C("fixed-string", doc(fixed="batch_size=64"), "fixed", "must be a mapping",
      "'batch_size=64'"),
    C("fixed-list-value", doc(fixed={"batch_size": [64, 128]}), "fixed.batch_size",
      "string, number or boolean", "[64, 128]"),
    C("fixed-mapping-value", doc(fixed={"opt": {"name": "adam"}}), "fixed.opt",
      "{'name': 'adam'}"),
    C("fixed-null", doc(fixed={"batch_size": None}), "fixed.batch_size", "got None"),
    C("fixed-nan", edit("nuisance:", "fixed: {dropout: .nan}\nnuisance:"), "fixed.dropout",
      "finite", "nan"),
    C("fixed-inf", edit("nuisance:", "fixed: {clip: -.inf}\nnuisance:"), "fixed.clip",
      "finite", "-inf"),
    C("fixed-date", edit("nuisance:", "fixed: {when: 2024-01-31}\nnuisance:"), "fixed.when",
      "datetime.date(2024, 1, 31)"),
    C("fixed-key-256", doc(fixed={"f" * 256: 1}), "fixed.", "256 characters"),
    C("fixed-key-escape", doc(fixed={"a\x1bb": 1}), "fixed.a\\x1bb", "control character"),
    C("fixed-boolean-key", edit("nuisance:", "fixed: {off: 1}\nnuisance:"), "fixed",
      "keys must be strings", HINT),
    # --- nuisance: the space
    C("nuisance-string", doc(nuisance="learning_rate"), "nuisance", "must be a mapping"),
    C("nuisance-key-256", doc(nuisance={"h" * 256: [1, 2]}), "nuisance.", "256 characters"),
    C("nuisance-key-nul", doc(nuisance={"l\0r": [1, 2]}), "nuisance.l\\x00r",
      "control character"),
    C("nuisance-key-newline", doc(nuisance={"l\nr": [1, 2]}), "nuisance.l\\nr",
      "control character"),
    C("nuisance-boolean-key", edit("  learning_rate:", "  yes:"), "nuisance",
      "keys must be strings", HINT),
    C("hp-string", doc(nuisance={"learning_rate": "float"}), "nuisance.learning_rate",
      "must be a mapping", "'float'"),
    C("hp-missing-type", hp(low=0.0, high=1.0), "nuisance.learning_rate.type", "missing"),
    C("hp-unknown-type", hp(type="flaot", low=0.0, high=1.0), "nuisance.learning_rate.type",
      "unknown type 'flaot'", "did you mean 'float'"),
    C("hp-type-yes", edit("{type: float,", "{type: yes,"), "nuisance.learning_rate.type",
      "True", HINT),
    C("hp-unknown-key", hp(type="float", lo=0.0, high=1.0), "nuisance.learning_rate.lo",
      "unknown key 'lo'", "did you mean 'low'"),
    C("hp-values-on-float", hp(type="float", low=0.0, high=1.0, values=[1]),
      "nuisance.learning_rate.values", "not used by type 'float'"),
    C("hp-low-on-categorical", hp(type="categorical", values=["a", "b"], low=0),
      "nuisance.learning_rate.low", "not used by type 'categorical'"),
    # float
    C("float-missing-low", hp(type="float", high=1.0), "nuisance.learning_rate.low", "missing"),
    C("float-missing-high", hp(type="float", low=0.0), "nuisance.learning_rate.high",
      "missing"),
    C("float-low-above-high", hp(type="float", low=0.5, high=0.1),
      "nuisance.learning_rate.low", "low=0.5", "high=0.1"),
    C("float-low-equals-high", hp(type="float", low=0.1, high=0.1),
      "nuisance.learning_rate.low", "low=0.1, high=0.1"),
    C("float-low-string", hp(type="float", low="small", high=0.1),
      "nuisance.learning_rate.low", "must be a number", "'small'"),
    C("float-low-bool", hp(type="float", low=True, high=2.0), "nuisance.learning_rate.low",
      "must be a number", "True"),
    C("float-low-nan", edit("low: 0.01", "low: .nan"), "nuisance.learning_rate.low", "finite",
      "nan"),
    C("float-high-inf", edit("high: 0.1", "high: .inf"), "nuisance.learning_rate.high",
      "finite", "inf"),
    C("float-low-minus-inf", hp(type="float", low=-math.inf, high=0.1),
      "nuisance.learning_rate.low", "finite", "-inf"),
    C("float-exponent-overflow", edit("high: 0.1", "high: 1e999"),
      "nuisance.learning_rate.high", "finite", "inf"),
    C("float-huge-int-bound", edit("high: 0.1", "high: 1" + "0" * 400),
      "nuisance.learning_rate.high", "finite", "1000"),
    C("float-width-overflows", hp(type="float", low=-1.7e308, high=1.7e308),
      "nuisance.learning_rate.high", "finite", "low=-1.7e+308", "high=1.7e+308"),
    C("float-width-overflows-text", edit("{type: float, low: 0.01, high: 0.1, scale: log}",
                                         "{type: float, low: -1.7e308, high: 1.7e308}"),
      "nuisance.learning_rate.high", "finite", "1.7e+308"),
    C("float-log-low-zero", hp(type="float", low=0.0, high=0.1, scale="log"),
      "nuisance.learning_rate.low", "log", "got 0.0"),
    C("float-log-low-negative", hp(type="float", low=-1.0, high=0.1, scale="log"),
      "nuisance.learning_rate.low", "log", "got -1.0"),
    C("float-one-minus-log-high-1", hp(type="float", low=0.5, high=1.0, scale="one_minus_log"),
      "nuisance.learning_rate.high", "one_minus_log", "1.0"),
    C("float-scale-unknown", hp(type="float", low=0.1, high=1.0, scale="lgo"),
      "nuisance.learning_rate.scale", "unknown scale 'lgo'", "did you mean 'log'"),
    C("float-scale-on", edit("scale: log", "scale: on"), "nuisance.learning_rate.scale", "True",
      HINT),
    C("float-scale-number", hp(type="float", low=0.1, high=1.0, scale=10),
      "nuisance.learning_rate.scale", "unknown scale 10"),
    # int
    C("int-one-minus-log", hp(type="int", low=1, high=5, scale="one_minus_log"),
      "nuisance.learning_rate.scale", "'one_minus_log' is only for type float"),
    C("int-scale-unknown", hp(type="int", low=1, high=5, scale="cubic"),
      "nuisance.learning_rate.scale", "unknown scale 'cubic'"),
    C("int-low-float", hp(type="int", low=1.5, high=5), "nuisance.learning_rate.low",
      "must be an integer", "1.5"),
    C("int-high-string", hp(type="int", low=1, high="5"), "nuisance.learning_rate.high",
      "must be an integer", "'5'"),
    C("int-low-above-high", hp(type="int", low=5, high=1), "nuisance.learning_rate.low",
      "low=5, high=1"),
    C("int-log-low-zero", hp(type="int", low=0, high=10, scale="log"),
      "nuisance.learning_rate.low", "log", "got 0"),
    C("int-high-2**60", hp(type="int", low=1, high=2**60), "nuisance.learning_rate.high",
      "2**53", str(2**60)),
    C("int-low-minus-10**400", hp(type="int", low=-(10**400), high=1),
      "nuisance.learning_rate.low", ">= -9007199254740992"),
    C("int-missing-high", hp(type="int", low=1), "nuisance.learning_rate.high", "missing"),
    # discrete
    C("discrete-values-missing", hp(type="discrete"), "nuisance.learning_rate.values",
      "must be a list", "None"),
    C("discrete-values-string", hp(type="discrete", values="1,2"),
      "nuisance.learning_rate.values", "must be a list", "'1,2'"),
    C("discrete-one-value", hp(type="discrete", values=[32]), "nuisance.learning_rate.values",
      "at least 2", "[32]"),
    C("discrete-string-value", hp(type="discrete", values=[32, "big"]),
      "nuisance.learning_rate.values[1]", "must be a number", "'big'"),
    C("discrete-nan", edit("{type: float, low: 0.01, high: 0.1, scale: log}",
                           "{type: discrete, values: [1, .nan]}"),
      "nuisance.learning_rate.values[1]", "finite", "nan"),
    C("discrete-duplicates", hp(type="discrete", values=[32, 32]),
      "nuisance.learning_rate.values", "distinct", "[32, 32]"),
    C("discrete-huge-int", hp(type="discrete", values=[1, 10**400]),
      "nuisance.learning_rate.values[1]", "finite"),
    # categorical
    C("categorical-one-value", hp(type="categorical", values=["relu"]),
      "nuisance.learning_rate.values", "at least 2", "['relu']"),
    C("categorical-shorthand-one", doc(nuisance={"act": ["relu"]}), "nuisance.act.values",
      "at least 2", "['relu']"),
    C("categorical-nan", edit("{type: float, low: 0.01, high: 0.1, scale: log}",
                              "{type: categorical, values: [.nan, 1.0]}"),
      "nuisance.learning_rate.values[0]", "finite", "nan"),
    C("categorical-inf-shorthand", edit("{type: float, low: 0.01, high: 0.1, scale: log}",
                                        "[.inf, 1.0]"),
      "nuisance.learning_rate.values[0]", "finite", "inf"),
    C("categorical-duplicates", hp(type="categorical", values=["relu", "relu"]),
      "nuisance.learning_rate.values", "distinct"),
    C("categorical-nested", hp(type="categorical", values=[["relu"], "gelu"]),
      "nuisance.learning_rate.values[0]", "['relu']"),
    C("categorical-null", hp(type="categorical", values=[None, "gelu"]),
      "nuisance.learning_rate.values[0]", "got None"),
    C("categorical-nul", hp(type="categorical", values=["re\0lu", "gelu"]),
      "nuisance.learning_rate.values[0]", "'\\x00'"),
]
# Listed configurations (configs:): tunebook.experiment.listed's rules.
LISTED = {k: v for k, v in BASE.items() if k != "scientific"}
FILE_CASES += [
    C("configs-and-scientific", doc(configs=[{"arm": "a"}]), "configs", "not both"),
    C("configs-empty-list", {**LISTED, "configs": []}, "configs", "must be a list", "[]"),
    C("configs-string", {**LISTED, "configs": "arm=a"}, "configs", "must be a list",
      "'arm=a'"),
    C("configs-entry-not-mapping", {**LISTED, "configs": [{"arm": "a"}, "arm=b"]},
      "configs[1]", "must be a mapping", "'arm=b'"),
    C("configs-entry-empty", {**LISTED, "configs": [{"arm": "a"}, {}]}, "configs[1]",
      "no hyperparameter value"),
    C("configs-name-not-string", {**LISTED, "configs": [{"name": ["x"], "arm": "a"}]},
      "configs[0].name", "must be a string", "['x']"),
    C("configs-value-list", {**LISTED, "configs": [{"arm": ["a", "b"]}]}, "configs[0].arm",
      "string, number or boolean", "['a', 'b']"),
    C("configs-key-in-fixed", {**LISTED, "fixed": {"arm": "c"},
                               "configs": [{"arm": "a"}, {"arm": "b"}]},
      "configs[0].arm", "arm='a' is also fixed", "'c'"),
    C("configs-key-in-nuisance", {**LISTED, "configs": [{"arm": "a", "learning_rate": 0.1}]},
      "configs[0].learning_rate", "also nuisance", "0.1"),
    C("configs-same-values", {**LISTED, "configs": [{"arm": "a"}, {"name": "x", "arm": "a"}]},
      "configs[1]", "same values as configs[0]"),
    C("configs-same-name", {**LISTED, "configs": [{"name": "x", "arm": "a"},
                                                  {"name": "x", "arm": "b"}]},
      "configs[1].name", "'x'", "configs[0]"),
    C("configs-name-equals-label", {**LISTED, "configs": [{"arm": "a"},
                                                          {"name": "arm=a", "arm": "b"}]},
      "configs[1].name", "'arm=a'", "configs[0]"),
    C("configs-name-newline", {**LISTED, "configs": [{"name": "a\nb", "arm": "a"}]},
      "configs[0].name", "control character"),
    # Conditional nuisance (nuisance_for:): tunebook.experiment.conditional's rules.
    C("nuisance-for-no-equals", doc(nuisance_for={"arm": {"x": [1, 2]}}), "nuisance_for.arm",
      "NAME=VALUE", "'arm'"),
    C("nuisance-for-unknown-name", doc(nuisance_for={"armm=a": {"x": [1, 2]}}),
      "nuisance_for.armm=a", "unknown scientific hyperparameter 'armm'", "'arm'"),
    C("nuisance-for-unknown-value", doc(nuisance_for={"arm=c": {"x": [1, 2]}}),
      "nuisance_for.arm=c", "no value 'c'", "a, b"),
    C("nuisance-for-shared-name", doc(nuisance_for={"arm=a": {"learning_rate": [0.1, 1]}}),
      "nuisance_for.arm=a.learning_rate", "also nuisance"),
    C("nuisance-for-empty-block", doc(nuisance_for={"arm=a": {}}), "nuisance_for.arm=a",
      "at least one"),
    C("nuisance-for-bad-type", doc(nuisance_for={"arm=a": {"x": {"type": "gauss"}}}),
      "nuisance_for.arm=a.x.type", "unknown type", "'gauss'"),
    C("nuisance-for-grid", doc(search={"algorithm": "grid", "trials": 2},
                               nuisance_for={"arm=a": {"x": [1, 2]}}), "search.algorithm",
      "nuisance_for"),
    C("configs-key-not-string", edit("scientific:\n  arm: [a, b]",
                                     "configs:\n  - {1: a}"), "configs[0]",
      "keys must be strings"),
]
# Per-trial resources (resources:): tunebook.experiment.resources's rules.
FILE_CASES += [
    C("resources-not-mapping", doc(resources=2), "resources", "must be a mapping", "2"),
    C("resources-unknown-key", doc(resources={"gpus": 1}), "resources.gpus", "unknown key",
      "'num_gpus'"),
    C("resources-negative", doc(resources={"num_cpus": -1}), "resources.num_cpus", ">= 0",
      "-1"),
    C("resources-memory-zero", doc(resources={"memory": 0}), "resources.memory", "> 0", "0"),
    C("resources-custom-text", doc(resources={"custom": {"node2": "one"}}),
      "resources.custom.node2", "must be a number", "'one'"),
]
# The cases of tests/test_cli_errors.py, here too (the same file, the same contract).
FILE_CASES += [
    C("cli-errors-wrong-type", setk("max_train_steps", "twenty"), "max_train_steps", "'twenty'"),
    C("cli-errors-log-low-not-positive", hp(type="float", low=0.0, high=0.1, scale="log"),
      "nuisance.learning_rate.low", "log", "0.0"),
    C("cli-errors-configs-not-a-list", doc(configs={"arm": "a"}), "configs",
      "must be a list"),
]
assert len({c.id for c in FILE_CASES}) == len(FILE_CASES)


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_bad_experiment_file(case: Case, tmp_path: Path, sqlite_backend: Backend,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, case.content)
    where = f"{path}: {case.key}" if case.key else f"{path}: "
    # A new root: nothing is created.
    fresh = tmp_path / "fresh"
    code, out, err = cli(capsys, *run_argv(path, fresh))
    error_line(code, err, where, *case.fragments)
    assert out == ""
    assert not fresh.exists()
    # An existing store with completed trials of the same experiment: untouched.
    before = sqlite_backend.state()
    code, out, err = cli(capsys, *run_argv(path, sqlite_backend.root))
    error_line(code, err, where, *case.fragments)
    assert sqlite_backend.state() == before


@pytest.mark.parametrize("case", [c for c in FILE_CASES if c.id in (
    "seed-2**63", "name-256-chars", "metric-129-chars", "name-nul", "trials-billion",
    "study-name-too-long", "float-width-overflows", "command-unbalanced-quote")],
    ids=lambda c: c.id)
def test_bad_experiment_file_postgresql(case: Case, tmp_path: Path, pg_backend: Backend,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The limits the store's columns impose hold on PostgreSQL too, checked before it."""
    path = write(tmp_path, case.content)
    before = pg_backend.state()
    code, _, err = cli(capsys, *run_argv(path, pg_backend.root), "--store", str(pg_backend.url))
    error_line(code, err, f"{path}: {case.key}", *case.fragments)
    assert pg_backend.state() == before


# ----------------------------------------------------------------------------- command line
@dataclass(frozen=True)
class Cli:
    """A bad command line; ``{file}`` is a valid experiment file, ``{tmp}`` a scratch folder,
    ``{afile}`` an existing plain file."""

    id: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    store: bool = True  # add the backend's --root/--store
    files: dict[str, Content] = field(default_factory=dict)


def K(id: str, argv: str, *fragments: str, store: bool = True,
      files: dict[str, Content] | None = None) -> Cli:
    return Cli(id, tuple(argv.split()), fragments, store, files or {})


CHANGED = {"changed.yaml": setk("nuisance.learning_rate.high", 0.5)}
CLI_CASES: list[Cli] = [
    # --- argparse: one line too
    K("no-command", "", "required", "command", store=False),
    K("unknown-command", "runn {file}", "invalid choice: 'runn'", store=False),
    K("unknown-option", "status --verbose", "unrecognized arguments: --verbose"),
    K("run-missing-file", "run", "required: file"),
    K("run-workers-negative", "run {file} --workers -1", "--workers", "must be >= 0",
      "got -1"),
    K("run-workers-text", "run {file} --workers many", "--workers", "'many'"),
    K("run-workers-float", "run {file} --workers 1.5", "--workers", "'1.5'"),
    K("run-max-attempts-negative", "run {file} --max-attempts -1", "--max-attempts",
      "must be >= 1", "got -1"),
    K("run-max-attempts-zero", "run {file} --max-attempts 0", "--max-attempts", "got 0"),
    K("run-max-attempts-text", "run {file} --max-attempts x", "--max-attempts", "'x'"),
    K("run-stale-after-zero", "run {file} --stale-after 0", "--stale-after", "got '0'"),
    K("run-stale-after-text", "run {file} --stale-after soon", "--stale-after", "'soon'"),
    K("run-executor-unknown", "run {file} --executor slurm", "--executor", "'slurm'"),
    K("run-address-without-ray", "run {file} --address auto", "--address", "--executor ray",
      "'auto'"),
    K("run-top-zero", "run {file} --top 0", "--top", "must be >= 1", "got 0"),
    K("run-top-negative", "run {file} --top -3", "--top", "got -3"),
    K("best-top-zero", "best " + NAME + " --top 0", "--top", "must be >= 1", "got 0"),
    K("best-top-text", "best " + NAME + " --top all", "--top", "'all'"),
    K("best-goal", "best " + NAME + " --goal up", "--goal", "invalid choice: 'up'"),
    K("trials-goal", "trials " + NAME + " --goal lower", "--goal", "'lower'"),
    K("best-format", "best " + NAME + " --format csv", "--format", "invalid choice: 'csv'"),
    K("trials-format", "trials " + NAME + " --format xml", "--format", "'xml'"),
    K("findings-format", "findings " + NAME + " --format table", "--format", "'table'"),
    K("report-out-empty", "report " + NAME + " --out=", "--out", "must be a file name",
      "got ''"),
    K("note-missing-text", "note " + NAME, "required: text"),
    K("status-two-names", "status a b", "unrecognized arguments: b"),
    # --- paths
    K("run-root-is-a-file", "run {file} --root {afile}", "--root", "is not a folder",
      "afile", store=False),
    K("run-root-under-a-file", "run {file} --root {afile}/sub", "--root", "cannot create",
      "afile/sub", "is not a folder", store=False),
    K("run-store-under-a-file", "run {file} --root {tmp}/r --store sqlite:///{afile}/x.db",
      "--store", "afile", "is not a folder", store=False),
    K("run-store-is-a-folder", "run {file} --root {tmp}/r --store sqlite:///{tmp}", "--store",
      "is a folder", store=False),
    K("status-root-is-a-file", "status --root {afile}", "--root", "is not a folder",
      store=False),
    K("best-root-is-a-file", "best " + NAME + " --root {afile}", "--root", "is not a folder",
      store=False),
    K("status-no-store", "status --root {tmp}/nowhere", "no tunebook store", "nowhere",
      store=False),
    K("report-no-store", "report " + NAME + " --root {tmp}/nowhere", "no tunebook store",
      store=False),
    K("report-out-is-a-folder", "report " + NAME + " --out {tmp}", "--out", "is a folder"),
    K("report-out-under-a-file", "report " + NAME + " --out {afile}/r.html", "--out",
      "afile", "is not a folder"),
    K("report-out-under-a-file-deeper", "report " + NAME + " --out {afile}/a/r.html", "--out",
      "cannot create", "is not a folder"),
    K("report-out-csv", "report " + NAME + " --out {tmp}/r.csv", "--out", "r.csv",
      "overwritten"),
    K("report-out-md", "report " + NAME + " --out {tmp}/r.md", "--out", "r.md", "overwritten"),
    K("report-out-beside-folder", "report " + NAME + " --out {tmp}/page.html", "--out",
      "page.csv", "folder", files={"page.csv": lambda tmp: _mkdir(tmp / "page.csv")}),
    # --- unknown names, against the store
    K("status-unknown", "status nosuch", "no experiment named 'nosuch'", NAME),
    K("best-unknown", "best nosuch", "'nosuch'", NAME, "other"),
    K("trials-unknown", "trials nosuch", "'nosuch'", NAME),
    K("report-unknown", "report nosuch", "'nosuch'", NAME),
    K("findings-unknown", "findings nosuch", "'nosuch'", NAME),
    K("note-unknown", "note nosuch hello", "'nosuch'", NAME),
    K("best-unknown-metric", "best " + NAME + " --metric val_eror", "--metric", "'val_eror'",
      "did you mean 'val_error'"),
    K("trials-unknown-metric", "trials " + NAME + " --metric accuracy", "--metric",
      "'accuracy'", "val_error"),
    K("report-unknown-metric", "report " + NAME + " --metric loss", "--metric", "'loss'"),
    K("findings-unknown-metric", "findings " + NAME + " --metric trian_loss", "--metric",
      "did you mean 'train_loss'"),
    K("best-unknown-study", "best " + NAME + " --study arm=c", "'arm=c'", NAME),
    K("note-unknown-study", "note " + NAME + " hello --study arm=c", "--study", "'arm=c'",
      "did you mean 'arm=", "its studies: arm=a, arm=b"),
    K("note-empty-text", "note " + NAME + " ", "text", "empty"),
    # Bytes that are not UTF-8 reach Python as lone surrogates; NUL only through main(argv).
    K("best-name-not-utf8", "best caf\udce9", "name", "UTF-8", "'caf\\udce9'"),
    K("status-name-not-utf8", "status \udcff", "name", "'\\udcff'"),
    K("trials-metric-not-utf8", "trials " + NAME + " --metric loss\udcff", "--metric",
      "'loss\\udcff'"),
    K("note-text-not-utf8", "note " + NAME + " caf\udce9", "text", "'caf\\udce9'"),
    K("note-study-not-utf8", "note " + NAME + " hi --study arm=\udce9", "--study",
      "'arm=\\udce9'"),
    K("store-not-utf8", "status --store sqlite:///x\udce9.db", "--store", "'sqlite:///x\\udce9.db'",
      store=False),
    K("note-text-nul", "note " + NAME + " a\0b", "text", "'a\\x00b'"),
    K("note-study-nul", "note " + NAME + " hi --study arm=a\0", "--study", "'arm=a\\x00'"),
    K("best-name-nul", "best bad\0input", "name", "'bad\\x00input'"),
    K("findings-metric-nul", "findings " + NAME + " --metric val\0error", "--metric",
      "'val\\x00error'"),
    # --- a second run of a changed file, against the store
    K("run-changed-space", "run {tmp}/changed.yaml --workers 0 --quiet", "'" + NAME + "'",
      "already exists", files=CHANGED),
    K("run-changed-metric-typo", "run {tmp}/typo.yaml --workers 0 --quiet",
      "objective.metric", "'val_eror'", "did you mean 'val_error'",
      files={"typo.yaml": setk("objective.metric", "val_eror")}),
    K("run-changed-bad-seed", "run {tmp}/seed.yaml --workers 0 --quiet", "search.seed",
      "9223372036854775808", files={"seed.yaml": setk("search.seed", 2**63)}),
    K("run-changed-too-many-trials", "run {tmp}/big.yaml --workers 0 --quiet",
      "search.trials", "1000000000", files={"big.yaml": setk("search.trials", 10**9)}),
    K("run-changed-bad-workload", "run {tmp}/wl.yaml --workers 0 --quiet", "workload",
      "'no_such_module'", files={"wl.yaml": setk("workload", "no_such_module:train")}),
    # --- retrain, compare, launch, the project page (docs/decisions.md)
    K("compare-no-baseline", "compare " + NAME, "--baseline", "required"),
    K("compare-unknown", "compare nosuch --baseline " + NAME, "CANDIDATE",
      "no experiment 'nosuch'"),
    K("compare-unknown-baseline", "compare " + NAME + " --baseline bad-inptu", "--baseline",
      "did you mean 'bad-input'"),
    K("compare-unknown-study", "compare " + NAME + "/arm=c --baseline other", "CANDIDATE",
      "no study of 'bad-input' named 'arm=c'"),
    K("compare-unknown-trial", "compare " + NAME + "/arm=a#99 --baseline other", "#99"),
    K("compare-format", "compare " + NAME + " --baseline other --format csv", "--format"),
    K("launch-empty-note", "launch " + NAME + " --note=", "--note", "must not be empty"),
    K("launch-unknown", "launch nosuch --note x", "REF", "no experiment 'nosuch'"),
    K("launch-unknown-over", "launch " + NAME + " --note x --over nosuch", "--over",
      "'nosuch'"),
    K("launches-format", "launches --format csv", "--format", "'csv'"),
    K("retrain-seeds-zero", "retrain " + NAME + " --seeds 0", "--seeds", "must be >= 1"),
    K("retrain-top-zero", "retrain " + NAME + " --top 0", "--top", "must be >= 1"),
    K("retrain-unknown", "retrain nosuch", "no experiment named 'nosuch'"),
    K("retrain-unknown-trial", "retrain " + NAME + " --trial arm=z#0", "--trial", "arm=z"),
    K("retrain-trial-not-a-trial", "retrain " + NAME + " --trial arm=a", "--trial",
      "STUDY#INDEX"),
    K("report-name-and-all", "report " + NAME + " --all", "--all", "not both"),
    K("retrain-as-empty", "retrain " + NAME + " --as= --write-only", "name", "''"),
    K("report-project-metric", "report --metric loss", "--metric", "own objective"),
    # --- submit and worker (docs/running-on-a-cluster.md)
    K("submit-bad-workload", "submit {tmp}/wl.yaml", "workload", "'no_such_module'",
      files={"wl.yaml": setk("workload", "no_such_module:train")}),
    K("submit-changed-space", "submit {tmp}/changed.yaml", "'" + NAME + "'", "already exists",
      files=CHANGED),
    K("worker-unknown", "worker " + NAME + " nosuch", "no experiment named 'nosuch'", NAME),
    K("worker-wait-negative", "worker --wait -5", "--wait", "must be > 0 seconds", "'-5'"),
    K("worker-base-dir-file", "worker " + NAME + " --base-dir {afile}", "--base-dir",
      "is not a folder"),
]
assert len({c.id for c in CLI_CASES}) == len(CLI_CASES)


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _argv(case: Cli, tmp: Path, backend: Backend) -> list[str]:
    (tmp / "afile").write_text("not a folder\n")
    exp = write(tmp, doc(), "ok.yaml")
    for name, content in case.files.items():
        write(tmp, content, name)
    subs = {"{file}": str(exp), "{tmp}": str(tmp), "{afile}": str(tmp / "afile")}
    argv = []
    for a in case.argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    if case.id == "note-empty-text":
        argv = ["note", NAME, " "]
    if case.store:
        argv += backend.store_args()
    return argv


# The cases that reach a store run on SQLite and on PostgreSQL; the others need no store.
CLI_PARAMS = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case in CLI_CASES
              for kind in (("sqlite", "pg") if case.store else ("sqlite",))]


@pytest.mark.parametrize(("case", "kind"), CLI_PARAMS)
def test_bad_command_line(case: Cli, kind: str, tmp_path: Path,
                          request: pytest.FixtureRequest,
                          capsys: pytest.CaptureFixture[str]) -> None:
    backend: Backend = request.getfixturevalue(f"{kind}_backend")
    argv = _argv(case, tmp_path, backend)
    before = backend.state()
    scratch_before = snapshot(tmp_path)
    code, out, err = cli(capsys, *argv)
    error_line(code, err, *case.fragments)
    assert backend.state() == before
    assert snapshot(tmp_path) == scratch_before  # no folder, store or report created
    if not case.argv or case.argv[0] != "note":
        assert "note added" not in out


def test_unwritable_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions (the path-under-a-file cases cover it)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code, _, err = cli(capsys, *run_argv(write(tmp_path, doc()), locked / "root"))
        error_line(code, err, "--root", "not writable", "locked")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_case_count() -> None:
    """The suite's promise: at least 150 bad inputs."""
    assert len(FILE_CASES) + len(CLI_CASES) >= 150


# ----------------------------------------------------------------------------- budgets
def test_lowered_budget_counts_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trials past a lowered search.trials stay in the store, dormant: every view ignores them."""
    root = tmp_path / "root"
    four = write(tmp_path, setk("search.trials", 4), "four.yaml")
    assert cli(capsys, *run_argv(four, root, "--no-report"))[0] == 0
    two = write(tmp_path, setk("search.trials", 2), "two.yaml")
    code, out, _ = cli(capsys, *run_argv(two, root))
    assert code == 0
    assert out.splitlines()[0].startswith(f"experiment '{NAME}': 4 completed, 0 infeasible")
    assert "2/0/0" in out and "4/0/0" not in out
    code, out, _ = cli(capsys, "status", NAME, "--root", str(root))
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("arm=a", "2", "2"), ("arm=b", "2", "2")]
    code, out, _ = cli(capsys, "trials", NAME, "--root", str(root), "--format", "json")
    records = json.loads(out)
    assert sorted((r["study"], r["index"]) for r in records) == [
        ("arm=a", 0), ("arm=a", 1), ("arm=b", 0), ("arm=b", 1)]
    code, out, _ = cli(capsys, "best", NAME, "--root", str(root), "--top", "5", "--format",
                       "json")
    assert {s: len(rs) for s, rs in json.loads(out).items()} == {"arm=a": 2, "arm=b": 2}
    code, out, _ = cli(capsys, "report", NAME, "--root", str(root))
    assert code == 0
    table = (root / "reports" / f"{NAME}.csv").read_text()
    assert [r["trials"] for r in csv.DictReader(io.StringIO(table))] == ["2", "2"]


# ----------------------------------------------------------------------------- broken pipe
def test_trials_into_head_exits_quietly(tmp_path: Path) -> None:
    """``tunebook trials X | head -1``: no BrokenPipeError traceback."""
    root = tmp_path / "root"
    store = Store.at_root(root)
    rows = [(i, {"learning_rate": 0.01 + i * 1e-6, "note": "x" * 80}, i) for i in range(3000)]
    store.register("many", "id", doc(name="many"),
                   [StudySpec("main", 0, {}, "quasi_random", 0, len(rows))], {"main": rows})
    store.close()
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    # About 400 kB: far more than a pipe holds, so the writer is still writing when head exits.
    for fmt in ("table", "csv", "json"):
        cmd = (f"{sys.executable} -m tunebook.cli trials many --root {root} --format {fmt} "
               "| head -1; echo ${PIPESTATUS[0]}")
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.stderr == "", proc.stderr
        first, status = proc.stdout.splitlines()
        assert "study" in first or first == "["
        assert status in ("0", "141")


def test_broken_pipe_in_process(monkeypatch: pytest.MonkeyPatch, sqlite_backend: Backend,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The same, deterministically: stdout raising BrokenPipeError on write."""

    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise io.UnsupportedOperation("no file descriptor")

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["trials", NAME, "--root", str(sqlite_backend.root)])
    assert code == 141
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- exports
INJECT = "=HYPERLINK(\"http://x\")"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose user strings try formulas, HTML and Markdown table breaks."""
    folder = tmp_path_factory.mktemp("hostile")
    d = doc(name="hostile", goal=f"{SCRIPT} | goal\nsecond line", search={"trials": 4},
            scientific={"arm": [INJECT, "-2+3", "@SUM(A1)", "+1", "a|b"]},
            nuisance={"learning_rate": {"type": "float", "low": 0.01, "high": 0.1},
                      "act": [SCRIPT, "\tTAB"]})
    root = folder / "root"
    assert main(run_argv(write(folder, d), root)) == 0
    for text in (INJECT, f"{SCRIPT} | note\nwith | pipes"):
        assert main(["note", "hostile", text, "--root", str(root)]) == 0
    assert main(["report", "hostile", "--root", str(root)]) == 0
    return root


def test_trials_csv_is_spreadsheet_safe(hostile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "trials", "hostile", "--root", str(hostile), "--format", "csv")
    assert code == 0
    cells = [c for row in csv.reader(io.StringIO(out)) for c in row]
    assert cells
    for c in cells:
        if c[:1] in ("=", "+", "@", "\t", "\r"):
            raise AssertionError(f"formula cell {c!r}")
        if c.startswith("-"):
            float(c)  # only numbers may start with a minus sign
    assert "'" + INJECT in cells and "'\tTAB" in cells and "'-2+3" in cells


def test_report_exports_are_escaped(hostile: Path) -> None:
    reports = hostile / "reports"
    table = (reports / "hostile.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 5
    for row in rows:
        for v in row.values():
            assert v[:1] not in ("=", "+", "@", "\t", "\r"), row
            if v.startswith("-"):
                float(v)
        assert row["notes"].startswith("'" + INJECT)

    md = (reports / "hostile.md").read_text(encoding="utf-8")
    assert "<script>" not in md
    assert "&lt;script&gt;" in md
    lines = md.splitlines()
    table_lines = [ln for ln in lines if ln.startswith("|")]
    assert len(table_lines) == 2 + 5  # header, rule, one row per study
    width = table_lines[0].count(" | ")
    for ln in table_lines[2:]:
        # Every | inside a cell is escaped: the row has as many cell breaks as the header.
        assert ln.count(" | ") == width, ln
    assert "second line" in md and "goal\n" not in md

    page = (reports / "hostile.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ----------------------------------------------------------------------------- non-finite values
def test_non_finite_values_never_reach_json(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A store holding inf (a metric reported as inf, params written by an older version):
    strict JSON (null), and the report is written."""
    root = tmp_path / "root"
    assert main(run_argv(write(tmp_path, doc(name="inf")), root, "--no-report")) == 0
    store = Store.at_root(root)
    exp = store.require_experiment("inf")
    trials = store.trials(exp.id)
    store.add_measurements(trials[0].id, [(30, "val_error", math.inf), (30, "odd", -math.inf)])
    store.set_summaries([TrialSummary(trials[1].id, best_step=10, best_value=math.inf,
                                      final_step=10, final_value=-math.inf)])
    code, out, err = cli(capsys, "report", "inf", "--root", str(root))
    assert code == 0, err
    page = (root / "reports" / "inf.html").read_text()
    data = page.split("id='tunebook-data'>", 1)[1].split("</script>", 1)[0]
    assert "Infinity" not in data and "NaN" not in data
    # An older version accepted infinite hyperparameter values (the report's axis plots do
    # not take them yet: analysis.plots).
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE trials SET params = :p WHERE id = :i"),
                     {"p": json.dumps({"arm": "a", "learning_rate": math.inf}),
                      "i": trials[2].id})
    store.close()
    for argv in (["trials", "inf", "--format", "json"],
                 ["trials", "inf", "--format", "json", "--metric", "odd"],
                 ["best", "inf", "--format", "json", "--top", "9"],
                 ["findings", "inf", "--format", "json"]):
        code, out, err = cli(capsys, *argv, "--root", str(root))
        assert code == 0, err
        assert "Infinity" not in out and "NaN" not in out, out
        json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


# ----------------------------------------------------------------------------- terminal output
def test_control_characters_are_shown_not_sent(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Names written by an older version may hold escape codes: tables show them escaped,
    JSON and CSV keep the real value."""
    root = tmp_path / "root"
    store = Store.at_root(root)
    evil = "x\x1b]0;pwned\x07\x1b[2J\u202e"
    config = doc(name="ctl", scientific={}, nuisance={
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "scale": "log"}})
    store.register(f"ctl{evil}", "id", config,
                   [StudySpec(f"s{evil}", 0, {}, "quasi_random", 0, 1)],
                   {f"s{evil}": [(0, {"p": f"v{evil}"}, 1)]})
    store.close()
    for argv in (["status"], ["trials", f"ctl{evil}"], ["best", f"ctl{evil}"]):
        code, out, err = cli(capsys, *argv, "--root", str(root))
        assert code == 0, err
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
        assert "\\x1b" in out
    code, out, _ = cli(capsys, "trials", f"ctl{evil}", "--root", str(root), "--format", "json")
    assert json.loads(out)[0]["study"] == f"s{evil}"
    code, _, err = cli(capsys, "best", "nosuch", "--root", str(root))
    line = error_line(code, err, "nosuch")
    assert "\x1b" not in line and "\\x1b" in line

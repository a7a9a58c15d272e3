"""The "any trial" picker's curves of a large experiment, in shard files beside the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunebook.report import shards, write_report

from reportdata import synthetic


def _payload(page: str) -> dict:  # type: ignore[type-arg]
    m = re.search(r"<script type='application/json' id='tunebook-data'>(.*?)</script>", page,
                  re.S)
    assert m is not None
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def _shard(path: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    m = re.fullmatch(r"\(window\.tunebookShards = window\.tunebookShards \|\| \{\}\)\[(\d+)\] = "
                     r"(.*);\n", path.read_text(encoding="utf-8"), re.S)
    assert m is not None, path
    return int(m.group(1)), json.loads(m.group(2))


def test_small_reports_embed_every_curve(tmp_path: Path) -> None:
    store = synthetic(tmp_path / "r")
    path, report = write_report(store, "synthetic", tmp_path / "out" / "report.html")
    payload = _payload(path.read_text())
    assert payload["shards"] == [] and not report.shards.files
    assert not (tmp_path / "out" / "report.files").exists()
    assert "' data-shard='" not in report.html and "id='trial-files'" not in report.html
    assert len(payload["trials"]) == 16


def test_curves_past_the_best_trials_go_to_shards(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "INLINE_TRIALS", 3)
    monkeypatch.setattr(shards, "PER_SHARD", 5)
    store = synthetic(tmp_path / "r")
    out = tmp_path / "out" / "report.html"
    folder = tmp_path / "out" / "report.files"
    folder.mkdir(parents=True)
    (folder / "curves-0123456789ab-000.js").write_text("old", encoding="utf-8")  # an old write
    (folder / "notes.txt").write_text("mine", encoding="utf-8")  # not a shard: left alone
    path, report = write_report(store, "synthetic", out)
    page = path.read_text()
    payload = _payload(page)
    inline = list(payload["trials"])
    assert len(inline) == 3
    # 13 more trials, 5 a file: 3 files, named in the page in order, nothing else left over.
    names = sorted(p.name for p in folder.iterdir() if p.suffix == ".js")
    assert len(names) == 3 and payload["shards"] == [f"report.files/{n}" for n in names]
    assert (folder / "notes.txt").exists()
    picked: dict[str, int] = {}
    for name in names:
        n, curves = _shard(folder / name)
        assert len(curves) <= 5
        for label, metrics in curves.items():
            picked[label] = n
            assert f"<option value='{label}' data-shard='{n}'>" in page
            for steps, values in metrics.values():
                assert len(steps) == len(values) <= 100
                assert all(v is None or v == float(f"{v:.5g}") for v in values)
    assert sorted(picked) == sorted(report.shards.where) and not set(picked) & set(inline)
    assert len(picked) + len(inline) == 16
    assert "report.files/" in page  # the page says where those curves are
    # A rewrite with other shards replaces them: no file of the first write is left.
    monkeypatch.setattr(shards, "PER_SHARD", 4)
    write_report(store, "synthetic", out)
    again = sorted(p.name for p in folder.iterdir() if p.suffix == ".js")
    assert len(again) == 4 and not set(again) & set(names)
    assert _payload(out.read_text())["shards"] == [f"report.files/{n}" for n in again]
    # The same data twice: the same files (their names are a hash of their content).
    write_report(store, "synthetic", out)
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".js") == again


def test_a_notebook_view_says_where_the_other_curves_are(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The view embeds the page in an iframe's srcdoc, where no file beside it can load.
    import html

    import tunebook

    monkeypatch.setattr(shards, "INLINE_TRIALS", 3)
    synthetic(tmp_path / "r")
    shown = html.unescape(tunebook.load("synthetic", root=tmp_path / "r")._repr_html_())
    assert "curves of the trials after the best 3 are in <code>synthetic.files/</code>" in shown
    assert "data-shard='0'" in shown and '"shards":["synthetic.files/curves-' in shown

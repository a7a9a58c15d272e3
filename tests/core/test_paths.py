"""Names become file names, and every file has one place under a root."""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

from tunebook.core.paths import (
    cache_dir,
    default_report_path,
    slug,
    store_file,
    trial_dir,
)


def test_names_that_differ_only_in_unsafe_characters_never_share_a_folder() -> None:
    assert slug("arm=a") == "arm=a" and slug("lr=0.1,b=2") == "lr=0.1,b=2"
    assert slug("a/b") != slug("a_b") and slug("a/b").startswith("a_b-")
    assert slug("x y") != slug("x?y")
    assert "/" not in slug("../../etc") and not slug("../../etc").startswith(".")
    assert trial_dir("r", "e", "a/b", 1) != trial_dir("r", "e", "a_b", 1)


def test_slug_is_injective() -> None:
    """Different names never share a folder, however adversarial (property-style)."""
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "_.=,+-/ \\:é\0\n"
    names = {"", ".", "..", "a/b", "a_b", "a b", "A", "a", "_", "-", "x" * 200}
    while len(names) < 3000:
        n = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        names.add(n)
    # Add each name's slug as a name of its own: the collision the user found.
    names |= {slug(n) for n in list(names)}
    names |= {slug(n) + "-" + "0" * 8 for n in list(names)[:200]}
    slugs: dict[str, str] = {}
    for n in names:
        s = slug(n)
        assert s not in slugs, (n, slugs.get(s), s)
        slugs[s] = n
        assert re.fullmatch(r"[A-Za-z0-9_.=,+-]+", s), s
        assert s not in (".", "..")
    assert slug("a/b") != slug(slug("a/b"))
    assert slug("plain-name") == "plain-name"  # safe names are kept


def test_a_root_holds_the_store_runs_cache_and_reports(tmp_path: Path) -> None:
    assert store_file(tmp_path) == tmp_path / "tunebook.db"
    assert cache_dir(str(tmp_path)) == tmp_path / "cache"
    assert trial_dir(tmp_path, "exp", "lr=0.1", 7) == tmp_path / "runs/exp/lr=0.1/trial-00007"
    assert trial_dir(tmp_path, "exp", "main", 123456).name == "trial-123456"
    page = default_report_path(tmp_path, "my exp/2")
    assert page.parent == tmp_path / "reports" and page.suffix == ".html"
    assert page.stem == slug("my exp/2") and "/" not in page.stem

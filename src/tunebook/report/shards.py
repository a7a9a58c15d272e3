"""The "any trial" picker's curves of a large experiment, in files beside its page.

A report embeds the curves of its :data:`INLINE_TRIALS` best trials; the others' go to
``NAME.files/curves-TOKEN-NNN.js`` beside ``NAME.html``, :data:`PER_SHARD` trials a file, each
a script that files its curves under ``window.tunebookShards[NNN]``. The page loads one with a
``<script>`` tag when a trial in it is picked: that works on a page opened from disk
(``file://``), where ``fetch`` is refused.

``TOKEN`` is a hash of the shards' content, so that the files of two writes never mix: the
shards are written first, the page (which names them) second, and the files no page names any
more are removed last. A page opened before a rewrite finds its files gone and says so (reload).
A page shown without its folder (a notebook's view) says where those curves are.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["INLINE_TRIALS", "PER_SHARD", "Shards", "round_values", "split", "write_shards"]

#: Trials whose picker curves the page embeds (the best ones); the rest go to shards.
INLINE_TRIALS = 200
#: Trials per shard file (a few hundred kilobytes each at most).
PER_SHARD = 200
#: Significant digits of the values drawn (a plot cannot show more; the page gets smaller).
DIGITS = 5
_SHARD = re.compile(r"curves-[0-9a-f]+-\d+\.js")

Curves = dict[str, list[list[Any]]]


def round_values(values: Sequence[float | None]) -> list[float | None]:
    """``values`` to :data:`DIGITS` significant digits; non-finite ones become None."""
    return [None if v is None or not math.isfinite(v) else float(f"{v:.{DIGITS}g}")
            for v in values]


@dataclass(frozen=True)
class Shards:
    """The picker's curves split between the page and its files.

    Attributes:
        inline: label -> curves embedded in the page.
        where: label -> the number of the shard holding its curves (absent: inline).
        files: file name -> its text, to write into :attr:`folder`.
        folder: the folder beside the page, relative to it (``NAME.files``).
    """

    inline: dict[str, Curves]
    where: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    folder: str = ""

    def urls(self) -> list[str]:
        """The shards' addresses relative to the page, by shard number."""
        return [f"{self.folder}/{name}" for name in self.files]


def split(curves: Mapping[str, Curves], folder: str, encode: Any) -> Shards:
    """``curves`` (label -> metric -> [steps, values], best trial first) as :class:`Shards`:
    the first :data:`INLINE_TRIALS` inline, the rest :data:`PER_SHARD` per file in ``folder``;
    ``encode`` turns a value into JSON text safe inside HTML."""
    labels = list(curves)
    inline = {lab: curves[lab] for lab in labels[:INLINE_TRIALS]}
    rest = labels[INLINE_TRIALS:]
    if not rest:
        return Shards(inline)
    bodies = [encode({lab: curves[lab] for lab in rest[i:i + PER_SHARD]})
              for i in range(0, len(rest), PER_SHARD)]
    token = hashlib.sha1("\n".join(bodies).encode()).hexdigest()[:12]
    files = {f"curves-{token}-{n:03d}.js": "(window.tunebookShards = window.tunebookShards "
             f"|| {{}})[{n}] = {body};\n" for n, body in enumerate(bodies)}
    where = {lab: i // PER_SHARD for i, lab in enumerate(rest)}
    return Shards(inline, where, files, folder)


def write_shards(page: Path, shards: Shards, write: Any) -> list[Path]:
    """Write ``shards``' files into their folder beside ``page`` with ``write(path, text)``
    (atomic); returns the shard files of earlier writes, to remove once the page is written."""
    folder = page.parent / (shards.folder or f"{page.stem}.files")
    if shards.files:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in shards.files.items():
            write(folder / name, text)
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir()
            if _SHARD.fullmatch(p.name) and p.name not in shards.files]


def folder_for(page: Path | str) -> str:
    """The shards' folder name beside ``page``: ``NAME.files`` for ``NAME.html``."""
    return f"{Path(page).stem}.files"

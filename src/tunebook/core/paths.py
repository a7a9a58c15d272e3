"""Where tunebook keeps things under a root folder, and how names become file names.

::

    <root>/tunebook.db                                    the default (SQLite) store
    <root>/runs/<experiment>/<study>/trial-00007/         one trial's folder
    <root>/runs/<experiment>/<study>/trial-00007/log.txt  its log (workload output, errors)
    <root>/runs/<experiment>/<study>/trial-00007/checkpoints/step-0000000060/
                                                          its checkpoint at step 60
    <root>/cache/                                         downloads shared by every trial
    <root>/reports/<experiment>.html                      ``tunebook report``'s default page

Every experiment or study name goes through :func:`slug` on its way to a file name.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = [
    "STORE_FILE",
    "TRIAL_LOG",
    "cache_dir",
    "checkpoint_folder",
    "checkpoint_folders",
    "checkpoints_dir",
    "default_report_path",
    "slug",
    "store_file",
    "trial_dir",
]

STORE_FILE = "tunebook.db"
TRIAL_LOG = "log.txt"
_STEP = "step-"  # a checkpoint's folder: step-0000000060


def slug(text: str) -> str:
    """A file-system-safe, readable and unique rendering of a name.

    Names that are already safe are kept as they are; any other gets a short hash of the
    original appended, so two names that differ only in unsafe characters (``a/b``, ``a_b``)
    never share a folder. A safe name that already ends like such a hash (``a_b-c14cddc0``, the
    slug of ``a/b``) gets one too: a kept name never ends like a hashed one, so two names map to
    the same folder only if their hashes collide.
    """
    s = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", text).strip("._")[:80] or "_"
    if s == text and not re.search(r"-[0-9a-f]{8}$", s):
        return s
    return f"{s}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def trial_dir(root: str | Path, experiment: str, study: str, index: int) -> Path:
    """The folder of one trial under a tunebook root."""
    return Path(root) / "runs" / slug(experiment) / slug(study) / f"trial-{index:05d}"


def store_file(root: str | Path) -> Path:
    """The default SQLite store of a tunebook root."""
    return Path(root) / STORE_FILE


def cache_dir(root: str | Path) -> Path:
    """The folder every trial under a root shares for downloads (data sets)."""
    return Path(root) / "cache"


def default_report_path(root: str | Path, name: str) -> Path:
    """Where ``tunebook report`` writes by default: ``<root>/reports/<name>.html``."""
    return Path(root) / "reports" / f"{slug(name)}.html"


def checkpoints_dir(trial_folder: str | Path) -> Path:
    """The folder of a trial's published checkpoints."""
    return Path(trial_folder) / "checkpoints"


def checkpoint_folder(checkpoints: str | Path, step: int) -> Path:
    """The folder of the checkpoint of ``step`` in a trial's checkpoints folder."""
    return Path(checkpoints) / f"{_STEP}{int(step):010d}"


def checkpoint_folders(checkpoints: str | Path) -> list[tuple[int, Path]]:
    """The checkpoints in a trial's checkpoints folder as ``(step, folder)``, oldest first
    (none when the folder does not exist or cannot be read)."""
    out = []
    try:
        entries = list(Path(checkpoints).iterdir())
    except OSError:
        return []
    for p in entries:
        if p.name.startswith(_STEP) and p.name[len(_STEP):].isdigit() and p.is_dir():
            out.append((int(p.name[len(_STEP):]), p))
    return sorted(out)

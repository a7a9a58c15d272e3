"""Files that must survive a crash: flushing them to disk, and the digest that verifies them.

Shared by the trial's local checkpoints (:mod:`tunebook.execution.trial`) and their shared
copies (:mod:`tunebook.execution.ckptstore`): one definition of "written" and of "intact".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fsync_path", "sha256_file"]


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a directory on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

"""Files that must survive a crash: flushing them to disk, and the digest that verifies them.

Shared by the trial's local checkpoints (:mod:`tunebook.execution.trial`) and their shared
copies (:mod:`tunebook.execution.ckptstore`): one definition of "written" and of "intact".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["file_digests", "files_problem", "fsync_path", "sha256_file"]


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


def file_digests(folder: Path, known: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every file under ``folder``, in
    path order; entries of ``known`` (digests just computed of the same files) are taken as
    they are."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            entry = (known or {}).get(rel)
            out[rel] = dict(entry) if isinstance(entry, dict) else {
                "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def files_problem(folder: Path, files: Mapping[str, Any]) -> str | None:
    """What is wrong with the files under ``folder`` against their recorded digests
    (:func:`file_digests`): the first one missing, of another size or another sha256; None
    when every one matches."""
    for name, entry in sorted(files.items()):
        if not isinstance(entry, dict):
            return f"{name} has no digest"
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != entry.get("bytes"):
            return f"{name} has {size} bytes, {entry.get('bytes')} were written"
        if sha256_file(file) != entry.get("sha256"):
            return f"{name} does not match its sha256"
    return None

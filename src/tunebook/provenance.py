"""Where a run came from: the tunebook version, the experiment file, the git commit.

The playbook's tracking table wants "specific reproduction commands or notes on what unsubmitted
changes were necessary": a commit plus a dirty flag says exactly that.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Provenance", "git_state", "provenance"]


def git_state(folder: str | Path) -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the git work tree holding ``folder``; ``(None, False)`` if none."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, False
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=folder, capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


@dataclass(frozen=True)
class Provenance:
    """What is needed to reproduce a run."""

    tunebook_version: str
    python: str
    file: str
    config_hash: str
    git_commit: str | None
    git_dirty: bool
    command: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the store."""
        return asdict(self)


def provenance(source: str, base_dir: str, config_hash: str, argv: list[str] | None = None
               ) -> Provenance:
    """Collect the provenance of a run of the experiment loaded from ``source``."""
    from tunebook import __version__

    commit, dirty = git_state(base_dir)
    command = shlex.join(argv) if argv else f"tunebook run {shlex.quote(source)}"
    return Provenance(tunebook_version=__version__, python=sys.version.split()[0], file=source,
                      config_hash=config_hash, git_commit=commit, git_dirty=dirty,
                      command=command)

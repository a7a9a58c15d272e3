"""Where a run came from: the tunebook version, the experiment file, the git commit.

The playbook's tracking table wants "specific reproduction commands or notes on what unsubmitted
changes were necessary": a commit, whether tracked files had uncommitted changes, and which of
the files the run depends on (the experiment file, the workload's module or the command's
script) were modified or not in git at all say exactly that.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tunebook.core.version import installed_version

if TYPE_CHECKING:
    from tunebook.experiment import Experiment

__all__ = ["GitState", "Provenance", "git_state", "provenance", "workload_files"]

GIT_TIMEOUT = 10.0
"""Seconds each git call may take before the run goes on without git information."""


class GitState(NamedTuple):
    """The git work tree holding a folder, as a run found it.

    Attributes:
        commit: HEAD's full hash; None outside a git work tree (or before the first commit).
        dirty: whether any tracked file differs from HEAD (staged or not).
        modified: the files asked about that are tracked and differ from HEAD.
        untracked: the files asked about that git does not track (new or ignored).
    Both lists hold paths relative to the work tree's top, for files inside it only.
    """

    commit: str | None
    dirty: bool
    modified: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()


_NO_GIT = GitState(None, False)


def _git(args: Sequence[str], cwd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=GIT_TIMEOUT)


def _changed_paths(porcelain: str) -> set[str]:
    """Paths (both sides of a rename) in ``git status --porcelain=v1 -z`` output."""
    tokens = porcelain.split("\0")
    out: set[str] = set()
    i = 0
    while i < len(tokens):
        entry = tokens[i]
        i += 1
        if len(entry) < 4:
            continue
        out.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy: the next token is the original path
            if i < len(tokens):
                out.add(tokens[i])
            i += 1
    return out


def git_state(folder: str | Path, files: Iterable[str | Path] = ()) -> GitState:
    """The state of the git work tree holding ``folder``, and of ``files`` in it.

    ``files`` (relative to ``folder`` or absolute) are checked for uncommitted changes and for
    not being tracked at all; files outside the work tree are ignored. Two git calls (the
    commit and top folder, then the status of tracked files), plus one when files must be
    looked up in the index; each is bounded by :data:`GIT_TIMEOUT`. Outside a git work tree,
    without git, or on a timeout: ``GitState(None, False)``.
    """
    try:
        head = _git(["rev-parse", "--show-toplevel", "HEAD"], folder)
        lines = head.stdout.split("\n")
        if head.returncode != 0 or len(lines) < 2:
            return _NO_GIT
        top, commit = Path(lines[0]).resolve(), lines[1].strip()
        wanted: list[str] = []
        for f in files:
            path = (Path(folder) / f).resolve()
            if path.is_file() and path.is_relative_to(top):
                rel = path.relative_to(top).as_posix()
                if rel not in wanted:
                    wanted.append(rel)
        status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=no"], top)
        if status.returncode != 0:
            return GitState(commit, False)
        changed = _changed_paths(status.stdout)
        modified = tuple(rel for rel in wanted if rel in changed)
        untracked: tuple[str, ...] = ()
        unknown = [rel for rel in wanted if rel not in changed]
        if unknown:
            listed = _git(["--literal-pathspecs", "ls-files", "-z", "--full-name", "--",
                           *unknown], top)
            if listed.returncode == 0:
                tracked = set(listed.stdout.split("\0"))
                untracked = tuple(rel for rel in unknown if rel not in tracked)
        return GitState(commit, bool(changed), modified, untracked)
    except (OSError, subprocess.SubprocessError, ValueError):
        return _NO_GIT


def workload_files(experiment: Experiment) -> list[Path]:
    """The files an experiment's run depends on besides the experiment file: a Python
    workload's module file, or a command's program and every argument naming an existing file
    (``train.py``, ``--config=model.yaml``), relative to the experiment's folder."""
    base = Path(experiment.base_dir)
    out: list[Path] = []
    if experiment.workload is not None:
        name = experiment.workload.partition(":")[0]
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            with contextlib.suppress(Exception):  # finding it may import its parents
                spec = importlib.util.find_spec(name)
                origin = spec.origin if spec is not None else None
        if origin:
            out.append(Path(origin))
    for arg in experiment.command or ():
        for candidate in (arg, arg.partition("=")[2]):
            if candidate and not candidate.startswith("-"):
                with contextlib.suppress(OSError, ValueError):
                    path = base / candidate
                    if path.is_file():
                        out.append(path)
    return out


@dataclass(frozen=True)
class Provenance:
    """What is needed to reproduce a run.

    ``git_modified`` and ``git_untracked`` name the files the run depends on (the experiment
    file, the workload's module or the command's script) that had uncommitted changes or were
    not in git; paths relative to the work tree's top. Provenance stored before these fields
    existed simply lacks them.
    """

    tunebook_version: str
    python: str
    file: str
    config_hash: str
    git_commit: str | None
    git_dirty: bool
    command: str
    git_modified: list[str] = field(default_factory=list)
    git_untracked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON-able) dict for the store."""
        return asdict(self)


def _run_files(source: str, base_dir: str, experiment: Experiment | None) -> list[Path]:
    files: list[Path] = []
    path = Path(source)
    with contextlib.suppress(OSError, ValueError):
        if path.is_file():
            files.append(path.resolve())
    if experiment is None and files:
        from tunebook.experiment import Experiment

        with contextlib.suppress(Exception):  # it was loaded already; nothing new to report
            experiment = Experiment.from_yaml(path)
    if experiment is not None:
        files.extend(workload_files(experiment))
    return files


def provenance(source: str, base_dir: str, config_hash: str, argv: list[str] | None = None,
               experiment: Experiment | None = None) -> Provenance:
    """Collect the provenance of a run of the experiment loaded from ``source``.

    The files checked in git are ``source`` and :func:`workload_files` of ``experiment``
    (default: the experiment read again from ``source`` when it is a file).
    """
    state = git_state(base_dir, _run_files(source, base_dir, experiment))
    command = shlex.join(argv) if argv else f"tunebook run {shlex.quote(source)}"
    return Provenance(tunebook_version=installed_version(), python=sys.version.split()[0],
                      file=source, config_hash=config_hash, git_commit=state.commit,
                      git_dirty=state.dirty, command=command,
                      git_modified=list(state.modified), git_untracked=list(state.untracked))

"""Shared checkpoints: a trial's checkpoints copied to a shared mount or an object store.

The trial folder stays on the worker's machine (workloads, commands and ``script.py`` need
paths); every checkpoint :meth:`Trial.publish_checkpoint <tunebook.execution.trial.Trial>`
publishes there is also uploaded here, and a worker that claims a trial whose newest recorded
checkpoint it does not hold downloads it first, so the trial resumes at its step on any
machine. Layout under the checkpoint root, one folder per trial named like its local one::

    <root>/<experiment>/<study>/trial-00007/step-0000000400-<token>/...     its files
    <root>/<experiment>/<study>/trial-00007/manifest-0000000400-<token>.json

A checkpoint exists once its manifest does, and a manifest is written last, in one step:
object stores have no rename, so the files go under a prefix no other upload uses (the step
and a token of time and randomness), never overwritten, and then one PUT of the manifest, made
create-only (``IfNoneMatch: *`` on S3); on a mount the manifest is written under a temporary
name and linked into place. The manifest lists every file's size and sha256; a reader trusts
only a checkpoint whose downloaded bytes match it and falls back to the previous one otherwise.
Removing a checkpoint removes its manifest first. A worker checks that the store still gives it
the trial just before writing a manifest, so a worker that lost its trial leaves at most an
unreferenced prefix, never a trusted checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunebook.core.durable import file_digests, files_problem, fsync_path
from tunebook.core.paths import checkpoint_folder, checkpoint_folders, slug
from tunebook.core.storage import split_location, storage_location_problem
from tunebook.errors import TunebookError
from tunebook.execution.ckptfiles import FsspecFiles, MountFiles

__all__ = ["CheckpointRootError", "RemoteCheckpoint", "SharedCheckpoints", "TrialCheckpoints",
           "fetch_best", "open_checkpoint_root", "prepare_trial"]

_FORMAT = 1
_MANIFEST = re.compile(r"^manifest-(\d{10})-([0-9a-f]{24})\.json$")
_STEP_PREFIX = re.compile(r"^step-(\d{10})-([0-9a-f]{24})$")
S3_HINT = "pip install 'tunebook[s3]'"


class CheckpointRootError(TunebookError):
    """The checkpoint root cannot be used: its form, a missing package, an unreachable bucket."""


def _token() -> str:
    """24 hex digits: nanoseconds (newer sorts later), then randomness (no two alike)."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"



# --------------------------------------------------------------------------- one trial
@dataclass(frozen=True)
class RemoteCheckpoint:
    """A manifest found under a trial's folder: the step and the name of its manifest."""

    step: int
    token: str

    @property
    def manifest(self) -> str:
        """The manifest's name."""
        return f"manifest-{self.step:010d}-{self.token}.json"

    @property
    def prefix(self) -> str:
        """The folder of its files."""
        return f"step-{self.step:010d}-{self.token}"


class TrialCheckpoints:
    """The shared copies of one trial's checkpoints."""

    def __init__(self, files: MountFiles | FsspecFiles, key: str, where: str) -> None:
        self._files, self.key, self.where = files, key, where

    def names(self) -> list[str]:
        """The names in the trial's folder (one listing of the shared store)."""
        return list(self._files.names(self.key))

    def listing(self, names: Sequence[str] | None = None) -> list[RemoteCheckpoint]:
        """The checkpoints with a manifest, oldest first (same step: the older upload first);
        from ``names`` (:meth:`names`) when given, else from a new listing."""
        found = []
        for name in self.names() if names is None else names:
            if (m := _MANIFEST.match(name)) is not None:
                found.append(RemoteCheckpoint(int(m.group(1)), m.group(2)))
        return sorted(found, key=lambda c: (c.step, c.token))

    def publish(self, step: int, folder: Path, holds_claim: Callable[[], bool] | None = None,
                meta: Mapping[str, Any] | None = None, known: Mapping[str, Any] | None = None
                ) -> RemoteCheckpoint | None:
        """Upload checkpoint ``folder`` of ``step``, then its manifest; returns it.

        ``known``: digests of its files already computed (its local manifest's), not hashed
        again. None, with no manifest written (the files uploaded are removed), when
        ``holds_claim`` says, just before the manifest is written, that this worker no longer
        has the trial.
        """
        ckpt = RemoteCheckpoint(step, _token())
        files = file_digests(folder, known)
        for rel in files:
            self._files.put(folder / rel, f"{self.key}/{ckpt.prefix}/{rel}")
        if holds_claim is not None and not holds_claim():
            self._files.remove_tree(f"{self.key}/{ckpt.prefix}")
            return None
        manifest = {"format": _FORMAT, "step": step, "prefix": ckpt.prefix, "files": files,
                    "meta": dict(meta) if meta is not None else None,
                    "published_at": time.time()}
        data = (json.dumps(manifest, indent=1) + "\n").encode()
        if not self._files.put_new(data, f"{self.key}/{ckpt.manifest}"):
            raise OSError(f"{self.where}/{ckpt.manifest} exists already")
        return ckpt

    def manifest(self, ckpt: RemoteCheckpoint) -> dict[str, Any] | None:
        """The manifest's content, or None when it is unreadable or not of this checkpoint."""
        try:
            data = json.loads(self._files.read(f"{self.key}/{ckpt.manifest}"))
            if not (isinstance(data, dict) and data.get("step") == ckpt.step
                    and data.get("prefix") == ckpt.prefix and isinstance(data.get("files"), dict)):
                return None
        except (OSError, ValueError):
            return None
        return data

    def fetch(self, ckpt: RemoteCheckpoint, dest: Path) -> str | None:
        """Download ``ckpt`` into the new folder ``dest``, verified; returns what is wrong (and
        leaves nothing at ``dest``), or None."""
        manifest = self.manifest(ckpt)
        if manifest is None:
            return "its manifest is unreadable"
        tmp = dest.with_name(f".tmp-fetch-{dest.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for rel in sorted(manifest["files"]):
                local = tmp / rel
                if ".." in Path(rel).parts or Path(rel).is_absolute():
                    return f"{rel!r} is not a path inside the checkpoint"
                local.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):  # then said missing below
                    self._files.get(f"{self.key}/{ckpt.prefix}/{rel}", local)
            problem = files_problem(tmp, manifest["files"])
            if problem is not None:
                return problem
            tmp.mkdir(parents=True, exist_ok=True)
            for path in tmp.rglob("*"):
                fsync_path(path)
            os.replace(tmp, dest)
            fsync_path(dest.parent)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, ckpt: RemoteCheckpoint) -> None:
        """Delete a checkpoint: the manifest first (from then on it is not trusted)."""
        self._files.remove(f"{self.key}/{ckpt.manifest}")
        self._files.remove_tree(f"{self.key}/{ckpt.prefix}")

    def set_aside(self, ckpt: RemoteCheckpoint, mark: str) -> None:
        """Keep a manifest for inspection under ``<mark>-manifest-...``, no longer trusted."""
        with contextlib.suppress(OSError):
            self._files.put_new(self._files.read(f"{self.key}/{ckpt.manifest}"),
                                f"{self.key}/{mark}-{ckpt.manifest}")
        self._files.remove(f"{self.key}/{ckpt.manifest}")

    def remove_orphans(self, up_to: int, names: Sequence[str] | None = None) -> None:
        """Delete the file prefixes no manifest lists, of steps up to ``up_to`` (uploads cut
        short by a killed worker, or refused because the worker had lost its trial); from
        ``names`` (:meth:`names`) when given, else from a new listing."""
        names = self.names() if names is None else names
        listed = {c.prefix for c in self.listing(names)}
        for name in names:
            m = _STEP_PREFIX.match(name)
            if m is not None and name not in listed and int(m.group(1)) <= up_to:
                self._files.remove_tree(f"{self.key}/{name}")

    def prune(self, keep: set[int], names: Sequence[str] | None = None) -> None:
        """Remove every checkpoint whose step is not in ``keep``, and the older uploads of a
        step that was published again; manifests first. ``names``: as for :meth:`listing`
        (one listing serves the whole pruning)."""
        names = self.names() if names is None else names
        found = self.listing(names)
        newest = {c.step: c for c in found}  # oldest first: the last upload of a step wins
        for ckpt in found:
            if ckpt.step not in keep or newest[ckpt.step] != ckpt:
                self.remove(ckpt)
        if found:
            self.remove_orphans(max(c.step for c in found), names)

    def value(self, ckpt: RemoteCheckpoint, metric: str | None) -> float | None:
        """The objective value the checkpoint's meta.json recorded (copied in its manifest)."""
        manifest = self.manifest(ckpt)
        meta = (manifest or {}).get("meta") or {}
        value = meta.get("value") if meta.get("metric") == metric else None
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


# --------------------------------------------------------------------------- the root
class SharedCheckpoints:
    """A checkpoint root: ``trial(...)`` gives one trial's shared checkpoints."""

    def __init__(self, location: str, files: MountFiles | FsspecFiles) -> None:
        self.location, self._files = location, files

    def trial(self, experiment: str, study: str, index: int) -> TrialCheckpoints:
        """The shared checkpoints of one trial (the same names as its local folder)."""
        key = f"{slug(experiment)}/{slug(study)}/trial-{index:05d}"
        return TrialCheckpoints(self._files, key, f"{self.location.rstrip('/')}/{key}")

    def probe(self) -> None:
        """Check that the root can be reached (nothing is written).

        Raises:
            CheckpointRootError: with the location and what is wrong.
        """
        problem = self._files.probe()
        if problem is not None:
            raise CheckpointRootError(f"checkpoint root {self.location}: {problem}")


@lru_cache(maxsize=8)
def _open(location: str, base_dir: str) -> SharedCheckpoints:
    problem = storage_location_problem(location)
    if problem is not None:
        raise CheckpointRootError(f"checkpoint root: {problem}")
    protocol, rest = split_location(location)
    if protocol is None:
        return SharedCheckpoints(location, MountFiles(Path(base_dir, rest).resolve()))
    try:
        import fsspec.core  # type: ignore[import-untyped]
    except ImportError:
        raise CheckpointRootError(
            f"checkpoint root {location}: needs fsspec"
            + (f": {S3_HINT}" if protocol in ("s3", "s3a") else " and its package for "
               f"{protocol}://")) from None
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except ImportError as exc:
        hint = S3_HINT if protocol in ("s3", "s3a") else str(exc).splitlines()[0]
        raise CheckpointRootError(f"checkpoint root {location}: {protocol}:// needs a package "
                                  f"that is not installed: {hint}") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointRootError(f"checkpoint root {location}: {exc}") from None
    return SharedCheckpoints(location, FsspecFiles(fs, str(path)))


def open_checkpoint_root(location: str | None, base_dir: str | Path = "."
                         ) -> SharedCheckpoints | None:
    """The checkpoint root at ``location`` (None: no shared checkpoints); a relative path is
    relative to ``base_dir``. fsspec's options (an S3 endpoint, credentials) come from its
    configuration and the standard environment (``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``...).

    Raises:
        CheckpointRootError: for a malformed location or a missing package (with what to
            install); reaching it is :meth:`SharedCheckpoints.probe`'s work.
    """
    if location is None:
        return None
    return _open(location, str(base_dir))


def prepare_trial(shared: TrialCheckpoints, local_root: Path, *, first_start: bool,
                  recorded_step: int | None, log: Callable[[str], None]) -> int | None:
    """Make a claimed trial's local checkpoint folder (``local_root``) resume from the newest
    checkpoint the store recorded, wherever it was written; returns the step fetched, or None.

    On a first start, shared checkpoints left by another store under the same names are set
    aside (``unrecorded-manifest-...``): they are not this trial's. Otherwise local checkpoints
    past ``recorded_step`` (their publication did not finish, or another machine rewound the
    trial since) are set aside, and when the shared store holds a newer checkpoint up to
    ``recorded_step`` than the local folder, the newest one that verifies is downloaded; a
    corrupt one is set aside (``corrupt-manifest-...``) and logged.
    """
    if first_start:
        for ckpt in shared.listing():
            shared.set_aside(ckpt, "unrecorded")
            log(f"set aside shared checkpoint {ckpt.manifest}, which this store did not record")
        return None
    at_most = recorded_step or 0
    local = checkpoint_folders(local_root)
    for step, path in local:
        if step > at_most:
            aside = path.with_name(f"unrecorded-{path.name}-{int(time.time())}")
            with contextlib.suppress(OSError):
                path.rename(aside)
            log(f"set aside local checkpoint {path.name}: the store records step {at_most}")
    newest_local = max((s for s, _ in local if s <= at_most), default=-1)
    for ckpt in reversed(shared.listing()):
        if ckpt.step <= newest_local:
            break
        if ckpt.step > at_most:
            continue
        local_root.mkdir(parents=True, exist_ok=True)
        problem = shared.fetch(ckpt, checkpoint_folder(local_root, ckpt.step))
        if problem is None:
            log(f"fetched the checkpoint at step {ckpt.step} from {shared.where}")
            return ckpt.step
        shared.set_aside(ckpt, "corrupt")
        log(f"shared checkpoint at step {ckpt.step} is corrupt ({problem}): set aside, "
            f"trying the previous one")
    return None


def fetch_best(shared: TrialCheckpoints, local_root: Path, best_step: int | None,
               metric: str | None, sign: float) -> int | None:
    """Download a finished trial's best shared checkpoint into its local checkpoint folder
    (``local_root``) for a final evaluation on a machine that did not keep it; returns its step,
    or None when no shared checkpoint verifies.

    The best one is the checkpoint at the trial's ``best_step``, else the one whose recorded
    objective value (``metric``, better when ``sign x value`` is smaller) is best, as
    :func:`tunebook.execution.final_eval.best_checkpoint` chooses among local ones. One that
    does not verify is skipped for the next best (and left in place: a final evaluation only
    reads). A step already in the local folder is not downloaded again.
    """
    newest = {c.step: c for c in shared.listing()}  # the last upload of a step wins

    def rank(ckpt: RemoteCheckpoint) -> tuple[int, float, int]:
        if ckpt.step == best_step:
            return (0, 0.0, ckpt.step)
        value = shared.value(ckpt, metric)
        return (1, sign * value, ckpt.step) if value is not None else (2, 0.0, ckpt.step)

    # Each rank once: ranking reads the checkpoint's manifest from the shared store.
    for (tier, _, _), ckpt in sorted(((rank(c), c) for c in newest.values()),
                                     key=lambda rc: rc[0]):
        if tier == 2:
            break
        dest = checkpoint_folder(local_root, ckpt.step)
        if dest.is_dir():
            return ckpt.step
        local_root.mkdir(parents=True, exist_ok=True)
        if shared.fetch(ckpt, dest) is None:
            return ckpt.step
    return None

"""Where shared checkpoints are written: a folder of this machine (a shared mount), or an fsspec
file system (S3 through s3fs, GCS, Azure...). Both offer the few operations
:mod:`tunebook.execution.ckptstore` needs, with keys relative to the checkpoint root; only
:meth:`put_new` must be atomic and create-only (the manifest, the commit point).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from tunebook.core.durable import fsync_path

__all__ = ["FsspecFiles", "MountFiles"]


class MountFiles:
    """A folder of this machine (a shared mount): every file is written under a temporary name
    and renamed (or, for :meth:`put_new`, hard-linked) into place in the same folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def probe(self) -> str | None:
        """What keeps the root from being used (missing, not writable, no bucket), or None."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable"
        return None

    def put(self, local: Path, key: str) -> None:
        """Copy the local file to ``key`` (overwriting; keys are never reused)."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
        shutil.copyfile(local, tmp)
        fsync_path(tmp)
        os.replace(tmp, dest)

    def put_new(self, data: bytes, key: str) -> bool:
        """Write ``data`` at ``key`` in one step unless it exists; False if it does."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
        tmp.write_bytes(data)
        fsync_path(tmp)
        try:
            os.link(tmp, dest)  # create-only and atomic: fails if the name exists
        except FileExistsError:
            return False
        except OSError:  # a mount without hard links: the unique name makes this safe
            if dest.exists():
                return False
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_path(dest.parent)
        return True

    def get(self, key: str, local: Path) -> None:
        """Copy ``key`` to the local path."""
        shutil.copyfile(self._path(key), local)

    def read(self, key: str) -> bytes:
        """The bytes at ``key``."""
        return self._path(key).read_bytes()

    def names(self, key: str) -> list[str]:
        """The names directly under the folder ``key`` (none if it does not exist)."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return sorted(p.name for p in self._path(key).iterdir()
                          if not p.name.startswith(".tmp-"))
        return []

    def remove(self, key: str) -> None:
        """Delete the object ``key`` (nothing if it does not exist)."""
        self._path(key).unlink(missing_ok=True)

    def remove_tree(self, key: str) -> None:
        """Delete everything under the folder ``key``."""
        shutil.rmtree(self._path(key), ignore_errors=True)


class FsspecFiles:
    """An fsspec file system (S3 through s3fs, GCS, Azure...): no rename, one PUT per object."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs, self.root = fs, root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def probe(self) -> str | None:
        """What keeps the root from being used (missing, not writable, no bucket), or None."""
        bucket = self.root.split("/", 1)[0]
        try:
            if not self.fs.exists(bucket):
                return f"bucket {bucket!r} does not exist"
        except Exception as exc:  # credentials, endpoint, network: said as they come
            return f"cannot reach bucket {bucket!r} ({type(exc).__name__}: {exc})"
        return None

    def put(self, local: Path, key: str) -> None:
        """Copy the local file to ``key`` (overwriting; keys are never reused)."""
        self.fs.put_file(str(local), self._path(key))

    def put_new(self, data: bytes, key: str) -> bool:
        """Write ``data`` at ``key`` in one step unless it exists; False if it does."""
        try:
            self.fs.pipe_file(self._path(key), data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:  # s3fs names the failed precondition
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                return False
            raise
        return True

    def get(self, key: str, local: Path) -> None:
        """Copy ``key`` to the local path."""
        self.fs.get_file(self._path(key), str(local))

    def read(self, key: str) -> bytes:
        """The bytes at ``key``."""
        data: bytes = self.fs.cat_file(self._path(key))
        return data

    def names(self, key: str) -> list[str]:
        """The names directly under the folder ``key`` (none if it does not exist)."""
        try:
            entries = self.fs.ls(self._path(key), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def remove(self, key: str) -> None:
        """Delete the object ``key`` (nothing if it does not exist)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def remove_tree(self, key: str) -> None:
        """Delete everything under the folder ``key``."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(key), recursive=True)



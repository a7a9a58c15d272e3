"""Where shared checkpoints may live: a local or shared-mount path, or an fsspec URL.

Only the form of a location is checked here (the experiment file's ``checkpoint_root`` and
``--checkpoint-root`` are read long before anything is opened); opening it is
:mod:`tunebook.execution.ckptstore`'s work. fsspec is imported only for a URL with a protocol.
"""

from __future__ import annotations

import re

__all__ = ["LOCAL_PROTOCOLS", "split_location", "storage_location_problem"]

LOCAL_PROTOCOLS = ("file", "local")
"""Protocols that name this machine's file system (a shared mount, for several machines)."""

# Known to fsspec but useless for checkpoints that other processes and machines must read:
# read-only (http), or private to one process (memory).
_UNSUITABLE = {"http": "read-only", "https": "read-only",
               "memory": "private to one process: other workers would not see it"}
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


def split_location(location: str) -> tuple[str | None, str]:
    """``(protocol, rest)``: ``("s3", "bucket/prefix")``, ``(None, "/mnt/ckpt")`` for a path.

    ``file://`` URLs come back as plain paths (protocol None).
    """
    m = _PROTOCOL.match(location)
    if m is None:
        return None, location
    protocol, rest = m.group(1).lower(), m.group(2)
    if protocol in LOCAL_PROTOCOLS:
        return None, rest
    return protocol, rest


def storage_location_problem(location: object) -> str | None:
    """What is wrong with the form of a checkpoint location (with the value), or None.

    A path or ``file://`` URL: any non-empty path. A URL ``PROTOCOL://BUCKET/PREFIX``: the
    protocol must be one fsspec knows (when fsspec is installed; otherwise opening the location
    says what to install) and suitable for shared checkpoints, and a bucket must be named.
    """
    if not isinstance(location, str):
        return f"must be a path or a URL (s3://bucket/prefix), got {location!r}"
    shown = repr(location) if len(location) <= 200 else repr(location[:200]) + "..."
    if not location.strip() or "\0" in location:
        return f"must be a path or a URL (s3://bucket/prefix), got {shown}"
    protocol, rest = split_location(location)
    if protocol is None:
        return None if rest.strip() else f"names no folder, got {shown}"
    if protocol in _UNSUITABLE:
        return f"protocol {protocol!r} cannot hold shared checkpoints ({_UNSUITABLE[protocol]}), " \
               f"got {shown}"
    try:
        from fsspec.registry import (  # type: ignore[import-untyped]
            known_implementations,
            registry,
        )
    except ImportError:  # opening it says what to install
        known = None
    else:
        known = set(known_implementations) | set(registry)
    if known is not None and protocol not in known:
        return (f"unknown protocol {protocol!r} (fsspec knows s3, gcs, az, ... and file paths), "
                f"got {shown}")
    if not rest.strip("/").strip():
        return f"names no bucket (PROTOCOL://BUCKET/PREFIX), got {shown}"
    return None

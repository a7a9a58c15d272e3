"""The installed tunebook's version, read from the package metadata (pyproject.toml's).

One source of truth: the version is written once, in pyproject.toml, and every reader (the
package's ``__version__``, the provenance of a run) asks :func:`installed_version`. It is read
on first use, not at ``import tunebook``: importlib.metadata costs about 15 ms to import.
"""

from __future__ import annotations

import functools

__all__ = ["UNKNOWN_VERSION", "installed_version"]

UNKNOWN_VERSION = "0+unknown"
"""The version reported when tunebook runs from a source tree that was never installed."""


@functools.cache
def installed_version(distribution: str = "tunebook") -> str:
    """The version of ``distribution`` as installed, or :data:`UNKNOWN_VERSION` when it is not
    installed (a source checkout put on ``sys.path`` by hand)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION

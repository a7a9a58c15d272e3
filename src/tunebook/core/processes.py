"""Local processes: is one alive, and dying with the process that started us (Linux)."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent", "die_with_parent_sigkill", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:  # a zombie (dead, not yet reaped by its parent) is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process the moment its parent dies (prctl
    ``PR_SET_PDEATHSIG``); nothing elsewhere. Safe in a ``preexec_fn``."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def die_with_parent_sigkill() -> None:
    """:func:`die_with_parent` with SIGKILL: for a child process that must not outlive its
    parent by an instant (a ``preexec_fn``, which takes no argument)."""
    die_with_parent(signal.SIGKILL)

"""Local processes: is one alive, worker names that say which process holds a trial, and dying
with the process that started us (Linux)."""

from __future__ import annotations

import os
import signal
import socket
import sys

__all__ = [
    "die_with_parent",
    "die_with_parent_sigkill",
    "host_name",
    "pid_alive",
    "worker_alive",
    "worker_name",
    "worker_pid",
]


HOST_ENV = "TUNEBOOK_HOST"


def host_name() -> str:
    """This machine's name as tunebook records it: ``$TUNEBOOK_HOST`` when set, else the
    system's host name.

    Workers on different machines must have different names (a worker's trials are only
    judged dead by pid on its own host; elsewhere only by heartbeat). Set it where containers
    share a host name, or to stand for another machine in tests.
    """
    return os.environ.get(HOST_ENV) or socket.gethostname()


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


def _started(pid: int) -> str | None:
    """When the process started (clock ticks since boot, Linux), to tell it from a process
    that got the same pid later; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_name(label: str, pid: int | None = None) -> str:
    """The name a worker claims trials under: ``host:pid.start:label``.

    The pid is the process that runs the trials (with its start time where the system tells
    it), so whoever finds one of its trials ``running`` can tell whether that very process is
    still alive (see :func:`worker_alive`), even once the pid has been reused.
    """
    pid = os.getpid() if pid is None else pid
    started = _started(pid)
    ident = str(pid) if started is None else f"{pid}.{started}"
    return f"{host_name()}:{ident}:{label}"


def worker_pid(name: str | None) -> int | None:
    """The pid in a worker name made by :func:`worker_name` on this host, else None."""
    parts = (name or "").split(":")
    if len(parts) >= 3 and parts[0] == host_name():
        pid = parts[1].split(".", 1)[0]
        if pid.isdigit():
            return int(pid)
    return None


def worker_alive(name: str | None) -> bool | None:
    """Whether the process a worker name (on this host) stands for is alive; None when the
    name is not one of this host's."""
    pid = worker_pid(name)
    if pid is None:
        return None
    if not pid_alive(pid):
        return False
    ident = (name or "").split(":")[1]
    if "." in ident:  # a live process with this pid, but is it the same one?
        started = _started(pid)
        return started is None or started == ident.split(".", 1)[1]
    return True

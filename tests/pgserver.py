"""A throwaway PostgreSQL server for the store's conformance tests (real server, real driver).

Started from the machine's PostgreSQL binaries (Debian's package; `make test` installs it when
missing) in a temporary folder, listening on 127.0.0.1 at a free port; stopped at the end.
As root, the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    """True when initdb, pg_ctl and postgres can be found."""
    return all(_bin(n) for n in ("initdb", "pg_ctl", "postgres"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """Start with :meth:`start`, get a fresh database URL with :meth:`new_database`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tunebook-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)

    def start(self) -> None:
        """initdb and start the server; raises with PostgreSQL's output on failure."""
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = _bin("initdb")
        assert initdb
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "tunebook",
                  "--no-sync", "-E", "UTF8")
        self._start()

    def _start(self) -> None:
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log.txt"), "-w", "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.dir} -F", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError((self.dir / "log.txt").read_text())

    def new_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=tunebook dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://tunebook@127.0.0.1:{self.port}/{name}"

    def pause(self) -> None:
        """Stop the server as an administrator restarting it would (fast shutdown: sessions
        are terminated), keeping its data and port for :meth:`resume`."""
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl
        self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server paused by :meth:`pause` again, on the same port, with its data."""
        self._start()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        pg_ctl = _bin("pg_ctl")
        if pg_ctl and self.data.exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

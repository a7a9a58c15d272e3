"""A TCP proxy in front of a server, whose network can be dropped and restored by a test.

Clients connect to ``127.0.0.1:proxy.port`` instead of the server. :meth:`NetProxy.pause`
stands for the network to the server going away: every open connection is cut and new ones
are refused (nothing listens on the port any more). :meth:`NetProxy.resume` brings it back on
the same port. Threads, no binary (toxiproxy) needed.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["NetProxy"]


class NetProxy:
    """Relays every connection to ``127.0.0.1:target_port``; see the module's docstring."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.connections = 0  # accepted so far
        self.cut = 0  # connections cut by pause()
        self.resume()

    def url(self, url: str) -> str:
        """``url`` (a database URL naming the target's port) through the proxy."""
        return url.replace(f":{self.target[1]}/", f":{self.port}/")

    def resume(self) -> None:
        """Listen again (the first time: on a free port, kept from then on)."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR set
            self.port = listener.getsockname()[1]
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def pause(self) -> None:
        """Cut every open connection and refuse new ones until :meth:`resume`."""
        with self._lock:
            listener, self._listener = self._listener, None
            victims, self._open = self._open, set()
            self.cut += len(victims) // 2
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        for s in victims:
            _close(s)

    def close(self) -> None:
        """Stop for good."""
        self.pause()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # paused
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # paused meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._open |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with self._lock:
            self._open -= {src, dst}
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()

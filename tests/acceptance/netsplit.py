"""A TCP forwarder on 127.0.0.1 that a test cuts off from its target, as a partition would.

Clients connect to ``port`` and are passed through to the target (PostgreSQL). After
``cut`` nothing passes either way: bytes are dropped, and a new connection is accepted but
never answered, so a client waits as it would on a network that lost its packets. ``heal``
resets every connection that lost bytes or was opened meanwhile (as a firewall that dropped
their state would), so their peers notice and reconnect, and forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Forwarder:
    """Use as a context manager; route a client through it with ``url``."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._broken: set[socket.socket] = set()
        """Sockets whose connection lost bytes, or was opened, during the cut."""

    def __enter__(self) -> Forwarder:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _close(sock)

    def url(self, store_url: str) -> str:
        """``store_url`` (a URL on the target) routed through this forwarder."""
        host = f"{self.target[0]}:{self.target[1]}"
        assert host in store_url, store_url
        return store_url.replace(host, f"127.0.0.1:{self.port}")

    def cut(self) -> None:
        """From now on nothing passes, either way."""
        self._cut.set()

    def heal(self) -> None:
        """Reset the connections the cut broke, then pass everything again."""
        with self._lock:
            broken, self._broken = self._broken, set()
            self._cut.clear()
        for sock in broken:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
                if self._cut.is_set():
                    self._broken.add(client)
                    server = None
                else:
                    server = socket.create_connection(self.target)
                    self._open.add(server)
            if server is None:  # read and drop whatever it sends, until healed
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    dropped = sink is None or self._cut.is_set()
                    if dropped:
                        self._broken.update(s for s in (source, sink) if s is not None)
                if not dropped and sink is not None:
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            if sock is not None:
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

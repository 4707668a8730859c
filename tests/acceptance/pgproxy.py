"""A TCP proxy in front of PostgreSQL that can stop a client in the middle of a pipeline.

It reads the frontend side of the wire protocol (length-prefixed messages, the first one
untyped) and counts the Execute messages each connection has sent since its last Sync.
Once armed, the first connection to reach ``executes`` of them — a pipelined write such as
psycopg's ``executemany`` — is held: nothing more it sends is passed on, and ``held`` is
set. The server then sees what a client frozen mid-write leaves: a session ``active``,
waiting to read from its client, inside a transaction. ``release`` lets it go on; when the
server ends the session, ``ended`` is set.

Connect through it with ``sslmode=disable`` (an encrypted stream cannot be read).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

_UNTYPED_REQUESTS = (80877103, 80877104)  # SSLRequest, GSSENCRequest: a startup follows


class PipelineFreezer:
    """The proxy; use as a context manager, connect to ``port`` on 127.0.0.1."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432), executes: int = 10):
        self.target = target
        self.executes = executes
        self.armed = threading.Event()
        self.held = threading.Event()
        self.ended = threading.Event()
        self._release = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()

    def __enter__(self) -> PipelineFreezer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _hang_up(sock)
            sock.close()

    def url(self, store_url: str) -> str:
        """``store_url`` (a PostgreSQL URL on the target) routed through this proxy."""
        host = f"{self.target[0]}:{self.target[1]}"
        assert host in store_url, store_url
        routed = store_url.replace(host, f"127.0.0.1:{self.port}")
        return routed + ("&" if "?" in routed else "?") + "sslmode=disable&gssencmode=disable"

    def release(self) -> None:
        """Let a held connection go on."""
        self._release.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()
            threading.Thread(target=self._backend, args=(server, client), daemon=True).start()

    def _backend(self, server: socket.socket, client: socket.socket) -> None:
        """Server to client, as it comes; when the server hangs up, so does the client."""
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        if self.held.is_set():
            self.ended.set()
        for sock in (client, server):
            _hang_up(sock)

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server, message by message, counting Executes since the last Sync."""
        buffer = b""
        typed = False
        executes = 0
        try:
            while data := client.recv(65536):
                buffer += data
                while True:
                    header = 5 if typed else 4
                    if len(buffer) < header:
                        break
                    size = int.from_bytes(buffer[header - 4 : header], "big")
                    end = header - 4 + size
                    if len(buffer) < end:
                        break
                    message, buffer = buffer[:end], buffer[end:]
                    server.sendall(message)
                    if not typed:
                        code = int.from_bytes(message[4:8], "big") if size >= 8 else 0
                        typed = code not in _UNTYPED_REQUESTS
                        continue
                    if message[:1] == b"S":
                        executes = 0
                    elif message[:1] == b"E":
                        executes += 1
                        if executes >= self.executes and self.armed.is_set():
                            self.armed.clear()
                            self.held.set()
                            self._release.wait()
        except OSError:
            pass


def _hang_up(sock: socket.socket) -> None:
    """Shut both ways: a thread blocked reading it wakes, and the peer sees the end (a
    close alone does neither while another thread is in ``recv``)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

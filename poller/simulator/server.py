"""Serving the simulator: ``SimulatorServer`` in a background thread, ``serve`` in a running loop.

Neither installs signal handlers: the program (or test) that hosts the simulator
keeps its own, and stops it through ``stop()`` or the ``stop`` event.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from poller import serving
from poller.simulator.app import build_app
from poller.simulator.state import Simulator

START_TIMEOUT = 10.0


_BACKLOG = 128


def _server(
    sim: Simulator, host: str, port: int, on_started: Callable[[], None] | None
) -> serving.Server:
    config = serving.config(build_app(sim), host=host, port=port)
    return serving.Server(config, on_started)


async def serve(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``sim`` in the running event loop until ``stop`` is set (or the task is cancelled).

    ``ready`` is set once the server accepts connections. A busy port raises ``OSError``.
    ``sock``, a socket already bound by the caller (``bind(host, 0)`` for a free port whose
    number the caller keeps), replaces ``host`` and ``port``.
    """
    if sock is None:
        sock = bind(host, port)
    host, port = sock.getsockname()[:2]
    server = _server(sim, host, port, ready.set if ready is not None else None)
    await serving.serve(server, sock, stop)


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket for the simulator; port 0 picks a free one (``getsockname`` tells)."""
    return serving.listen_socket((host, port), backlog=_BACKLOG)


class SimulatorServer:
    """The simulator served on ``host`` from a background thread; a context manager.

    ``port=0`` picks a free port. ``url`` is the base URL a Mistral client uses
    (``http://127.0.0.1:PORT/v1``), ``root`` the same without ``/v1``.
    """

    def __init__(
        self, sim: Simulator | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.sim = sim if sim is not None else Simulator()
        self.host = host
        self._requested_port = port
        self.port = port
        self._server: serving.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def root(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self) -> SimulatorServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the simulator server is already running")
        self._sock = serving.listen_socket((self.host, self._requested_port), backlog=_BACKLOG)
        self.port = self._sock.getsockname()[1]
        started = threading.Event()
        self._server = _server(self.sim, self.host, self.port, started.set)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, self._sock), name="poller-simulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not started.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                error = self._error
                self.stop()
                raise RuntimeError(f"the simulator server did not start: {error!r}")
        return self

    def _run(self, server: serving.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start(); a thread has nowhere else to raise
            self._error = exc

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

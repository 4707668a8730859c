"""Serving the simulator: ``SimulatorServer`` in a background thread, ``serve`` in a running loop.

Neither installs signal handlers: the program (or test) that hosts the simulator
keeps its own, and stops it through ``stop()`` or the ``stop`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn

from poller.simulator.app import build_app
from poller.simulator.state import Simulator

START_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone and reports when it is up."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def _server(sim: Simulator, host: str, port: int, on_started: Callable[[], None] | None) -> _Server:
    config = uvicorn.Config(
        build_app(sim),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        # leave the host program's logging configuration as it is
        log_config=None,
        access_log=False,
    )
    return _Server(config, on_started)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a busy port fails with a plain ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it every keep-alive answer waits 40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``sim`` in the running event loop until ``stop`` is set (or the task is cancelled).

    ``ready`` is set once the server accepts connections.
    """
    sock = _bind(host, port)
    server = _server(sim, host, port, ready.set if ready is not None else None)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    waiting = asyncio.create_task(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait(
            {serving} if waiting is None else {serving, waiting},
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        server.should_exit = True
        if waiting is not None:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()
    if not serving.cancelled():
        serving.result()  # re-raises what stopped the server, if anything


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
        self._server: _Server | None = None
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
        self._sock = _bind(self.host, self._requested_port)
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

    def _run(self, server: _Server, sock: socket.socket) -> None:
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

"""Serving an ASGI app with uvicorn inside the daemon's own event loop.

The simulator, the recording proxy and the ops listener serve this way: the socket is bound
first (a busy port fails at once, as an ``OSError`` the caller words for its user), uvicorn
installs no signal handlers (the daemon owns SIGTERM and SIGINT), and the server runs until
the daemon's stop event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

Address = tuple[Any, ...]
"""What ``socket.bind`` takes for TCP: ``(host, port)``, or an address ``getaddrinfo`` gave."""


class Server(uvicorn.Server):
    """uvicorn that leaves signals to the daemon and calls ``on_started`` once it accepts."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def config(app: Callable[..., Any], **options: Any) -> uvicorn.Config:
    """uvicorn settings for a listener in the daemon: no lifespan, the host's logging left as is.

    ``options`` add settings a listener needs of its own (a graceful-shutdown timeout, headers).
    """
    return uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        log_config=None,
        access_log=False,
        **options,
    )


def listen_socket(
    address: Address, *, backlog: int, family: socket.AddressFamily | None = None
) -> socket.socket:
    """A bound, listening TCP socket; raises a plain ``OSError`` if the port is taken.

    ``family`` defaults to IPv6 for a host with a ``:`` in it, else IPv4 (a host name then
    binds its IPv4 address). uvicorn calls ``listen`` again with its own ``backlog`` setting
    once it starts serving, so ``backlog`` here holds until then.
    """
    if family is None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it every keep-alive answer waits 40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    server: Server,
    sock: socket.socket,
    stop: asyncio.Event | None = None,
    *,
    name: str | None = None,
) -> None:
    """Run ``server`` on ``sock`` until ``stop`` is set, the server ends or the task is cancelled.

    Stopping lets requests in flight finish (for the config's ``timeout_graceful_shutdown``,
    if set), then closes ``sock``. Re-raises what ended the server, if anything.
    """
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=name)
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
        serving.result()

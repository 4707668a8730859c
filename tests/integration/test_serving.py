"""poller.serving over real sockets: a tiny ASGI app served on 127.0.0.1 (and ::1 if present)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest

from poller import serving

Message = MutableMapping[str, Any]


async def hello(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_serves_until_stop_is_set() -> None:
    """An app served on port 0 answers HTTP; setting stop ends serve() and closes its socket."""
    sock = serving.listen_socket(("127.0.0.1", 0), backlog=8)
    port = sock.getsockname()[1]
    started, stop = asyncio.Event(), asyncio.Event()
    server = serving.Server(serving.config(hello), on_started=started.set)
    task = asyncio.create_task(serving.serve(server, sock, stop))
    await asyncio.wait_for(started.wait(), 5)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/")
    assert (answer.status_code, answer.text) == (200, "hello")
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sock.fileno() == -1


async def test_leaves_signal_handlers_alone() -> None:
    """Serving installs no signal handlers: the daemon keeps SIGINT and SIGTERM."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    started, stop = asyncio.Event(), asyncio.Event()
    server = serving.Server(serving.config(hello), on_started=started.set)
    sock = serving.listen_socket(("127.0.0.1", 0), backlog=8)
    task = asyncio.create_task(serving.serve(server, sock, stop))
    await asyncio.wait_for(started.wait(), 5)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    stop.set()
    await asyncio.wait_for(task, 5)


def test_a_taken_port_raises_oserror() -> None:
    """Binding a port another socket listens on raises a plain OSError."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        with pytest.raises(OSError):
            serving.listen_socket(holder.getsockname(), backlog=8)


def test_socket_says_tcp_so_asyncio_sets_nodelay() -> None:
    """The socket names IPPROTO_TCP, which asyncio needs to set TCP_NODELAY on connections."""
    with serving.listen_socket(("127.0.0.1", 0), backlog=8) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_host_binds_ipv6() -> None:
    """A host with a colon in it is bound as IPv6."""
    with serving.listen_socket(("::1", 0), backlog=8) as sock:
        assert sock.family == socket.AF_INET6

"""The sinks' HTTP transport of lanes against a real HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from poller.sinks import http as http_sink
from poller.sinks.lanes import Lanes

from .conftest import eventually


class Server:
    """A keep-alive HTTP/1.1 server that notes each request's connection (the client's port)
    and answers only while ``open`` is set."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.ports: list[int] = []
        self.arrived = asyncio.Condition()
        self.connections = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                async with self.arrived:
                    self.ports.append(port)
                    self.arrived.notify_all()
                await self.open.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    async def until(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.ports) >= count), 10)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook"
    async with listener:
        yield srv
        listener.close()


async def test_each_request_in_flight_has_a_connection_of_its_own(server: Server) -> None:
    """Three at once on three lanes: three connections, each kept alive for the next ones."""
    async with http_sink.client(3) as client:
        for _ in range(4):
            answers = await asyncio.gather(
                *(client.post(server.url, content=b"x") for _ in range(3))
            )
            assert [a.status_code for a in answers] == [200, 200, 200]
    assert server.connections == 3
    assert len(server.ports) == 12 and len(set(server.ports)) == 3


async def test_a_request_beyond_the_lanes_waits_for_one_to_be_free(server: Server) -> None:
    """With both lanes busy, a third request is not sent until an answer frees a lane."""
    server.open.clear()
    lanes = Lanes(2)
    async with httpx.AsyncClient(transport=lanes, timeout=5) as client:
        sends = [asyncio.create_task(client.post(server.url, content=b"x")) for _ in range(3)]
        await server.until(2)
        await eventually(lambda: lanes.waiting == 1)
        assert len(server.ports) == 2 and server.connections == 2
        server.open.set()
        await asyncio.gather(*sends)
    assert len(server.ports) == 3 and server.connections == 2


async def test_a_wait_cut_off_and_a_failed_request_lose_no_lane(server: Server) -> None:
    """A waiter cancelled, and a request whose connection failed, leave every lane usable."""
    lanes = Lanes(1)
    async with httpx.AsyncClient(transport=lanes, timeout=5) as client:
        server.open.clear()
        first = asyncio.create_task(client.post(server.url, content=b"x"))
        await server.until(1)
        waiting = asyncio.create_task(client.post(server.url, content=b"x"))
        await eventually(lambda: lanes.waiting == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        server.open.set()
        assert (await first).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:1/refused", content=b"x")
        assert (await client.post(server.url, content=b"x")).status_code == 200
    assert len(server.ports) == 2


def test_a_transport_needs_a_lane() -> None:
    """Zero lanes is a programming error, said at once."""
    with pytest.raises(ValueError, match="at least one lane"):
        Lanes(0)

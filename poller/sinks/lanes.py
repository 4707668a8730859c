"""A transport of lanes: one single-connection pool for each request in flight.

httpx's shared pool (httpcore 1.0) may hand one just-freed keep-alive connection to two
waiting requests in the same pass; one of them finds it taken and goes round again
(``ConnectionNotAvailable``). Under a steady load of about as many requests as
connections — a sink worker's slots, each sending one delivery after another — most
requests do, and the pool spends more time on those rounds than on the requests. A sink
never has more than its ``concurrency`` requests in flight, so each gets a lane of its
own: a transport holding one connection, lent for the request and taken back when the
response is closed.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable

import httpx


def _one_connection() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
    )


class Lanes(httpx.AsyncBaseTransport):
    """Up to ``size`` requests at once, each on a lane (a transport) of its own; more wait
    for a lane to be free."""

    def __init__(
        self, size: int, make: Callable[[], httpx.AsyncBaseTransport] = _one_connection
    ) -> None:
        if size < 1:
            raise ValueError("a transport needs at least one lane")
        self.size = size
        self._make = make
        self._lanes: list[httpx.AsyncBaseTransport] = []
        self._free: list[httpx.AsyncBaseTransport] = []
        self._waiters: collections.deque[asyncio.Future[httpx.AsyncBaseTransport]] = (
            collections.deque()
        )

    @property
    def waiting(self) -> int:
        """Requests waiting for a lane."""
        return sum(not w.done() for w in self._waiters)

    async def _borrow(self) -> httpx.AsyncBaseTransport:
        if self._free:
            return self._free.pop()
        if len(self._lanes) < self.size:
            lane = self._make()
            self._lanes.append(lane)
            return lane
        waiter: asyncio.Future[httpx.AsyncBaseTransport]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_back(waiter.result())  # handed over as the wait was cut off
            raise

    def _give_back(self, lane: httpx.AsyncBaseTransport) -> None:
        while self._waiters:  # straight to the longest waiting request, if any
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lane)
                return
        self._free.append(lane)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = await self._borrow()
        try:
            response = await lane.handle_async_request(request)
        except BaseException:
            self._give_back(lane)
            raise
        response.stream = _Returning(response.stream, lambda: self._give_back(lane))
        return response

    async def aclose(self) -> None:
        lanes, self._lanes, self._free = self._lanes, [], []
        for lane in lanes:
            await lane.aclose()


class _Returning(httpx.AsyncByteStream):
    """A response's body that gives its lane back once closed (once only)."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, done: Callable[[], None]
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()

"""The proxy's upstream transport: aiohttp's connection pool under ``httpx.AsyncClient``.

The proxy forwards every call through one shared ``httpx.AsyncClient``. Under it,
``httpx-aiohttp`` swaps httpcore's pure-Python pool for aiohttp's (C-accelerated parser,
constant-time pool), which more than halves the proxy's CPU per call. Its exception
mapping calls a refused connection a timeout; this transport says what happened, so the
proxy answers 502 for an upstream it cannot reach and 504 only for one that is too slow.
It also keeps aiohttp from asking for a compressed answer the client did not ask for.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class UpstreamTransport(AiohttpTransport):
    """``AiohttpTransport`` whose connection failures are not reported as timeouts."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # aiohttp gives a request without Accept-Encoding its own (gzip, deflate, and br or
        # zstd where installed): a client that asked for no encoding would get one anyway
        request.headers.setdefault("accept-encoding", "identity")
        try:
            return await super().handle_async_request(request)
        except httpx.TimeoutException as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            raise


def upstream(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return UpstreamTransport(limits=limits)

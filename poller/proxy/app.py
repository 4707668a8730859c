"""The proxy as an ASGI application: forward every ``/v1`` call, record what it triggers.

A request passes ``guard`` (Host, browsers, the local token), its body is read up to
the cap, and it goes upstream through the one shared ``httpx.AsyncClient``. The answer
comes back as it arrives — status, headers (hop-by-hop ones dropped) and body chunks —
with nothing added before the first byte. Only once the answer is complete is the call
handed to the ``Recorder``; a client that hangs up first closes the upstream call and
records nothing. A call is handed over with the workspace its key belongs to (with
``inject_key``, the proxy's workspace), whether it gives a synchronous trigger
(``poller.synchronous``) or changes a polled resource (``poller.hints``). With a key no
workspace has it records nothing: ``Strangers`` counts it and names the key once, by its
fingerprint. A connection failure upstream answers 502 (504 for a timeout) in Mistral's
error shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable

import httpx
import structlog
from starlette.types import Message, Receive, Scope, Send

from poller import hints, synchronous
from poller.proxy import guard
from poller.proxy.recorder import Recorder
from poller.proxy.strangers import HINT, TRIGGER, Strangers

log = structlog.get_logger("poller.proxy")

PREFIX = b"/v1"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the proxy needs from its config; the secrets stay out of ``repr``."""

    workspace: str
    base_url: str
    record_content: bool = True
    max_body: int = 20 * 1024**2
    max_body_ocr: int = 100 * 1024**2
    hosts: frozenset[str] = frozenset()
    token: str | None = dataclasses.field(default=None, repr=False)
    """With ``inject_key``: the token local clients must present."""
    inject: tuple[str, str] | None = dataclasses.field(default=None, repr=False)
    """With ``inject_key``: the header and value that carry the workspace's key upstream."""
    accounts: tuple[guard.Account, ...] = dataclasses.field(default=(), repr=False)
    """The keys of the workspaces served by this upstream: a call's key names its workspace."""


class _Gone(Exception):
    """The client disconnected before its request was read."""


@dataclasses.dataclass
class _Answer:
    """How far the answer got: ``complete`` once its last byte went to the client."""

    status: int = 0
    content_type: str = ""
    content_encoding: str | None = None
    chunks: list[bytes] | None = None
    complete: bool = False


class ProxyApp:
    """The recording proxy's ASGI application."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient,
        recorder: Recorder,
        clock: Callable[[], dt.datetime],
        strangers: Strangers | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.strangers = strangers or Strangers()
        self.base_url = settings.base_url.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        began = time.perf_counter()
        headers = scope["headers"]
        refusal = guard.refuse(headers, hosts=self.settings.hosts, token=self.settings.token)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if refusal is None:
            refusal = guard.refuse_path(raw_path)
        if refusal is not None:
            log.warning("proxy_refused", status=refusal.status, reason=refusal.message)
            await _answer(send, refusal.status, refusal.body())
            return
        # as sent upstream (still percent-encoded): an id may hold an encoded "/" or "?"
        path = raw_path[len(PREFIX) :].decode("latin-1") or "/"
        method = scope["method"]
        event_type = synchronous.trigger(method, path)
        kind = TRIGGER if event_type is not None else HINT if hints.route(method, path) else None
        account = self._account(headers) if kind is not None else None
        limit = (
            self.settings.max_body_ocr if event_type == "ocr.completed" else self.settings.max_body
        )
        declared = guard.header(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        try:
            body = await _read_body(receive, limit)
        except _Gone:
            return
        if body is None:
            await _too_large(send, limit)
            return
        started = self.clock()
        query = scope.get("query_string", b"")
        url = self.base_url + raw_path[len(PREFIX) :].decode("latin-1")
        if query:
            url += "?" + query.decode("latin-1")
        has_body = body or declared is not None or guard.header(headers, b"transfer-encoding")
        request = httpx.Request(
            method,
            url,
            headers=list(guard.upstream_headers(headers, inject=self.settings.inject)),
            content=body if has_body else None,
        )
        answer = _Answer()
        exchange = asyncio.create_task(
            self._exchange(request, send, answer, record=account is not None)
        )
        hangup = asyncio.create_task(_disconnected(receive))
        await asyncio.wait({exchange, hangup}, return_when=asyncio.FIRST_COMPLETED)
        hangup.cancel()
        if not exchange.done() and not answer.complete:
            # the client hung up first: stop the upstream call, record nothing
            exchange.cancel()
            await asyncio.gather(exchange, hangup, return_exceptions=True)
            log.info("proxy_client_gone", method=method, path=path)
            return
        await asyncio.gather(hangup, return_exceptions=True)
        await exchange  # an unexpected error goes to the server, which answers 500
        if not answer.complete:
            return
        recorded = answer.chunks is not None
        if kind is not None and account is None and 200 <= answer.status < 300:
            self.strangers.saw(
                guard.credential(headers, self.settings.accounts), kind=kind, path=path
            )
        if recorded:
            assert account is not None
            self.recorder.submit(
                synchronous.Call(
                    method=method,
                    path=path,
                    # a hint reads the answer only: an upload's body is not kept for it
                    request_body=body if event_type is not None else b"",
                    status=answer.status,
                    content_type=answer.content_type,
                    content_encoding=answer.content_encoding,
                    body=b"".join(answer.chunks or ()),
                    started_at=started,
                    finished_at=self.clock(),
                ),
                workspace=account,
            )
        log.debug(
            "proxy_call",
            method=method,
            path=path,
            status=answer.status,
            ms=round((time.perf_counter() - began) * 1000, 2),
            recorded=recorded,
        )

    def _account(self, headers: guard.Headers) -> str | None:
        """The workspace whose key goes upstream with this call, or ``None`` for a stranger's."""
        if self.settings.inject is not None:
            return self.settings.workspace
        return guard.workspace_of(headers, self.settings.accounts)

    async def _exchange(
        self, request: httpx.Request, send: Send, answer: _Answer, *, record: bool
    ) -> None:
        """Send ``request`` upstream and relay the answer, noting it in ``answer``."""
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            await self._upstream_failed(send, 504, "did not answer in time (proxy.read_timeout)")
            return
        except httpx.HTTPError as exc:
            await self._upstream_failed(send, 502, f"cannot be reached: {type(exc).__name__}")
            return
        answer.status = response.status_code
        answer.content_type = response.headers.get("content-type", "")
        answer.content_encoding = response.headers.get("content-encoding")
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": guard.downstream_headers(response.headers.raw),
                }
            )
            chunks: list[bytes] | None = [] if record and 200 <= answer.status < 300 else None
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if chunks is not None:
                    chunks.append(chunk)
            answer.chunks = chunks
            answer.complete = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            # the answer has started: all that is left is to break the connection
            log.warning("proxy_upstream_broke", path=request.url.path, error=type(exc).__name__)
        finally:
            await response.aclose()

    async def _upstream_failed(self, send: Send, status: int, what: str) -> None:
        message = f"poller proxy: the Mistral API at {self.base_url} {what}"
        log.warning("proxy_upstream_failed", status=status, error=message)
        await _answer(send, status, guard.error_body(message, "api_error"))


async def _answer(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int) -> None:
    message = (
        f"poller proxy: the request body is larger than {limit} bytes; "
        "raise proxy.max_body (proxy.max_body_ocr for /v1/ocr) to allow it"
    )
    log.warning("proxy_refused", status=413, reason=message)
    await _answer(send, 413, guard.error_body(message), close=True)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts) if len(parts) != 1 else parts[0]


async def _disconnected(receive: Receive) -> None:
    """Returns once the client is gone (or the answer is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass

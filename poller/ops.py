"""The ops listener: ``/healthz``, ``/readyz`` and ``/metrics`` over HTTP, beside polling.

A small Starlette app served by uvicorn inside the daemon's event loop (uvicorn installs no
signal handlers here; the daemon keeps its own). Its socket is bound when the listener is
built, so a busy port stops ``poller run`` at once with one line naming ``ops.listen``.

- ``/healthz``: 200 while the process runs.
- ``/readyz``: 200 ``ready``, or 503 with one reason per line: a source without a successful
  poll within 3 intervals, a store that did not take a write, or (replicas on PostgreSQL)
  leases not renewed for a TTL. A replica that leads no workspace is ready.
- ``/metrics``: Prometheus text format, produced off the event loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from poller import config as config_mod
from poller import serving, utils
from poller.exceptions import ConfigError
from poller.health import Board
from poller.metrics import Metrics
from poller.store import Store

log = structlog.get_logger("poller.ops")

STORE_TIMEOUT = 2.0
"""Seconds the store's readiness write may take before the store counts as unavailable."""

Readiness = Callable[[], Awaitable[list[str]]]
"""Why the daemon is not ready, one line per reason; empty when it is."""


class ReadinessCheck:
    """The sources' readiness from the board, then one heartbeat write to the store."""

    def __init__(
        self,
        board: Board,
        store: Store,
        *,
        redact: Callable[[str], str] = str,
        timeout: float = STORE_TIMEOUT,
        leases: Callable[[], list[str]] | None = None,
    ) -> None:
        self.board = board
        self.store = store
        self.redact = redact
        self.timeout = timeout
        self.leases = leases
        """Why this replica's leadership loop is not ready (replicas on PostgreSQL)."""
        self._last: list[str] | None = None
        self._write: asyncio.Future[None] | None = None

    async def __call__(self) -> list[str]:
        now = utils.utcnow()
        reasons = self.board.not_ready(now)
        if self.leases is not None:
            reasons.extend(self.leases())
        # one write at a time: a store that hangs (SQLite waits up to a minute for a lock)
        # must not gain a blocked thread and connection at every probe
        if self._write is None or self._write.done():
            self._write = asyncio.ensure_future(asyncio.to_thread(self.store.touch, now))
            self._write.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(self._write), self.timeout)
        except TimeoutError:
            reasons.append(f"store: a write took more than {self.timeout:g}s")
        except Exception as exc:  # whatever the driver raises, the answer is "not writable"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reasons.append(self.redact(f"store: not writable: {type(exc).__name__}: {first}"))
        # logged when what is not ready changes, not when only its wording does (a stale
        # source's reason says how long ago it last succeeded, different at every check)
        subjects = [reason.partition(":")[0] for reason in reasons]
        if subjects != self._last:
            if reasons:
                log.warning("not_ready", reasons=reasons)
            elif self._last is not None:
                log.info("ready_again")
            self._last = subjects
        return reasons


def _retrieve(write: asyncio.Future[None]) -> None:
    """Mark a write's outcome as seen (a check that timed out no longer waits for it)."""
    if not write.cancelled():
        write.exception()


def build_app(metrics: Metrics, readiness: Readiness) -> Starlette:
    """The listener's routes."""

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_request: Request) -> Response:
        reasons = await readiness()
        if reasons:
            return PlainTextResponse("".join(f"{r}\n" for r in reasons), status_code=503)
        return PlainTextResponse("ready\n")

    async def exposition(_request: Request) -> Response:
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", exposition),
        ]
    )


def bind(listen: str, *, source: str = "<config>") -> socket.socket:
    """A listening socket on ``HOST:PORT``; a ``ConfigError`` naming ``ops.listen`` if not."""
    host, port = config_mod.split_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        family, _kind, _proto, _name, address = infos[0]
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {listen}: {exc.strerror or exc}; change ops.listen",
            key="ops.listen",
            path=source,
        ) from None
    try:
        return serving.listen_socket(address, backlog=64, family=family)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {listen}: {exc.strerror or exc}; "
            "stop what holds the port or change ops.listen",
            key="ops.listen",
            path=source,
        ) from None


class OpsListener:
    """The ops endpoints as an ``App.services`` entry, on a socket already bound."""

    name = "ops"

    def __init__(self, sock: socket.socket, metrics: Metrics, readiness: Readiness) -> None:
        self.sock = sock
        self.server = serving.Server(serving.config(build_app(metrics, readiness)))

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; a server that fails is logged at error, not raised."""
        log.info("ops_listening", address=self.address)
        try:
            await serving.serve(self.server, self.sock, stop)
        except Exception as exc:
            log.error("ops_listener_failed", error=repr(exc))

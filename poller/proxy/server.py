"""``ProxyService``: the proxy served by uvicorn inside the daemon's own event loop.

It is one of ``App.services``: the runner starts ``run(stop)`` beside polling. It binds
``proxy.listen`` itself (a port already taken fails the daemon with one line), leaves
signals to the daemon, lets calls in flight finish for ``shutdown.grace_period`` when
stopped, then waits for the events still being recorded.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import structlog

from poller import config as config_mod
from poller import hints, serving
from poller.config.fields import mask_url, split_listen
from poller.exceptions import ConfigError
from poller.mistral.auth import auth_headers
from poller.proxy import guard
from poller.proxy.app import ProxyApp, Settings
from poller.proxy.recorder import Recorder
from poller.proxy.strangers import Strangers

if TYPE_CHECKING:
    import datetime as dt

    import httpx

    from poller.store import Store

log = structlog.get_logger("poller.proxy")


def same_api(url: str, other: str) -> bool:
    """Whether two base URLs name the same API (a trailing slash aside)."""
    return url.rstrip("/") == other.rstrip("/")


def accounts(workspaces: Iterable[config_mod.Workspace]) -> Iterator[guard.Account]:
    """How the key of each workspace appears in a request (workspaces without one: none)."""
    for ws in workspaces:
        for name, value in auth_headers(ws).items():
            yield guard.Account(ws.name, name.lower().encode("latin-1"), value.encode("latin-1"))


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket with TCP_NODELAY (answers are never held back)."""
    return serving.listen_socket((host, port), backlog=1024)


class ProxyService:
    """The recording proxy as a service of the daemon."""

    name = "proxy"

    def __init__(
        self,
        app: ProxyApp,
        *,
        listen: str,
        grace: float = 10.0,
        source: str | None = None,
    ) -> None:
        self.app = app
        self.listen = listen
        self.grace = grace
        self.source = source
        self.port: int | None = None
        self.ready = asyncio.Event()

    @classmethod
    def build(
        cls,
        config: config_mod.Config,
        *,
        store: Store,
        client: httpx.AsyncClient,
        notify: Callable[[], None],
        wake: Callable[[str, str], None],
        clock: Callable[[], dt.datetime],
        on_drop: Callable[[], None],
        on_unattributed: Callable[[str], None],
    ) -> ProxyService:
        """The proxy ``config.proxy`` describes, over the store and API client it is given.

        ``notify`` wakes the sink workers, ``wake`` the poll of a source a call changed,
        ``on_drop`` counts a call the full record queue could not take, ``on_unattributed``
        a call with a key no workspace has (by what it would have recorded).
        """
        cfg = config.proxy
        assert cfg is not None
        ws = config.workspace(cfg.workspace)
        inject = next(iter(auth_headers(ws).items())) if cfg.inject_key else None
        served = [w for w in config.workspaces if same_api(w.base_url, ws.base_url)]
        polled = {w.name: frozenset(w.sources.enabled()) for w in served}
        settings = Settings(
            workspace=ws.name,
            base_url=ws.base_url,
            record_content=cfg.record_content,
            max_body=cfg.max_body,
            max_body_ocr=cfg.max_body_ocr,
            hosts=frozenset(cfg.hosts),
            token=cfg.token.get_secret_value() if cfg.inject_key and cfg.token else None,
            inject=inject,
            accounts=tuple(accounts(served)),
        )
        recorder = Recorder(
            enqueue=store.enqueue,
            notify=notify,
            record_content=cfg.record_content,
            clock=clock,
            queue_size=cfg.queue_size,
            on_drop=on_drop,
            hint=lambda call, workspace: hints.read(call, workspace, polled=polled[workspace]),
            apply=functools.partial(hints.record, store),
            wake=wake,
        )
        strangers = Strangers(count=on_unattributed)
        proxy = ProxyApp(
            settings, client=client, recorder=recorder, clock=clock, strangers=strangers
        )
        return cls(
            proxy,
            listen=cfg.listen,
            grace=config.shutdown.grace_period,
            source=config.source,
        )

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: what a client's ``server_url`` is set to."""
        host, port = split_listen(self.listen)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port or port}"

    def _bind(self) -> socket.socket:
        host, port = split_listen(self.listen)
        try:
            sock = listen_socket(host, port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.listen}: {exc.strerror or exc}; "
                "choose a free address and port, or stop what holds it",
                key="proxy.listen",
                path=self.source,
            ) from None
        self.port = int(sock.getsockname()[1])
        return sock

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then finish calls in flight and pending records."""
        sock = self._bind()
        config = serving.config(
            self.app,
            # the upstream answer's own Server and Date pass through, not ours as well
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=max(1, round(self.grace)),
        )
        log.info(
            "proxy_listening",
            url=self.url,
            upstream=mask_url(self.app.base_url),
            workspace=self.app.settings.workspace,
            inject_key=self.app.settings.inject is not None,
            record_content=self.app.settings.record_content,
        )
        self.ready.set()
        try:
            await serving.serve(serving.Server(config), sock, stop, name="proxy-server")
        finally:
            await self.app.recorder.aclose(self.grace)
            log.info("proxy_stopped", recorded=self.app.recorder.recorded)

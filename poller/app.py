"""The composition root: builds the store, the API clients, the sinks and the workers from
a ``Config``. Nothing else in poller constructs an engine, an ``httpx.AsyncClient`` or a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, TextIO

import httpx
import sqlalchemy as sa

from poller import __version__, health, leadership, logs, metrics, sources, store, utils
from poller import config as config_mod
from poller.delivery.dispatcher import SinkWorker
from poller.delivery.retry import RetryPolicy
from poller.libraries.source import LibraryPoller
from poller.mistral.auth import auth_headers
from poller.mistral.client import MistralClient
from poller.mistral.pace import Gate
from poller.model import Event
from poller.pacing import Pace
from poller.polling import PollerFactory, Polling, PollReport, Settings, SourcePoller
from poller.proxy import transport as upstream
from poller.sinks import brokers
from poller.sinks import http as http_sink
from poller.sinks.base import Sink
from poller.sinks.file import FileSink
from poller.sinks.http import HttpSink
from poller.sinks.log import LogSink
from poller.sinks.redacted import redacted
from poller.store.sinkstate import SinkState
from poller.workflow_runs.source import WorkflowRunPoller

USER_AGENT = f"poller/{__version__}"
STRATEGIES: dict[str, PollerFactory] = {}
STRATEGIES["libraries"] = LibraryPoller
STRATEGIES["workflow_runs"] = WorkflowRunPoller
"""Source name → the poller of a source that ``SourcePoller`` (paged lists) does not serve."""
_CREDENTIAL_HEADER = re.compile(r"(auth|token|key|secret|password|cookie|signature)", re.I)


def secrets_of(config: config_mod.Config) -> list[str]:
    """Every secret value in a config, for the log redactor."""
    found: list[str] = []
    for ws in config.workspaces:
        if ws.api_key is not None:
            found.append(ws.api_key.get_secret_value())
    for sink in config.sinks:
        for secret in getattr(sink, "secrets", ()):
            found.append(secret.get_secret_value())
        for header, value in getattr(sink, "headers", {}).items():
            if _CREDENTIAL_HEADER.search(header):
                found.append(value)
        if isinstance(sink, config_mod.HttpSinkConfig | config_mod.BrokerSinkConfig):
            found.extend(_url_credentials(sink.url))
        if isinstance(sink, config_mod.NatsSinkConfig):
            # nats://TOKEN@host: a NATS URL's user name alone is a token
            token = urllib.parse.urlsplit(sink.url).username
            if token and urllib.parse.urlsplit(sink.url).password is None:
                found.extend({token, urllib.parse.unquote(token)})
    if config.proxy is not None and config.proxy.token is not None:
        found.append(config.proxy.token.get_secret_value())
    password = sa.engine.make_url(config.store.url).password
    if password:
        found.append(str(password))
    return found


def _url_credentials(url: str) -> list[str]:
    """A URL's password and the values of query parameters named like credentials.

    Each as written in the URL and decoded, since a receiver may echo either.
    """
    parts = urllib.parse.urlsplit(url)
    found: list[str] = []
    if parts.password:
        found.extend({parts.password, urllib.parse.unquote(parts.password)})

    for pair in parts.query.split("&"):
        name, _, raw = pair.partition("=")
        if raw and _CREDENTIAL_HEADER.search(urllib.parse.unquote_plus(name)):
            found.extend({raw, urllib.parse.unquote_plus(raw)})
    return found


@dataclasses.dataclass
class Workspace:
    """The live parts of one configured workspace."""

    name: str
    http: httpx.AsyncClient
    gate: Gate
    pollers: dict[str, Polling]
    paces: dict[str, Pace]
    timeout: float


class Service(Protocol):
    """Something that runs beside polling for the daemon's lifetime (ops listener, proxy)."""

    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then release what it holds."""


class App:
    """Everything poller runs, built from one ``Config``; use as ``async with App(cfg) as app``.

    ``transport`` replaces the network under the API clients (tests); ``stdout`` is where
    the log sink writes.
    """

    def __init__(
        self,
        config: config_mod.Config,
        *,
        stdout: TextIO | None = None,
        clock: Callable[[], Any] = utils.utcnow,
        api_transport: httpx.AsyncBaseTransport | None = None,
        sink_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.stdout = stdout
        self.clock = clock
        self.api_transport = api_transport
        self.sink_transport = sink_transport
        self.engine: sa.Engine | None = None
        self.store: store.Store
        self.leadership: leadership.Leadership | None = None
        """Which workspaces this replica polls, on a PostgreSQL store (``None`` on SQLite)."""
        self.outbox: store.Outbox
        self.ledger: store.Ledger
        """The outbox as operators read it (figures, deliveries, replay)."""
        self.sink_store: store.SinkStates
        """Each sink's durable enablement and circuit."""
        self.workspaces: list[Workspace] = []
        self.sinks: dict[str, Sink] = {}
        self.workers: dict[str, SinkWorker] = {}
        self.services: list[Service] = []
        self.metrics = metrics.Metrics()
        self.board = health.Board()
        self.redactor = logs.Redactor(secrets_of(config))
        self._sink_clients: dict[str, httpx.AsyncClient] = {}
        self._call_clients: list[httpx.AsyncClient] = []
        self.wakers: list[Callable[[str, str], None]] = []
        """Called with (workspace, source) when a job joined the active set outside a poll."""
        self.halted = False
        """No delivery may start any more (``halt``)."""

    # -- building ----------------------------------------------------------------------

    async def __aenter__(self) -> App:
        self.engine = await asyncio.to_thread(store.create_engine, self.config.store.url)
        self.store = store.Store(self.engine, self.route)
        self.outbox = store.Outbox(self.engine)
        self.ledger = store.Ledger(self.engine)
        self.sink_store = store.SinkStates(self.engine)
        self.metrics.watch_outbox(self.ledger, self.sink_states, self.clock)
        if self.engine.dialect.name == "postgresql":
            store.limit_idle_transactions(self.engine, self.config.ha.lease_ttl)
            leases = store.Leases(
                self.engine,
                replica=self.config.ha.replica_id or leadership.default_replica_id(),
                ttl=self.config.ha.lease_ttl,
            )
            self.leadership = leadership.Leadership(
                leases, [ws.name for ws in self.config.workspaces]
            )
        try:
            for ws in self.config.workspaces:
                self.workspaces.append(self._build_workspace(ws))
            for sink in self.config.sinks:
                self.add_sink(sink)
            if self.config.store.listen and self.engine.dialect.name == "postgresql":
                from poller.store.listen import OutboxListener

                self.services.append(OutboxListener(self.engine.url, self.notify, hinted=self.wake))
            if self.config.proxy is not None and self.config.proxy.enabled:
                self.services.append(self._build_proxy(self.config.proxy))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _build_proxy(self, cfg: config_mod.ProxyConfig) -> Service:
        """The recording proxy, over this app's store, an API client for its workspace and
        this app's wake-ups and metrics."""
        from poller.proxy.server import ProxyService  # its server stack loads only when on

        ws = self.config.workspace(cfg.workspace)
        return ProxyService.build(
            self.config,
            store=self.store,
            client=self.api_client(ws, read_timeout=cfg.read_timeout),
            notify=self.notify,
            wake=self.wake,
            clock=self.clock,
            on_drop=self.metrics.proxy_dropped.inc,
            on_unattributed=self.metrics.observe_unattributed,
        )

    def _build_workspace(self, ws: config_mod.Workspace) -> Workspace:
        http = httpx.AsyncClient(
            base_url=ws.base_url,
            headers={"user-agent": USER_AGENT, "accept": "application/json", **auth_headers(ws)},
            timeout=ws.timeout,
            transport=self.api_transport,
            follow_redirects=False,
        )
        gate = Gate(per_minute=ws.max_requests_per_minute)
        pollers: dict[str, Polling] = {}
        paces: dict[str, Pace] = {}
        for name in ws.sources.enabled():
            # one client per source over the workspace's connection pool and gate,
            # so each poll counts its own requests
            client = MistralClient(
                http,
                page_size=ws.page_size,
                gate=gate,
                observe=self.metrics.api_observer(ws.name, name),
            )
            pollers[name] = STRATEGIES.get(name, SourcePoller)(
                sources.BY_NAME[name],
                client=client,
                store=self.store,
                settings=_settings(ws, name),
                clock=self.clock,
            )
            paces[name] = _pace(ws, name)
            self.metrics.track_source(ws.name, name, paces[name].interval)
            self.board.track(ws.name, name, interval=paces[name].interval, timeout=ws.poll.timeout)
        return Workspace(ws.name, http, gate, pollers, paces, ws.poll.timeout)

    def api_client(self, ws: config_mod.Workspace, *, read_timeout: float) -> httpx.AsyncClient:
        """A client for synchronous API calls (the proxy, actions): long reads, no retries.

        It carries no credentials of its own; callers add ``auth_headers(ws)`` where due.
        """
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        client = httpx.AsyncClient(
            base_url=ws.base_url,
            headers={"user-agent": USER_AGENT},
            timeout=httpx.Timeout(ws.timeout, read=read_timeout),
            transport=self.api_transport or upstream.upstream(limits),
            follow_redirects=False,
            limits=limits,
        )
        self._call_clients.append(client)
        return client

    def retune(self, ws_config: config_mod.Workspace) -> None:
        """Take a workspace's new ``poll`` and source intervals (a reload); clients stay."""
        ws = next(w for w in self.workspaces if w.name == ws_config.name)
        ws.timeout = ws_config.poll.timeout
        for name, poller in ws.pollers.items():
            poller.settings = _settings(ws_config, name)
            ws.paces[name] = _pace(ws_config, name)
            if self.leadership is None or (ws.name, name) in self.board.sources:
                # a replica judges and exports only the sources it polls
                self.metrics.interval.labels(ws.name, name).set(ws.paces[name].interval)
                self.board.track(
                    ws.name, name, interval=ws.paces[name].interval, timeout=ws.timeout
                )

    def add_sink(self, cfg: config_mod.SinkConfig) -> SinkWorker:
        """Build a sink and its worker (at start, and when a reload adds or changes one)."""
        sink = self.build_sink(cfg)
        self.sinks[cfg.name] = sink
        policy = RetryPolicy(
            schedule=tuple(cfg.retry.schedule),
            max_age=cfg.retry.max_age,
            probe_interval=cfg.retry.probe_interval,
        )
        worker = SinkWorker(
            sink,
            self.outbox,
            states=self.sink_store,
            policy=policy,
            concurrency=cfg.concurrency,
            clock=self.clock,
            on_result=self.metrics.observe_delivery,
            on_expired=self.metrics.observe_expired,
            claim_ttl=self.config.store.claim_timeout,
        )
        if self.halted:
            worker.halt()
        self.workers[cfg.name] = worker
        self.metrics.track_sink(cfg.name)
        return worker

    async def remove_sink(self, name: str) -> None:
        """Close a sink whose worker has stopped (a reload removed or changed it)."""
        self.workers.pop(name, None)
        sink = self.sinks.pop(name, None)
        client = self._sink_clients.pop(name, None)
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.aclose()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def sink_states(self) -> dict[str, SinkState]:
        """The circuit state of every running sink (metrics read it at scrape time)."""
        # a copy first: a scrape runs in a thread while a reload may add or drop a worker
        workers = dict(self.workers)
        return {name: worker.state for name, worker in workers.items()}

    def build_sink(self, cfg: config_mod.SinkConfig) -> Sink:
        """A sink as the daemon delivers through it (redacted), without its worker.

        Its HTTP client, if any, is closed with the app.
        """
        return redacted(self._build_sink(cfg), self.redactor.redact)

    def _build_sink(self, cfg: config_mod.SinkConfig) -> Sink:
        if isinstance(cfg, config_mod.HttpSinkConfig):
            client = http_sink.client(
                cfg.concurrency, timeout=cfg.timeout, transport=self.sink_transport
            )
            self._sink_clients[cfg.name] = client
            return HttpSink(
                cfg.name,
                cfg.url,
                client=client,
                secrets=[s.get_secret_value() for s in cfg.secrets],
                format=cfg.format,
                headers=cfg.headers,
            )
        if isinstance(cfg, config_mod.FileSinkConfig):
            return FileSink(cfg.name, cfg.path)
        if isinstance(cfg, config_mod.BrokerSinkConfig):
            return brokers.build(cfg)
        return LogSink(cfg.name, stream=self.stdout, format=cfg.format)

    async def aclose(self) -> None:
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.aclose()
        clients = [*(w.http for w in self.workspaces), *self._sink_clients.values()]
        for client in [*clients, *self._call_clients]:
            with contextlib.suppress(Exception):
                await client.aclose()
        self.workspaces.clear()
        self._sink_clients.clear()
        self._call_clients.clear()
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    # -- wiring ------------------------------------------------------------------------

    def route(self, event: Event) -> Sequence[str]:
        """The sinks an event goes to: those whose filters match its type and workspace."""
        return [s.name for s in self.config.sinks if s.matches(event.type, event.workspace)]

    def observe_poll(
        self, workspace: str, source: str, result: health.PollResult, report: PollReport | None
    ) -> None:
        """The runner's word after each poll: for metrics, readiness and the watchdog.

        A source this replica stopped polling meanwhile (its workspace's lease went to
        another replica) is left out: it has no series or readiness here any more.
        """
        if (workspace, source) not in self.board.sources:
            return
        self.metrics.observe_poll(workspace, source, result, report.events if report else ())
        self.board.polled(workspace, source, result)

    def halt(self) -> None:
        """Start no delivery from now on, in any sink (a newer release took the store over)."""
        self.halted = True
        for worker in self.workers.values():
            worker.halt()

    def notify(self) -> None:
        """Wake every sink worker: new deliveries are in the outbox."""
        for worker in self.workers.values():
            worker.notify()

    def wake(self, workspace: str, source: str) -> None:
        """A job of ``source`` started outside a poll (the proxy saw it): poll it soon."""
        for waker in list(self.wakers):
            waker(workspace, source)

    def pollers(self) -> list[tuple[Workspace, Polling]]:
        return [(ws, p) for ws in self.workspaces for p in ws.pollers.values()]


def _settings(ws: config_mod.Workspace, source: str) -> Settings:
    src = ws.sources.get(source)
    opt_in = set()
    if isinstance(src, config_mod.BatchJobsConfig) and src.emit_started:
        opt_in.add("batch_job.started")
    return Settings(
        workspace=ws.name,
        emit_existing=ws.poll.emit_existing,
        reconcile_interval=ws.poll.reconcile_interval,
        mass_delete_threshold=ws.poll.mass_delete_threshold,
        mass_delete_min=ws.poll.mass_delete_min,
        opt_in=frozenset(opt_in),
        include_internal=isinstance(src, config_mod.WorkflowRunsConfig) and src.include_internal,
    )


def _pace(ws: config_mod.Workspace, source: str) -> Pace:
    src = ws.sources.get(source)
    return Pace(
        interval=src.interval, active_interval=src.active_interval, max_backoff=ws.poll.max_backoff
    )

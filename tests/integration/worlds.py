"""A simulator on a hand-driven clock, served in-process, and pollers of its sources over it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import httpx

from poller import store as store_mod
from poller.mistral.client import MistralClient
from poller.polling import PollerFactory, Polling, Settings, SourcePoller
from poller.simulator import Simulator, SimulatorServer, build_app
from poller.sources import SourceSpec

T0 = 1_800_000_000.0


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


class World:
    """The simulator (its clock at ``now``), one store, and pollers sharing both."""

    def __init__(self, store_url: str) -> None:
        self.now = T0
        self.sim = Simulator(clock=lambda: self.now, seed=5)
        self.transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=build_app(self.sim))
        self.base_url = "http://sim/v1"
        self.engine = store_mod.create_engine(store_url)
        self.clients: list[httpx.AsyncClient] = []

    def http(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.base_url, transport=self.transport)
        self.clients.append(client)
        return client

    def poller(
        self,
        spec: SourceSpec,
        factory: PollerFactory = SourcePoller,
        *,
        page_size: int = 100,
        options: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Any:
        """A poller of ``spec`` (``factory`` builds it, with ``options``), reconciling hourly
        unless told."""
        poller: Polling = factory(
            spec,
            # retries wait for nothing: the clock that matters is the simulator's
            client=MistralClient(self.http(), page_size=page_size, sleep=_no_wait),
            store=store_mod.Store(self.engine, lambda _e: ["s"]),
            settings=Settings(**{"reconcile_interval": 3600, **settings}),
            clock=lambda: dt.datetime.fromtimestamp(self.now, dt.UTC),
            **(options or {}),
        )
        return poller

    def serve(self, stack: contextlib.ExitStack) -> None:
        """Serve the simulator on a real port from now on (faults that break a connection)."""
        server = stack.enter_context(SimulatorServer(self.sim))
        self.transport, self.base_url = httpx.AsyncHTTPTransport(), server.url

    def routes(self) -> list[str]:
        return [f"{r['method']} {r['path']}?{r['query']}" for r in self.sim.stats()["recent"]]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        self.engine.dispose()

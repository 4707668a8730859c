"""Two pollers of one source over the same API, for the property tests that compare them.

One reads as little as it may (incremental or tail), the other lists in full every time;
each writes to its own SQLite store and never reconciles, so only their reading differs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from poller import store as store_mod
from poller.mistral.client import MistralClient
from poller.polling import PollerFactory, Polling, Settings, SourcePoller
from poller.sources import SourceSpec


class Twins:
    """The two pollers and the events each found so far: (type, resource id, event id)."""

    def __init__(self, pollers: list[Polling]) -> None:
        self.pollers = pollers
        self.lean: set[tuple[Any, ...]] = set()
        self.full: set[tuple[Any, ...]] = set()

    async def poll(self) -> None:
        """One poll of each, the lean one first."""
        for poller, found in zip(self.pollers, (self.lean, self.full), strict=True):
            report = await poller.poll()
            found.update((e.type, e.resource_id, e.id) for e in report.events)


@contextlib.asynccontextmanager
async def twins(
    spec: SourceSpec,
    http: httpx.AsyncClient,
    root: pathlib.Path,
    *,
    page_size: int,
    clock: Callable[[], float],
    factory: PollerFactory = SourcePoller,
) -> AsyncIterator[Twins]:
    """Both pollers of ``spec`` through ``http``, their stores under ``root``; ``clock`` in
    seconds since the epoch; ``factory`` the source's poller class."""
    engines = [store_mod.create_engine(f"sqlite:///{root}/{name}.db") for name in ("lean", "full")]
    try:
        yield Twins(
            [
                factory(
                    spec,
                    client=MistralClient(http, page_size=page_size),
                    store=store_mod.Store(engine, lambda _e: ["s"]),
                    settings=Settings(incremental=incremental, reconcile_interval=1e9),
                    clock=lambda: dt.datetime.fromtimestamp(clock(), dt.UTC),
                )
                for engine, incremental in zip(engines, (True, False), strict=True)
            ]
        )
    finally:
        for engine in engines:
            engine.dispose()

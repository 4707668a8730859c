"""One poll's edges against the simulator over real HTTP: direct GETs, cancellation, locks."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from poller import store as store_mod
from poller.mistral.client import MistralClient
from poller.model import Event
from poller.polling import Settings, SourcePoller
from poller.simulator import Simulator, SimulatorServer
from poller.sources import BATCH_JOBS, FILES, MODELS
from poller.store import tables
from poller.store.sql import PollCommit

ODD_IDS = ("ft:open-mistral-nemo:a#1", "ft:open-mistral-nemo:b?x=1", "ft:m/c", "ft:d%2Fe")


@pytest.fixture
def odd_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(seed=3)) as running:
        yield running


def test_simulator_serves_ids_with_reserved_characters(odd_server: SimulatorServer) -> None:
    """A model id holding #, ?, / or % is stored, listed and served at its quoted URL."""
    sim = odd_server.sim
    for rid in ODD_IDS:
        sim.create_model(id=rid)
    with httpx.Client(base_url=odd_server.url) as client:
        listed = {m["id"] for m in client.get("/models").json()["data"]}
        assert set(ODD_IDS) <= listed
        for rid in ODD_IDS:
            answer = client.get(MODELS.item_url(rid))
            assert answer.status_code == 200 and answer.json()["id"] == rid
        assert client.delete(MODELS.item_url(ODD_IDS[2])).json()["deleted"] is True
        assert client.get(MODELS.item_url(ODD_IDS[2])).status_code == 404
        assert client.get(MODELS.item_url(ODD_IDS[3])).status_code == 200


async def test_direct_gets_quote_ids_so_no_false_deletion(
    odd_server: SimulatorServer, tmp_path: pathlib.Path
) -> None:
    """Items a listing leaves out are confirmed at their own URL: they exist, nothing is deleted."""
    sim = odd_server.sim
    for n in range(6):
        sim.create_model(id=f"ft:open-mistral-nemo:plain{n}")
    for rid in ODD_IDS:
        sim.create_model(id=rid)
    engine = store_mod.create_engine(f"sqlite:///{tmp_path}/p.db")
    async with httpx.AsyncClient(base_url=odd_server.url) as http:
        poller = SourcePoller(
            MODELS,
            client=MistralClient(http),
            store=store_mod.Store(engine, lambda _e: ["s"]),
            settings=Settings(),
        )
        await poller.poll()
        # the listing leaves out the four odd ids: each is looked up directly
        sim.add_fault(kind="truncate", drop=4, match={"method": "GET", "path": "/v1/models"})
        sim.reset_stats()
        report = await poller.poll()
        assert report.events == ()
        looked_up = [r["path"] for r in sim.stats()["recent"] if r["path"] != "/v1/models"]
        assert sorted(looked_up) == sorted(f"/v1/models/{rid}" for rid in ODD_IDS)
        sim.delete_model(ODD_IDS[0])
        report = await poller.poll()
        assert [(e.type, e.resource_id) for e in report.events] == [("model.deleted", ODD_IDS[0])]
    engine.dispose()


class GatedStore(store_mod.Store):
    """A store whose poll commit waits, in its worker thread, until the test releases it."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine, lambda _e: ["s"])
        self.entered = threading.Event()
        self.release = threading.Event()
        self.committed: list[int] = []

    def commit_poll(self, commit: PollCommit, **kwargs: Any) -> list[Event]:
        self.entered.set()
        self.release.wait()
        recorded = super().commit_poll(commit, **kwargs)
        self.committed.append(len(recorded))
        return recorded


async def test_cancelled_incremental_poll_ends_after_its_commit(tmp_path: pathlib.Path) -> None:
    """A cut-short incremental poll ends only once its commit thread has finished."""
    sim = Simulator(seed=4)
    engine = store_mod.create_engine(f"sqlite:///{tmp_path}/p.db")
    store = GatedStore(engine)
    store.release.set()
    with SimulatorServer(sim) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            poller = SourcePoller(
                BATCH_JOBS, client=MistralClient(http), store=store, settings=Settings()
            )
            await poller.poll()
            store.release.clear()
            store.entered.clear()
            sim.create_batch_job(outcome="SUCCESS", queued_for=100)
            task = asyncio.create_task(poller.poll())
            await asyncio.to_thread(store.entered.wait)
            task.cancel()
            try:
                for _ in range(5):
                    await asyncio.sleep(0)
                waiting = not task.done()  # still waiting for the thread that writes
            finally:
                store.release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waiting and store.committed == [0, 1]
    engine.dispose()


class PageGate(httpx.AsyncBaseTransport):
    """HTTP to the simulator, holding one page of a listing until the test releases it."""

    def __init__(self, path: str, page: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.path = path
        self.page = str(page)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path and request.url.params.get("page") == self.page:
            self.reached.set()
            await self.release.wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def write_without_waiting(engine: sa.Engine, rid: str) -> None:
    """Write the snapshot row of a listed file, failing at once if a lock makes it wait."""
    now = dt.datetime.now(dt.UTC)
    row = {"workspace": "default", "source": "files", "resource_id": rid, "active": False}
    row |= {"data": {}, "first_seen_at": now, "updated_at": now}
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA busy_timeout=0")
            conn.commit()
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL lock_timeout = '1ms'")
            conn.execute(sa.insert(tables.ResourceRow.__table__), [row])  # type: ignore[attr-defined]


async def test_other_writes_go_through_while_a_first_listing_pages(store_url: str) -> None:
    """A long first listing holds no lock while it pages: a write to its rows goes through."""
    sim = Simulator(seed=6)
    sim.bulk(files=1100)
    engine = store_mod.create_engine(store_url)
    gate = PageGate("/v1/files", page=10)
    with SimulatorServer(sim) as server:
        first = sim.list_files(page=0, page_size=1)["data"][0]["id"]
        async with httpx.AsyncClient(base_url=server.url, transport=gate) as http:
            poller = SourcePoller(
                FILES,
                client=MistralClient(http),
                store=store_mod.Store(engine, lambda _e: ["s"]),
                settings=Settings(),
            )
            task = asyncio.create_task(poller.poll())
            await gate.reached.wait()  # ten pages (1,000 files) read, the eleventh held
            try:
                await asyncio.to_thread(write_without_waiting, engine, first)
            finally:
                gate.release.set()
            report = await task
    assert report.mode == "baseline"
    assert len(poller.store.ids("default", "files")) == 1100
    engine.dispose()

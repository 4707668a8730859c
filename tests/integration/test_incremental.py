"""Incremental polling against the simulator (each store backend): cost, outcomes, Retry-After."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from poller import store as store_mod
from poller.app import App
from poller.mistral.client import MistralClient
from poller.polling import Settings, SourcePoller
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer, build_app
from poller.sources import BATCH_JOBS, FINE_TUNING_JOBS, SourceSpec
from poller.testing import WebhookReceiver

from .conftest import make_config

T0 = 1_800_000_000.0


class World:
    """A simulator on a hand-driven clock, served in-process, and pollers over it."""

    def __init__(self, store_url: str) -> None:
        self.now = T0
        self.sim = Simulator(clock=lambda: self.now, seed=5)
        self.transport = httpx.ASGITransport(app=build_app(self.sim))
        self.engine = store_mod.create_engine(store_url)
        self.clients: list[httpx.AsyncClient] = []

    def poller(self, spec: SourceSpec, **settings: Any) -> SourcePoller:
        http = httpx.AsyncClient(base_url="http://sim/v1", transport=self.transport)
        self.clients.append(http)
        return SourcePoller(
            spec,
            client=MistralClient(http),
            store=store_mod.Store(self.engine, lambda _e: ["s"]),
            settings=Settings(**{"reconcile_interval": 3600, **settings}),
            clock=lambda: dt.datetime.fromtimestamp(self.now, dt.UTC),
        )

    def routes(self) -> list[str]:
        return [f"{r['method']} {r['path']}?{r['query']}" for r in self.sim.stats()["recent"]]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        self.engine.dispose()


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[World]:
    w = World(store_url)
    yield w
    await w.close()


async def test_idle_cycle_costs_one_request_whatever_the_history(world: World) -> None:
    """With no job moving, an incremental cycle is one head request, even over 5,000 jobs."""
    world.sim.bulk(batch_jobs=5000, status="SUCCESS")
    poller = world.poller(BATCH_JOBS)
    baseline = await poller.poll()
    assert baseline.mode == "baseline" and baseline.requests == 50
    world.now += 30
    report = await poller.poll()
    assert report.mode == "incremental" and report.requests == 1 and report.events == ()


async def test_job_leaving_active_set_between_cycles_gets_its_outcome(world: World) -> None:
    """A tracked job that left the active set (and the head window) is fetched directly."""
    poller = world.poller(BATCH_JOBS)
    await poller.poll()
    job = world.sim.create_batch_job(outcome="FAILED", queued_for=100, running_for=100)
    world.now += 1
    assert [e.type for e in (await poller.poll()).events] == ["batch_job.created"]
    world.now += 80  # newer jobs move the head window past this one
    for _ in range(3):
        world.sim.create_batch_job(outcome="SUCCESS", queued_for=1000)
    await poller.poll()
    world.now += 500  # meanwhile the job finished
    world.sim.reset_stats()
    report = await poller.poll()
    assert [(e.type, e.resource_id) for e in report.events] == [("batch_job.failed", job["id"])]
    assert any(f"/v1/batch/jobs/{job['id']}" in r for r in world.routes())
    assert report.requests == 3  # head, active set, one direct GET


async def test_fine_tuning_outcomes_by_direct_get(world: World) -> None:
    """Fine-tuning outcomes come from direct GETs (its status filter takes one value)."""
    poller = world.poller(FINE_TUNING_JOBS)
    await poller.poll()
    job = world.sim.create_fine_tuning_job(outcome="SUCCESS")
    world.now += 1
    await poller.poll()
    world.now += 3600
    for _ in range(2):
        world.sim.create_fine_tuning_job(queued_for=10_000)
    report = await poller.poll()
    assert ("fine_tuning_job.succeeded", job["id"]) in {
        (e.type, e.resource_id) for e in report.events
    }


async def test_reconcile_finds_what_the_head_missed(world: World) -> None:
    """A job created out of order (before the cursor) is found by the periodic relist."""
    poller = world.poller(BATCH_JOBS)
    world.sim.create_batch_job(outcome="SUCCESS", queued_for=1000)
    await poller.poll()
    world.now += 60
    world.sim.create_batch_job(outcome="SUCCESS", queued_for=1000)
    await poller.poll()
    late = world.sim.create_batch_job(outcome="SUCCESS", queued_for=1000, created_at=T0 - 7200)
    world.now += 10
    assert late["id"] not in {e.resource_id for e in (await poller.poll()).events}
    world.now += 3600
    report = await poller.poll()
    assert report.mode == "full"
    assert ("batch_job.created", late["id"]) in {(e.type, e.resource_id) for e in report.events}


async def test_mass_deletion_is_held_until_confirmed(world: World) -> None:
    """Losing most files in one listing holds the deletions until a reconcile interval later."""
    from poller.sources import FILES

    poller = world.poller(FILES, reconcile_interval=600, mass_delete_min=2)
    files = [world.sim.create_file() for _ in range(4)]
    await poller.poll()
    for f in files[:3]:
        world.sim.delete("files", f["id"])
    world.now += 30
    held = await poller.poll()
    assert held.events == () and held.held == 3
    world.now += 30
    assert (await poller.poll()).events == ()
    world.now += 600
    report = await poller.poll()
    assert sorted(e.resource_id for e in report.events) == sorted(f["id"] for f in files[:3])
    assert all(e.type == "file.deleted" for e in report.events)


async def test_ordinary_deletion_is_not_held(world: World) -> None:
    """Deleting a minority of files is announced at the next poll."""
    from poller.sources import FILES

    poller = world.poller(FILES)
    files = [world.sim.create_file() for _ in range(4)]
    await poller.poll()
    world.sim.delete("files", files[0]["id"])
    report = await poller.poll()
    assert [(e.type, e.resource_id) for e in report.events] == [("file.deleted", files[0]["id"])]


async def test_retry_after_pauses_every_request_of_the_workspace(
    tmp_path: pathlib.Path,
) -> None:
    """A 429's Retry-After on one source holds back the other sources of the workspace."""
    sim = Simulator(seed=2)
    sim.add_fault(
        kind="status",
        status=429,
        headers={"Retry-After": "1"},
        match={"method": "GET", "path": "/v1/files"},
        count=1,
    )
    with SimulatorServer(sim) as server:
        config = make_config(server.url, None, f"sqlite:///{tmp_path}/p.db")
        async with App(config) as app:
            runner = Runner(app)
            (ws,) = app.workspaces
            files = asyncio.create_task(runner.poll_once(ws, ws.pollers["files"]))
            for _ in range(500):  # until the 429 is on record
                if any(r["path"] == "/v1/files" for r in sim.stats()["recent"]):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the 429 is back: the workspace is paused
            await runner.poll_once(ws, ws.pollers["models"])
            await files
    recent = sim.stats()["recent"]
    refused = next(r for r in recent if r["path"] == "/v1/files")
    models = next(r for r in recent if r["path"] == "/v1/models")
    assert models["at"] - refused["at"] >= 0.9


async def test_workspaces_are_independent_and_named(store_url: str) -> None:
    """Two workspaces poll their own APIs; events carry the workspace; sinks filter on it."""
    sims = [Simulator(seed=1), Simulator(seed=2)]
    with SimulatorServer(sims[0]) as a, SimulatorServer(sims[1]) as b, WebhookReceiver() as rx:
        config = make_config(
            a.url,
            None,
            store_url,
            workspaces=[{"name": "prod", "base_url": a.url}, {"name": "lab", "base_url": b.url}],
            sinks=[{"name": "prod-only", "type": "http", "url": rx.url, "workspaces": ["prod"]}],
        )
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            sims[0].create_file(filename="prod.jsonl")
            sims[1].create_file(filename="lab.jsonl")
            await runner.once()
            recorded = app.ledger.events()
    assert {(e.workspace, e.data["filename"]) for e in recorded} == {
        ("prod", "prod.jsonl"),
        ("lab", "lab.jsonl"),
    }
    assert [r.json()["workspace"] for r in rx.delivered()] == ["prod"]


async def test_request_budget_spreads_requests(tmp_path: pathlib.Path) -> None:
    """mistral.max_requests_per_minute spaces a workspace's requests instead of failing them."""
    sim = Simulator(seed=4)
    with SimulatorServer(sim) as server:
        config = make_config(
            server.url,
            None,
            f"sqlite:///{tmp_path}/p.db",
            mistral={"max_requests_per_minute": 240},
        )
        async with App(config) as app:
            health = [await Runner(app).poll_once(ws, p) for ws, p in app.pollers()]
    assert all(h.error_streak == 0 for h in health)
    times = sorted(r["at"] for r in sim.stats()["recent"])
    assert len(times) >= 4
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.2


async def test_an_incomplete_first_listing_is_not_a_baseline(world: World) -> None:
    """A baseline whose pages miss an item is taken again; that item is never announced."""
    from poller.exceptions import GarbledError
    from poller.sources import FILES

    poller = world.poller(FILES)
    files = [world.sim.create_file() for _ in range(3)]
    world.sim.add_fault(
        kind="truncate", drop=1, count=2, match={"method": "GET", "path": "/v1/files"}
    )
    with pytest.raises(GarbledError, match="incomplete"):
        await poller.poll()
    assert not poller.store.source_state("default", "files").baselined
    assert (await poller.poll()).mode == "baseline"
    assert set(poller.store.ids("default", "files")) == {f["id"] for f in files}
    assert (await poller.poll()).events == ()

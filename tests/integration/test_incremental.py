"""Incremental polling against the simulator (each store backend): cost, outcomes, Retry-After."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from poller.app import App
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.sources import BATCH_JOBS, FINE_TUNING_JOBS
from poller.testing import WebhookReceiver

from .conftest import make_config
from .worlds import T0, World


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
            began = time.time()
            health = [await Runner(app).poll_once(ws, p) for ws, p in app.pollers()]
    assert all(h.error_streak == 0 for h in health)
    times = sorted(r["at"] for r in sim.stats()["recent"])
    assert len(times) >= 4
    # the k-th request is admitted no sooner than k-1 slots of 0.25 s after the first; when
    # the server gets to each is up to the machine, so only that bound is asserted
    assert times[-1] - began >= (len(times) - 1) * 0.25 - 0.01


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


async def test_deleted_batch_job_is_announced_after_a_404(world: World) -> None:
    """A batch job gone from a complete listing and answering 404 gives batch_job.deleted."""
    poller = world.poller(BATCH_JOBS, reconcile_interval=60)
    jobs = [world.sim.create_batch_job(outcome="SUCCESS", queued_for=0, running_for=0)]
    jobs += [world.sim.create_batch_job(outcome="SUCCESS", queued_for=0, running_for=0)]
    world.now += 10
    await poller.poll()
    world.sim.delete("batch_jobs", jobs[0]["id"])
    world.now += 30
    assert (await poller.poll()).events == ()  # between reconciles: nothing is moving
    world.now += 60
    world.sim.reset_stats()
    report = await poller.poll()
    assert report.mode == "full"
    assert [(e.type, e.resource_id, e.data["status"]) for e in report.events] == [
        ("batch_job.deleted", jobs[0]["id"], "SUCCESS")
    ]
    assert any(r.startswith(f"GET /v1/batch/jobs/{jobs[0]['id']}?") for r in world.routes())
    assert poller.store.ids("default", "batch_jobs") == {jobs[1]["id"]}


async def test_running_batch_job_deleted_is_announced_between_reconciles(world: World) -> None:
    """A moving job that vanished is confirmed by its direct GET: batch_job.deleted, once."""
    poller = world.poller(BATCH_JOBS)
    await poller.poll()
    job = world.sim.create_batch_job(queued_for=0, running_for=1000)
    world.now += 1
    await poller.poll()
    world.sim.delete("batch_jobs", job["id"])
    world.now += 5
    report = await poller.poll()
    assert [(e.type, e.resource_id) for e in report.events] == [("batch_job.deleted", job["id"])]
    world.now += 5
    assert (await poller.poll()).events == ()


async def test_batch_job_started_is_opt_in_and_free(world: World) -> None:
    """batch_job.started comes once for an opted-in source; either way a cycle costs the same."""
    pollers = {
        "on": world.poller(BATCH_JOBS, workspace="on", opt_in=frozenset({"batch_job.started"})),
        "off": world.poller(BATCH_JOBS, workspace="off"),
    }
    found: dict[str, list[tuple[str, str]]] = {"on": [], "off": []}
    costs: dict[str, list[int]] = {"on": [], "off": []}

    async def cycle() -> None:
        for name, poller in pollers.items():
            report = await poller.poll()
            found[name] += [(e.type, e.resource_id) for e in report.events]
            costs[name].append(report.requests)

    await cycle()
    job = world.sim.create_batch_job(outcome="SUCCESS", queued_for=10, running_for=100)
    for step in (1, 20, 5, 200):
        world.now += step
        await cycle()
    lifecycle = ["batch_job.created", "batch_job.started", "batch_job.succeeded"]
    assert found["on"] == [(t, job["id"]) for t in lifecycle]
    assert found["off"] == [(t, job["id"]) for t in lifecycle if t != "batch_job.started"]
    assert costs["on"] == costs["off"]


async def test_emit_started_in_the_config_reaches_the_batch_poller(store_url: str) -> None:
    """sources.batch_jobs.emit_started: true makes the daemon announce batch_job.started."""
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=3)
    with SimulatorServer(sim) as server:
        config = make_config(
            server.url, None, store_url, sources={"batch_jobs": {"emit_started": True}}
        )
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            job = sim.create_batch_job(queued_for=10, running_for=1000)
            await runner.once()
            now["t"] += 20
            await runner.once()
            recorded = [(e.type, e.resource_id) for e in app.ledger.events()]
    assert recorded == [("batch_job.created", job["id"]), ("batch_job.started", job["id"])]

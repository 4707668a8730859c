"""Workflow runs against the simulator, on each store backend: cost, events, faults, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
import structlog

from poller.app import App
from poller.exceptions import ApiError
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.sources import WORKFLOW_RUNS
from poller.workflow_runs.source import WorkflowRunPoller

from .conftest import make_config
from .worlds import World


def runs_poller(world: World, page_size: int = 1000, **settings: Any) -> WorkflowRunPoller:
    options = {"page_size": page_size}
    poller: WorkflowRunPoller = world.poller(
        WORKFLOW_RUNS, WorkflowRunPoller, options=options, **settings
    )
    return poller


def events_of(report: Any) -> list[tuple[str, str]]:
    return [(e.type, e.resource_id) for e in report.events]


def lifecycle(run: dict[str, Any], outcome: str) -> list[tuple[str, str]]:
    return [("workflow_run.started", run["run_id"]), (f"workflow_run.{outcome}", run["run_id"])]


async def test_baseline_is_silent_then_each_transition_comes_once(world: World) -> None:
    """What exists at the first poll is recorded; later starts and outcomes come once each."""
    world.sim.workflows.bulk(count=30)
    old = world.sim.workflows.create_run(running_for=100)
    poller = runs_poller(world)
    baseline = await poller.poll()
    assert (baseline.mode, baseline.events, baseline.active) == ("baseline", (), 1)
    world.now += 10
    new = world.sim.workflows.create_run(outcome="FAILED", running_for=30)
    assert events_of(await poller.poll()) == [("workflow_run.started", new["run_id"])]
    world.now += 100
    assert sorted(events_of(await poller.poll())) == sorted(
        [("workflow_run.completed", old["run_id"]), ("workflow_run.failed", new["run_id"])]
    )
    world.now += 5
    quiet = await poller.poll()
    assert (quiet.mode, quiet.events, quiet.active) == ("incremental", (), 0)


async def test_quiet_cycle_costs_two_requests_whatever_the_history(world: World) -> None:
    """Over 10,000 runs, a quiet cycle is two listings: runs started and ended since the cursor."""
    world.sim.workflows.bulk(count=10_000)
    world.sim.workflows.create_run(running_for=10)
    poller = runs_poller(world, page_size=1000)
    baseline = await poller.poll()
    assert baseline.requests == 11  # 10,001 runs, 1,000 a page
    for _ in range(3):
        world.now += 1
        world.sim.reset_stats()
        report = await poller.poll()
        assert (report.mode, report.requests, report.events) == ("incremental", 2, ())
    windows = sorted(r.split("?")[1] for r in world.routes())
    assert [w.split("&")[:2] for w in windows] == [
        ["include_internal=false", "end_time_after=2027-01-15T07%3A59%3A00Z"],
        ["include_internal=false", "start_time_after=2027-01-15T07%3A59%3A00Z"],
    ]


async def test_outcomes_come_from_one_listing_not_a_get_per_run(world: World) -> None:
    """Twenty runs ending between two polls cost the two listings, not twenty GETs."""
    poller = runs_poller(world)
    await poller.poll()
    made = [world.sim.workflows.create_run(running_for=20 + n) for n in range(20)]
    world.now += 1
    await poller.poll()
    world.now += 60
    world.sim.reset_stats()
    report = await poller.poll()
    assert sorted(events_of(report)) == sorted(
        ("workflow_run.completed", run["run_id"]) for run in made
    )
    assert report.requests == 2 and all("/runs?" in r for r in world.routes())


async def test_continued_as_new_ends_a_run_and_the_next_one_starts(world: World) -> None:
    """continued_as_new for the run that ended, started for the next run of its execution."""
    poller = runs_poller(world)
    await poller.poll()
    first = world.sim.workflows.create_run(outcome="COMPLETED", continues=1, running_for=30)
    world.now += 1
    assert events_of(await poller.poll()) == [("workflow_run.started", first["run_id"])]
    world.now += 31  # the next run is 5 s long: still running
    report = await poller.poll()
    (ended, started) = report.events
    assert (ended.type, ended.resource_id) == ("workflow_run.continued_as_new", first["run_id"])
    assert started.type == "workflow_run.started"
    assert started.data["execution_id"] == ended.data["execution_id"] == first["execution_id"]
    assert started.resource_id != first["run_id"] and started.id != ended.id
    assert started.data["start_time"] == ended.data["end_time"]
    world.now += 40
    assert events_of(await poller.poll()) == [("workflow_run.completed", started.resource_id)]


@pytest.mark.parametrize("include_internal", [False, True])
async def test_internal_runs_are_left_out_unless_asked(
    world: World, include_internal: bool
) -> None:
    """A run of an internal workflow is tracked only with include_internal."""
    poller = runs_poller(world, include_internal=include_internal)
    await poller.poll()
    parent = world.sim.workflows.create_run(running_for=100)
    child = world.sim.workflows.create_run(
        workflow_name="parallel-execution",
        internal=True,
        parent_execution_id=parent["execution_id"],
    )
    world.now += 1
    found = events_of(await poller.poll())
    assert ("workflow_run.started", parent["run_id"]) in found
    assert (("workflow_run.started", child["run_id"]) in found) is include_internal


async def test_overlap_reads_again_but_never_announces_twice(world: World) -> None:
    """A run read again by the next window's overlap is not announced again."""
    poller = runs_poller(world)
    await poller.poll()
    run = world.sim.workflows.create_run(running_for=2)
    world.now += 5
    assert events_of(await poller.poll()) == lifecycle(run, "completed")
    world.now += 1
    listed = await world.clients[-1].get(
        "/workflows/runs", params={"start_time_after": "2027-01-15T07:59:00Z"}
    )
    assert [r["run_id"] for r in listed.json()["executions"]] == [run["run_id"]]
    assert (await poller.poll()).events == ()


async def test_a_run_the_windows_missed_is_found_by_the_reconcile(world: World) -> None:
    """A run that became visible long after it started is announced by the next reconcile."""
    poller = runs_poller(world, reconcile_interval=600)
    world.sim.workflows.create_run(running_for=10_000)
    await poller.poll()
    world.now += 300
    late = world.sim.workflows.create_run(start_time=world.now - 3600, running_for=10)
    assert (await poller.poll()).events == ()
    world.now += 600
    report = await poller.poll()
    assert report.mode == "full" and events_of(report) == lifecycle(late, "completed")


async def test_an_end_the_api_lists_late_is_found_by_the_overlap_or_the_reconcile(
    world: World,
) -> None:
    """A run listed ended after its end_time: within the overlap the next window finds it;
    older than the window, the reconcile does — once, with the API's end_time."""
    poller = runs_poller(world, reconcile_interval=600)
    slow, late = (world.sim.workflows.create_run(running_for=10_000) for _ in range(2))
    await poller.poll()
    world.now += 100
    quick = world.sim.workflows.create_run(running_for=1)
    world.now += 100
    assert events_of(await poller.poll()) == lifecycle(quick, "completed")  # cursor: its end
    t0 = world.now - 200
    world.sim.workflows.advance(slow["run_id"], "FAILED", at=t0 + 90)  # 11 s before the cursor
    world.sim.workflows.advance(late["run_id"], "COMPLETED", at=t0 + 20)  # 81 s before it
    world.now += 1
    assert events_of(await poller.poll()) == [("workflow_run.failed", slow["run_id"])]
    world.now += 600
    report = await poller.poll()
    assert report.mode == "full"
    assert events_of(report) == [("workflow_run.completed", late["run_id"])]
    assert report.events[0].data["end_time"] == "2027-01-15T08:00:20.000000Z"
    world.now += 1
    assert (await poller.poll()).events == ()


async def test_a_run_the_api_forgot_leaves_the_snapshot_silently(world: World) -> None:
    """A run gone from a complete listing and answering 404 is dropped, with no event."""
    poller = runs_poller(world, reconcile_interval=60)
    runs = [world.sim.workflows.create_run(running_for=1) for _ in range(3)]
    world.now += 10
    await poller.poll()
    world.sim.workflows.expire(runs[0]["run_id"])
    world.now += 100
    world.sim.reset_stats()
    report = await poller.poll()
    assert report.mode == "full" and report.events == ()
    assert f"GET /v1/workflows/runs/{runs[0]['run_id']}?" in world.routes()
    assert poller.store.ids("default", "workflow_runs") == {r["run_id"] for r in runs[1:]}


async def test_runs_the_listing_leaves_out_leave_the_snapshot_once(world: World) -> None:
    """Internal runs tracked before include_internal was turned off: the first reconcile
    without them reads each once and drops it, silently; the next reads none."""
    parent = world.sim.workflows.create_run(running_for=10_000)
    children = [
        world.sim.workflows.create_run(
            workflow_name="parallel-execution",
            internal=True,
            parent_execution_id=parent["execution_id"],
            running_for=10_000,
        )
        for _ in range(2)
    ]
    await runs_poller(world, include_internal=True).poll()
    poller = runs_poller(world, reconcile_interval=0)
    for child in children:
        world.sim.workflows.advance(child["run_id"], "COMPLETED")
    world.now += 1
    world.sim.reset_stats()
    report = await poller.poll()
    assert (report.mode, report.events) == ("full", ())
    assert sorted(r.split("?")[0] for r in world.routes() if "/runs/" in r) == sorted(
        f"GET /v1/workflows/runs/{child['run_id']}" for child in children
    )
    assert poller.store.ids("default", "workflow_runs") == {parent["run_id"]}
    world.now += 1
    world.sim.reset_stats()
    assert (await poller.poll()).events == ()
    assert [r for r in world.routes() if "/runs/" in r] == []


def without_run_ids(world: World) -> None:
    """From now on the runs list answers what it holds now, every run_id left null."""
    world.sim.clear_faults()
    listed = world.sim.workflows.list_runs(page_size=1000)["executions"]
    body = {"executions": [{**run, "run_id": None} for run in listed], "next_page_token": None}
    match = {"method": "GET", "path": "/v1/workflows/runs"}
    world.sim.add_fault(kind="status", status=200, body=body, match=match, count=-1)


async def test_runs_without_a_run_id_are_told_apart_by_their_start(world: World) -> None:
    """An execution's runs listed without run_ids each get their events, named by execution
    and start; one no longer listed leaves silently once its execution answers another run."""
    poller = runs_poller(world, reconcile_interval=60)
    await poller.poll()
    first = world.sim.workflows.create_run(continues=1, running_for=10)
    world.now += 12  # the first run continued as new 10 s in; the next one runs 5 s
    without_run_ids(world)
    report = await poller.poll()
    execution = first["execution_id"]
    one, two = (
        f"{execution}@2027-01-15T08:00:00.000000Z",
        f"{execution}@2027-01-15T08:00:10.000000Z",
    )
    assert events_of(report) == [
        ("workflow_run.started", one),
        ("workflow_run.continued_as_new", one),
        ("workflow_run.started", two),
    ]
    assert len({e.id for e in report.events}) == 3
    world.now += 60
    world.sim.workflows.expire(first["run_id"])
    without_run_ids(world)
    world.sim.reset_stats()
    report = await poller.poll()
    assert report.mode == "full" and events_of(report) == [("workflow_run.completed", two)]
    assert f"GET /v1/workflows/executions/{execution}?" in world.routes()
    assert poller.store.ids("default", "workflow_runs") == {two}


class CutOff(httpx.AsyncBaseTransport):
    """Holds every request for a page after a listing's first while ``cut`` is set: the poll
    waits there until it is cancelled, as its timeout or a shutdown cancels it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.cut = True
        self.reached = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.cut and "next_page_token" in request.url.params:
            self.reached.set()
            await asyncio.Event().wait()
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("mode", ["baseline", "incremental", "full"])
async def test_a_poll_cut_off_between_pages_resumes_without_loss(world: World, mode: str) -> None:
    """A poll cancelled after its first page writes nothing; a new poller's next poll has every
    event once."""
    cut = CutOff(world.transport)
    world.transport = cut
    reconcile = 0.0 if mode == "full" else 3600.0
    existing = [world.sim.workflows.create_run(running_for=1) for _ in range(3)]
    world.now += 5
    if mode != "baseline":
        cut.cut = False
        await runs_poller(world, page_size=2).poll()
        cut.cut = True
    made = [world.sim.workflows.create_run(outcome="FAILED", running_for=1) for _ in range(3)]
    world.now += 5
    cancelled = runs_poller(world, page_size=2, reconcile_interval=reconcile)
    task = asyncio.create_task(cancelled.poll())
    await cut.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cut.cut = False
    restarted = runs_poller(world, page_size=2, reconcile_interval=reconcile)
    report = await restarted.poll()
    assert report.mode == mode
    expected = [] if mode == "baseline" else [e for run in made for e in lifecycle(run, "failed")]
    assert sorted(events_of(report)) == sorted(expected)
    assert (await restarted.poll()).events == ()
    stored = restarted.store.ids("default", "workflow_runs")
    assert stored == {r["run_id"] for r in existing + made}


FAULTS = [
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 502},
    {"kind": "status", "status": 429, "headers": {"Retry-After": "0"}},
    {"kind": "delay", "seconds": 0.01},
    {"kind": "garbled"},
    {"kind": "garbled", "body": {"executions": "oops"}},
    {"kind": "empty"},
    {"kind": "truncate", "drop": 1},
    {"kind": "disconnect"},
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: "-".join(str(v) for v in f.values()))
async def test_every_fault_leaves_each_transition_announced_once(
    world: World, fault: dict[str, Any]
) -> None:
    """Under each simulator fault the runs source loses nothing and announces nothing twice."""
    with contextlib.ExitStack() as stack:
        world.serve(stack)
        poller = runs_poller(world, page_size=2, reconcile_interval=600)
        old = world.sim.workflows.create_run(running_for=40)
        await poller.poll()
        found: list[tuple[str, str]] = []
        world.sim.add_fault(match={"method": "GET", "path": "/v1/workflows/runs"}, count=4, **fault)
        made = []
        for _ in range(4):
            made.append(world.sim.workflows.create_run(outcome="TIMED_OUT", running_for=15))
            world.now += 10
            try:
                found += events_of(await poller.poll())
            except ApiError:
                pass
        assert world.sim.faults() == []  # the four requests it was to hit were hit
        world.now += 60
        found += events_of(await poller.poll())
        world.now += 600  # a reconcile: whatever a fault hid from the windows is found there
        found += events_of(await poller.poll())
    expected = [("workflow_run.completed", old["run_id"])]
    expected += [e for run in made for e in lifecycle(run, "timed_out")]
    assert sorted(found) == sorted(expected)


async def test_a_workspace_without_workflows_switches_the_source_off(store_url: str) -> None:
    """A runs list answering 404 switches the source off with one warning; the rest polls on."""
    sim = Simulator(seed=6)
    sim.add_fault(
        kind="status", status=404, count=-1, match={"method": "GET", "path": "/v1/workflows"}
    )
    with SimulatorServer(sim) as server:
        async with App(make_config(server.url, None, store_url)) as app:
            runner = Runner(app)
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    outcomes = await runner.once()
    disabled = [e for e in logs if e["event"] == "source_disabled"]
    assert [(e["source"], e["reason"]) for e in disabled] == [
        ("workflow_runs", "the workflows API answered 404 (not offered to this workspace)")
    ]
    assert sim.stats()["by_route"]["GET /v1/workflows/runs"] == 1
    assert {o.source for o in outcomes if o.failed} == set()


async def test_the_config_s_include_internal_reaches_the_listing(store_url: str) -> None:
    """sources.workflow_runs.include_internal: true asks the API for internal runs too."""
    sim = Simulator(seed=6)
    with SimulatorServer(sim) as server:
        sources = {"workflow_runs": {"include_internal": True}}
        async with App(make_config(server.url, None, store_url, sources=sources)) as app:
            await Runner(app).once()
    queries = [r["query"] for r in sim.stats()["recent"] if r["path"] == "/v1/workflows/runs"]
    assert queries == ["include_internal=true&page_size=1000"]


async def test_the_daemon_announces_runs_as_they_move(store_url: str) -> None:
    """Through the daemon: a run executed by the API is started, then completed, in order."""
    now = {"t": 1_800_000_000.0}
    sim = Simulator(clock=lambda: now["t"], seed=6)
    with SimulatorServer(sim) as server:
        async with App(make_config(server.url, None, store_url)) as app:
            runner = Runner(app)
            await runner.once()
            run = sim.workflows.execute("nightly-report", input={"day": "mon"})
            await runner.once()
            now["t"] += 10
            await runner.once()
            recorded = [(e.type, e.resource_id, e.data["status"]) for e in app.ledger.events()]
    assert recorded == [
        ("workflow_run.started", run["run_id"], "RUNNING"),
        ("workflow_run.completed", run["run_id"], "COMPLETED"),
    ]

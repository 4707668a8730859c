"""The libraries source against the simulator over HTTP: cost, events, passes, deletions."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog

from poller import store as store_mod
from poller.app import App
from poller.exceptions import ApiError, LeaseLost
from poller.libraries.source import LibraryPoller
from poller.mistral.client import MistralClient
from poller.polling import PollReport, Settings
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.sources import LIBRARIES
from poller.testing import WebhookReceiver

from .conftest import make_config

T0 = 1_800_000_000.0


async def no_wait(seconds: float) -> None:
    """The client's wait between retries, skipped: faults are retried at once."""


class Shelves:
    """A simulator on a hand-driven clock, served over HTTP, and a libraries poller over it."""

    def __init__(self, store_url: str) -> None:
        self.now = T0
        self.sim = Simulator(clock=lambda: self.now, seed=21)
        self.libs = self.sim
        self.server = SimulatorServer(self.sim).start()
        self.engine = store_mod.create_engine(store_url)
        self.store = store_mod.Store(self.engine, lambda _e: ["s"])
        self.http = httpx.AsyncClient(base_url=self.server.url)
        self.poller = self.restart()

    def restart(self, **settings: Any) -> LibraryPoller:
        """A new poller over the same store, as after a restart of the daemon."""
        self.poller = LibraryPoller(
            LIBRARIES,
            client=MistralClient(self.http, page_size=10, sleep=no_wait),
            store=self.store,
            settings=Settings(reconcile_interval=3600, **settings),
            clock=lambda: dt.datetime.fromtimestamp(self.now, dt.UTC),
        )
        return self.poller

    def history(self, libraries: int = 3, documents: int = 25) -> list[str]:
        """Libraries of processed documents; their ids, oldest first."""
        self.libs.bulk_libraries(libraries=libraries, documents=documents)
        listed = self.libs.list_libraries()["data"]
        return [lib["id"] for lib in reversed(listed)]

    async def poll(self, seconds: float = 5) -> tuple[PollReport, int]:
        """One poll ``seconds`` later, and the number of requests the simulator received."""
        self.now += seconds
        self.sim.reset_stats()
        report = await self.poller.poll()
        return report, self.sim.stats()["total"]

    def recorded(self) -> list[tuple[str, str]]:
        """Every event in the outbox: (type, resource id), in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT type, resource_id FROM events ORDER BY seq"))
            return [(r.type, r.resource_id) for r in rows]

    async def close(self) -> None:
        await self.http.aclose()
        self.server.stop()
        self.engine.dispose()


def changes(report: PollReport) -> list[tuple[str, str]]:
    return [(e.type, e.resource_id) for e in report.events]


@pytest.fixture
async def shelves(store_url: str) -> AsyncIterator[Shelves]:
    world = Shelves(store_url)
    yield world
    await world.close()


@pytest.fixture
async def sqlite_shelves(store_file: str) -> AsyncIterator[Shelves]:
    world = Shelves(store_file)
    yield world
    await world.close()


async def test_a_quiet_cycle_costs_one_request_whatever_the_documents(shelves: Shelves) -> None:
    """Past the baseline (the list and every page), a quiet cycle reads the library list only."""
    shelves.history(libraries=3, documents=25)
    baseline, requests = await shelves.poll()
    assert (baseline.mode, baseline.events, requests) == ("baseline", (), 1 + 3 * 3)
    for _ in range(3):
        report, requests = await shelves.poll()
        assert (report.mode, report.events, report.active, requests) == ("incremental", (), 0, 1)


async def test_uploads_and_their_outcomes_cost_a_request_per_library_and_document(
    shelves: Shelves,
) -> None:
    """Uploads are read from the head of their library; outcomes by status, then the document."""
    first, second, _ = shelves.history(libraries=3, documents=25)
    await shelves.poll()
    ok = shelves.libs.add_document(first, name="ok.pdf", processing_for=20)
    broken = shelves.libs.add_document(first, name="broken.pdf", outcome="error", processing_for=20)
    empty = shelves.libs.add_document(
        second, name="scan.png", outcome="missing_content", processing_for=20
    )
    report, requests = await shelves.poll()
    assert sorted(changes(report)) == sorted(
        ("library_document.uploaded", d["id"]) for d in (ok, broken, empty)
    )
    assert (report.active, requests) == (3, 1 + 2)
    report, requests = await shelves.poll(seconds=30)
    assert sorted(changes(report)) == sorted(
        [("library_document.processed", ok["id"]), ("library_document.failed", broken["id"]),
         ("library_document.failed", empty["id"])]
    )  # fmt: skip
    assert requests == 1 + 3 + 3
    by_id = {e.resource_id: e.data for e in report.events}
    assert by_id[ok["id"]]["process_status"] == "done" and by_id[ok["id"]]["summary"]
    assert by_id[empty["id"]]["process_status"] == "missing_content"
    assert by_id[broken["id"]]["last_processed_at"] is not None
    report, requests = await shelves.poll()
    assert (report.events, report.active, requests) == ((), 0, 1)


async def test_a_document_still_processing_is_checked_by_its_status(shelves: Shelves) -> None:
    """While a document moves between active statuses, each cycle costs one status request."""
    (library,) = shelves.history(libraries=1, documents=25)
    await shelves.poll()
    slow = shelves.libs.add_document(library, queued_for=100, processing_for=100)
    await shelves.poll()
    for seconds in (10, 100):
        report, requests = await shelves.poll(seconds)
        assert (report.events, report.active, requests) == ((), 1, 2)
    report, requests = await shelves.poll(100)
    assert changes(report) == [("library_document.processed", slow["id"])] and requests == 3


async def test_a_new_library_comes_with_its_documents(shelves: Shelves) -> None:
    """A new library is announced, then its documents, in one poll."""
    shelves.history(libraries=1, documents=5)
    await shelves.poll()
    made = shelves.libs.create_library(name="New")
    doc = shelves.libs.add_document(made["id"], processing_for=1000)
    report, requests = await shelves.poll()
    assert changes(report) == [
        ("library.created", made["id"]),
        ("library_document.uploaded", doc["id"]),
    ]
    assert report.events[0].data["name"] == "New" and requests == 2


async def test_a_reprocessed_document_gets_a_new_outcome_with_a_new_id(shelves: Shelves) -> None:
    """A reprocess seen at a reconcile is a new pass: its outcome has a new event id."""
    (library,) = shelves.history(libraries=1, documents=25)
    await shelves.poll()
    doc = shelves.libs.add_document(library)
    first, _ = await shelves.poll(30)
    processed = [e for e in first.events if e.type == "library_document.processed"]
    shelves.libs.reprocess_document(library, doc["id"], processing_for=5000)
    report, requests = await shelves.poll()
    assert (report.events, requests) == ((), 1)  # nothing a cheap cycle reads shows it
    report, _ = await shelves.poll(3600)  # a reconcile reads every document
    assert (report.mode, report.events, report.active) == ("full", (), 1)
    report, requests = await shelves.poll(2000)
    assert (report.mode, requests) == ("incremental", 3)  # the list, the status, the document
    again = [e for e in report.events if e.type == "library_document.processed"]
    assert [e.resource_id for e in again] == [doc["id"]]
    assert again[0].id != processed[0].id
    shelves.libs.reprocess_document(library, doc["id"], outcome="error", processing_for=1)
    report, _ = await shelves.poll(3600)  # begun and ended between two reconciles
    failed = [e for e in report.events if e.type == "library_document.failed"]
    assert [e.resource_id for e in failed] == [doc["id"]]
    assert len({processed[0].id, again[0].id, failed[0].id}) == 3


async def test_an_outcome_detected_again_after_a_crash_keeps_its_id(
    shelves: Shelves, store_file: str
) -> None:
    """A poll that dies before its commit writes nothing; after a restart the same ids come."""
    (library,) = shelves.history(libraries=1, documents=5)
    await shelves.poll()
    shelves.libs.add_document(library)

    def crash(conn: sa.Connection) -> None:
        raise LeaseLost("the poll died before its commit")

    shelves.poller.fence = crash
    with pytest.raises(LeaseLost):
        await shelves.poll(30)
    assert shelves.recorded() == []
    shelves.restart()
    report, _ = await shelves.poll()
    # a poller that never crashed, over the same API, gives the same ids
    engine = store_mod.create_engine(store_file.replace("poller.db", "twin.db"))
    twin = LibraryPoller(
        LIBRARIES,
        client=MistralClient(shelves.http, page_size=10),
        store=store_mod.Store(engine, lambda _e: ["s"]),
        settings=Settings(emit_existing=True),
        clock=lambda: dt.datetime.fromtimestamp(shelves.now, dt.UTC),
    )
    try:
        mine = {e.resource_id: e.id for e in report.events}
        theirs = {e.resource_id: e.id for e in (await twin.poll()).events if e.resource_id in mine}
        assert mine == theirs and len(mine) == 1
        assert [e.type for e in report.events] == [
            "library_document.uploaded", "library_document.processed",
        ]  # fmt: skip
    finally:
        engine.dispose()
    shelves.restart()
    report, _ = await shelves.poll(3600)
    assert (report.mode, report.events) == ("full", ())


async def test_a_deleted_document_is_confirmed_by_a_404(shelves: Shelves) -> None:
    """A document gone from its library's whole listing is deleted once a GET answers 404."""
    (library,) = shelves.history(libraries=1, documents=25)
    await shelves.poll()
    doomed = shelves.libs.list_documents(library, page=2, page_size=10)["data"][0]
    shelves.libs.delete_document(library, doomed["id"])
    report, requests = await shelves.poll()
    assert changes(report) == [("library_document.deleted", doomed["id"])]
    assert report.events[0].data == {
        "id": doomed["id"], "library_id": library, "name": doomed["name"],
    }  # fmt: skip
    assert requests == 1 + 3 + 1
    assert (await shelves.poll())[1] == 1


async def test_a_deleted_library_takes_its_documents_with_it(shelves: Shelves) -> None:
    """A library confirmed gone: each of its documents is deleted, then the library."""
    _first, second, _ = shelves.history(libraries=3, documents=12)
    await shelves.poll()
    documents = {d["id"] for d in shelves.libs.list_documents(second)["data"]}
    shelves.libs.delete_library(second)
    report, requests = await shelves.poll()
    assert [t for t, _ in changes(report)] == ["library_document.deleted"] * 12 + [
        "library.deleted"
    ]
    assert {rid for _, rid in changes(report)[:-1]} == documents
    assert report.events[-1].resource_id == second and requests == 2
    assert (await shelves.poll())[1] == 1


async def test_deleting_most_libraries_is_held_until_a_reconcile_agrees(shelves: Shelves) -> None:
    """Past poll.mass_delete_min and the threshold, deletions wait a reconcile interval."""
    first, second, _third = shelves.history(libraries=3, documents=12)
    await shelves.poll()
    shelves.libs.delete_library(first)
    shelves.libs.delete_library(second)
    with structlog.testing.capture_logs() as logs:
        held, requests = await shelves.poll()
        quiet, _ = await shelves.poll()
    assert (held.events, held.held, requests) == ((), 26, 1)
    assert (quiet.events, quiet.held) == ((), 26)
    assert [e["event"] for e in logs].count("deletions_held") == 1
    report, _ = await shelves.poll(3600)
    assert len(report.events) == 26 and report.held == 0
    assert {e.resource_id for e in report.events if e.type == "library.deleted"} == {first, second}


async def test_a_library_a_truncated_list_leaves_out_still_exists(shelves: Shelves) -> None:
    """A library absent from the list but answering its GET is not deleted."""
    shelves.history(libraries=3, documents=5)
    await shelves.poll()
    shelves.sim.add_fault(kind="truncate", match={"method": "GET", "path": "/v1/libraries"})
    report, requests = await shelves.poll()
    assert report.events == () and requests == 2
    assert (await shelves.poll())[0].events == ()


async def test_a_workspace_without_the_libraries_api_switches_the_source_off(
    receiver: WebhookReceiver, store_file: str
) -> None:
    """When /v1/libraries answers 404 the source stops with one warning; the rest carries on."""
    sim = Simulator()
    sim.set_libraries_available(False)
    with SimulatorServer(sim) as server:
        async with App(make_config(server.url, receiver.url, store_file)) as app:
            runner = Runner(app)
            with structlog.testing.capture_logs() as logs:
                await runner.once()
                sim.reset_stats()
                await runner.once()
    warnings = [e for e in logs if e["event"] == "source_disabled"]
    assert len(warnings) == 1 and warnings[0]["source"] == "libraries"
    assert "not offered" in warnings[0]["reason"]
    assert "GET /v1/libraries" not in sim.stats()["by_route"]
    assert sim.stats()["by_route"]["GET /v1/batch/jobs"] == 1


# ------------------------------------------------------------- restarts and faults


async def test_a_baseline_cut_short_mid_listing_is_taken_again_whole(
    sqlite_shelves: Shelves,
) -> None:
    """A baseline whose listing fails half-way writes nothing; the next one is whole."""
    shelves = sqlite_shelves
    _, second = shelves.history(libraries=2, documents=25)
    path = f"/v1/libraries/{second}/documents"
    shelves.sim.add_fault(kind="status", status=503, count=-1, match={"path": path})
    with pytest.raises(ApiError):
        await shelves.poll()
    state = shelves.store.source_state("default", "libraries")
    assert not state.baselined and shelves.store.ids("default", "libraries") == set()
    shelves.sim.clear_faults()
    shelves.restart()
    report, requests = await shelves.poll()
    assert report.mode == "baseline" and requests == 1 + 2 * 3
    assert len(shelves.store.ids("default", "libraries")) == 2 + 50


async def test_a_poll_cut_short_mid_listing_announces_everything_after_a_restart(
    sqlite_shelves: Shelves,
) -> None:
    """Uploads to two libraries, the second's read failing: after a restart both come, once."""
    shelves = sqlite_shelves
    first, second = shelves.history(libraries=2, documents=25)
    await shelves.poll()
    one = shelves.libs.add_document(first, processing_for=1000)
    two = shelves.libs.add_document(second, processing_for=1000)
    shelves.sim.add_fault(
        kind="disconnect", count=-1, match={"path": f"/v1/libraries/{second}/documents"}
    )
    with pytest.raises(ApiError):
        await shelves.poll()
    assert shelves.recorded() == []
    shelves.sim.clear_faults()
    shelves.restart()
    report, _ = await shelves.poll()
    assert sorted(changes(report)) == sorted(
        [("library_document.uploaded", one["id"]), ("library_document.uploaded", two["id"])]
    )
    assert (await shelves.poll())[0].events == ()


FAULTS: dict[str, dict[str, Any]] = {
    "500 until cleared": {"kind": "status", "status": 500, "count": -1},
    "429 twice": {"kind": "status", "status": 429, "count": 2, "headers": {"Retry-After": "0"}},
    "garbled": {"kind": "garbled", "count": -1},
    "empty": {"kind": "empty"},
    "truncated": {"kind": "truncate"},
    "disconnect": {"kind": "disconnect", "count": -1},
    "delay": {"kind": "delay", "seconds": 0.05},
}


@pytest.mark.parametrize("where", ["library list", "documents", "status"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_fault_announces_each_change_once(
    sqlite_shelves: Shelves, fault: str, where: str
) -> None:
    """Whatever a fault does to one poll, every change is announced once, nothing falsely."""
    shelves = sqlite_shelves
    first, second = shelves.history(libraries=2, documents=25)
    await shelves.poll()
    moving = shelves.libs.add_document(first, name="moving.pdf", processing_for=20)
    await shelves.poll()
    doomed = shelves.libs.list_documents(second, page=1, page_size=10)["data"][0]
    shelves.libs.delete_document(second, doomed["id"])
    arrived = shelves.libs.add_document(second, name="arrived.md", processing_for=1000)
    path = {
        "library list": "/v1/libraries",
        "documents": f"/v1/libraries/{second}/documents",
        "status": f"/v1/libraries/{first}/documents/{moving['id']}/status",
    }[where]
    shelves.now += 30
    shelves.sim.add_fault(match={"method": "GET", "path": path}, **FAULTS[fault])
    try:
        faulted, _ = await shelves.poll()
    except ApiError:
        faulted = None
    if faulted is not None:
        gone = {rid for kind, rid in changes(faulted) if kind.endswith("deleted")}
        assert gone <= {doomed["id"]}, "a deletion nobody made"
    shelves.sim.clear_faults()
    for _ in range(3):
        await shelves.poll()
    events = shelves.recorded()
    assert len(events) == len(set(events)), "a change announced twice"
    assert set(events) == {
        ("library_document.uploaded", moving["id"]),
        ("library_document.processed", moving["id"]),
        ("library_document.deleted", doomed["id"]),
        ("library_document.uploaded", arrived["id"]),
    }

"""The files source between reconciles, against the simulator over HTTP: cost and events."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from poller import hints
from poller import store as store_mod
from poller.app import App
from poller.mistral.client import MistralClient
from poller.polling import PollReport, Settings, SourcePoller
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.sources import FILES

from .conftest import make_config

T0 = 1_800_000_000.0
ORDERS = ("newest", "oldest")


class Files:
    """A simulator on a hand-driven clock, served over HTTP, and a files poller over it."""

    def __init__(self, order: str, store_url: str) -> None:
        self.now = T0
        self.sim = Simulator(clock=lambda: self.now, seed=11, files_order=order)
        self.server = SimulatorServer(self.sim).start()
        self.engine = store_mod.create_engine(store_url)
        self.http = httpx.AsyncClient(base_url=self.server.url)
        self.poller = SourcePoller(
            FILES,
            client=MistralClient(self.http, page_size=10),
            store=store_mod.Store(self.engine, lambda _e: ["s"]),
            settings=Settings(reconcile_interval=3600),
            clock=lambda: dt.datetime.fromtimestamp(self.now, dt.UTC),
        )

    def history(self, count: int) -> list[dict[str, Any]]:
        """``count`` files uploaded a minute apart, the newest a minute ago."""
        return [
            self.sim.create_file(filename=f"f{n}.jsonl", created_at=T0 - 60 * (count - n))
            for n in range(count)
        ]

    async def poll(self) -> tuple[PollReport, int]:
        """One poll and the number of requests the simulator received for it."""
        self.now += 5
        self.sim.reset_stats()
        report = await self.poller.poll()
        return report, self.sim.stats()["total"]

    async def close(self) -> None:
        await self.http.aclose()
        self.server.stop()
        self.engine.dispose()


def changes(report: PollReport) -> set[tuple[str, str]]:
    return {(e.type, e.resource_id) for e in report.events}


@pytest.fixture(params=ORDERS)
async def files(request: pytest.FixtureRequest, store_url: str) -> AsyncIterator[Files]:
    world = Files(request.param, store_url)
    yield world
    await world.close()


async def test_idle_cycle_reads_one_page_whatever_the_history(files: Files) -> None:
    """Past the baseline, a quiet files source costs one request a cycle, in either order."""
    files.history(45)
    baseline, requests = await files.poll()
    assert baseline.mode == "baseline" and requests == 5
    for _ in range(3):
        report, requests = await files.poll()
        assert (report.mode, report.events, requests) == ("incremental", (), 1)


async def test_upload_is_announced_from_the_end_of_the_listing(files: Files) -> None:
    """New files, one or a page and more of them, are announced without a full listing."""
    files.history(45)
    await files.poll()
    one = files.sim.create_file(filename="one.jsonl")
    report, requests = await files.poll()
    assert changes(report) == {("file.uploaded", one["id"])}
    assert report.mode == "incremental" and requests <= 2
    many = [files.sim.create_file(filename=f"m{n}.jsonl") for n in range(12)]
    report, requests = await files.poll()
    assert changes(report) == {("file.uploaded", f["id"]) for f in many}
    assert report.mode == "incremental" and requests <= 3
    assert (await files.poll())[0].events == ()


async def test_deletion_deep_in_history_is_found_though_an_upload_keeps_the_total(
    files: Files,
) -> None:
    """A deletion far from the end is found in the same cycle as an upload that hides it."""
    old = files.history(45)
    await files.poll()
    files.sim.delete_file(old[3]["id"])
    new = files.sim.create_file(filename="new.jsonl")
    report, _ = await files.poll()
    assert changes(report) == {("file.deleted", old[3]["id"]), ("file.uploaded", new["id"])}
    report, requests = await files.poll()
    assert (report.mode, report.events, requests) == ("incremental", (), 1)


async def test_a_late_upload_behind_known_files_and_a_deletion_are_found_at_once(
    files: Files,
) -> None:
    """A slow upload (created 90 s before the newest file) and a deletion: both, that cycle."""
    old = files.history(41)  # the newest a minute before T0, oldest first: alone on its page
    await files.poll()
    files.sim.delete_file(old[3]["id"])
    late = files.sim.create_file(filename="slow.jsonl", created_at=T0 - 150)
    report, _ = await files.poll()
    assert changes(report) == {("file.deleted", old[3]["id"]), ("file.uploaded", late["id"])}
    report, _ = await files.poll()
    assert (report.mode, report.events) == ("incremental", ())


async def test_deleting_the_last_file_is_announced(files: Files) -> None:
    """An empty listing that deletes fewer than poll.mass_delete_min items is not held."""
    (only,) = files.history(1)
    await files.poll()
    files.sim.delete_file(only["id"])
    report, _ = await files.poll()
    assert changes(report) == {("file.deleted", only["id"])} and report.held == 0


async def test_a_listing_that_changes_order_is_listed_in_full(files: Files) -> None:
    """When a page breaks the learned order, the poll lists in full and learns it again."""
    files.history(45)
    await files.poll()
    other = "oldest" if files.sim.files_order == "newest" else "newest"
    files.sim.set_files_order(other)
    report, requests = await files.poll()
    assert (report.mode, report.events, requests) == ("full", (), 6)
    report, requests = await files.poll()
    assert (report.mode, report.events, requests) == ("incremental", (), 1)


async def test_unordered_listing_is_listed_in_full(store_url: str) -> None:
    """A listing in no order by creation is listed in full every cycle, with the same events."""
    files = Files("none", store_url)
    try:
        old = files.history(25)
        await files.poll()
        report, requests = await files.poll()
        assert (report.mode, report.events, requests) == ("full", (), 3)
        files.sim.delete_file(old[7]["id"])
        new = files.sim.create_file(filename="new.jsonl")
        report, _ = await files.poll()
        assert changes(report) == {("file.deleted", old[7]["id"]), ("file.uploaded", new["id"])}
    finally:
        await files.close()


async def test_mass_deletion_needs_the_minimum_and_the_share(store_url: str) -> None:
    """A listing is held only when it deletes at least mass_delete_min and over the share."""
    files = Files("newest", store_url)
    try:
        old = files.history(30)
        await files.poll()
        files.sim.delete_file(old[0]["id"])
        assert len((await files.poll())[0].events) == 1  # one of 30: announced
        for f in old[1:21]:
            files.sim.delete_file(f["id"])
        held, _ = await files.poll()
        assert held.events == () and held.held == 20
        # the held deletions are accounted for: the quiet cycles after read one page
        quiet, requests = await files.poll()
        assert (quiet.mode, quiet.events, quiet.held, requests) == ("incremental", (), 20, 1)
    finally:
        await files.close()


async def test_idle_cycle_of_every_source_costs_one_request_each(tmp_path: pathlib.Path) -> None:
    """With jobs, their files, fine-tuned models and libraries in history, an idle cycle is
    one request per source."""
    sim = Simulator(seed=8)
    sim.bulk(batch_jobs=300, fine_tuning_jobs=20, files=600)
    sim.bulk_libraries(libraries=5, documents=300)
    for n in range(5):
        sim.create_model(id=f"ft:open-mistral-nemo:idle{n}")
    with SimulatorServer(sim) as server:
        config = make_config(server.url, None, f"sqlite:///{tmp_path}/p.db")
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            for _ in range(2):
                sim.reset_stats()
                await runner.once()
                assert sim.stats()["by_route"] == {
                    "GET /v1/batch/jobs": 1,
                    "GET /v1/fine_tuning/jobs": 1,
                    "GET /v1/files": 1,
                    "GET /v1/models": 1,
                    "GET /v1/libraries": 1,
                }


async def test_files_recorded_outside_a_poll_are_known_to_the_tail(files: Files) -> None:
    """An upload and a deletion already in the snapshot (the proxy's) are not announced again."""
    old = files.history(45)
    await files.poll()
    store = files.poller.store
    at = dt.datetime.fromtimestamp(files.now, dt.UTC)
    new = files.sim.create_file(filename="through-the-proxy.jsonl")
    upload = hints.Hint("default", FILES, hints.CREATED, new["id"], at, FILES.to_resource(new))
    files.sim.delete_file(old[5]["id"])
    deletion = hints.Hint("default", FILES, hints.DELETED, old[5]["id"], at)
    assert len(hints.record(store, upload)) == len(hints.record(store, deletion)) == 1
    report, requests = await files.poll()
    assert (report.mode, report.events, requests) == ("incremental", (), 1)

"""A change of hands in the middle of a poll, on a real PostgreSQL: two replicas in one
process, the simulator over real HTTP, the lease handed over by the replicas' own calls.

A listing is held at a seam of the transport (``HeldListing``) while the lease moves, so
nothing waits on time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from poller import config as config_mod
from poller.app import App
from poller.config.models import SOURCE_NAMES
from poller.exceptions import LeaseLost
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer

from .conftest import make_config

pytestmark = pytest.mark.postgres


class HeldListing(httpx.AsyncBaseTransport):
    """The network to the simulator; once ``armed``, the next batch jobs listing is held
    after its answer arrived (``reached``) until ``release`` is set."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.armed = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.armed and request.method == "GET" and request.url.path == "/v1/batch/jobs":
            self.armed = False
            await response.aread()
            self.reached.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def replica_config(api: str, store_url: str, name: str) -> config_mod.Config:
    """One replica's config: batch jobs only, polled when the test says (long intervals)."""
    return make_config(
        api,
        None,
        store_url,
        ha={"lease_ttl": "30s", "replica_id": name},
        sources=dict.fromkeys(set(SOURCE_NAMES) - {"batch_jobs"}, False),
        poll={"interval": "60s", "active_interval": "60s"},
    )


def stored_status(app: App, job: str) -> Any:
    with app.store.engine.connect() as conn:
        return conn.scalar(
            sa.text("select status from resources where resource_id = :id"), {"id": job}
        )


async def test_a_poll_that_lost_and_took_back_its_lease_writes_nothing(
    sim: Simulator, server: SimulatorServer, postgres_url: str
) -> None:
    """A poll whose lease went to another replica and came back mid-listing commits nothing:
    the job it listed RUNNING, the other replica recorded SUCCESS, and SUCCESS it stays."""
    job = sim.create_batch_job(queued_for=0, running_for=3600)["id"]
    held = HeldListing()
    a_config = replica_config(server.url, postgres_url, "a")
    b_config = replica_config(server.url, postgres_url, "b")
    async with App(a_config, api_transport=held) as a, App(b_config) as b:
        assert a.leadership is not None and b.leadership is not None
        ra, rb = Runner(a), Runner(b)
        [(a_ws, a_poller)] = a.pollers()
        [(b_ws, b_poller)] = b.pollers()
        await asyncio.to_thread(a.leadership.turn)
        await ra.poll_once(a_ws, a_poller)  # the baseline: RUNNING
        assert stored_status(a, job) == "RUNNING"
        held.armed = True
        with capture_logs() as logs:
            polling = asyncio.create_task(ra.poll_once(a_ws, a_poller))
            await held.reached.wait()  # a holds a listing that says RUNNING
            sim.advance("batch_jobs", job, "SUCCESS")
            await a.leadership.leave()
            await asyncio.to_thread(b.leadership.turn)
            polled = await rb.poll_once(b_ws, b_poller)
            assert polled.last_report is not None
            assert [e.type for e in polled.last_report.events] == ["batch_job.succeeded"]
            await b.leadership.leave()
            await asyncio.to_thread(a.leadership.turn)
            assert a.leadership.held == {"default": 3}, "a leads again, at a newer epoch"
            held.release.set()
            health = await polling
        assert stored_status(a, job) == "SUCCESS", "a stale listing moved the job back"
    assert health.error_streak == 0
    fenced = [x for x in logs if x["event"] == "poll_fenced"]
    assert len(fenced) == 1 and "epoch 1, now 3" in fenced[0]["reason"]


async def test_a_fence_bound_before_a_change_of_hands_refuses_the_write(
    server: SimulatorServer, postgres_url: str
) -> None:
    """The fence of a poll is bound to the epoch its lease had as the poll began: once the
    lease was given up and taken back, it refuses, though this replica leads again."""
    async with App(replica_config(server.url, postgres_url, "a")) as a:
        leadership = a.leadership
        assert leadership is not None
        await asyncio.to_thread(leadership.turn)
        fence = leadership.fence("default")
        await leadership.leave()
        await asyncio.to_thread(leadership.turn)
        assert leadership.held == {"default": 2}
        with a.store.engine.begin() as conn, pytest.raises(LeaseLost, match="epoch 1"):
            fence(conn)
        with a.store.engine.begin() as conn:
            leadership.fence("default")(conn)  # a poll begun now writes

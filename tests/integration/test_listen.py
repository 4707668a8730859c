"""LISTEN/NOTIFY on PostgreSQL: new deliveries wake the dispatcher; a killed listener returns."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from poller import store as store_mod
from poller.delivery.dispatcher import SinkWorker
from poller.diff import event_for
from poller.simulator import Simulator
from poller.sinks.http import HttpSink
from poller.sources import BATCH_JOBS
from poller.store import Outbox, Store
from poller.store.listen import OutboxListener
from poller.testing import WebhookReceiver, free_port

from .conftest import eventually

pytestmark = pytest.mark.postgres

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def enqueue(url: str, name: str) -> str:
    """Record one event for the sink ``hook`` through an engine of its own (another process)."""
    job = BATCH_JOBS.to_resource({"id": name, "status": "QUEUED", "created_at": 1, "model": "m"})
    event = event_for(BATCH_JOBS, "batch_job.created", job, workspace="w", now=T0)
    engine = store_mod.create_engine(url)
    try:
        Store(engine, lambda _e: ["hook"]).enqueue([event], T0)
    finally:
        engine.dispose()
    return event.id


def terminate(url: str, pid: int) -> None:
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


@contextlib.asynccontextmanager
async def running(
    engine: sa.Engine,
    receiver: WebhookReceiver,
    http: httpx.AsyncClient,
    *,
    idle_check: float,
    retry: float,
) -> AsyncIterator[OutboxListener]:
    """A sink worker and a listener waking it, both running; the listener once it listens."""
    sink = HttpSink("hook", receiver.url, client=http)
    worker = SinkWorker(sink, Outbox(engine), idle_check=idle_check)
    listener = OutboxListener(engine.url, worker.notify, retry=retry)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(listener.run(stop))]
    try:
        await asyncio.wait_for(listener.listening.wait(), 20)
        yield listener
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def delivered(receiver: WebhookReceiver) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.delivered()}


async def test_a_committed_delivery_wakes_the_dispatcher(
    engine: sa.Engine, postgres_url: str, receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    """A worker that would look again only in an hour sends at once when notified."""
    async with running(engine, receiver, http, idle_check=3600, retry=0.05):
        sent = await asyncio.to_thread(enqueue, postgres_url, "job-1")
        await eventually(lambda: delivered(receiver) == {sent})


async def test_a_hint_wakes_its_sources_polling_in_every_listening_process(
    engine: sa.Engine, postgres_url: str
) -> None:
    """A hint that puts a job in the active set names its workspace and source to every
    listener of the schema at commit (a document's reprocess too); a hint of a job already
    done says nothing."""
    from poller import hints

    woken: list[tuple[str, str]] = []
    listener = OutboxListener(engine.url, lambda: None, hinted=lambda w, s: woken.append((w, s)))
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    other = store_mod.create_engine(postgres_url)  # another process's store
    try:
        await asyncio.wait_for(listener.listening.wait(), 20)
        store = Store(other, lambda _e: [])
        sim = Simulator(seed=4)
        done = sim.advance("batch_jobs", sim.create_batch_job()["id"], "SUCCESS")
        queued = sim.create_batch_job(queued_for=3600)
        for answer in (done, queued):
            hint = hints.of_answer("POST", "/batch/jobs", answer, workspace="w", at=T0)
            assert hint is not None
            await asyncio.to_thread(hints.record, store, hint)
        await eventually(lambda: woken)
        assert woken == [("w", "batch_jobs")]
        reprocess = "/libraries/lib1/documents/doc1/reprocess"
        hint = hints.of_answer("POST", reprocess, {}, workspace="w", at=T0)
        assert hint is not None
        await asyncio.to_thread(hints.record, store, hint)
        await eventually(lambda: len(woken) == 2)
        assert woken[1] == ("w", "libraries")
    finally:
        stop.set()
        await task
        other.dispose()


async def test_a_killed_listener_reconnects_and_wakes_again(
    engine: sa.Engine, postgres_url: str, receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    """pg_terminate_backend on the listening connection: it reconnects, wake-ups resume."""
    async with running(engine, receiver, http, idle_check=3600, retry=0.05) as listener:
        first = listener.backend_pid
        assert first is not None
        await asyncio.to_thread(terminate, postgres_url, first)
        await eventually(
            lambda: listener.connects == 2 and listener.backend_pid not in (None, first)
        )
        sent = await asyncio.to_thread(enqueue, postgres_url, "job-2")
        await eventually(lambda: delivered(receiver) == {sent})


async def test_delivery_goes_on_by_polling_while_the_listener_is_down(
    engine: sa.Engine, postgres_url: str, receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    """With the listener killed and not yet back, the worker's own checks still find work."""
    async with running(engine, receiver, http, idle_check=0.1, retry=3600) as listener:
        assert listener.backend_pid is not None
        await asyncio.to_thread(terminate, postgres_url, listener.backend_pid)
        await eventually(lambda: not listener.listening.is_set())
        sent = await asyncio.to_thread(enqueue, postgres_url, "job-3")
        await eventually(lambda: delivered(receiver) == {sent})
        assert listener.connects == 1


async def test_the_daemon_listens_unless_told_not_to(postgres_url: str) -> None:
    """`store.listen` (on by default) adds the listener on PostgreSQL; `false` leaves it out."""
    from poller import config as config_mod
    from poller.app import App

    def config(listen: bool) -> config_mod.Config:
        return config_mod.from_mapping(
            {
                "store": {"url": postgres_url, "listen": listen},
                "sinks": [{"name": "console", "type": "log"}],
            }
        )

    async with App(config(True)) as app:
        assert [s.name for s in app.services] == ["outbox-listener"]
    async with App(config(False)) as app:
        assert app.services == []


async def test_a_store_that_stays_away_is_tried_less_and_less_often() -> None:
    """While the store refuses connections, the listener's retry delay doubles up to a cap."""
    url = sa.engine.make_url(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    listener = OutboxListener(url, lambda: None, retry=0.01, max_retry=0.04)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(listener.run(stop))

        def lost() -> list[MutableMapping[str, Any]]:
            return [e for e in logs if e["event"] == "outbox_listener_lost"]

        try:
            await eventually(lambda: len(lost()) >= 5)
        finally:
            stop.set()
            await task
    assert [e["retry_in_s"] for e in lost()[:5]] == [0.01, 0.02, 0.04, 0.04, 0.04]

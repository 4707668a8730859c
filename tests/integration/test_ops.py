"""The ops listener over real HTTP: health, readiness, metrics, against the simulator."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller import ops
from poller.app import App
from poller.exceptions import ConfigError
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver, free_port

from .conftest import make_config


async def eventually(check: Callable[[], object], limit: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await check():  # type: ignore[misc]
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


@pytest.fixture
async def daemon(
    server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> AsyncIterator[tuple[App, str]]:
    """An App running with its ops listener on a free port; yields (app, listener URL)."""
    port = free_port()
    config = make_config(
        server.url,
        receiver.url,
        store_file,
        poll={"interval": "0.3s", "active_interval": "0.2s", "max_backoff": "0.5s"},
        ops={"listen": f"127.0.0.1:{port}"},
    )
    stop = asyncio.Event()
    async with App(config) as app:
        check = ops.ReadinessCheck(app.board, app.store)
        app.services.append(ops.OpsListener(ops.bind(f"127.0.0.1:{port}"), app.metrics, check))
        task = asyncio.create_task(Runner(app).run(stop, grace=1))
        try:
            yield app, f"http://127.0.0.1:{port}"
        finally:
            stop.set()
            await task


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz_answers_while_running(daemon: tuple[App, str]) -> None:
    """/healthz answers 200 ok while the process runs."""
    _app, url = daemon
    response = await get(url + "/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


async def test_readyz_follows_the_api(daemon: tuple[App, str], sim: Simulator) -> None:
    """/readyz is 200 while polls succeed, 503 naming each source while the API is down."""
    _app, url = daemon

    async def status_is(code: int) -> bool:
        return (await get(url + "/readyz")).status_code == code

    await eventually(lambda: status_is(200))
    sim.add_fault(kind="status", status=503, count=-1, match={"path": "/v1"})
    await eventually(lambda: status_is(503))
    body = (await get(url + "/readyz")).text
    assert "default/batch_jobs: last successful poll" in body
    assert len(body.splitlines()) == 5  # one line per source
    sim.clear_faults()
    await eventually(lambda: status_is(200))


async def test_metrics_cover_polls_requests_events_and_deliveries(
    daemon: tuple[App, str], sim: Simulator, receiver: WebhookReceiver
) -> None:
    """/metrics shows polls, API requests, events by type, deliveries and the outbox per sink."""
    _app, url = daemon
    await asyncio.sleep(0.5)  # baseline first, so the file below is news
    sim.create_file(filename="a.jsonl")
    await asyncio.to_thread(receiver.wait_delivered, 1, 10)

    async def delivered() -> bool:
        got = scrape((await get(url + "/metrics")).text)
        return (
            got.get(("poller_deliveries_total", (("outcome", "delivered"), ("sink", "hook")))) == 1
        )

    await eventually(delivered)
    response = await get(url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = scrape(response.text)
    files = (("source", "files"), ("workspace", "default"))
    assert got[("poller_polls_total", (("outcome", "ok"), *files))] >= 2
    assert got[("poller_api_requests_total", (("outcome", "ok"), *files))] >= 2
    assert got[("poller_api_request_duration_seconds_count", files)] >= 2
    assert got[("poller_events_total", (("type", "file.uploaded"), ("workspace", "default")))] == 1
    assert got[("poller_outbox_pending", (("sink", "hook"),))] == 0
    assert got[("poller_outbox_oldest_pending_age_seconds", (("sink", "hook"),))] == 0
    assert got[("poller_sink_circuit_open", (("sink", "hook"),))] == 0
    assert got[("poller_store_up", ())] == 1
    assert got[("poller_source_last_success_timestamp_seconds", files)] > 0


async def test_outbox_depth_and_age_while_a_sink_fails(
    server: SimulatorServer, sim: Simulator, store_file: str
) -> None:
    """While a receiver answers 503 the outbox shows the pending delivery, its age, the circuit."""
    with WebhookReceiver(lambda _r: 503) as failing:
        config = make_config(server.url, failing.url, store_file)
        stop = asyncio.Event()
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            sim.create_file()
            task = asyncio.create_task(runner.run(stop, grace=1))
            await asyncio.to_thread(failing.wait_for, lambda rs: len(rs) >= 1, 10)
            await asyncio.sleep(0.3)
            got = scrape((await asyncio.to_thread(app.metrics.exposition)).decode())
            stop.set()
            await task
    hook = (("sink", "hook"),)
    assert got[("poller_outbox_pending", hook)] == 1
    assert got[("poller_outbox_failing", hook)] == 1
    assert got[("poller_outbox_oldest_pending_age_seconds", hook)] > 0
    assert got[("poller_sink_circuit_open", hook)] == 1
    assert got[("poller_deliveries_total", (("outcome", "failed"), *hook))] >= 1


async def test_readiness_names_a_locked_store(
    server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """A store that does not take the heartbeat write in time makes readiness fail, named."""
    config = make_config(server.url, receiver.url, store_file)
    async with App(config) as app:
        await Runner(app).once()
        check = ops.ReadinessCheck(app.board, app.store, timeout=0.3)
        assert await check() == []
        locker = sqlite3.connect(store_file.removeprefix("sqlite:///"))
        locker.execute("BEGIN EXCLUSIVE")
        try:
            reasons = await check()
        finally:
            locker.rollback()
            locker.close()
    assert reasons == ["store: a write took more than 0.3s"]


def test_a_busy_port_is_a_config_error() -> None:
    """Binding a port already taken fails with one line naming ops.listen."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            ops.bind(f"127.0.0.1:{port}", source="poller.yaml")
    assert str(info.value).startswith(f"poller.yaml: ops.listen: cannot listen on 127.0.0.1:{port}")
    assert "change ops.listen" in str(info.value)

"""The daemon's way out: `stopped` is its last line, said once nothing it started is left."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from typing import Any

import structlog

from poller import daemon
from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver, free_port

from .conftest import eventually, make_config


async def test_stopped_is_said_once_no_thread_of_the_daemon_is_left(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_url: str
) -> None:
    """When `stopped` is logged, every thread the daemon's work ran in has ended (so the
    process has nothing left to wait for), and nothing is logged after it."""
    port = free_port()
    config = make_config(server.url, receiver.url, store_url, ops={"listen": f"127.0.0.1:{port}"})
    before = set(threading.enumerate())
    left: list[str] = []

    def at_stopped(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "stopped":
            left.extend(t.name for t in threading.enumerate() if t not in before and not t.daemon)
        return event

    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        structlog.get_config()["processors"].insert(0, at_stopped)
        running = asyncio.create_task(daemon.run(config, stop, environ={}))
        await eventually(
            lambda: any(e["event"] == "baseline_recorded" and e["source"] == "files" for e in logs)
        )
        upload = sim.create_file(filename="before-stop.jsonl")
        await eventually(
            lambda: any(r.json()["data"]["id"] == upload["id"] for r in receiver.delivered())
        )
        url = f"http://127.0.0.1:{port}/metrics"  # a scrape runs in a thread too
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        stop.set()
        await running
    assert [e["event"] for e in logs][-1] == "stopped"
    assert left == []

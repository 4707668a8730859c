"""Processes sharing one store: `poller once` beside a running daemon sends nothing twice."""

from __future__ import annotations

import base64
import collections
import json
import pathlib
import signal
from collections.abc import Callable, Iterator

import pytest

from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver

from .conftest import poller, spawn, wait_until

SECRET = "whsec_" + base64.b64encode(b"acceptance-secret-of-32-bytes!!!").decode()


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(seed=11)
    with SimulatorServer(simulator) as server:
        yield simulator, server


def config_text(api: str, store_url: str, hook: str) -> str:
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: '{store_url}'\n"
        "poll:\n  interval: 300ms\n  active_interval: 200ms\n  emit_existing: true\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
        "    concurrency: 2\n"
        "log:\n  level: debug\n  format: json\n"
    )


def test_once_beside_a_running_daemon_sends_each_delivery_once(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
    store_url: str,
) -> None:
    """Two `poller once` run while the daemon delivers: each event arrives once, none goes back."""
    simulator, server = sim
    files = {simulator.create_file(filename=f"f{n}.jsonl")["id"] for n in range(60)}
    with WebhookReceiver(delay=0.2) as receiver:
        path = write(config_text(server.url, store_url, receiver.url))
        daemon = spawn(["run", "--config", str(path)], tmp_path / "run.log")
        try:
            wait_until(lambda: len(receiver.requests) >= 3, limit=40)
            onces = [
                spawn(["once", "--config", str(path)], tmp_path / f"once{n}.log") for n in (1, 2)
            ]
            for once in onces:
                assert once.wait(timeout=60) == 0, (tmp_path / "once1.log").read_text()
            wait_until(
                lambda: {r.json()["data"]["id"] for r in receiver.delivered()} >= files, limit=60
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        sent = collections.Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(sent) == len(files)
    assert set(sent.values()) == {1}, "a delivery was sent twice"
    listed = poller("events", "list", "--json", "--limit", "1000", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == len(files)
    assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}

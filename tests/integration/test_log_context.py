"""Every log line written during a poll carries its workspace, source and cycle."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from poller.app import App
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver

from .conftest import make_config


@pytest.fixture
def captured() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log entries as the real chain sees them: bound context variables merged in."""
    capture = structlog.testing.LogCapture()
    before = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    yield capture.entries
    structlog.configure(**before)


async def test_client_and_poller_lines_carry_the_poll_context(
    sim: Simulator,
    server: SimulatorServer,
    receiver: WebhookReceiver,
    store_file: str,
    captured: list[dict[str, Any]],
) -> None:
    """The API client's retry lines and the poller's own lines name workspace, source, cycle."""
    sim.add_fault(kind="status", status=503, count=1, match={"path": "/v1/files"})
    config = make_config(server.url, receiver.url, store_file, sources={"batch_jobs": False})
    async with App(config) as app:
        runner = Runner(app)
        files = next(p for ws, p in app.pollers() if p.spec.name == "files")
        await runner.poll_once(app.workspaces[0], files)
        await runner.once()
    retry = next(e for e in captured if e["event"] == "api_retry")
    assert (retry["workspace"], retry["source"], retry["cycle"]) == ("default", "files", 1)
    baselines = [e for e in captured if e["event"] == "baseline_recorded"]
    assert {(e["source"], e["cycle"]) for e in baselines} == {
        ("files", 1),
        ("fine_tuning_jobs", 2),
        ("models", 4),
        ("libraries", 5),
    }
    after = [e for e in captured if e["event"] not in ("api_retry", "baseline_recorded")]
    assert all("cycle" not in e for e in after if e.get("source") is None)

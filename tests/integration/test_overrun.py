"""A poll that outlasts its interval: the runs that fall due meanwhile are skipped, counted
and logged once per episode, in poller's own words."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from poller import logs
from poller.app import App
from poller.polling import PollReport
from poller.runner import Runner
from poller.simulator import SimulatorServer

from .conftest import eventually, make_config


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """poller's real log configuration writing JSON lines into a buffer; restored after."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure(level="info", fmt="json", stream=buffer)
    yield buffer
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def test_skipped_polls_are_counted_and_logged_once_per_episode(
    server: SimulatorServer, store_file: str, rendered: io.StringIO
) -> None:
    """Each skipped run counts; an episode logs one warning as it starts, one line as it ends."""
    sources = {"batch_jobs": False, "fine_tuning_jobs": False, "models": False, "libraries": False}
    config = make_config(server.url, None, store_file, sources=sources, poll={"interval": "20ms"})
    tokens = asyncio.Semaphore(0)  # each poll waits for one: none ends unless the test says
    async with App(config) as app:
        ws, files = next(iter(app.pollers()))
        real = files.poll

        async def held() -> PollReport:
            await tokens.acquire()
            return await real()

        files.poll = held  # type: ignore[method-assign]

        def skipped() -> float:
            labels = {"workspace": ws.name, "source": "files"}
            value = app.metrics.registry.get_sample_value("poller_polls_skipped_total", labels)
            return value or 0.0

        def said(event: str) -> int:
            return sum(e["event"] == event for e in _lines(rendered))

        async def episode(number: int) -> None:
            floor = skipped() + 3
            await eventually(lambda: skipped() >= floor)
            tokens.release()  # the held poll ends: the episode with it
            await eventually(lambda: said("poll_caught_up") == number)

        runner = Runner(app)
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run(stop, grace=0.1))
        try:
            await episode(1)
            await episode(2)
            total = skipped()
            exposition = app.metrics.exposition().decode()
        finally:
            stop.set()
            await running
    lines = _lines(rendered)
    told = [e for e in lines if e["event"] in ("poll_skipped_still_running", "poll_caught_up")]
    # one warning at the start of each episode, one line at its end, and nothing between
    kinds = [e["event"] for e in told]
    assert kinds[:4] == ["poll_skipped_still_running", "poll_caught_up"] * 2
    assert kinds[4:] in ([], ["poll_skipped_still_running"])
    assert {(e["workspace"], e["source"]) for e in told} == {("default", "files")}
    assert [e["level"] for e in told[:2]] == ["warning", "info"]
    ended = [e["skipped"] for e in told if e["event"] == "poll_caught_up"]
    assert all(n >= 3 for n in ended) and sum(ended) <= total
    assert not any("maximum number of running instances" in str(e["event"]) for e in lines)
    assert 'poller_polls_skipped_total{source="files",workspace="default"}' in exposition


async def stop_during_a_poll(
    server: SimulatorServer, store_file: str, grace: float, *, release: bool
) -> tuple[bool, list[MutableMapping[str, Any]]]:
    """Stop the daemon while the files source's first poll is held; release it or not.
    Whether that poll's report arrived, and what was logged."""
    sources = {"batch_jobs": False, "fine_tuning_jobs": False, "models": False, "libraries": False}
    config = make_config(server.url, None, store_file, sources=sources, poll={"interval": "1h"})
    async with App(config) as app:
        ws, files = next(iter(app.pollers()))
        real = files.poll
        held, go = asyncio.Event(), asyncio.Event()

        async def slow() -> PollReport:
            held.set()
            await go.wait()
            return await real()

        files.poll = slow  # type: ignore[method-assign]
        runner = Runner(app)
        stop = asyncio.Event()
        with structlog.testing.capture_logs() as logs:
            running = asyncio.create_task(runner.run(stop, grace=grace))
            await asyncio.wait_for(held.wait(), 10)
            stop.set()
            await eventually(lambda: any(e["event"] == "stopping" for e in logs))
            if release:
                go.set()
            await running
    return runner.health[(ws.name, "files")].last_report is not None, logs


async def test_a_poll_under_way_at_stop_ends_within_the_grace(
    server: SimulatorServer, store_file: str
) -> None:
    """Stopping lets a poll under way end and record its report; it is not cut short."""
    reported, logs = await stop_during_a_poll(server, store_file, 30.0, release=True)
    assert reported
    assert "poll_abandoned" not in [e["event"] for e in logs]


async def test_a_poll_past_the_grace_is_abandoned(server: SimulatorServer, store_file: str) -> None:
    """A poll still running when the grace is over is cancelled, and says so."""
    reported, logs = await stop_during_a_poll(server, store_file, 0.05, release=False)
    assert not reported
    assert [e["source"] for e in logs if e["event"] == "poll_abandoned"] == ["files"]

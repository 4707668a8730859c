"""Readiness: the board's reasons and the store's heartbeat, logged when they change."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import structlog

from poller import ops, utils
from poller.health import Board


class Writable:
    """A store that takes every heartbeat write."""

    def touch(self, now: dt.datetime) -> None:
        pass


async def test_a_stale_source_is_logged_once_while_it_stays_stale() -> None:
    """A source growing staler is one not_ready line, not one per check."""
    board = Board()
    board.track("prod", "files", interval=30, timeout=120)
    source = board.sources[("prod", "files")]
    check = ops.ReadinessCheck(board, Writable())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        source.last_success_at = utils.utcnow() - dt.timedelta(seconds=100)
        first = await check()
        source.last_success_at = utils.utcnow() - dt.timedelta(seconds=200)
        second = await check()
    assert first != second  # each answer still says how stale the source is
    assert [e["event"] for e in logs] == ["not_ready"]


async def test_a_change_of_what_is_not_ready_is_logged() -> None:
    """Another source going stale, then all recovering, are each logged."""
    board = Board()
    for name in ("files", "models"):
        board.track("prod", name, interval=30, timeout=120)
    files, models = board.sources[("prod", "files")], board.sources[("prod", "models")]
    check = ops.ReadinessCheck(board, Writable())  # type: ignore[arg-type]
    models.last_success_at = utils.utcnow()
    with structlog.testing.capture_logs() as logs:
        await check()
        models.last_success_at = utils.utcnow() - dt.timedelta(seconds=100)
        await check()
        files.last_success_at = models.last_success_at = utils.utcnow()
        await check()
    assert [(e["event"], len(e.get("reasons", ()))) for e in logs] == [
        ("not_ready", 1),
        ("not_ready", 2),
        ("ready_again", 0),
    ]


class Stuck:
    """A store whose heartbeat writes hang until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writes = 0

    def touch(self, now: dt.datetime) -> None:
        self.writes += 1
        self.release.wait(5)


async def test_a_hung_store_write_is_not_started_again_by_each_check() -> None:
    """While one heartbeat write hangs, later checks wait on it instead of starting more."""
    store = Stuck()
    check = ops.ReadinessCheck(Board(), store, timeout=0.05)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            assert await check() == ["store: a write took more than 0.05s"]
        assert store.writes == 1
    finally:
        store.release.set()
    await asyncio.sleep(0.05)
    assert await check() == []
    assert store.writes == 2

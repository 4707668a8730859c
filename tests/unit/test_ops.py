"""Readiness: the board's reasons and the store's heartbeat, logged when they change."""

from __future__ import annotations

import datetime as dt

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

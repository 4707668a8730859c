"""Readiness and liveness: pure judgements over what the runner and the workers report."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from poller.health import Board, SourceTrack, not_ready, stalled

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def track(**kw: object) -> SourceTrack:
    base: dict[str, object] = {
        "workspace": "prod",
        "source": "files",
        "interval": 30.0,
        "timeout": 120.0,
        "due_by": 1000.0,
    }
    return SourceTrack(**{**base, **kw})  # type: ignore[arg-type]


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (track(last_success_at=ago(10)), []),
        (track(last_success_at=ago(90)), []),
        (
            track(last_success_at=ago(91)),
            ["prod/files: last successful poll 1m31s ago, more than 3 intervals of 30s"],
        ),
        (track(), ["prod/files: no successful poll yet"]),
        (track(disabled="404"), []),
        (track(last_success_at=ago(3600), disabled="404"), []),
        (track(interval=600.0, last_success_at=ago(1700)), []),
    ],
)
def test_not_ready(source: SourceTrack, expected: list[str]) -> None:
    """A source is ready within 3 of its own intervals of a success; a switched-off one always."""
    assert not_ready(NOW, [source]) == expected


@pytest.mark.parametrize(
    ("now", "workers", "expected"),
    [
        (999.0, {"hook": 990.0}, []),
        (1001.0, {}, ["prod/files: its poll is 1s past its deadline"]),
        (1000.0, {"hook": 939.0}, ["sink hook: its worker loop has not turned for 1m1s"]),
        (1000.0, {"hook": 940.0}, []),
    ],
)
def test_stalled(now: float, workers: dict[str, float], expected: list[str]) -> None:
    """A poll past its deadline or a worker loop idle beyond the limit counts as stalled."""
    assert stalled(now, [track()], workers, worker_limit=60) == expected


def test_switched_off_source_never_stalls() -> None:
    """A source switched off by a 404 has no deadline."""
    assert stalled(5000.0, [track(disabled="404")], {}) == []


@dataclasses.dataclass
class Result:
    last_success_at: dt.datetime | None = None
    error_streak: int = 0
    disabled: str | None = None
    next_delay: float = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_board_deadline_follows_each_poll() -> None:
    """After a poll the next deadline is its delay plus the poll timeout plus the margin."""
    clock = Clock()
    board = Board(monotonic=clock, margin=30)
    board.track("prod", "files", interval=30, timeout=120)
    assert board.sources[("prod", "files")].due_by == 250
    clock.now = 200
    board.polled("prod", "files", Result(next_delay=5))
    assert board.sources[("prod", "files")].due_by == 355
    clock.now = 356
    assert board.stalled() == ["prod/files: its poll is 1s past its deadline"]


def test_board_counts_failing_sources() -> None:
    """A source whose last poll failed is failing, even after an earlier success."""
    board = Board()
    board.track("prod", "files", interval=30, timeout=120)
    board.polled("prod", "files", Result(last_success_at=NOW, error_streak=2))
    assert board.failing() == ["prod/files"]


async def test_first_cycle_waits_for_every_source() -> None:
    """The first cycle is done once every source was polled, well or not, or switched off."""
    board = Board()
    for source in ("files", "models", "fine_tuning_jobs"):
        board.track("prod", source, interval=30, timeout=120)
    waiting = asyncio.create_task(board.wait_first_cycle())
    board.polled("prod", "files", Result(last_success_at=NOW))
    board.polled("prod", "models", Result(error_streak=1))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    board.polled("prod", "fine_tuning_jobs", Result(disabled="404"))
    await asyncio.wait_for(waiting, 1)
    assert board.first_cycle_done

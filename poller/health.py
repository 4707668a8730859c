"""How the daemon judges itself: ready (for ``/readyz``) and alive (for the systemd watchdog).

``Board`` holds what the runner and the sink workers report — each source's last poll, each
worker's last turn of its loop — and the judgements are pure functions of it:

- **ready**: every enabled source had a successful poll within 3 of its intervals. A source
  switched off (its list answered 404, as fine-tuning may) does not count. (``/readyz`` adds the
  store's own check.)
- **stalled**: a source whose next poll should have finished by now (its delay, plus its
  poll timeout, plus a margin) and has not, or a sink worker whose loop has not turned for
  ``WORKER_LIMIT`` seconds. A stalled loop withholds the watchdog pings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from poller import utils

READY_INTERVALS = 3
"""A source is ready while its last success is at most this many intervals old."""
STALL_MARGIN = 30.0
"""Seconds a poll may overrun its delay plus its timeout before its loop counts as stalled."""
WORKER_LIMIT = 60.0
"""Seconds a sink worker's loop may go without a turn before it counts as stalled."""


class PollResult(Protocol):
    """What the runner knows of a source after a poll (``runner.SourceHealth`` is one)."""

    @property
    def last_success_at(self) -> dt.datetime | None: ...
    @property
    def error_streak(self) -> int: ...
    @property
    def disabled(self) -> str | None: ...
    @property
    def next_delay(self) -> float: ...


class Beating(Protocol):
    """A loop that notes the monotonic time of its last turn (``SinkWorker`` is one)."""

    @property
    def alive_at(self) -> float: ...


@dataclasses.dataclass
class SourceTrack:
    """One enabled source as the board sees it."""

    workspace: str
    source: str
    interval: float
    timeout: float
    due_by: float
    """Monotonic time by which its next poll must have finished."""
    polls: int = 0
    last_success_at: dt.datetime | None = None
    error_streak: int = 0
    disabled: str | None = None

    @property
    def name(self) -> str:
        return f"{self.workspace}/{self.source}"


def not_ready(now: dt.datetime, sources: Iterable[SourceTrack]) -> list[str]:
    """Why the daemon is not ready, one reason per source; empty when it is."""
    reasons = []
    for s in sources:
        if s.disabled:
            continue
        if s.last_success_at is None:
            reasons.append(f"{s.name}: no successful poll yet")
            continue
        age = (now - s.last_success_at).total_seconds()
        if age > READY_INTERVALS * s.interval:
            reasons.append(
                f"{s.name}: last successful poll {utils.format_duration(age)} ago, "
                f"more than {READY_INTERVALS} intervals of {utils.format_duration(s.interval)}"
            )
    return reasons


def stalled(
    now: float,
    sources: Iterable[SourceTrack],
    workers: Mapping[str, float],
    *,
    worker_limit: float = WORKER_LIMIT,
) -> list[str]:
    """Loops that stopped turning, one line each; ``now`` and the times are monotonic."""
    found = []
    for s in sources:
        if not s.disabled and now > s.due_by:
            late = utils.format_duration(now - s.due_by)
            found.append(f"{s.name}: its poll is {late} past its deadline")
    for name, alive_at in sorted(workers.items()):
        if now - alive_at > worker_limit:
            idle = utils.format_duration(now - alive_at)
            found.append(f"sink {name}: its worker loop has not turned for {idle}")
    return found


class Board:
    """The live record of sources and sink workers that readiness and the watchdog read."""

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, margin: float = STALL_MARGIN
    ) -> None:
        self.monotonic = monotonic
        self.margin = margin
        self.sources: dict[tuple[str, str], SourceTrack] = {}
        self.workers: dict[str, Beating] = {}
        self._polled = asyncio.Event()

    def track(self, workspace: str, source: str, *, interval: float, timeout: float) -> None:
        """Follow a source (its first poll is due now), or take its new interval and timeout."""
        track = self.sources.get((workspace, source))
        if track is None:
            self.sources[(workspace, source)] = SourceTrack(
                workspace,
                source,
                interval=interval,
                timeout=timeout,
                due_by=self.monotonic() + timeout + self.margin,
            )
        else:
            track.interval, track.timeout = interval, timeout

    def untrack(self, workspace: str) -> None:
        """Stop judging a workspace's sources (another replica polls it)."""
        for key in [key for key in self.sources if key[0] == workspace]:
            del self.sources[key]

    def polled(self, workspace: str, source: str, result: PollResult) -> None:
        """A poll of the source finished (well or not)."""
        track = self.sources.get((workspace, source))
        if track is None:
            return
        track.polls += 1
        track.last_success_at = result.last_success_at
        track.error_streak = result.error_streak
        track.disabled = result.disabled
        track.due_by = self.monotonic() + result.next_delay + track.timeout + self.margin
        self._polled.set()

    def watch_worker(self, name: str, worker: Beating) -> None:
        self.workers[name] = worker

    def unwatch_worker(self, name: str) -> None:
        self.workers.pop(name, None)

    # -- judgements --------------------------------------------------------------------

    @property
    def first_cycle_done(self) -> bool:
        """Every source was polled once (or switched off)."""
        return all(t.polls or t.disabled for t in self.sources.values())

    async def wait_first_cycle(self) -> None:
        while not self.first_cycle_done:
            self._polled.clear()
            await self._polled.wait()

    def not_ready(self, now: dt.datetime) -> list[str]:
        return not_ready(now, self.sources.values())

    def stalled(self) -> list[str]:
        workers = {name: w.alive_at for name, w in self.workers.items()}
        return stalled(self.monotonic(), self.sources.values(), workers)

    def failing(self) -> list[str]:
        """Sources whose last poll failed."""
        return [t.name for t in self.sources.values() if not t.disabled and t.error_streak]

"""systemd's notification protocol, spoken directly, and the watchdog that uses it.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: an ``AF_UNIX`` datagram socket (a
leading ``@`` names one in the abstract namespace). Each datagram holds ``KEY=VALUE`` lines:
``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=...``. With
``WatchdogSec=`` it also passes ``$WATCHDOG_USEC``; the service must ping at least that often.

``Watchdog`` sends READY once the store is open and every enabled source was polled once,
pings at half the watchdog interval only while no loop is stalled (``health.Board``), and
sends STOPPING when the daemon stops.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from poller.health import Board

log = structlog.get_logger("poller.sdnotify")

STATUS_EVERY = 10.0
"""Seconds between STATUS= updates when no watchdog asks for pings more often."""


class Notifier:
    """Sends notifications to one ``$NOTIFY_SOCKET`` address."""

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier | None:
        """The notifier systemd asked for, or None when poller does not run under it."""
        address = environ.get("NOTIFY_SOCKET", "")
        if not address.startswith(("/", "@")):
            return None
        return cls(address)

    def send(self, *lines: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; False (logged) when it could not be sent."""
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue must not block the event loop
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=f"{type(exc).__name__}: {exc.strerror or exc}")
            return False
        return True

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when none are expected."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2


class Watchdog:
    """READY, WATCHDOG pings while every loop turns, STATUS lines, STOPPING: a service."""

    name = "systemd"

    def __init__(
        self,
        notifier: Notifier,
        board: Board,
        *,
        interval: float | None,
        status: Callable[[], str],
    ) -> None:
        self.notifier = notifier
        self.board = board
        self.interval = interval
        self.status = status
        self._stalled: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        try:
            if not await self._until(stop, self.board.wait_first_cycle()):
                return
            self.notifier.send("READY=1", f"STATUS={self.status()}")
            log.info("sd_ready", watchdog_s=self.interval)
            while not stop.is_set():
                self.tick()
                every = min(self.interval, STATUS_EVERY) if self.interval else STATUS_EVERY
                await self._until(stop, asyncio.sleep(every))
        finally:
            self.notifier.send("STOPPING=1", "STATUS=stopping")

    def tick(self) -> None:
        """Ping if no loop is stalled; say which ones are when that changes."""
        stalled = self.board.stalled()
        # logged when which loops are stalled changes; each line's wording (how late) does
        # at every tick
        loops = [line.partition(":")[0] for line in stalled]
        if loops != self._stalled:
            if stalled:
                log.error("watchdog_withheld", stalled=stalled)
            else:
                log.info("watchdog_resumed")
            self._stalled = loops
        if stalled:
            self.notifier.send(f"STATUS=stalled: {'; '.join(stalled)}")
            return
        lines = [f"STATUS={self.status()}"]
        if self.interval:
            lines.insert(0, "WATCHDOG=1")
        self.notifier.send(*lines)

    @staticmethod
    async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, Any]) -> bool:
        """Await ``work`` unless ``stop`` comes first; True when ``work`` finished."""
        task = asyncio.ensure_future(work)
        waiting = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, waiting):
                if not pending.done():
                    pending.cancel()
            await asyncio.gather(task, waiting, return_exceptions=True)
        return task.done() and not task.cancelled() and not stop.is_set()

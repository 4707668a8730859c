"""One gate per workspace that every request of that workspace passes through.

It holds two rules: a 429's ``Retry-After`` pauses every request of the workspace, not only
the one that was refused; and an optional request budget (requests per minute) spreads
requests out instead of failing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Gate:
    """Admits requests: after any pause a 429 asked for, and within the budget."""

    def __init__(
        self,
        *,
        per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.paused_until = 0.0
        self._next_slot = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (the longest pause asked for wins)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def paused_for(self) -> float:
        """Seconds left of the current pause."""
        return max(0.0, self.paused_until - self.clock())

    async def acquire(self) -> None:
        """Wait until a request may go."""
        async with self._lock:
            while (wait := self.paused_for()) > 0:
                await self.sleep(wait)
            if self.per_minute:
                spacing = 60.0 / self.per_minute
                now = self.clock()
                slot = max(now, self._next_slot)
                self._next_slot = slot + spacing
                if slot > now:
                    await self.sleep(slot - now)

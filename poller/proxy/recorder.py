"""Writing the proxy's events into the outbox, off the response path.

The proxy hands each finished call to ``Recorder.submit`` and returns; a background
task then parses the answer, builds the event (``poller.synchronous``) and enqueues it,
both in a worker thread so the event loop keeps serving. A failed write is retried
with backoff and logged at error each time; nothing is dropped without an error line.
On shutdown ``aclose`` waits for the writes still pending.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import structlog

from poller import synchronous
from poller.model import Event

log = structlog.get_logger("poller.proxy")

Enqueue = Callable[[Sequence[Event], dt.datetime], Sequence[Event]]
RETRY_DELAYS = (0.2, 1.0, 2.0, 5.0, 10.0, 30.0)


def describe(exc: BaseException) -> str:
    """An error in one line, without the SQL parameters (they hold the payload)."""
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


class Recorder:
    """Turns finished calls into events in the outbox, in the background."""

    def __init__(
        self,
        *,
        enqueue: Enqueue,
        notify: Callable[[], None],
        workspace: str,
        record_content: bool,
        clock: Callable[[], dt.datetime],
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self._enqueue = enqueue
        self._notify = notify
        self.workspace = workspace
        self.record_content = record_content
        self._clock = clock
        self._delays = tuple(retry_delays)
        self._tasks: set[asyncio.Task[None]] = set()
        self.recorded = 0

    @property
    def pending(self) -> int:
        """Calls handed over whose events are not written yet."""
        return len(self._tasks)

    def submit(self, call: synchronous.Call) -> None:
        """Record ``call`` in the background; returns at once."""
        task = asyncio.create_task(self._record(call), name="proxy-record")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _build(self, call: synchronous.Call) -> synchronous.Outcome:
        return synchronous.events(
            call, workspace=self.workspace, record_content=self.record_content
        )

    async def _record(self, call: synchronous.Call) -> None:
        outcome = await asyncio.to_thread(self._build, call)
        if not outcome.events:
            log.warning(
                "proxy_call_not_recorded",
                path=call.path,
                status=call.status,
                reason=outcome.skipped,
            )
            return
        attempt = 0
        try:
            while True:
                try:
                    new = await asyncio.to_thread(self._enqueue, outcome.events, self._clock())
                except Exception as exc:
                    delay = self._delays[min(attempt, len(self._delays) - 1)]
                    attempt += 1
                    log.error(
                        "proxy_record_failed",
                        **_ids(outcome.events),
                        attempt=attempt,
                        retry_in=delay,
                        error=describe(exc),
                    )
                    await asyncio.sleep(delay)
                    continue
                break
        except asyncio.CancelledError:
            log.error("proxy_record_lost", **_ids(outcome.events), attempts=attempt)
            raise
        self.recorded += len(outcome.events)
        if new:
            self._notify()
        for event in outcome.events:
            log.info(
                "proxy_event_recorded",
                type=event.type,
                event_id=event.id,
                new=event in new,
                attempts=attempt + 1,
            )

    async def aclose(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for pending records; what still fails is logged lost."""
        if not self._tasks:
            return
        _done, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _ids(events: Sequence[Event]) -> dict[str, Any]:
    return {"event_ids": [e.id for e in events], "types": sorted({e.type for e in events})}

"""Writing the proxy's events into the outbox, off the response path.

The proxy hands each finished call to ``Recorder.submit`` and returns; a background
task then parses the answers, builds the events (``poller.synchronous``) and enqueues
them, in a worker thread so the event loop keeps serving, and in batches. A failed write is retried
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
    """Turns finished calls into events in the outbox, in the background, in batches.

    Calls that finish within ``linger`` seconds of each other are written in one
    transaction: under load the outbox sees a few writes a second, not one per call.
    """

    def __init__(
        self,
        *,
        enqueue: Enqueue,
        notify: Callable[[], None],
        workspace: str,
        record_content: bool,
        clock: Callable[[], dt.datetime],
        retry_delays: Sequence[float] = RETRY_DELAYS,
        linger: float = 0.05,
    ) -> None:
        self._enqueue = enqueue
        self._notify = notify
        self.workspace = workspace
        self.record_content = record_content
        self._clock = clock
        self._delays = tuple(retry_delays)
        self._linger = linger
        self._queue: list[synchronous.Call] = []
        self._writing: tuple[Event, ...] = ()
        self._building = 0
        self._flusher: asyncio.Task[None] | None = None
        self.recorded = 0

    @property
    def pending(self) -> int:
        """Calls handed over whose events are not written yet."""
        return len(self._queue) + self._building + len(self._writing)

    def submit(self, call: synchronous.Call) -> None:
        """Record ``call`` in the background; returns at once."""
        self._queue.append(call)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="proxy-record")

    def _build(self, calls: Sequence[synchronous.Call]) -> list[Event]:
        events: list[Event] = []
        for call in calls:
            try:
                outcome = synchronous.events(
                    call, workspace=self.workspace, record_content=self.record_content
                )
            except Exception as exc:  # one unreadable answer must not sink the whole batch
                log.error(
                    "proxy_call_not_recorded",
                    path=call.path,
                    status=call.status,
                    # the type only: the message may quote the answer, content included
                    reason=f"cannot build the event: {type(exc).__name__}",
                )
                continue
            if not outcome.events:
                log.warning(
                    "proxy_call_not_recorded",
                    path=call.path,
                    status=call.status,
                    reason=outcome.skipped,
                )
            events.extend(outcome.events)
        return events

    async def _flush(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(self._linger)
                calls, self._queue = self._queue, []
                self._building = len(calls)
                events = await asyncio.to_thread(self._build, calls)
                self._building = 0
                if events:
                    self._writing = tuple(events)
                    await self._write(self._writing)
                    self._writing = ()
        except asyncio.CancelledError:
            unbuilt = len(self._queue) + self._building
            if self._writing or unbuilt:
                log.error("proxy_record_lost", **_ids(self._writing), calls_not_built=unbuilt)
            raise

    async def _write(self, events: Sequence[Event]) -> None:
        attempt = 0
        while True:
            try:
                new = await asyncio.to_thread(self._enqueue, events, self._clock())
            except Exception as exc:
                delay = self._delays[min(attempt, len(self._delays) - 1)]
                attempt += 1
                log.error(
                    "proxy_record_failed",
                    **_ids(events),
                    attempt=attempt,
                    retry_in=delay,
                    error=describe(exc),
                )
                await asyncio.sleep(delay)
                continue
            break
        self.recorded += len(events)
        if new:
            self._notify()
        fresh = {e.id for e in new}
        for event in events:
            log.info(
                "proxy_event_recorded",
                type=event.type,
                event_id=event.id,
                new=event.id in fresh,
                attempts=attempt + 1,
            )

    async def aclose(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for pending records; what still fails is logged lost."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            return
        _done, late = await asyncio.wait({flusher}, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _ids(events: Sequence[Event]) -> dict[str, Any]:
    return {"event_ids": [e.id for e in events], "types": sorted({e.type for e in events})}

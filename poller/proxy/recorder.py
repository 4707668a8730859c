"""Writing the proxy's events into the outbox, off the response path.

The proxy hands each finished call to ``Recorder.submit`` and returns; a background
task then parses the answers, builds the events (``poller.synchronous``) and enqueues
them, in worker threads so the event loop keeps serving, and in batches. A call that
changed a polled resource (``poller.hints``) is written with its snapshot row instead,
and a job it started wakes its source's polling (``wake``).

- A failed write is retried with tenacity (exponential backoff, capped at 30 s) and
  logged at error each time, for as long as the store refuses it.
- At most ``queue_size`` calls wait meanwhile; a call that finds the queue full is not
  recorded: counted (``on_drop``, a metric) and logged once per episode.
- On shutdown ``aclose`` waits ``grace`` seconds for what is pending. A write already in
  its worker thread is then waited for: it is either written or logged lost, never both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import structlog
import tenacity

from poller import hints, synchronous
from poller.model import Event

log = structlog.get_logger("poller.proxy")

Enqueue = Callable[[Sequence[Event], dt.datetime], Sequence[Event]]
Builder = Callable[[synchronous.Call, str], synchronous.Outcome]
"""Turns one finished call, made with the key of a workspace, into its events (in a thread)."""
Hinter = Callable[[synchronous.Call, str], "hints.Hint | None"]
"""The hint of a finished call made with the key of a workspace, if it gives one."""
Apply = Callable[["hints.Hint"], Sequence[Event]]
"""Writes a hint's snapshot rows and events; returns the events new to the outbox."""

QUEUE_SIZE = 10_000
RETRY_WAIT: tenacity.wait.wait_base = tenacity.wait_exponential(
    multiplier=0.2, max=30
) + tenacity.wait_random(0, 0.2)


@dataclasses.dataclass(eq=False)
class _Batch:
    """What one flush writes; parts leave ``events``/``hints`` as they are written."""

    events: tuple[Event, ...] = ()
    hints: list[hints.Hint] = dataclasses.field(default_factory=list)
    new: list[Event] = dataclasses.field(default_factory=list)
    """Events the outbox did not have yet, from the parts written so far."""
    enqueued: bool = False

    @property
    def pending(self) -> int:
        return (0 if self.enqueued else len(self.events)) + len(self.hints)


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
    ``build`` replaces the event builder (``synchronous.events``) and ``retry_wait`` the
    backoff between failed writes.
    """

    def __init__(
        self,
        *,
        enqueue: Enqueue,
        notify: Callable[[], None],
        record_content: bool,
        clock: Callable[[], dt.datetime],
        queue_size: int = QUEUE_SIZE,
        on_drop: Callable[[], None] = lambda: None,
        build: Builder | None = None,
        hint: Hinter | None = None,
        apply: Apply | None = None,
        wake: Callable[[str, str], None] = lambda workspace, source: None,
        retry_wait: tenacity.wait.wait_base = RETRY_WAIT,
        linger: float = 0.05,
    ) -> None:
        self._enqueue = enqueue
        self._notify = notify
        self.record_content = record_content
        self._clock = clock
        self.queue_size = queue_size
        self._on_drop = on_drop
        self._builder = build or functools.partial(_events, record_content=record_content)
        self._hinter = hint
        self._apply = apply
        self._wake = wake
        self._retry_wait = retry_wait
        self._linger = linger
        self._queue: list[tuple[synchronous.Call, str]] = []
        self._writing: _Batch | None = None
        self._building = 0
        self._flusher: asyncio.Task[None] | None = None
        self._woken: set[tuple[str, str]] = set()
        self.recorded = 0
        self.dropped = 0
        self._dropping = 0
        """Calls dropped since the queue last had room to spare (0: not in an episode)."""

    @property
    def pending(self) -> int:
        """Calls handed over whose events are not written yet."""
        writing = self._writing.pending if self._writing is not None else 0
        return len(self._queue) + self._building + writing

    def submit(self, call: synchronous.Call, *, workspace: str) -> None:
        """Record ``call`` in the background; returns at once (drops it if the queue is full).

        ``workspace`` is the workspace whose key the call carried: its events are that
        workspace's, a trigger's as a hint's.
        """
        if len(self._queue) >= self.queue_size:
            self._drop(call)
            return
        self._queue.append((call, workspace))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="proxy-record")

    def _drop(self, call: synchronous.Call) -> None:
        self.dropped += 1
        self._on_drop()
        if not self._dropping:
            log.error(
                "proxy_queue_full",
                path=call.path,
                queue_size=self.queue_size,
                consequence="calls are passed on but not recorded until the store takes writes",
            )
        self._dropping += 1

    def _build(self, calls: Sequence[tuple[synchronous.Call, str]]) -> _Batch:
        events: list[Event] = []
        found: list[hints.Hint] = []
        for call, workspace in calls:
            if synchronous.trigger(call.method, call.path) is None:
                if self._hinter is not None:
                    hint = self._hint(call, workspace)
                    found.extend([hint] if hint is not None else [])
                continue
            try:
                outcome = self._builder(call, workspace)
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
        return _Batch(tuple(events), found)

    def _hint(self, call: synchronous.Call, workspace: str) -> hints.Hint | None:
        assert self._hinter is not None
        try:
            return self._hinter(call, workspace)
        except Exception as exc:  # a hint is an early word; polling still finds the change
            log.error(
                "proxy_call_not_recorded",
                path=call.path,
                status=call.status,
                reason=f"cannot read the hint: {type(exc).__name__}",
            )
            return None

    async def _flush(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(self._linger)
                calls, self._queue = self._queue, []
                self._building = len(calls)
                batch = await asyncio.to_thread(self._build, calls)
                self._building = 0
                if batch.pending:
                    self._writing = batch
                    await self._write(batch)
                    self._writing = None
        except asyncio.CancelledError:
            unbuilt = len(self._queue) + self._building
            writing = self._writing
            if (writing is not None and writing.pending) or unbuilt:
                log.error(
                    "proxy_record_lost",
                    **_ids(writing.events if writing and not writing.enqueued else ()),
                    hints=[_named(h) for h in writing.hints] if writing else [],
                    calls_not_built=unbuilt,
                )
            raise

    async def _write(self, batch: _Batch) -> None:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(Exception),
            wait=self._retry_wait,
            before_sleep=functools.partial(self._log_failure, batch),
        )
        async for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                await self._settled(batch, number)
        self._written(batch, attempts=number)

    def _store(self, batch: _Batch, now: dt.datetime) -> None:
        """Write what of ``batch`` is not written yet (in a worker thread)."""
        if batch.events and not batch.enqueued:
            batch.new.extend(self._enqueue(batch.events, now))
        batch.enqueued = True
        while batch.hints:
            assert self._apply is not None
            batch.new.extend(self._apply(batch.hints[0]))
            applied = batch.hints.pop(0)
            if applied.joins_active_set:
                self._woken.add((applied.workspace, applied.spec.name))

    async def _settled(self, batch: _Batch, attempt: int) -> None:
        """One write in a worker thread; if cancelled meanwhile, its end is waited for.

        A thread cannot be stopped: once it runs, the write commits or fails whatever
        the caller does. Waiting for it tells which, so that a write that committed is
        reported written (and not lost) before the cancellation goes on.
        """
        work = asyncio.ensure_future(asyncio.to_thread(self._store, batch, self._clock()))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            if work.exception() is None:
                self._written(batch, attempts=attempt)
                self._writing = None
            raise

    def _written(self, batch: _Batch, *, attempts: int) -> None:
        fresh = {e.id for e in batch.new}
        own = {e.id for e in batch.events}
        hinted = [e for e in batch.new if e.id not in own]
        self.recorded += len(batch.events) + len(hinted)
        if self._dropping:
            log.warning("proxy_queue_recovered", dropped=self._dropping)
            self._dropping = 0
        if batch.new:
            self._notify()
        for workspace, source in sorted(self._woken):
            self._wake(workspace, source)
        self._woken.clear()
        for event in [*batch.events, *hinted]:
            log.info(
                "proxy_event_recorded",
                type=event.type,
                event_id=event.id,
                workspace=event.workspace,
                new=event.id in fresh,
                attempts=attempts,
            )

    @staticmethod
    def _log_failure(batch: _Batch, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.error(
            "proxy_record_failed",
            **_ids(batch.events if not batch.enqueued else ()),
            hints=[_named(h) for h in batch.hints],
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 3),
            error=describe(exc) if exc is not None else None,
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


def _events(call: synchronous.Call, workspace: str, *, record_content: bool) -> synchronous.Outcome:
    return synchronous.events(call, workspace=workspace, record_content=record_content)


def _ids(events: Sequence[Event]) -> dict[str, Any]:
    return {"event_ids": [e.id for e in events], "types": sorted({e.type for e in events})}


def _named(hint: hints.Hint) -> str:
    return f"{hint.workspace}/{hint.spec.resource}/{hint.resource_id}"

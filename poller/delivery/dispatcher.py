"""The dispatcher: one worker per sink moves deliveries from the outbox to the sink.

Workers run beside polling, each on its own: a slow or dead sink delays neither a poll nor
another sink. Within a sink, up to ``concurrency`` deliveries are in flight, and a
resource's later event never overtakes its earlier one (the outbox only offers the first
pending delivery of each resource).

A failing sink is one circuit. The first failure opens it; while open, nothing is sent
but a probe — the sink's oldest pending delivery — soon after the failure and then every
``probe_interval``. The first success closes it and everything that waited goes out at
once, in order. A receiver that refuses one payload (a 4xx) leaves the circuit closed;
that delivery alone follows the retry schedule. Retry state lives in the database, so a
process killed at any instant resumes every pending delivery on restart, under the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

import structlog

from poller import utils
from poller.delivery import retry
from poller.model import Delivery, Outcome
from poller.sinks.base import Sink
from poller.store.outbox import DEAD, DELIVERED, PENDING, AttemptRecord, Outbox, SinkState

log = structlog.get_logger("poller.delivery")

ResultHook = Callable[[str, Delivery, Outcome, str], None]
"""Called with (sink, delivery, outcome, status afterwards) for every finished attempt."""


class SinkWorker:
    """Delivers one sink's pending deliveries until stopped."""

    def __init__(
        self,
        sink: Sink,
        outbox: Outbox,
        *,
        policy: retry.RetryPolicy | None = None,
        concurrency: int = 8,
        clock: Callable[[], dt.datetime] = utils.utcnow,
        rand: Callable[[], float] = random.random,
        on_result: ResultHook | None = None,
        idle_check: float = 1.0,
    ) -> None:
        self.sink = sink
        self.outbox = outbox
        self.policy = policy or retry.RetryPolicy()
        self.concurrency = concurrency
        self.clock = clock
        self.rand = rand
        self.on_result = on_result
        self.idle_check = idle_check
        self.wake = asyncio.Event()
        self.log = log.bind(sink=sink.name)
        self._inflight: dict[asyncio.Task[Outcome], tuple[Delivery, bool]] = {}
        self._state = SinkState(name=sink.name)
        self._state_read_at: dt.datetime | None = None
        self.alive_at = time.monotonic()
        """Monotonic time of the loop's last turn (the watchdog tells a stuck loop by it)."""

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def state(self) -> SinkState:
        return self._state

    def notify(self) -> None:
        """New deliveries may be due: look now rather than at the next check."""
        self.wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        """Deliver until ``stop`` is set; then let in-flight attempts finish for ``grace`` s."""
        self._state = await asyncio.to_thread(self.outbox.sink_state, self.name)
        try:
            while not stop.is_set():
                self.alive_at = time.monotonic()
                timeout = await self.step()
                await self._wait(stop, timeout)
        finally:
            await self._drain(grace)

    async def flush(self, deadline: float = 30.0) -> None:
        """Deliver what is due now and return: the delivery pass of ``poller once``.

        Failures are recorded with their next attempt time as usual; nothing waits for them.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        never = asyncio.Event()
        while loop.time() < end:
            timeout = await self.step()
            if not self._inflight and timeout > 0:
                break
            await self._wait(never, min(timeout, 0.2) if timeout > 0 else 0.05)
        await self._drain(max(0.0, end - loop.time()))

    async def step(self) -> float:
        """Record what finished, start what may start; seconds until it is worth looking again."""
        await self._collect()
        now = self.clock()
        await self._refresh_state(now)
        state = self._state
        if not state.enabled:
            return 2.0
        if state.circuit_open:
            return await self._probe(now)
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return self.idle_check
        exclude = [d.id for d, _ in self._inflight.values()]
        due = await asyncio.to_thread(self.outbox.due, self.name, now, free, exclude)
        busy = {d.order_key for d, _ in self._inflight.values()}
        for delivery in due:
            if delivery.order_key not in busy:
                self._start(delivery, probe=False)
                busy.add(delivery.order_key)
        if len(due) >= free:
            return 0.0 if not self._inflight else self.idle_check
        return await self._until_next_due(now)

    async def _probe(self, now: dt.datetime) -> float:
        if self._inflight:
            return self.idle_check
        probe_at = self._state.next_probe_at or now
        if now < probe_at:
            return min((probe_at - now).total_seconds(), self.idle_check * 5)
        cutoff = now - dt.timedelta(seconds=self.policy.max_age)
        if expired := await asyncio.to_thread(self.outbox.expire, self.name, cutoff):
            self.log.error("deliveries_dead", count=expired, reason="max_age")
        candidate = await asyncio.to_thread(self.outbox.probe_candidate, self.name, now)
        if candidate is None:
            await self._close_circuit(now)
            return 0.0
        self.log.info("sink_probe", event_id=candidate.event.id)
        self._start(candidate, probe=True)
        return self.idle_check

    async def _until_next_due(self, now: dt.datetime) -> float:
        nxt = await asyncio.to_thread(self.outbox.next_due_at, self.name)
        if nxt is None:
            return self.idle_check
        return max(0.0, min((nxt - now).total_seconds(), self.idle_check))

    async def _refresh_state(self, now: dt.datetime) -> None:
        """Re-read the durable state now and then: an operator may have re-enabled the sink."""
        if self._state_read_at and (now - self._state_read_at).total_seconds() < 2.0:
            return
        self._state = await asyncio.to_thread(self.outbox.sink_state, self.name)
        self._state_read_at = now

    async def _wait(self, stop: asyncio.Event, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self.wake.wait()),
            *self._inflight,
        }
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter not in self._inflight and not waiter.done():
                    waiter.cancel()
            self.wake.clear()

    def _start(self, delivery: Delivery, *, probe: bool) -> None:
        task = asyncio.create_task(self._attempt(delivery), name=f"deliver-{self.name}")
        self._inflight[task] = (delivery, probe)

    async def _attempt(self, delivery: Delivery) -> Outcome:
        try:
            return await self.sink.deliver(delivery.event)
        except Exception as exc:  # a sink bug must not kill the worker
            self.log.exception("sink_crashed", event_id=delivery.event.id)
            return Outcome(ok=False, error=f"sink error: {type(exc).__name__}")

    # -- results -----------------------------------------------------------------------

    async def _collect(self) -> None:
        done = [t for t in self._inflight if t.done()]
        if not done:
            return
        now = self.clock()
        records: list[AttemptRecord] = []
        state = self._state
        for task in done:
            delivery, probe = self._inflight.pop(task)
            outcome = task.result()
            record = self._judge(delivery, outcome, now)
            records.append(record)
            state = self._transition(state, delivery, outcome, probe, now)
            if self.on_result:
                self.on_result(self.name, delivery, outcome, record.status)
        await asyncio.to_thread(self.outbox.record, records)
        if state != self._state:
            opened = state.circuit_open and not self._state.circuit_open
            closed = self._state.circuit_open and not state.circuit_open
            self._state = state
            await asyncio.to_thread(self.outbox.save_sink_state, state)
            if closed:
                released = await asyncio.to_thread(self.outbox.release, self.name, now)
                self.log.info("sink_recovered", released=released)
            elif opened:
                self.log.warning(
                    "sink_failing", next_probe_at=utils.isoformat(state.next_probe_at or now)
                )

    def _judge(self, delivery: Delivery, outcome: Outcome, now: dt.datetime) -> AttemptRecord:
        """Where one attempt leaves its delivery."""
        event = delivery.event

        def record(kind: str, status: str, nxt: dt.datetime) -> AttemptRecord:
            return AttemptRecord(
                delivery_id=delivery.id,
                attempted_at=now,
                ok=outcome.ok,
                outcome=kind,
                status=status,
                next_attempt_at=nxt,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )

        if outcome.ok:
            self.log.debug("event_delivered", event_id=event.id, type=event.type)
            return record("delivered", DELIVERED, now)
        if outcome.gone:
            return record("gone", PENDING, now)
        kind = "rejected" if outcome.rejected else "transient"
        nxt = retry.next_attempt(
            self.policy,
            attempts=delivery.attempts + 1,
            created_at=delivery.created_at,
            now=now,
            retry_after=outcome.retry_after,
            rand=self.rand(),
        )
        if nxt is None:
            self.log.error(
                "delivery_dead",
                event_id=event.id,
                type=event.type,
                attempts=delivery.attempts + 1,
                status_code=outcome.status_code,
                error=outcome.error,
            )
            return record(kind, DEAD, now)
        self.log.warning(
            "delivery_failed",
            event_id=event.id,
            type=event.type,
            attempts=delivery.attempts + 1,
            status_code=outcome.status_code,
            error=outcome.error,
            next_attempt_at=utils.isoformat(nxt),
        )
        return record(kind, PENDING, nxt)

    def _transition(
        self, state: SinkState, delivery: Delivery, outcome: Outcome, probe: bool, now: dt.datetime
    ) -> SinkState:
        """The sink's state after one attempt: circuit closes on an answer, opens on a failure."""
        if outcome.gone:
            self.log.error(
                "sink_disabled",
                reason="the receiver answered 410 Gone",
                hint=f"run `poller sinks enable {self.name}` once the endpoint is back",
            )
            return dataclasses.replace(
                state,
                enabled=False,
                disabled_reason=f"HTTP 410 Gone at {utils.isoformat(now)}",
                failing_since=None,
                next_probe_at=None,
            )
        if outcome.ok or outcome.rejected:
            if state.circuit_open:
                return dataclasses.replace(state, failing_since=None, next_probe_at=None)
            return state
        first = not state.circuit_open
        return dataclasses.replace(
            state,
            failing_since=state.failing_since or now,
            next_probe_at=retry.next_probe(
                self.policy, now=now, first=first, retry_after=outcome.retry_after
            ),
        )

    async def _close_circuit(self, now: dt.datetime) -> None:
        self._state = dataclasses.replace(self._state, failing_since=None, next_probe_at=None)
        await asyncio.to_thread(self.outbox.save_sink_state, self._state)

    async def _drain(self, grace: float) -> None:
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
            for task in list(self._inflight):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    self._inflight.pop(task)
        await self._collect()

"""The dispatcher: one worker per sink moves deliveries from the outbox to the sink.

Workers run beside polling, each on its own: a slow or dead sink delays neither a poll nor
another sink. Within a sink, up to ``concurrency`` deliveries are in flight, and a
resource's later event never overtakes its earlier one (the outbox only offers the first
pending delivery of each resource). A sink that delivers in batches (the brokers) gets the
deliveries that may start together in one call; each still takes a slot, and each result
is judged and recorded on its own, exactly as a single attempt's.

A failing sink is one circuit. The first failure opens it and sets the first probe, soon
after; failures of deliveries that were already in flight do not move it. While open,
nothing is sent but a probe — the sink's oldest pending delivery — and then one every
``probe_interval``. Only a success closes it, and everything that waited goes out at once,
in order. A receiver that refuses one payload (a 4xx) leaves the circuit as it was (a
refused probe counts as a failed one); that delivery alone follows the retry schedule.
Retry state lives in the database, so a process killed at any instant resumes every
pending delivery on restart, under the same id.

A finished attempt frees its slot at once; its record is written in the next batch,
while the next deliveries are already on the wire. Until written, its delivery is still
pending in the store, so the worker keeps it out of what it fetches next (and its
resource's next event is not offered yet): a crash in between means one more attempt
under the same id, never a lost one or an overtaken one.

Workers of any number of processes share the outbox: a worker sends only what it has
claimed (``Outbox.claim``), renews its claims while it holds them, writes each result
under the claim that took it, and gives back what it will not send (a circuit opening,
a stop). A process that dies leaves its claims to lapse after ``claim_ttl`` seconds.
Deadlines are the database's; locally a claim is trusted for two thirds of ``claim_ttl``
from the start of the call that took or last renewed it (``holding``): a delivery whose
claim is older than that when its turn comes — the process froze, or lost the store — is
given back unsent, never started on a claim that may have passed to another process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable

import sqlalchemy as sa
import structlog

from poller import utils
from poller.delivery import retry
from poller.delivery.holding import Holding
from poller.model import Delivery, Outcome
from poller.sinks.base import Sink, batching
from poller.store.outbox import AttemptRecord, Outbox
from poller.store.rows import DEAD, DELIVERED, PENDING
from poller.store.sinkstate import SinkState, SinkStates

log = structlog.get_logger("poller.delivery")

ResultHook = Callable[[str, Delivery, Outcome, str], None]
"""Called with (sink, delivery, outcome, status afterwards) for every finished attempt."""
ExpiredHook = Callable[[str, int], None]
"""Called with (sink, count) when pending deliveries passed ``max_age`` and became dead."""


class SinkWorker:
    """Delivers one sink's pending deliveries until stopped."""

    def __init__(
        self,
        sink: Sink,
        outbox: Outbox,
        *,
        states: SinkStates | None = None,
        policy: retry.RetryPolicy | None = None,
        concurrency: int = 8,
        clock: Callable[[], dt.datetime] = utils.utcnow,
        rand: Callable[[], float] = random.random,
        on_result: ResultHook | None = None,
        on_expired: ExpiredHook | None = None,
        idle_check: float = 1.0,
        window: int | None = None,
        batch_delay: float = 0.02,
        batch_size: int = 64,
        claim_ttl: float = 10.0,
    ) -> None:
        self.sink = sink
        self.outbox = outbox
        self.states = states or SinkStates(outbox.engine)
        """Where the sink's circuit and enablement are kept (default: beside ``outbox``)."""
        self.policy = policy or retry.RetryPolicy()
        self.concurrency = concurrency
        self.clock = clock
        self.rand = rand
        self.on_result = on_result
        self.on_expired = on_expired
        self.idle_check = idle_check
        self.window = window or 4 * concurrency
        """How many due deliveries it claims ahead of sending: enough to keep its slots busy,
        few enough to leave the rest to other processes (and to them soon after it dies)."""
        self.batch_delay = batch_delay
        self.batch_size = batch_size
        self.claim_ttl = claim_ttl
        self._held = Holding(claim_ttl)
        """What it claimed, from the claim until its record is written or it is given back."""
        self._set_aside: list[Delivery] = []
        """Claimed deliveries taken out of the window unsent, to be given back."""
        self.halted = False
        """Start nothing more (``halt``)."""
        self._batch_started: float | None = None
        self._writer: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.log = log.bind(sink=sink.name)
        self._ready: collections.deque[Delivery] = collections.deque()
        self._inflight: dict[asyncio.Future[Outcome], Delivery] = {}
        """One entry per delivery on the wire: its own task, or its share of a batch's."""
        self._batch = batching(sink)
        self._records: list[AttemptRecord] = []
        self._unrecorded: set[int] = set()
        self._state = SinkState(name=sink.name)
        self._saved_state = self._state
        self._state_read_at: dt.datetime | None = None
        self._probe_id: int | None = None
        self.alive_at = time.monotonic()
        """Monotonic time of the loop's last turn (the watchdog tells a stuck loop by it)."""

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def state(self) -> SinkState:
        return self._state

    @property
    def busy(self) -> bool:
        """Attempts in flight or results not yet written."""
        return bool(self._inflight or self._records)

    def notify(self) -> None:
        """New deliveries may be due: look now rather than at the next check."""
        self.wake.set()

    def halt(self) -> None:
        """Start no attempt from now on: what is in flight finishes and is written, what was
        claimed and not started is given back (a newer release took over the store)."""
        self.halted = True
        self.wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        """Deliver until ``stop`` is set; then let in-flight attempts finish for ``grace`` s."""
        self._state = self._saved_state = await asyncio.to_thread(self.states.get, self.name)
        try:
            while not stop.is_set():
                self.alive_at = time.monotonic()
                try:
                    # back in time for the next renewal of the claims held
                    delay = min(await self.step(), self._held.renewal_in())
                except sa.exc.SQLAlchemyError as exc:
                    # the store is busy or away: what is in memory stays, and is tried again
                    self.log.error(
                        "delivery_store_error", error=utils.first_line(exc), retry_in_s=2
                    )
                    delay = 2.0
                await self._wait(stop, delay)
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
            delay = await self.step()
            if not self.busy and delay > 0:
                break
            await self._wait(never, min(delay, 0.2) if delay > 0 else 0.0)
        await self._drain(max(0.0, end - loop.time()))

    async def step(self) -> float:
        """Start what may start, write what finished; seconds until it is worth looking again."""
        await self._renew()
        await self._start_ready()
        now = self.clock()
        await self._refresh_state(now)
        state = self._state
        if self.halted or not state.enabled or state.circuit_open:
            await self._give_back([*self._ready])
            self._ready.clear()
            await self._write()
            if self.halted:
                return self.idle_check
            return 2.0 if not state.enabled else await self._probe(now)
        hold = self._hold_records()
        if not hold:
            self._write_soon()
        if len(self._ready) < self.concurrency:
            # top up the window of due deliveries before it runs dry; each is the first
            # pending delivery of its resource, so they may go in any order
            await self._top_up()
            if not self._ready and not self._inflight:
                if self._unrecorded or self._records:
                    await self._write()  # what they hold back may be due now
                    await self._top_up()
                if not self._ready:
                    return await self._until_next_due()
        if self._ready and len(self._inflight) < self.concurrency:
            return 0.0
        return hold or self.idle_check

    async def _top_up(self) -> None:
        began = time.monotonic()
        fetched = await asyncio.to_thread(
            self.outbox.claim, self.name, self.window, self.claim_ttl, list(self._held.held)
        )
        self._held.take(fetched, began)
        # a resource already being sent (an earlier event of it replayed meanwhile) waits
        # for that attempt: given back, it is claimed again once the resource is free
        busy = {d.order_key for d in (*self._inflight.values(), *self._ready)}
        await self._give_back([d for d in fetched if d.order_key in busy])
        self._ready.extend(d for d in fetched if d.order_key not in busy)
        await self._start_ready()

    async def _renew(self) -> None:
        """Renew every claim held, a third of the way through its time; forget the rows that
        are no longer ours (another process took them once they lapsed, or a replay)."""
        if self._held.renewal_in() > 0:
            return
        began = time.monotonic()
        tokens = self._held.tokens()
        kept = await asyncio.to_thread(self.outbox.renew, tokens, self.claim_ttl)
        if lost := self._held.renewed(tokens, kept, began):
            self._ready = collections.deque(d for d in self._ready if d.id in self._held)
            self.log.warning("delivery_claims_lost", count=len(lost), delivery_ids=lost[:20])

    async def _give_back(self, deliveries: list[Delivery]) -> None:
        """Unclaim deliveries this worker will not send, so others may at once."""
        claims = [(d.id, c) for d in deliveries if (c := self._held.claim_of(d.id))]
        self._held.forget(d.id for d in deliveries)
        if claims:
            await asyncio.to_thread(self.outbox.unclaim, claims)

    async def _start_ready(self) -> None:
        """Start what may start now; give back what was set aside unsent."""
        self._fill()
        aside, self._set_aside = self._set_aside, []
        if aside:
            self.log.warning(
                "delivery_claims_given_back",
                count=len(aside),
                reason="claimed too long ago to be sure it is still ours",
            )
            await self._give_back(aside)

    def _hold_records(self) -> float:
        """Seconds to keep gathering finished attempts before writing them, or 0 to write now.

        Writing a batch costs about what writing one does, so while attempts are in flight
        and fewer than ``batch_size`` finished, they wait up to ``batch_delay`` for company.
        """
        if not self._records or not self._inflight or len(self._records) >= self.batch_size:
            return 0.0
        loop = asyncio.get_running_loop()
        if self._batch_started is None:
            self._batch_started = loop.time()
        return max(0.0, self._batch_started + self.batch_delay - loop.time())

    def _fill(self) -> None:
        """Start ready deliveries while there are free slots (never two of one resource),
        each only on a claim still trusted; the others are set aside.

        A sink that delivers in batches gets those started together as one batch, each
        taking its slot as a single delivery would."""
        if self.halted or self._state.circuit_open or not self._state.enabled:
            return
        busy = {d.order_key for d in self._inflight.values()}
        batch: list[Delivery] = []
        while self._ready and len(self._inflight) + len(batch) < self.concurrency:
            delivery = self._ready.popleft()
            if not self._held.trusted(delivery):
                self._set_aside.append(delivery)
            elif delivery.order_key not in busy and delivery.id not in self._unrecorded:
                if self._batch is None:
                    self._start(delivery)
                else:
                    batch.append(delivery)
                busy.add(delivery.order_key)
        if batch:
            self._start_batch(batch)

    async def _probe(self, now: dt.datetime) -> float:
        if self._inflight:
            return self.idle_check
        probe_at = self._state.next_probe_at or now
        if now < probe_at:
            return min((probe_at - now).total_seconds(), self.idle_check * 5)
        if expired := await asyncio.to_thread(self.outbox.expire, self.name, self.policy.max_age):
            self.log.error("deliveries_dead", count=expired, reason="max_age")
            if self.on_expired:
                self.on_expired(self.name, expired)
        began = time.monotonic()
        candidate = await asyncio.to_thread(self.outbox.claim_probe, self.name, self.claim_ttl)
        if candidate is None:
            if await asyncio.to_thread(self.outbox.has_pending, self.name):
                return self.idle_check  # another process holds them: its attempt decides
            self._state = dataclasses.replace(self._state, failing_since=None, next_probe_at=None)
            await self._write()
            return 0.0
        self.log.info("sink_probe", event_id=candidate.event.id)
        self._probe_id = candidate.id
        self._held.take([candidate], began)
        self._start(candidate)
        return self.idle_check

    async def _until_next_due(self) -> float:
        due_in = await asyncio.to_thread(self.outbox.next_due_in, self.name)
        if due_in is None:
            return self.idle_check
        return max(0.0, min(due_in, self.idle_check))

    async def _refresh_state(self, now: dt.datetime) -> None:
        """Re-read the durable state now and then: an operator may have re-enabled the sink."""
        if self._state_read_at and (now - self._state_read_at).total_seconds() < 2.0:
            return
        if self._state != self._saved_state:
            return  # ours is newer; it is written first
        self._state = self._saved_state = await asyncio.to_thread(self.states.get, self.name)
        self._state_read_at = now

    async def _wait(self, stop: asyncio.Event, delay: float) -> None:
        if self.wake.is_set() or delay <= 0:
            self.wake.clear()
            await asyncio.sleep(0)
            return
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self.wake.clear()

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._attempt(delivery), name=f"deliver-{self.name}")
        self._inflight[task] = delivery
        task.add_done_callback(self._finished)

    def _start_batch(self, batch: list[Delivery]) -> None:
        """Send ``batch`` in one call of the sink; each delivery is in flight on its own share
        of it, which ends as ``_finished`` expects, in the batch's order."""
        task = asyncio.create_task(self._attempt_many(batch), name=f"deliver-{self.name}")
        loop = asyncio.get_running_loop()
        shares: list[asyncio.Future[Outcome]] = []
        for delivery in batch:
            share: asyncio.Future[Outcome] = loop.create_future()
            self._inflight[share] = delivery
            share.add_done_callback(self._finished)
            # a share cut off (a stop's grace ran out) stops the sending of the whole batch
            share.add_done_callback(lambda s: task.cancel() if s.cancelled() else None)
            shares.append(share)

        def settle(done: asyncio.Task[list[Outcome]]) -> None:
            outcomes = None if done.cancelled() else done.result()
            for n, share in enumerate(shares):
                if share.done():
                    continue
                if outcomes is None:
                    share.cancel()
                else:
                    share.set_result(outcomes[n])

        task.add_done_callback(settle)

    async def _attempt(self, delivery: Delivery) -> Outcome:
        try:
            return await self.sink.deliver(delivery.event)
        except Exception as exc:  # a sink bug must not kill the worker
            self.log.exception("sink_crashed", event_id=delivery.event.id)
            return Outcome(ok=False, error=f"sink error: {type(exc).__name__}")

    async def _attempt_many(self, batch: list[Delivery]) -> list[Outcome]:
        assert self._batch is not None
        try:
            outcomes = await self._batch.deliver_many([d.event for d in batch])
            if len(outcomes) != len(batch):
                raise ValueError(f"{len(outcomes)} outcomes for {len(batch)} events")
            return outcomes
        except Exception as exc:  # a sink bug must not kill the worker
            self.log.exception("sink_crashed", event_ids=[d.event.id for d in batch])
            return [Outcome(ok=False, error=f"sink error: {type(exc).__name__}")] * len(batch)

    # -- results -----------------------------------------------------------------------

    def _finished(self, task: asyncio.Future[Outcome]) -> None:
        """An attempt ended: judge it, free its slot, queue its record, move the circuit."""
        delivery = self._inflight.pop(task)
        probe = delivery.id == self._probe_id
        if probe:
            self._probe_id = None
        if task.cancelled():
            return  # stopped mid-flight: still pending in the store, resent under its id
        outcome = task.result()
        record = self._judge(delivery, outcome)
        self._records.append(record)
        self._unrecorded.add(delivery.id)
        self._state = self._transition(self._state, outcome, self.clock(), probe=probe)
        if self.on_result:
            self.on_result(self.name, delivery, outcome, record.status)
        self.wake.set()

    def _write_soon(self) -> None:
        """Write in the background, so the next deliveries go out while the batch is written."""
        if self._writer is None or self._writer.done():
            if self._records or self._state != self._saved_state:
                self._writer = asyncio.create_task(self._write_batch(), name=f"record-{self.name}")

    async def _write(self) -> None:
        """Write everything finished so far, and wait for it."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])
        await self._write_batch()

    async def _write_batch(self) -> None:
        """Write the finished attempts and any change of the sink's state."""
        records, self._records = self._records, []
        self._batch_started = None
        if records:
            try:
                lost = await asyncio.to_thread(self.outbox.record, records)
            except sa.exc.SQLAlchemyError as exc:
                self._records[:0] = records  # kept, in order, for the next write
                self.log.error(
                    "delivery_store_error", error=utils.first_line(exc), pending=len(records)
                )
                return
            for r in records:
                self._unrecorded.discard(r.delivery_id)
            self._held.forget(r.delivery_id for r in records)
            if lost:
                # its claim lapsed and was taken, or a replay cleared it: the result is not ours
                self.log.warning("delivery_claim_lost", count=len(lost), delivery_ids=lost[:20])
        state, before = self._state, self._saved_state
        if state == before:
            return
        now = self.clock()
        recovered = before.circuit_open and not state.circuit_open
        released = 0
        try:
            await asyncio.to_thread(self.states.save, state)
            if recovered:
                released = await asyncio.to_thread(self.outbox.release, self.name)
        except sa.exc.SQLAlchemyError as exc:
            # still unsaved: the next write tries the state (and the release) again
            self.log.error("delivery_store_error", error=utils.first_line(exc))
            return
        self._saved_state = state
        if recovered:
            self.log.info("sink_recovered", released=released)
        elif state.circuit_open and not before.circuit_open:
            self.log.warning(
                "sink_failing", next_probe_at=utils.isoformat(state.next_probe_at or now)
            )

    def _judge(self, delivery: Delivery, outcome: Outcome) -> AttemptRecord:
        """Where one attempt leaves its delivery."""
        event = delivery.event

        def record(kind: str, status: str, retry_in: float = 0.0) -> AttemptRecord:
            return AttemptRecord(
                delivery_id=delivery.id,
                ok=outcome.ok,
                outcome=kind,
                status=status,
                retry_in=retry_in,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                claim=delivery.claim,
            )

        if outcome.ok:
            self.log.debug("event_delivered", event_id=event.id, type=event.type)
            return record("delivered", DELIVERED)
        if outcome.gone:
            return record("gone", PENDING)
        kind = "rejected" if outcome.rejected else "transient"
        now = self._held.outbox_now(delivery) or self.clock()
        delay = retry.retry_delay(
            self.policy,
            attempts=delivery.attempts + 1,
            created_at=delivery.created_at,
            now=now,
            retry_after=outcome.retry_after,
            rand=self.rand(),
            sink_failing=not outcome.rejected,
        )
        if delay is None:
            self.log.error(
                "delivery_dead",
                event_id=event.id,
                type=event.type,
                attempts=delivery.attempts + 1,
                status_code=outcome.status_code,
                error=outcome.error,
            )
            return record(kind, DEAD)
        self.log.warning(
            "delivery_failed",
            event_id=event.id,
            type=event.type,
            attempts=delivery.attempts + 1,
            status_code=outcome.status_code,
            error=outcome.error,
            next_attempt_at=utils.isoformat(now + dt.timedelta(seconds=delay)),
        )
        return record(kind, PENDING, delay)

    def _transition(
        self, state: SinkState, outcome: Outcome, now: dt.datetime, *, probe: bool = False
    ) -> SinkState:
        """The sink's state after one attempt: the circuit opens on a failure, closes on a success.

        ``probe``: the attempt was the open circuit's probe, so its failure (or refusal) sets
        the next probe. Other failures while open are deliveries sent before it opened: the
        first failure has set the probe and they leave it, unless a ``Retry-After`` asks for
        longer.
        """
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
        if outcome.ok:
            if state.circuit_open:
                return dataclasses.replace(state, failing_since=None, next_probe_at=None)
            return state
        if not state.circuit_open:
            if outcome.rejected:
                return state
            return dataclasses.replace(
                state,
                failing_since=now,
                next_probe_at=retry.next_probe(
                    self.policy, now=now, first=True, retry_after=outcome.retry_after
                ),
            )
        if probe:
            return dataclasses.replace(
                state,
                next_probe_at=retry.next_probe(
                    self.policy, now=now, first=False, retry_after=outcome.retry_after
                ),
            )
        if outcome.retry_after is None:
            return state
        later = now + dt.timedelta(seconds=outcome.retry_after)
        if state.next_probe_at is not None and state.next_probe_at >= later:
            return state
        return dataclasses.replace(state, next_probe_at=later)

    async def _drain(self, grace: float) -> None:
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
            for task in list(self._inflight):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._write()
        # what was claimed and not sent (or cut off mid-flight) goes back to the pool now,
        # rather than when its claim lapses; a result still unwritten keeps its claim
        unsent = set(self._held.held) - {r.delivery_id for r in self._records}
        claims = [(i, self._held.held[i]) for i in unsent]
        self._held.forget(unsent)
        self._ready.clear()
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            await asyncio.to_thread(self.outbox.unclaim, claims)

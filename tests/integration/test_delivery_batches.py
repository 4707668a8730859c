"""The dispatcher sending a batch sink batches: slots, order, retries and the circuit as ever.

A fake batch sink in memory stands at the sink seam (the store is real, on each backend);
one test goes through a real Redis.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest
import redis.asyncio
import sqlalchemy as sa
from structlog.testing import capture_logs

from poller import store as store_mod
from poller.delivery.dispatcher import SinkWorker
from poller.delivery.retry import RetryPolicy
from poller.model import Event, Outcome
from poller.sinks.redis import RedisSink
from poller.store import Ledger, Outbox
from tests.integration.brokers import REDIS, require, stream_entries, unique

from .conftest import eventually, rewind
from .test_delivery import record_jobs

FAST = RetryPolicy(schedule=(0.05,) * 7, probe_interval=0.1)
Answer = Callable[[Event, int], Outcome]
"""The fake's answer to an event on its n-th attempt."""


def always_ok(_event: Event, _attempt: int) -> Outcome:
    return Outcome(ok=True)


class FakeBatchSink:
    """A batch sink in memory that checks, as each event arrives, that its resource's
    earlier event was already delivered and that no two of one resource are in flight."""

    def __init__(self, answer: Answer = always_ok) -> None:
        self.name = "bus"
        self.answer = answer
        self.batches: list[list[Event]] = []
        self.singles: list[Event] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self.delivered: list[Event] = []
        self.in_flight: dict[str, Event] = {}
        self.most_in_flight = 0
        self.problems: list[str] = []
        self.hold: asyncio.Event | None = None
        """While set to an unset event, a batch waits for it (a broker that never answers)."""
        self.cut_off = 0

    async def deliver(self, event: Event) -> Outcome:
        self.singles.append(event)
        return (await self._send([event]))[0]

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]:
        self.batches.append(list(events))
        return await self._send(events)

    async def aclose(self) -> None:
        pass

    async def _send(self, events: Sequence[Event]) -> list[Outcome]:
        done = {(e.resource_id, e.type) for e in self.delivered}
        for event in events:
            if event.resource_id in self.in_flight:
                self.problems.append(f"two of {event.resource_id} in flight")
            if event.type.endswith("succeeded") and (
                (event.resource_id, "batch_job.created") not in done
            ):
                self.problems.append(f"{event.resource_id} succeeded before created")
            self.in_flight[event.resource_id] = event
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        try:
            await asyncio.sleep(0)  # others may start meanwhile
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cut_off += len(events)
            raise
        finally:
            for event in events:
                self.in_flight.pop(event.resource_id, None)
        outcomes = []
        for event in events:
            self.attempts[event.id] += 1
            outcome = self.answer(event, self.attempts[event.id])
            if outcome.ok:
                self.delivered.append(event)
            outcomes.append(outcome)
        return outcomes


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(store_url)
    yield engine
    engine.dispose()


async def run_until(worker: SinkWorker, condition: Callable[[], object], grace: float = 2) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, grace=grace))
    try:
        await eventually(condition)
    finally:
        stop.set()
        await task


def delivered(engine: sa.Engine) -> int:
    stats = Ledger(engine).sink_stats().get("bus")
    return stats.delivered if stats else 0


async def test_a_batch_takes_a_slot_per_delivery(engine: sa.Engine) -> None:
    """Batches fill the free slots, never more than concurrency in flight, no single sends."""
    events = record_jobs(engine, 10, sinks=("bus",))
    sink = FakeBatchSink()
    worker = SinkWorker(sink, Outbox(engine), concurrency=4)
    await run_until(worker, lambda: delivered(engine) == 20)
    assert max(len(b) for b in sink.batches) == 4
    assert sink.most_in_flight <= 4
    assert sink.singles == []
    assert sorted(e.id for e in sink.delivered) == sorted(e.id for e in events)


async def test_a_resource_is_never_twice_in_a_batch_nor_overtaken(engine: sa.Engine) -> None:
    """Per-resource order holds across batches: a job's succeeded goes after its created."""
    record_jobs(engine, 12, sinks=("bus",))
    sink = FakeBatchSink()
    worker = SinkWorker(sink, Outbox(engine), concurrency=8)
    await run_until(worker, lambda: delivered(engine) == 24)
    assert sink.problems == []
    assert all(len({e.resource_id for e in b}) == len(b) for b in sink.batches)


async def test_one_refused_in_a_batch_follows_the_retry_schedule_alone(
    engine: sa.Engine,
) -> None:
    """A refusal in a batch: that delivery alone waits its schedule step; the circuit stays."""
    events = record_jobs(engine, 4, transitions=False, sinks=("bus",))
    refused = events[1].id

    def answer(event: Event, attempt: int) -> Outcome:
        if event.id == refused and attempt == 1:
            return Outcome(ok=False, rejected=True, error="no stream takes it")
        return Outcome(ok=True)

    sink = FakeBatchSink(answer)
    worker = SinkWorker(
        sink, Outbox(engine), policy=RetryPolicy(schedule=(3600,)), rand=lambda: 0.5
    )
    await run_until(worker, lambda: delivered(engine) == 3)
    assert len(sink.batches[0]) == 4
    assert not worker.state.circuit_open
    detail = Ledger(engine).event_detail(refused)
    assert detail is not None
    row = detail["deliveries"][0]
    assert row["status"] == "pending" and row["log"][0]["error"] == "no stream takes it"
    waits = (row["next_attempt_at"] - row["log"][0]["attempted_at"]).total_seconds()
    assert 3500 < waits < 3700  # the schedule's first step, from the attempt
    rewind(engine, "next_attempt_at", 3600)  # an hour goes by
    await run_until(worker, lambda: delivered(engine) == 4)
    assert sink.attempts[refused] == 2
    assert all(sink.attempts[e.id] == 1 for e in events if e.id != refused)


async def test_a_batch_failing_whole_opens_the_circuit_once(engine: sa.Engine) -> None:
    """A broker away fails every delivery of a batch: one opening, then probes one at a time."""
    record_jobs(engine, 6, transitions=False, sinks=("bus",))
    away = True

    def answer(_event: Event, _attempt: int) -> Outcome:
        return Outcome(ok=False, error="broker away") if away else Outcome(ok=True)

    sink = FakeBatchSink(answer)
    worker = SinkWorker(sink, Outbox(engine), policy=FAST, concurrency=6)
    with capture_logs() as logs:
        await run_until(worker, lambda: worker.state.circuit_open and not worker.busy)
    assert [len(b) for b in sink.batches] == [6]
    assert [e["event"] for e in logs].count("sink_failing") == 1
    away = False
    await run_until(worker, lambda: delivered(engine) == 6)
    assert not worker.state.circuit_open
    assert len(sink.singles) >= 1  # the probe went alone
    assert sink.attempts.total() == 12


async def test_a_batch_cut_off_by_a_stop_is_sent_again_after(engine: sa.Engine) -> None:
    """A stop whose grace runs out cancels the batch: its deliveries stay pending, resent."""
    events = record_jobs(engine, 3, transitions=False, sinks=("bus",))
    sink = FakeBatchSink()
    sink.hold = asyncio.Event()
    worker = SinkWorker(sink, Outbox(engine), concurrency=3)
    await run_until(worker, lambda: sink.batches, grace=0)
    assert sink.cut_off == 3 and delivered(engine) == 0
    sink.hold = None
    again = SinkWorker(sink, Outbox(engine), concurrency=3)
    await run_until(again, lambda: delivered(engine) == 3)
    assert sorted(e.id for e in sink.delivered) == sorted(e.id for e in events)


class CountingRedisSink(RedisSink):
    """The ``redis`` sink, noting the size of each batch it was given."""

    sizes: list[int]

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]:
        self.sizes.append(len(events))
        return await super().deliver_many(events)


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    require("Redis", REDIS)
    key = unique("poller-test")
    yield key
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{REDIS}/0")
    await client.delete(key)
    await client.aclose()


async def test_batches_through_redis_keep_every_event_once_in_order(
    engine: sa.Engine, stream: str
) -> None:
    """Through a real Redis: batches of up to concurrency, each event once, order per job."""
    events = record_jobs(engine, 30, sinks=("bus",))
    url = f"redis://127.0.0.1:{REDIS}/0"
    sink = CountingRedisSink("bus", url, stream=stream)
    sink.sizes = []
    worker = SinkWorker(sink, Outbox(engine), concurrency=8)
    try:
        await run_until(worker, lambda: delivered(engine) == 60)
    finally:
        await sink.aclose()
    assert max(sink.sizes) > 1 and max(sink.sizes) <= 8
    client = redis.asyncio.Redis.from_url(url)
    try:
        entries = await stream_entries(client, stream)
    finally:
        await client.aclose()
    ids = [e["id"] for e in entries]
    assert sorted(ids) == sorted(e.id for e in events)
    at = {event_id: n for n, event_id in enumerate(ids)}
    for created, succeeded in zip(events[:30], events[30:], strict=True):
        assert at[created.id] < at[succeeded.id]

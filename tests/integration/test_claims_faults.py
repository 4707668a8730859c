"""Workers of two processes on one outbox (each backend) when one freezes or its clock is off.

Each "process" is a ``SinkWorker`` on its own engine; the frozen one runs on an event loop
of its own, in a thread, and its sink blocks that loop as SIGSTOP would stop the process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from poller import store as store_mod
from poller import utils
from poller.delivery.dispatcher import SinkWorker
from poller.model import Event, Outcome
from poller.store import Ledger, Outbox
from poller.store.rows import DELIVERIES

from .conftest import eventually
from .test_delivery import record_jobs


@pytest.fixture
def other(store_url: str, engine: sa.Engine) -> Iterator[sa.Engine]:
    """A second engine on the same store: the other process's connections."""
    other = store_mod.create_engine(store_url)
    yield other
    other.dispose()


class Wire:
    """A sink that counts what goes out on it: ``sent`` is every event id, in order.

    ``hold``: attempts wait (without blocking the loop) until it is set — a slow receiver.
    ``freeze``: the first attempt, once sent, blocks the whole event loop it runs on until
    ``thaw`` is set, as a process stopped by SIGSTOP; ``frozen`` tells it happened.
    """

    name = "hook"

    def __init__(self, sent: list[str], *, hold: bool = False, freeze: bool = False) -> None:
        self.sent = sent
        self.hold = threading.Event()
        if not hold:
            self.hold.set()
        self.freeze = freeze
        self.frozen = threading.Event()
        self.thaw = threading.Event()
        self.attempts = 0

    async def deliver(self, event: Event) -> Outcome:
        self.sent.append(event.id)
        self.attempts += 1
        if self.freeze and not self.frozen.is_set():
            self.frozen.set()
            self.thaw.wait(60)  # blocks this loop: nothing of the worker runs meanwhile
        await asyncio.to_thread(self.hold.wait, 60)
        return Outcome(ok=True, status_code=200)

    async def aclose(self) -> None:
        return None


def in_thread(worker: SinkWorker) -> tuple[threading.Thread, Callable[[], None]]:
    """Run ``worker`` on an event loop of its own in a thread; return it and its stop."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def main() -> None:
        try:
            loop.run_until_complete(worker.run(stop, grace=5))
        finally:
            loop.close()

    def stop_it() -> None:
        with contextlib.suppress(RuntimeError):  # its loop has closed: it stopped already
            loop.call_soon_threadsafe(stop.set)

    thread = threading.Thread(target=main, name="frozen-process")
    thread.start()
    return thread, stop_it


def twice(sent: list[str]) -> set[str]:
    return {i for i, n in collections.Counter(sent).items() if n > 1}


async def test_a_worker_frozen_past_its_claims_sends_none_of_them_when_it_wakes(
    engine: sa.Engine, other: sa.Engine
) -> None:
    """Frozen with claimed deliveries waiting, it wakes and gives them back unsent: only the
    attempt that was on the wire when it froze goes out twice."""
    events = record_jobs(engine, 8, transitions=False)
    sent: list[str] = []
    frozen = Wire(sent, freeze=True)
    worker = SinkWorker(frozen, Outbox(engine), concurrency=1, window=4, claim_ttl=1.0)
    thread, stop_frozen = in_thread(worker)
    try:
        assert await asyncio.to_thread(frozen.frozen.wait, 20)
        on_the_wire = set(sent)
        live = SinkWorker(Wire(sent), Outbox(other), concurrency=2, claim_ttl=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(live.run(stop, grace=5))
        ledger = Ledger(engine)
        await eventually(lambda: ledger.sink_stats()["hook"].delivered == 8)
        stop.set()
        await task
        with capture_logs() as logs:
            frozen.thaw.set()
            await eventually(lambda: any(x["event"] == "delivery_claim_lost" for x in logs))
            stop_frozen()
            await asyncio.to_thread(thread.join, 20)
    finally:
        frozen.thaw.set()
        stop_frozen()
        await asyncio.to_thread(thread.join, 20)
    assert sorted(set(sent)) == sorted(e.id for e in events)
    assert twice(sent) <= on_the_wire, f"sent again after waking: {twice(sent) - on_the_wire}"


async def test_a_worker_whose_clock_is_30s_ahead_leaves_live_claims_alone(
    engine: sa.Engine, other: sa.Engine
) -> None:
    """A process 30 s ahead neither takes what another is sending nor sends anything twice."""
    events = record_jobs(engine, 6, transitions=False)
    sent: list[str] = []
    slow = Wire(sent, hold=True)
    behind = SinkWorker(slow, Outbox(engine), concurrency=4, window=4, claim_ttl=10.0)
    ahead = SinkWorker(
        Wire(sent),
        Outbox(other),
        concurrency=4,
        claim_ttl=10.0,
        clock=lambda: utils.utcnow() + dt.timedelta(seconds=30),
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(behind.run(stop, grace=5))]
    try:
        await eventually(lambda: slow.attempts == 4)
        tasks.append(asyncio.create_task(ahead.run(stop, grace=5)))
        await eventually(lambda: len(sent) >= 6)
        slow.hold.set()
        ledger = Ledger(engine)
        await eventually(lambda: ledger.sink_stats()["hook"].delivered == 6)
    finally:
        slow.hold.set()
        stop.set()
        await asyncio.gather(*tasks)
    assert sorted(set(sent)) == sorted(e.id for e in events)
    assert not twice(sent), f"sent twice: {twice(sent)}"


async def test_a_halted_worker_starts_nothing_more_and_gives_back_what_it_claimed(
    engine: sa.Engine,
) -> None:
    """Halted (a newer release took the store over), it lets its attempt finish and be
    written, starts nothing else, and unclaims the rest at once."""
    record_jobs(engine, 4, transitions=False)
    sent: list[str] = []
    wire = Wire(sent, hold=True)
    worker = SinkWorker(wire, Outbox(engine), concurrency=1, window=4, claim_ttl=30.0)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, grace=5))
    ledger = Ledger(engine)
    try:
        await eventually(lambda: wire.attempts == 1)
        worker.halt()
        await eventually(lambda: unclaimed(engine) == 3)
        wire.hold.set()
        await eventually(lambda: ledger.sink_stats()["hook"].delivered == 1)
    finally:
        wire.hold.set()
        stop.set()
        await task
    assert len(sent) == 1
    assert ledger.sink_stats()["hook"].pending == 3


def unclaimed(engine: sa.Engine) -> int:
    """Pending deliveries nobody holds."""
    d = DELIVERIES
    query = sa.select(sa.func.count()).where(d.c.status == "pending", d.c.claim_token.is_(None))
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)

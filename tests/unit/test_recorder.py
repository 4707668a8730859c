"""The proxy's recorder: finished calls become events off the response path, in batches."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Sequence

import pytest
import structlog
import tenacity

from poller import synchronous
from poller.model import Event
from poller.proxy.recorder import Recorder
from tests.calls import embeddings_call

T = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


async def test_a_call_that_breaks_the_builder_loses_only_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call whose event cannot be built is logged at error; the calls beside it land."""
    build = synchronous.events

    def fragile(call: synchronous.Call, **kw: object) -> synchronous.Outcome:
        if b'"bad"' in call.body:
            raise RecursionError("maximum recursion depth exceeded")
        return build(call, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(synchronous, "events", fragile)
    written: list[Event] = []

    def enqueue(events: Sequence[Event], now: dt.datetime) -> Sequence[Event]:
        written.extend(events)
        return events

    recorder = Recorder(
        enqueue=enqueue,
        notify=lambda: None,
        record_content=True,
        clock=lambda: T,
    )
    with structlog.testing.capture_logs() as logs:
        recorder.submit(embeddings_call("bad", T), workspace="default")
        recorder.submit(embeddings_call("good", T), workspace="default")
        await recorder.aclose(5)
    skipped = [x for x in logs if x["event"] == "proxy_call_not_recorded"]
    assert [(x["log_level"], x["reason"]) for x in skipped] == [
        ("error", "cannot build the event: RecursionError")
    ]
    assert [e.resource_id for e in written] == ["good"]


async def test_a_full_queue_drops_counts_and_logs_once_per_episode() -> None:
    """While the store is away queue_size calls wait; the rest are counted, logged once."""
    store_up = threading.Event()
    written: list[Event] = []
    drops: list[None] = []

    def enqueue(events: Sequence[Event], now: dt.datetime) -> Sequence[Event]:
        if not store_up.is_set():
            raise OSError("store away")
        written.extend(events)
        return events

    recorder = Recorder(
        enqueue=enqueue,
        notify=lambda: None,
        record_content=True,
        clock=lambda: T,
        queue_size=2,
        on_drop=lambda: drops.append(None),
        retry_wait=tenacity.wait_fixed(0.001),
        linger=0,
    )
    with structlog.testing.capture_logs() as logs:
        recorder.submit(embeddings_call("a", T), workspace="default")
        await _until(lambda: recorder._writing is not None)
        for name in "bcdef":
            recorder.submit(embeddings_call(name, T), workspace="default")
        store_up.set()
        await _until(lambda: not recorder.pending)
        for name in "ghij":
            recorder.submit(embeddings_call(name, T), workspace="default")
        await recorder.aclose(5)
    assert (recorder.dropped, len(drops)) == (5, 5)
    assert [e.resource_id for e in written] == ["a", "b", "c", "g", "h"]
    episodes = [(x["event"], x.get("dropped")) for x in logs if "queue" in x["event"]]
    assert episodes == [
        ("proxy_queue_full", None),
        ("proxy_queue_recovered", 3),
        ("proxy_queue_full", None),
        ("proxy_queue_recovered", 2),
    ]


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met")

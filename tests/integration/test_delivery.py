"""The dispatcher over real HTTP on 127.0.0.1, a real store (each backend), a real receiver."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import os
import pathlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

import poller
from poller import store as store_mod
from poller.delivery.dispatcher import SinkWorker
from poller.delivery.retry import RetryPolicy
from poller.diff import DiffResult, event_for
from poller.metrics import Metrics
from poller.model import Event
from poller.sinks.file import FileSink
from poller.sinks.http import HttpSink
from poller.sources import BATCH_JOBS
from poller.store import Ledger, Outbox, PollCommit, SinkState, SinkStates, Store
from poller.testing import Received, WebhookReceiver, failing_for

from .conftest import eventually, rewind

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SECRET_2 = "whsec_" + base64.b64encode(b"j" * 32).decode()
FAST = RetryPolicy(schedule=(0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05), probe_interval=0.2)


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def record_jobs(
    engine: sa.Engine, count: int, *, transitions: bool = True, sinks: Sequence[str] = ("hook",)
) -> list[Event]:
    """Commit ``count`` jobs' created (and succeeded) events as a poll would."""
    store = Store(engine, lambda _e: list(sinks))
    now = dt.datetime.now(dt.UTC)
    events: list[Event] = []
    for n in range(count):
        r = BATCH_JOBS.to_resource(
            {"id": f"job-{n:04d}", "status": "QUEUED", "created_at": n, "model": "m"}
        )
        events.append(event_for(BATCH_JOBS, "batch_job.created", r, workspace="w", now=now))
    if transitions:
        for n in range(count):
            r = BATCH_JOBS.to_resource(
                {
                    "id": f"job-{n:04d}",
                    "status": "SUCCESS",
                    "created_at": n,
                    "output_file": "o",
                    "total_requests": 1,
                }
            )
            events.append(event_for(BATCH_JOBS, "batch_job.succeeded", r, workspace="w", now=now))
    store.commit_poll(
        PollCommit("w", "batch_jobs", DiffResult(events=tuple(events)), now), active=lambda r: False
    )
    return events


async def run_until(worker: SinkWorker, condition: Callable[[], object]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, grace=2))
    try:
        await eventually(condition)
    finally:
        stop.set()
        await task


def order_ok(received: list[Received]) -> bool:
    """Each job's created arrives before its succeeded."""
    seen: set[str] = set()
    for r in received:
        doc = r.json()
        if doc["type"] == "batch_job.created":
            seen.add(doc["data"]["id"])
        elif doc["data"]["id"] not in seen:
            return False
    return True


async def test_delivers_everything_signed(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """Every event arrives once, signed, verifiable with standardwebhooks."""
    events = record_jobs(engine, 20)
    with WebhookReceiver() as receiver:
        sink = HttpSink("hook", receiver.url, client=http, secrets=[SECRET])
        worker = SinkWorker(sink, Outbox(engine), policy=FAST, concurrency=4)
        await run_until(worker, lambda: len(receiver.delivered()) >= 40)
        got = receiver.delivered()
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(e.id for e in events)
    for r in got:
        assert Webhook(SECRET).verify(r.body, r.headers)["id"] == r.headers["webhook-id"]
    assert order_ok(got)
    assert Ledger(engine).sink_stats()["hook"].delivered == 40


async def test_outage_then_recovery(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A receiver failing for a while gets everything after, same ids, order per resource kept."""
    events = record_jobs(engine, 10)
    with WebhookReceiver(failing_for(6, 503)) as receiver:
        sink = HttpSink("hook", receiver.url, client=http, secrets=[SECRET])
        worker = SinkWorker(sink, Outbox(engine), policy=FAST, concurrency=4)
        await run_until(worker, lambda: len(receiver.delivered()) >= 20)
        every = list(receiver.requests)
    ids = {e.id for e in events}
    assert {r.headers["webhook-id"] for r in every} == ids
    assert order_ok(receiver.delivered())
    failed_ids = {r.headers["webhook-id"] for r in every if r.status == 503}
    assert failed_ids <= {r.headers["webhook-id"] for r in receiver.delivered()}


async def test_circuit_probes_with_one_delivery(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """While the sink fails only probes go out, one at a time, not one per delivery."""
    record_jobs(engine, 10, transitions=False)
    with WebhookReceiver(lambda _r: 500) as receiver:
        policy = RetryPolicy(schedule=(0.1,) + (3600,) * 6, probe_interval=0.3)
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http),
            Outbox(engine),
            policy=policy,
            concurrency=1,
        )
        await run_until(worker, lambda: len(receiver.requests) >= 3)
        first = [r.headers["webhook-id"] for r in receiver.requests[:3]]
    # one per delivery would be the three oldest events; probes retry the oldest one or two
    assert len(set(first)) <= 2
    assert SinkStates(engine).get("hook").circuit_open


async def test_concurrent_failures_keep_the_first_probe(
    engine: sa.Engine, http: httpx.AsyncClient
) -> None:
    """Failures of deliveries in flight when the circuit opened do not push the first probe."""
    record_jobs(engine, 4, transitions=False)
    together = threading.Barrier(4)
    calls = itertools.count()

    def respond(_r: Received) -> int:
        if next(calls) < 4:  # the first four fail at once: the circuit opens on one of them
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=5)
        return 503

    policy = RetryPolicy(schedule=(0.1,) + (3600,) * 6, probe_interval=3600)
    with WebhookReceiver(respond) as receiver:
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http), Outbox(engine), policy=policy
        )
        await run_until(worker, lambda: len(receiver.requests) >= 5)
    assert SinkStates(engine).get("hook").circuit_open


async def test_refused_probe_keeps_circuit_open(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A probe answered 400 leaves the circuit open: nothing that waited is released."""
    record_jobs(engine, 3, transitions=False)
    answers = iter([503, 400])
    policy = RetryPolicy(schedule=(0.05,) + (3600,) * 6, probe_interval=3600)
    outbox = Outbox(engine)
    sink_states = SinkStates(engine)
    with WebhookReceiver(lambda _r: next(answers, 503)) as receiver, capture_logs() as logs:
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http), outbox, policy=policy, concurrency=1
        )
        await run_until(worker, lambda: len(receiver.requests) >= 2)
        statuses = [r.status for r in receiver.requests]
    assert "sink_recovered" not in [line["event"] for line in logs]
    assert statuses == [503, 400]
    assert sink_states.get("hook").circuit_open


async def test_outage_longer_than_the_schedule_kills_nothing(
    engine: sa.Engine, http: httpx.AsyncClient
) -> None:
    """Probes of a failing sink do not spend a payload's schedule: all arrive after recovery."""
    events = record_jobs(engine, 3, transitions=False)
    policy = RetryPolicy(schedule=(0.05,), probe_interval=0.05)
    with WebhookReceiver(failing_for(8, 503)) as receiver:
        outbox = Outbox(engine)
        ledger = Ledger(engine)
        worker = SinkWorker(HttpSink("hook", receiver.url, client=http), outbox, policy=policy)
        await run_until(worker, lambda: len(receiver.delivered()) == 3)
        got = {r.headers["webhook-id"] for r in receiver.delivered()}
    assert got == {e.id for e in events}
    assert ledger.sink_stats()["hook"].dead == 0


async def test_every_dead_delivery_is_counted(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """Deliveries of a failing sink given up at max_age all count in poller_deliveries_dead."""
    record_jobs(engine, 3, transitions=False)
    metrics = Metrics()
    metrics.track_sink("hook")
    policy = RetryPolicy(schedule=(0.05,), probe_interval=0.05, max_age=0.5)
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    with WebhookReceiver(lambda _r: 503) as receiver:
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http),
            outbox,
            policy=policy,
            on_result=metrics.observe_delivery,
            on_expired=metrics.observe_expired,
        )
        await run_until(worker, lambda: ledger.sink_stats()["hook"].dead == 3)
    assert metrics.registry.get_sample_value("poller_deliveries_dead_total", {"sink": "hook"}) == 3


async def test_gone_disables_sink_until_enabled(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """410 Gone disables the sink and keeps deliveries pending; enabling resumes them."""
    record_jobs(engine, 3, transitions=False)
    answers = {"status": 410}
    with WebhookReceiver(lambda _r: answers["status"]) as receiver:
        outbox = Outbox(engine)
        ledger = Ledger(engine)
        sink_states = SinkStates(engine)
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http), outbox, policy=FAST, concurrency=1
        )
        await run_until(worker, lambda: not sink_states.get("hook").enabled)
        assert len(receiver.requests) == 1
        assert ledger.sink_stats()["hook"].pending == 3
        answers["status"] = 200
        sink_states.save(SinkState(name="hook"))
        await run_until(worker, lambda: len(receiver.delivered()) == 3)


async def test_retry_after_is_honoured(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A 429 with Retry-After holds the sink for at least that long."""
    record_jobs(engine, 1, transitions=False)
    answers = iter([(429, {"Retry-After": "1"})])
    with WebhookReceiver(lambda _r: next(answers, 200)) as receiver:
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http), Outbox(engine), policy=FAST, concurrency=1
        )
        await run_until(worker, lambda: len(receiver.delivered()) == 1)
        first, second = receiver.requests
    assert second.at - first.at >= 0.9


async def test_rejection_keeps_circuit_closed(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A receiver refusing one payload (400) does not hold up the others."""
    events = record_jobs(engine, 5, transitions=False)
    bad = events[0].id
    with WebhookReceiver(lambda r: 400 if r.headers["webhook-id"] == bad else 200) as receiver:
        outbox = Outbox(engine)
        ledger = Ledger(engine)
        sink_states = SinkStates(engine)
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http),
            outbox,
            policy=RetryPolicy(schedule=(3600,)),
            concurrency=2,
        )
        await run_until(worker, lambda: len(receiver.delivered()) == 4)
        assert not sink_states.get("hook").circuit_open
        assert ledger.sink_stats()["hook"].failing == 1


async def test_dead_after_schedule_spent_with_time_travel(
    engine: sa.Engine, http: httpx.AsyncClient
) -> None:
    """A delivery refused at every step of the default schedule ends dead (kept, listed)."""
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    with WebhookReceiver(lambda _r: 422) as receiver:
        record_jobs(engine, 1, transitions=False)
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http),
            outbox,
            policy=RetryPolicy(max_age=30 * 86400),
        )
        for _ in range(8):
            await worker.flush()
            # 11 hours go by for the delivery, on the store's clock
            for column in ("created_at", "next_attempt_at"):
                rewind(engine, column, 11 * 3600)
        assert len(receiver.requests) == 8
    stats = ledger.sink_stats()["hook"]
    assert stats.dead == 1 and stats.pending == 0
    assert ledger.list_deliveries(status="dead")[0]["attempts"] == 8


async def test_user_agent_names_the_version(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A webhook's User-Agent carries poller's version."""
    record_jobs(engine, 1, transitions=False)
    with WebhookReceiver() as receiver:
        sink = HttpSink("hook", receiver.url, client=http)
        await SinkWorker(sink, Outbox(engine), policy=FAST).flush()
        (got,) = receiver.delivered()
    assert got.headers["user-agent"] == f"poller-webhooks/{poller.__version__}"


async def test_rotation_signs_with_both_secrets(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """With two secrets, each verifies the delivered request on its own."""
    record_jobs(engine, 1, transitions=False)
    with WebhookReceiver() as receiver:
        sink = HttpSink("hook", receiver.url, client=http, secrets=[SECRET, SECRET_2])
        await SinkWorker(sink, Outbox(engine), policy=FAST).flush()
        (got,) = receiver.delivered()
    Webhook(SECRET).verify(got.body, got.headers)
    Webhook(SECRET_2).verify(got.body, got.headers)


async def test_cloudevents_structured_mode(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """format: cloudevents sends CloudEvents 1.0 structured JSON with the required attributes."""
    (event,) = record_jobs(engine, 1, transitions=False)
    with WebhookReceiver() as receiver:
        sink = HttpSink("hook", receiver.url, client=http, format="cloudevents", secrets=[SECRET])
        await SinkWorker(sink, Outbox(engine), policy=FAST).flush()
        (got,) = receiver.delivered()
    assert got.headers["content-type"] == "application/cloudevents+json"
    doc = got.json()
    for attribute in ("id", "source", "specversion", "type"):
        assert isinstance(doc[attribute], str) and doc[attribute]
    assert doc["specversion"] == "1.0" and doc["id"] == event.id and doc["type"] == event.type
    dt.datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    assert doc["data"] == dict(event.data)
    Webhook(SECRET).verify(got.body, got.headers)


async def test_url_placeholders_give_seed_paths(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """{resource}/{action} in the URL reproduce the seed's per-event webhook paths."""
    record_jobs(engine, 1)
    with WebhookReceiver() as receiver:
        url = receiver.url + "/webhooks/mistral-ai/{resource}/{action}"
        await SinkWorker(HttpSink("hook", url, client=http), Outbox(engine), policy=FAST).flush()
        await SinkWorker(HttpSink("hook", url, client=http), Outbox(engine), policy=FAST).flush()
        paths = [r.path for r in receiver.delivered()]
    assert paths == [
        "/webhooks/mistral-ai/batch_job/created",
        "/webhooks/mistral-ai/batch_job/succeeded",
    ]


async def test_file_sink_appends_json_lines(engine: sa.Engine, tmp_path: os.PathLike[str]) -> None:
    """The file sink appends one JSON envelope per event."""
    events = record_jobs(engine, 3)
    path = f"{tmp_path}/out/events.jsonl"
    sink = FileSink("hook", path)
    worker = SinkWorker(sink, Outbox(engine), policy=FAST)
    for _ in range(3):
        await worker.flush()
    await sink.aclose()
    text = await asyncio.to_thread(pathlib.Path(path).read_text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(e.id for e in events)


async def test_one_failing_sink_does_not_delay_another(
    engine: sa.Engine, http: httpx.AsyncClient
) -> None:
    """A dead sink and a healthy one: the healthy one gets everything promptly."""
    record_jobs(engine, 5, sinks=("dead", "ok"))
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    with WebhookReceiver() as receiver:
        dead = SinkWorker(HttpSink("dead", "http://127.0.0.1:9", client=http), outbox, policy=FAST)
        ok = SinkWorker(HttpSink("ok", receiver.url, client=http), outbox, policy=FAST)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in (dead, ok)]
        await eventually(lambda: len(receiver.delivered()) == 10)
        stop.set()
        await asyncio.gather(*tasks)
        assert len(receiver.delivered()) == 10
    assert ledger.sink_stats()["dead"].pending == 10


async def test_replay_resends_under_the_same_id(engine: sa.Engine, http: httpx.AsyncClient) -> None:
    """A replayed event goes out again with the webhook-id it had the first time."""
    (event,) = record_jobs(engine, 1, transitions=False)
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    with WebhookReceiver() as receiver:
        worker = SinkWorker(HttpSink("hook", receiver.url, client=http), outbox, policy=FAST)
        await worker.flush()
        assert ledger.replay(ids=[event.id]) == 1
        await worker.flush()
        ids = [r.headers["webhook-id"] for r in receiver.delivered()]
    assert ids == [event.id, event.id]


async def test_store_error_while_recording_loses_nothing(
    engine: sa.Engine, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of finished attempts that fails (store locked) is kept and written later."""
    record_jobs(engine, 3, transitions=False)
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    real = outbox.record
    failures = iter([sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))])

    def flaky(records: object) -> None:
        if (exc := next(failures, None)) is not None:
            raise exc
        real(records)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "record", flaky)
    with WebhookReceiver() as receiver:
        worker = SinkWorker(HttpSink("hook", receiver.url, client=http), outbox, policy=FAST)
        await run_until(
            worker, lambda: real is not None and ledger.sink_stats()["hook"].delivered == 3
        )
        assert len(receiver.delivered()) == 3


async def test_store_error_while_releasing_still_releases(
    engine: sa.Engine, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write of a recovery (store locked) is retried: what waited still goes at once."""
    record_jobs(engine, 3, transitions=False)
    outbox = Outbox(engine)
    real = outbox.release
    failures = iter([sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))])

    def flaky(sink: str) -> int:
        if (exc := next(failures, None)) is not None:
            raise exc
        return real(sink)

    monkeypatch.setattr(outbox, "release", flaky)
    policy = RetryPolicy(schedule=(3600,), probe_interval=0.1)
    with WebhookReceiver(failing_for(3, 503)) as receiver:
        worker = SinkWorker(
            HttpSink("hook", receiver.url, client=http), outbox, policy=policy, concurrency=3
        )
        await run_until(worker, lambda: len(receiver.delivered()) == 3)


async def test_two_replicas_share_the_outbox_each_event_once_in_order(
    engine: sa.Engine, store_url: str, http: httpx.AsyncClient
) -> None:
    """Two workers on their own engines (two replicas) deliver every event once, in order."""
    events = record_jobs(engine, 30)
    other = store_mod.create_engine(store_url)
    with WebhookReceiver(delay=0.005) as receiver:
        sink = HttpSink("hook", receiver.url, client=http, secrets=[SECRET])
        workers = [
            SinkWorker(sink, Outbox(own), policy=FAST, concurrency=4, window=8)
            for own in (engine, other)
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop, grace=2)) for w in workers]
        sent: dict[str, int] = {}
        try:
            await eventually(lambda: len(receiver.delivered()) >= 60)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            other.dispose()
        got = receiver.delivered()
    for r in got:
        sent[r.headers["webhook-id"]] = sent.get(r.headers["webhook-id"], 0) + 1
    assert sorted(sent) == sorted(e.id for e in events)
    assert set(sent.values()) == {1}
    assert order_ok(got)
    assert Ledger(engine).sink_stats()["hook"].delivered == 60


async def test_a_dead_replicas_claims_are_delivered_by_another_after_the_deadline(
    engine: sa.Engine, http: httpx.AsyncClient
) -> None:
    """Deliveries a dead process claimed go out from a live worker when the claim lapses."""
    events = record_jobs(engine, 3, transitions=False)
    dead = Outbox(engine).claim("hook", 10, ttl=1)
    assert len(dead) == 3
    with WebhookReceiver() as receiver:
        sink = HttpSink("hook", receiver.url, client=http, secrets=[SECRET])
        # it would look again only in an hour, but it knows when the claims lapse
        worker = SinkWorker(sink, Outbox(engine), policy=FAST, idle_check=3600)
        await run_until(worker, lambda: len(receiver.delivered()) >= 3)
        got = sorted(r.headers["webhook-id"] for r in receiver.delivered())
    assert got == sorted(e.id for e in events)
    assert Ledger(engine).sink_stats()["hook"].delivered == 3


async def test_an_event_replayed_while_its_resource_is_in_flight_goes_after_it(
    engine: sa.Engine, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaying a delivered event while a later one of its job is being sent: it goes next."""
    created, succeeded = record_jobs(engine, 1)
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    arrived, gate, claimed_again = threading.Event(), threading.Event(), threading.Event()
    real_claim = outbox.claim

    def spy(*args: object, **kwargs: object) -> list[object]:
        claimed = real_claim(*args, **kwargs)  # type: ignore[arg-type]
        if arrived.is_set() and any(d.event.id == created.id for d in claimed):
            claimed_again.set()
        return claimed  # type: ignore[return-value]

    def respond(request: Received) -> int:
        if request.headers["webhook-id"] == succeeded.id:
            arrived.set()
            gate.wait(10)
        return 200

    monkeypatch.setattr(outbox, "claim", spy)
    with WebhookReceiver(respond) as receiver:
        worker = SinkWorker(HttpSink("hook", receiver.url, client=http), outbox, idle_check=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop, grace=2))
        try:
            assert await asyncio.to_thread(arrived.wait, 10)
            assert ledger.replay(ids=[created.id]) == 1
            worker.notify()
            assert await asyncio.to_thread(claimed_again.wait, 10)
            gate.set()
            await asyncio.to_thread(receiver.wait_delivered, 3)
        finally:
            gate.set()
            stop.set()
            await task
        ids = [r.headers["webhook-id"] for r in receiver.delivered()]
    assert ids == [created.id, succeeded.id, created.id]

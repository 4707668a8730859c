"""Delivery throughput: events through the outbox to a local receiver, against a bare loop.

Measures, in the same run and against the same receiver (a separate process):

- **bare**: an ``httpx`` loop POSTing the same signed bodies with the same concurrency — the
  ceiling, with no bookkeeping at all;
- **outbox**: poller's dispatcher delivering the events from a SQLite outbox, recording every
  attempt durably (delivery row update + attempt log row), per-resource order kept.

Usage: ``python -m bench.delivery [--events 10000] [--concurrency 8] [--rounds 3]``; the
two are measured in alternating rounds and the medians compared. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import pathlib
import statistics
import tempfile
import time

import httpx

from bench.common import receiver, row
from poller import logs
from poller import store as store_mod
from poller.cli.common import run_async
from poller.delivery.dispatcher import SinkWorker
from poller.diff import DiffResult, event_for
from poller.model import Event
from poller.sinks import http as http_sink
from poller.sinks.base import Sink
from poller.sinks.http import HttpSink
from poller.sources import BATCH_JOBS
from poller.store import Ledger, Outbox, PollCommit, Store
from poller.testing import free_port

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-of-thirty-two-b").decode()


def make_events(count: int, workspace: str = "w") -> list[Event]:
    now = dt.datetime.now(dt.UTC)
    events = []
    for n in range(count):
        job = BATCH_JOBS.to_resource(
            {
                "id": f"job-{n:06d}",
                "status": "SUCCESS",
                "created_at": n,
                "model": "m",
                "output_file": "out",
                "total_requests": 10,
            }
        )
        events.append(
            event_for(BATCH_JOBS, "batch_job.succeeded", job, workspace=workspace, now=now)
        )
    return events


async def bare_loop(url: str, events: list[Event], concurrency: int) -> float:
    sink = HttpSink("bare", url, client=httpx.AsyncClient(), secrets=[SECRET])
    queue: asyncio.Queue[Event] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def work(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            event = queue.get_nowait()
            body, content_type = sink.render(event)
            response = await client.post(
                url, content=body, headers=sink.request_headers(event, body, content_type)
            )
            response.raise_for_status()

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(work(client) for _ in range(concurrency)))
        return time.perf_counter() - started


async def deliver_all(sink: Sink, outbox: Outbox, count: int, concurrency: int = 8) -> float:
    """Seconds the dispatcher takes to deliver ``count`` pending deliveries to ``sink``."""
    done = asyncio.Event()
    delivered = 0

    def counted(_sink: str, _delivery: object, _outcome: object, status: str) -> None:
        nonlocal delivered
        delivered += status == "delivered"
        if delivered == count:
            done.set()

    worker = SinkWorker(sink, outbox, concurrency=concurrency, on_result=counted)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    await done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


async def through_outbox(
    url: str, events: list[Event], concurrency: int, root: str
) -> tuple[float, float]:
    engine = store_mod.create_engine(f"sqlite:///{root}/bench.db")
    store = Store(engine, lambda _e: ["hook"])
    started = time.perf_counter()
    store.commit_poll(
        PollCommit("w", "batch_jobs", DiffResult(events=tuple(events)), dt.datetime.now(dt.UTC)),
        active=lambda _r: False,
    )
    enqueue = time.perf_counter() - started
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    async with http_sink.client(concurrency) as client:  # as the daemon builds it
        sink = HttpSink("hook", url, client=client, secrets=[SECRET])
        elapsed = await deliver_all(sink, outbox, len(events), concurrency)
    assert ledger.sink_stats()["hook"].delivered == len(events)
    engine.dispose()
    return enqueue, elapsed


async def main(count: int, concurrency: int, rounds: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    events = make_events(count)
    bare: list[float] = []
    outbox: list[float] = []
    enqueue: list[float] = []
    with receiver(port), tempfile.TemporaryDirectory() as root:
        await bare_loop(url, events[: min(500, count)], concurrency)  # warm up
        for n in range(rounds):  # interleaved, so drift in the machine's load hits both
            bare.append(count / await bare_loop(url, events, concurrency))
            (pathlib.Path(root) / str(n)).mkdir()
            queued, delivered = await through_outbox(url, events, concurrency, f"{root}/{n}")
            enqueue.append(count / queued)
            outbox.append(count / delivered)
    print(row("measure", "events", "events/s (median)", "rounds"))
    print(row("bare httpx loop (ceiling)", count, f"{statistics.median(bare):.0f}",
              " ".join(f"{x:.0f}" for x in bare)))  # fmt: skip
    print(row("outbox → dispatcher → sink", count, f"{statistics.median(outbox):.0f}",
              " ".join(f"{x:.0f}" for x in outbox)))  # fmt: skip
    print(row("enqueue into the outbox", count, f"{statistics.median(enqueue):.0f}",
              " ".join(f"{x:.0f}" for x in enqueue)))  # fmt: skip
    ratio = statistics.median(outbox) / statistics.median(bare)
    print(f"ratio outbox / bare (medians): {ratio:.0%} (target ≥ 75 %)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs.configure(level="warning")
    run_async(main(args.events, args.concurrency, args.rounds))

"""Delivery throughput of replicas sharing one PostgreSQL outbox, beside a bare loop.

Each replica is a process of its own running poller's dispatcher (claims, compare-and-set
writes, a durable record of every attempt) against one local receiver (a separate
process too). The outbox is filled first; the replicas start together and the clock runs
until every delivery is recorded delivered. Then the figures are checked: every delivery
delivered once, one attempt each.

In the same run and against the same receiver, the ceiling: ``bench.delivery``'s bare
``httpx`` loop POSTing the same signed bodies with the same concurrency (one loop of
``--concurrency`` connections, no bookkeeping). Each row's ratio is all its replicas'
throughput together against that one loop: what the replicas deliver, with every attempt
recorded in a shared outbox, beside what one process's worth of connections can push
through the receiver at all. Replicas have ``--concurrency`` connections each, so more of
them may pass 100 % where the receiver has room to spare.

Usage: ``python -m bench.ha_delivery [--events 5000] [--replicas 1 2 3] [--rounds 3]
[--url URL]``; each round measures the bare loop, then each replica count in turn, and
the medians are compared. The URL (default ``$POLLER_TEST_POSTGRES_URL`` or the local
test database) gets a fresh schema per measurement, dropped afterwards. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from bench.common import ROOT, receiver, row
from bench.delivery import SECRET, bare_loop, make_events
from poller import logs
from poller import store as store_mod
from poller.cli.common import run_async
from poller.delivery.dispatcher import SinkWorker
from poller.diff import DiffResult
from poller.sinks import http as http_sink
from poller.sinks.http import HttpSink
from poller.store import Ledger, Outbox, PollCommit, Store
from poller.testing import free_port

DEFAULT_URL = os.environ.get(
    "POLLER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


async def replica(url: str, hook: str, concurrency: int) -> None:
    """One replica: say ready, wait for the word on stdin, deliver until SIGTERM."""
    engine = store_mod.create_engine(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with http_sink.client(concurrency) as client:  # as the daemon builds it
        sink = HttpSink("hook", hook, client=client, secrets=[SECRET])
        worker = SinkWorker(sink, Outbox(engine), concurrency=concurrency)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await worker.run(stop)
    engine.dispose()


@contextlib.contextmanager
def schema(url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield (
            sa.make_url(url)
            .update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def measure(url: str, hook: str, count: int, replicas: int, concurrency: int) -> tuple[float, int]:
    """(events/s, attempts recorded) of ``replicas`` processes delivering ``count`` events."""
    with schema(url) as store_url:
        engine = store_mod.create_engine(store_url)
        now = dt.datetime.now(dt.UTC)
        Store(engine, lambda _e: ["hook"]).commit_poll(
            PollCommit("w", "batch_jobs", DiffResult(events=tuple(make_events(count))), now),
            active=lambda _r: False,
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "bench.ha_delivery", "--replica", store_url, hook]
        procs = [
            subprocess.Popen(
                [*args, str(concurrency)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(replicas)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            ledger = Ledger(engine)
            started = time.perf_counter()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            while ledger.sink_stats()["hook"].delivered < count:
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
        with engine.connect() as conn:
            attempts = int(conn.scalar(sa.text("SELECT count(*) FROM attempts")) or 0)
        engine.dispose()
    return count / elapsed, attempts


def main(url: str, count: int, replicas: list[int], concurrency: int, rounds: int) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    events = make_events(count)
    bare: list[float] = []
    rates: dict[int, list[float]] = {n: [] for n in replicas}
    with receiver(port):
        run_async(bare_loop(hook, events[: min(500, count)], concurrency))  # warm up
        for _ in range(rounds):  # interleaved, so drift in the machine's load hits all
            bare.append(count / run_async(bare_loop(hook, events, concurrency)))
            for n in replicas:
                rate, attempts = measure(url, hook, count, n, concurrency)
                assert attempts == count, f"{attempts} attempts for {count} deliveries"
                rates[n].append(rate)
    ceiling = statistics.median(bare)
    print(row("replicas", "events", "events/s (median)", "ratio to bare", "rounds"))
    print(row(f"bare httpx loop ({concurrency} connections)", count, f"{ceiling:.0f}", "",
              " ".join(f"{x:.0f}" for x in bare)))  # fmt: skip
    for n in replicas:
        median = statistics.median(rates[n])
        print(row(n, count, f"{median:.0f}", f"{median / ceiling:.0%}",
                  " ".join(f"{x:.0f}" for x in rates[n])))  # fmt: skip
    print(f"every delivery delivered once, one attempt recorded each ({count} per measurement)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--replica":
        logs.configure(level="warning")
        run_async(replica(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    logs.configure(level="warning")
    main(args.url, args.events, args.replicas, args.concurrency, args.rounds)

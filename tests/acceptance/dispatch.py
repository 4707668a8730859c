"""One sink worker in a process of its own, as `poller run` builds it for an HTTP sink:
``python -m tests.acceptance.dispatch STORE_URL HOOK NAME``.

It delivers the outbox's pending deliveries of the sink ``hook`` to ``HOOK`` until SIGTERM
(or a SIGKILL), each request carrying ``x-process: NAME`` so that a receiver tells the
processes apart. Its claims lapse ``CLAIM_TTL`` seconds after it dies.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import sys

import httpx

from poller import logs
from poller import store as store_mod
from poller.cli.common import run_async
from poller.delivery.dispatcher import SinkWorker
from poller.sinks.http import HttpSink
from poller.store import Outbox

SECRET = "whsec_" + base64.b64encode(b"crash-test-secret-of-32-bytes!!!").decode()
CONCURRENCY = 8
WINDOW = 4 * CONCURRENCY
BATCH_SIZE = 64
CLAIM_TTL = 2.0


def worker(sink: HttpSink, outbox: Outbox) -> SinkWorker:
    """The worker of every process: `poller run`'s defaults, but for the claim timeout."""
    return SinkWorker(
        sink,
        outbox,
        concurrency=CONCURRENCY,
        window=WINDOW,
        batch_size=BATCH_SIZE,
        claim_ttl=CLAIM_TTL,
    )


async def main(url: str, hook: str, name: str) -> None:
    engine = store_mod.create_engine(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:
        sink = HttpSink("hook", hook, client=client, secrets=[SECRET], headers={"x-process": name})
        await worker(sink, Outbox(engine)).run(stop)
    engine.dispose()


if __name__ == "__main__":
    logs.configure(level="info", fmt="json")
    run_async(main(*sys.argv[1:4]))

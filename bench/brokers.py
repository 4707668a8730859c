"""Broker sink throughput: events through the outbox to NATS, RabbitMQ, Redis and MQTT
(and the HTTP sink), each beside a bare client loop measured in the same run.

Each sink gets the same events from a fresh SQLite outbox, delivered by the dispatcher
with its default concurrency of 8 and every attempt recorded; a delivery counts once the
broker acknowledged it (JetStream ack, publisher confirm, XADD reply, PUBACK). Beside it,
the same library publishes the same messages with the same acknowledgement and the same
concurrency and nothing else (``bench.bare``; for HTTP, ``bench.delivery``'s httpx loop):
the ceiling. Bare loop and sink alternate, round after round, and the medians are
compared. Every measurement sends events of its own (NATS would drop a resent id).
A last row gives what the outbox and dispatcher allow alone: a sink that acknowledges every
event at once, through the same bookkeeping.

NATS is a ``nats-server -js`` started here; RabbitMQ, Redis and Mosquitto are the local
servers at their default ports (one not running is reported and skipped).

Usage: ``python -m bench.brokers [--events 5000] [--rounds 3]``. Prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence

import httpx

from bench import bare
from bench.common import receiver, row
from bench.delivery import SECRET, bare_loop, deliver_all, make_events
from poller import logs
from poller import store as store_mod
from poller.cli.common import run_async
from poller.diff import DiffResult
from poller.model import Event, Outcome
from poller.sinks import http as http_sink
from poller.sinks.base import Sink
from poller.sinks.http import HttpSink
from poller.store import Outbox, PollCommit, Store
from poller.testing import free_port, wait_port

NAME = f"poller-bench-{uuid.uuid4().hex[:8]}"
"""The exchange, queue, stream and topic of this run (the brokers may be shared)."""
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/0"
CONCURRENCY = 8
Maker = Callable[[], Sink]
Bare = Callable[[list[Event]], Awaitable[float]]
"""Seconds a bare client loop takes to publish the events."""


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


async def through_outbox(sink: Sink, events: list[Event], root: pathlib.Path) -> float:
    """Events per second from the outbox to ``sink``."""
    engine = store_mod.create_engine(f"sqlite:///{root}/bench.db")
    store = Store(engine, lambda _e: [sink.name])
    now = events[0].timestamp
    store.commit_poll(
        PollCommit(events[0].workspace, "batch_jobs", DiffResult(events=tuple(events)), now),
        active=lambda _r: False,
    )
    elapsed = await deliver_all(sink, Outbox(engine), len(events), CONCURRENCY)
    await sink.aclose()
    engine.dispose()
    return len(events) / elapsed


@contextlib.contextmanager
def nats_server(root: pathlib.Path) -> Iterator[int | None]:
    """The port of a ``nats-server -js`` of its own, or None when it is not installed."""
    binary = shutil.which("nats-server")
    if binary is None:
        yield None
        return
    port = free_port()
    args = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(root / "js")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def add_stream(url: str) -> None:
    """A JetStream stream that takes poller's default subjects."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    await nc.jetstream().add_stream(StreamConfig(name="BENCH", subjects=["poller.>"]))
    await nc.close()


class Instant:
    """A batch sink that acknowledges every event at once: what the outbox allows alone."""

    name = "instant"

    async def deliver(self, event: Event) -> Outcome:
        return Outcome(ok=True)

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]:
        return [Outcome(ok=True)] * len(events)

    async def aclose(self) -> None:
        pass


def measured(
    http: httpx.AsyncClient, port: int, nats_port: int | None
) -> dict[str, tuple[Maker, Bare] | None]:
    """Each sink measured and its bare loop; None for a broker that is not running here."""
    from poller.sinks.amqp import AmqpSink
    from poller.sinks.mqtt import MqttSink
    from poller.sinks.nats import NatsSink
    from poller.sinks.redis import RedisSink

    hook_url = f"http://127.0.0.1:{port}/hook"
    nats_url = f"nats://127.0.0.1:{nats_port}"
    topic = f"bench/{NAME}"

    def hook() -> Sink:
        return HttpSink("http", hook_url, client=http, secrets=[SECRET])

    def nats() -> Sink:
        return NatsSink("nats", nats_url, subject="poller.{type}")

    def amqp() -> Sink:
        return AmqpSink("amqp", AMQP, exchange=NAME, routing_key="{type}")

    def redis() -> Sink:
        return RedisSink("redis", REDIS, stream=NAME)

    def mqtt() -> Sink:
        return MqttSink("mqtt", "mqtt://127.0.0.1:1883", topic=topic)

    return {
        "http (signed webhooks)": (hook, lambda ev: bare_loop(hook_url, ev, CONCURRENCY)),
        "nats (JetStream ack)": (
            nats,
            lambda ev: bare.nats(nats_url, "poller.{type}", ev, CONCURRENCY),
        )
        if nats_port
        else None,
        "amqp (publisher confirm)": (
            amqp,
            lambda ev: bare.amqp(AMQP, NAME, "{type}", ev, CONCURRENCY),
        )
        if listening(5672)
        else None,
        "redis (XADD)": (redis, lambda ev: bare.redis(REDIS, NAME, ev, CONCURRENCY))
        if listening(6379)
        else None,
        "mqtt (QoS 1 PUBACK)": (
            mqtt,
            lambda ev: bare.mqtt("127.0.0.1", 1883, topic, ev, CONCURRENCY),
        )
        if listening(1883)
        else None,
    }


async def main(count: int, rounds: int) -> None:
    port = free_port()
    sink_rates: dict[str, list[float]] = {}
    bare_rates: dict[str, list[float]] = {}
    alone: list[float] = []
    fresh = (make_events(count, workspace=f"w{n}") for n in range(1_000_000))
    with (
        receiver(port),
        tempfile.TemporaryDirectory() as tmp,
        nats_server(pathlib.Path(tmp)) as nats_port,
    ):
        if nats_port:
            await add_stream(f"nats://127.0.0.1:{nats_port}")
        if listening(5672):
            await _bind_queue(NAME)
        async with http_sink.client(CONCURRENCY) as http:  # as the daemon builds it
            sinks = measured(http, port, nats_port)
            for n in range(rounds):  # interleaved, so drift in the machine's load hits all
                for name, pair in sinks.items():
                    if pair is None:
                        continue
                    make, loop = pair
                    root = pathlib.Path(tmp) / f"{n}-{name.split()[0]}"
                    root.mkdir()
                    # bare first in even rounds, the sink first in odd ones
                    for turn in (0, 1) if n % 2 == 0 else (1, 0):
                        events = next(fresh)
                        if turn == 0:
                            bare_rates.setdefault(name, []).append(count / await loop(events))
                        else:
                            figure = await through_outbox(make(), events, root)
                            sink_rates.setdefault(name, []).append(figure)
                root = pathlib.Path(tmp) / f"{n}-instant"
                root.mkdir()
                alone.append(await through_outbox(Instant(), next(fresh), root))
        await _clean_up(NAME)
    print(row("sink", "events", "bare loop ev/s", "poller ev/s", "poller / bare", "rounds"))
    for name in sinks:
        figures = sink_rates.get(name)
        if figures is None:
            print(row(name, count, "not measured: broker not running", "", "", ""))
            continue
        ceiling = bare_rates[name]
        ratio = statistics.median(figures) / statistics.median(ceiling)
        shown = f"bare {_figures(ceiling)}; poller {_figures(figures)}"
        print(
            row(
                name,
                count,
                f"{statistics.median(ceiling):.0f}",
                f"{statistics.median(figures):.0f}",
                f"{ratio:.0%}",
                shown,
            )
        )
    print(
        row("outbox alone (a sink acking at once)", count, "", f"{statistics.median(alone):.0f}")
        + f" | | {_figures(alone)}"
    )
    print("target: each broker sink ≥ 60 % of its bare loop")


def _figures(rates: list[float]) -> str:
    return " ".join(f"{x:.0f}" for x in rates)


async def _bind_queue(exchange: str) -> None:
    """A queue that takes everything (mandatory publishes would be returned otherwise)."""
    import aio_pika

    connection = await aio_pika.connect(AMQP)
    channel = await connection.channel()
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exchange, auto_delete=False)
    await queue.bind(declared, "#")
    await connection.close()


async def _clean_up(name: str) -> None:
    if listening(5672):
        import aio_pika

        connection = await aio_pika.connect(AMQP)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
        await connection.close()
    if listening(6379):
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS)
        await client.delete(name)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs.configure(level="warning")
    run_async(main(args.events, args.rounds))

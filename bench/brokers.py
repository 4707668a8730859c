"""Broker sink throughput: events through the outbox to NATS, RabbitMQ, Redis and MQTT,
beside the HTTP sink's figure measured the same way in the same run.

Each sink gets the same events from a fresh SQLite outbox, delivered by the dispatcher
with its default concurrency of 8 and every attempt recorded; a delivery counts once the
broker acknowledged it (JetStream ack, publisher confirm, XADD reply, PUBACK). NATS is a
``nats-server -js`` started here; RabbitMQ, Redis and Mosquitto are the local servers at
their default ports (one not running is reported and skipped).

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
from collections.abc import Callable, Iterator

import httpx

from bench.common import receiver, row
from bench.delivery import SECRET, deliver_all, make_events
from poller import logs
from poller import store as store_mod
from poller.cli.common import run_async
from poller.diff import DiffResult
from poller.model import Event
from poller.sinks.base import Sink
from poller.sinks.http import HttpSink
from poller.store import Outbox, PollCommit, Store
from poller.testing import free_port, wait_port

NAME = f"poller-bench-{uuid.uuid4().hex[:8]}"
"""The exchange, queue, stream and topic of this run (the brokers may be shared)."""
Maker = Callable[[], Sink] | None


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
        PollCommit("w", "batch_jobs", DiffResult(events=tuple(events)), now),
        active=lambda _r: False,
    )
    elapsed = await deliver_all(sink, Outbox(engine), len(events))
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


def makers(http: httpx.AsyncClient, port: int, nats_port: int | None) -> dict[str, Maker]:
    """How to build each sink measured; None for a broker that is not running here."""
    from poller.sinks.amqp import AmqpSink
    from poller.sinks.mqtt import MqttSink
    from poller.sinks.nats import NatsSink
    from poller.sinks.redis import RedisSink

    def hook() -> Sink:
        return HttpSink("http", f"http://127.0.0.1:{port}/hook", client=http, secrets=[SECRET])

    def nats() -> Sink:
        return NatsSink("nats", f"nats://127.0.0.1:{nats_port}", subject="poller.{type}")

    def amqp() -> Sink:
        url = "amqp://guest:guest@127.0.0.1:5672/"
        return AmqpSink("amqp", url, exchange=NAME, routing_key="{type}")

    def redis() -> Sink:
        return RedisSink("redis", "redis://127.0.0.1:6379/0", stream=NAME)

    def mqtt() -> Sink:
        return MqttSink("mqtt", "mqtt://127.0.0.1:1883", topic=f"bench/{NAME}")

    return {
        "http (signed webhooks)": hook,
        "nats (JetStream ack)": nats if nats_port else None,
        "amqp (publisher confirm)": amqp if listening(5672) else None,
        "redis (XADD)": redis if listening(6379) else None,
        "mqtt (QoS 1 PUBACK)": mqtt if listening(1883) else None,
    }


async def main(count: int, rounds: int) -> None:
    events = make_events(count)
    port = free_port()
    results: dict[str, list[float]] = {}
    with (
        receiver(port),
        tempfile.TemporaryDirectory() as tmp,
        nats_server(pathlib.Path(tmp)) as nats_port,
    ):
        if nats_port:
            await add_stream(f"nats://127.0.0.1:{nats_port}")
        if listening(5672):
            await _bind_queue(NAME)
        async with httpx.AsyncClient() as http:
            sinks = makers(http, port, nats_port)
            for n in range(rounds):  # interleaved, so drift in the machine's load hits all
                for name, make in sinks.items():
                    if make is None:
                        continue
                    root = pathlib.Path(tmp) / f"{n}-{name.split()[0]}"
                    root.mkdir()
                    figure = await through_outbox(make(), events, root)
                    results.setdefault(name, []).append(figure)
        await _clean_up(NAME)
    print(row("sink", "events", "events/s (median)", "rounds"))
    for name in sinks:
        figures = results.get(name)
        if figures is None:
            print(row(name, count, "not measured: broker not running", ""))
            continue
        shown = " ".join(f"{x:.0f}" for x in figures)
        print(row(name, count, f"{statistics.median(figures):.0f}", shown))


async def _bind_queue(exchange: str) -> None:
    """A queue that takes everything (mandatory publishes would be returned otherwise)."""
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exchange, auto_delete=False)
    await queue.bind(declared, "#")
    await connection.close()


async def _clean_up(name: str) -> None:
    if listening(5672):
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
        await connection.close()
    if listening(6379):
        import redis.asyncio

        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        await client.delete(name)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs.configure(level="warning")
    run_async(main(args.events, args.rounds))

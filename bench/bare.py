"""Bare client loops: each broker's own client publishing the same messages as poller's sink,
awaiting the same acknowledgement, with the same concurrency — and nothing else.

No outbox, no claims, no records: the ceiling a sink's figure is compared with. Each loop
runs ``concurrency`` workers over one shared queue of events; a worker publishes one
message and awaits its acknowledgement before taking the next (for NATS: ``js.publish`` from
8 tasks). The connection is opened before the clock starts and closed after it stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from poller.model import Event
from poller.sinks import base

Publish = Callable[[Event, bytes, str], Awaitable[object]]


async def workers(events: list[Event], concurrency: int, publish: Publish) -> float:
    """Seconds ``concurrency`` workers take to publish ``events`` through ``publish``."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def work() -> None:
        while not queue.empty():
            event = queue.get_nowait()
            body, content_type = base.render(event, "standard")
            await publish(event, body, content_type)

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(concurrency)))
    return time.perf_counter() - started


async def nats(url: str, subject: str, events: list[Event], concurrency: int) -> float:
    """``js.publish`` awaiting each PubAck, the event id as ``Nats-Msg-Id``."""
    import nats as nats_client

    nc = await nats_client.connect(url)
    js = nc.jetstream()

    async def publish(event: Event, body: bytes, content_type: str) -> object:
        headers = {"Nats-Msg-Id": event.id, "Content-Type": content_type}
        return await js.publish(base.expand(subject, event), body, headers=headers)

    try:
        return await workers(events, concurrency, publish)
    finally:
        await nc.close()


async def amqp(
    url: str, exchange: str, routing_key: str, events: list[Event], concurrency: int
) -> float:
    """Persistent, mandatory publishes on a confirming channel, each awaiting its confirm."""
    import aio_pika

    from poller.sinks.amqp import message

    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    target = await channel.get_exchange(exchange)

    async def publish(event: Event, body: bytes, content_type: str) -> object:
        sent = message(event, body, content_type)  # the sink's own message, properties and all
        return await target.publish(sent, base.expand(routing_key, event), mandatory=True)

    try:
        return await workers(events, concurrency, publish)
    finally:
        await connection.close()


async def redis(url: str, stream: str, events: list[Event], concurrency: int) -> float:
    """``XADD`` awaiting each reply (redis-py's pool: a connection per worker)."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    await client.ping()

    async def publish(event: Event, body: bytes, _content_type: str) -> object:
        return await client.xadd(stream, {"id": event.id, "type": event.type, "event": body})

    try:
        return await workers(events, concurrency, publish)
    finally:
        await client.aclose()


async def mqtt(host: str, port: int, topic: str, events: list[Event], concurrency: int) -> float:
    """QoS 1 publishes (MQTT 5, the sink's properties), each awaiting its PUBACK."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:

        async def publish(event: Event, body: bytes, content_type: str) -> object:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("id", event.id), ("type", event.type)]
            properties.ContentType = content_type
            await client.publish(base.expand(topic, event), body, qos=1, properties=properties)
            return None

        return await workers(events, concurrency, publish)

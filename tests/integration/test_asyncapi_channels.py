"""What each broker really holds after a sink published to it matches the AsyncAPI document.

One signed ``poller.test`` event and one ``batch_job.succeeded`` go through each broker
sink, built as the daemon builds it; the message read back from the broker is checked
against its channel's message in docs/events/asyncapi.json: payload, headers and the
way the event id travels.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from typing import Any

import aio_pika
import nats
import pytest
import redis.asyncio
from nats.js.api import StreamConfig

from poller import catalog, sinkcheck
from poller import config as config_mod
from poller.app import App
from poller.model import Event
from poller.testing import document_problems, event_problems
from tests.integration.brokers import (
    MOSQUITTO,
    RABBITMQ,
    REDIS,
    nats_server,
    require,
    stream_entries,
    unique,
)
from tests.integration.conftest import eventually
from tests.integration.test_sink_mqtt import subscribed

NOW = dt.datetime(2026, 11, 27, 10, 42, 7, 118000, tzinfo=dt.UTC)
SUCCEEDED = Event(
    catalog.event_id("default", "batch_job.succeeded", "job-1"),
    "batch_job.succeeded",
    "default",
    "job-1",
    NOW,
    catalog.payload(
        "batch_job.succeeded",
        {"id": "job-1", "status": "SUCCESS", "output_file": "f-9", "total_requests": 12},
    ),
)


async def publish(sink: dict[str, Any], tmp_path: pathlib.Path) -> list[Event]:
    """Send SUCCEEDED and a poller.test event through the sink, as the daemon would."""
    cfg = config_mod.from_mapping({"store": {"url": f"sqlite:///{tmp_path}/p.db"}, "sinks": [sink]})
    app = App(cfg)
    built = app.build_sink(cfg.sinks[0])
    probe = sinkcheck.probe_event(sink["name"], "default", NOW, unique("n"))
    try:
        for event in (SUCCEEDED, probe):
            outcome = await built.deliver(event)
            assert outcome.ok, outcome.error
    finally:
        await built.aclose()
        await app.aclose()
    return [SUCCEEDED, probe]


@pytest.mark.parametrize("form", ["standard", "cloudevents"])
async def test_nats_messages_match_the_nats_channel(form: str, tmp_path: pathlib.Path) -> None:
    """JetStream holds each event on its subject with Nats-Msg-Id, as the document says."""
    with nats_server(tmp_path) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="POLLER", subjects=["poller.>"]))
            sink = {"name": "bus", "type": "nats", "url": server.url, "format": form}
            events = await publish(sink, tmp_path)
            messages = [await js.get_msg("POLLER", seq) for seq in (1, 2)]
        finally:
            await nc.close()
    assert [m.subject for m in messages] == [
        "poller.batch_job.succeeded",
        "poller.poller.test",
    ]
    for message, event in zip(messages, events, strict=True):
        headers = dict(message.headers or {})
        assert headers["Nats-Msg-Id"] == event.id
        assert message.data is not None
        assert event_problems(headers, message.data, channel="nats") == []


async def test_redis_entries_match_the_redis_channel(tmp_path: pathlib.Path) -> None:
    """A stream entry has the fields id, type and event (the envelope), as documented."""
    require("Redis", REDIS)
    stream = unique("poller-test")
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{REDIS}/0", decode_responses=True)
    try:
        sink = {"name": "stream", "type": "redis", "url": f"redis://127.0.0.1:{REDIS}/0"}
        events = await publish({**sink, "stream": stream}, tmp_path)
        entries = await stream_entries(client, stream)
    finally:
        await client.delete(stream)
        await client.aclose()
    assert [e["id"] for e in entries] == [e.id for e in events]
    for entry in entries:
        assert event_problems({}, json.dumps(entry).encode(), channel="redis") == []
        assert document_problems(json.loads(entry["event"])) == []


async def test_amqp_messages_match_the_amqp_channel(tmp_path: pathlib.Path) -> None:
    """Each event reaches the topic exchange under its routing key with message_id."""
    require("RabbitMQ", RABBITMQ)
    url = f"amqp://guest:guest@127.0.0.1:{RABBITMQ}/"
    exchange = unique("poller-test")
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(declared, "#")
        events = await publish(
            {"name": "bus", "type": "amqp", "url": url, "exchange": exchange}, tmp_path
        )
        messages = [await queue.get(no_ack=True) for _ in events]
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()
    assert [(m.routing_key, m.message_id) for m in messages] == [
        ("batch_job.succeeded", events[0].id),
        ("poller.test", events[1].id),
    ]
    for message in messages:
        headers = {"content-type": message.content_type or ""}
        assert event_problems(headers, message.body, channel="amqp") == []


async def test_mqtt_messages_match_the_mqtt_channel(tmp_path: pathlib.Path) -> None:
    """Each event is published on poller/{resource}/{action}, its body the envelope."""
    require("Mosquitto", MOSQUITTO)
    async with subscribed("poller/+/+") as subscriber:
        sink = {"name": "topic", "type": "mqtt", "url": f"mqtt://127.0.0.1:{MOSQUITTO}"}
        events = await publish(sink, tmp_path)
        ids = {e.id for e in events}
        await eventually(lambda: len(subscriber.of(ids)) >= 2)
    mine = subscriber.of({events[1].id}) + subscriber.of({events[0].id})[:1]
    assert sorted(str(m.topic) for m in mine) == [
        "poller/batch_job/succeeded",
        "poller/poller/test",
    ]
    for message in mine:
        properties = dict(getattr(message.properties, "UserProperty", []))
        assert properties["id"] == json.loads(bytes(message.payload))["id"]
        assert event_problems(properties, bytes(message.payload), channel="mqtt") == []

"""``deliver_many`` of the broker sinks against real brokers: one outcome per event, in order.

Each broker: a batch all taken is all ok, each message held once; a batch with one message
the broker refuses has that one refused and the others delivered; a broker gone fails every
message as a failing sink (not a refusal).
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import aio_pika
import aio_pika.abc
import nats
import pytest
import redis.asyncio
from nats.js.api import StreamConfig

from poller.diff import event_for
from poller.model import Event, Outcome
from poller.sinks.amqp import AmqpSink
from poller.sinks.base import batching
from poller.sinks.broker import BrokerSink
from poller.sinks.mqtt import MqttSink
from poller.sinks.nats import NatsSink
from poller.sinks.redacted import RedactedBatch, redacted
from poller.sinks.redis import RedisSink
from poller.sources import BATCH_JOBS
from tests.integration.broker_fixtures import AMQP_URL, REDIS_URL, queue_for
from tests.integration.brokers import (
    MOSQUITTO,
    RABBITMQ,
    REDIS,
    NatsServer,
    mosquitto,
    nats_server,
    relay,
    require,
    stream_entries,
    unique,
)

LAST_ID = "18446744073709551615-18446744073709551614"
"""A stream's top entry id one short of the last possible: one more entry fits, no second."""


def jobs(count: int) -> list[Event]:
    """The succeeded events of jobs job-0000, job-0001, …, each in a workspace of its own
    (w0, w1, …) so that a ``{workspace}`` template sends each somewhere else."""
    now = dt.datetime.now(dt.UTC)
    events = []
    for n in range(count):
        job = BATCH_JOBS.to_resource(
            {"id": f"job-{n:04d}", "status": "SUCCESS", "created_at": n, "model": "m"}
        )
        events.append(event_for(BATCH_JOBS, "batch_job.succeeded", job, workspace=f"w{n}", now=now))
    return events


def failing_sink(outcomes: list[Outcome]) -> bool:
    """Every outcome a failure of the sink (its circuit would open), none a refusal."""
    return all(not o.ok and not o.rejected and o.error for o in outcomes)


async def batch(sink: BrokerSink[Any], events: list[Event]) -> list[Outcome]:
    try:
        return await sink.deliver_many(events)
    finally:
        await sink.aclose()


# -- NATS JetStream ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as running:
        yield running


async def held(url: str, stream: str) -> list[str]:
    """The Nats-Msg-Id of every message ``stream`` holds, oldest first."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        count = (await js.stream_info(stream)).state.messages
        messages = [await js.get_msg(stream, seq) for seq in range(1, count + 1)]
        return [m.headers["Nats-Msg-Id"] for m in messages if m.headers]
    finally:
        await nc.close()


async def add_stream(url: str, *subjects: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(StreamConfig(name="JOBS", subjects=list(subjects)))
    await nc.close()


async def test_nats_batch_is_stored_once_each_in_order(server: NatsServer) -> None:
    """A NATS batch: every outcome ok on its PubAck, the stream holding each event once."""
    await add_stream(server.url, "jobs.>")
    events = jobs(20)
    sink = NatsSink("bus", server.url, subject="jobs.{workspace}")
    outcomes = await sink.deliver_many(events)
    again = await batch(sink, events[:5])  # a resend inside the duplicate window
    assert [o.ok for o in outcomes] == [True] * 20
    assert all(o.detail and o.detail.startswith("stored by stream JOBS") for o in outcomes)
    assert all(o.ok and o.detail and "a duplicate it already had" in o.detail for o in again)
    assert await held(server.url, "JOBS") == [e.id for e in events]


async def test_nats_subject_no_stream_takes_is_refused_alone(server: NatsServer) -> None:
    """A NATS batch with one subject no stream takes: that message refused, the others ok."""
    await add_stream(server.url, "jobs.w0", "jobs.w2")
    events = jobs(3)
    outcomes = await batch(NatsSink("bus", server.url, subject="jobs.{workspace}"), events)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].rejected
    assert outcomes[1].error and "no JetStream stream takes subject 'jobs.w1'" in (
        outcomes[1].error
    )
    assert await held(server.url, "JOBS") == [events[0].id, events[2].id]


async def test_nats_gone_fails_every_message_of_a_batch(server: NatsServer) -> None:
    """A NATS server cut off after a first batch: every message of the next one failing."""
    await add_stream(server.url, "jobs.>")
    async with relay(server.port) as cut:
        sink = NatsSink(
            "bus", f"nats://127.0.0.1:{cut.port}", subject="jobs.{workspace}", timeout=5
        )
        first = await sink.deliver_many(jobs(2))
        await cut.stop()
        outcomes = await batch(sink, jobs(4))
    assert all(o.ok for o in first)
    assert len(outcomes) == 4 and failing_sink(outcomes)


# -- RabbitMQ ------------------------------------------------------------------------------


async def message_ids(queue: aio_pika.abc.AbstractQueue) -> list[str | None]:
    ids = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        ids.append(message.message_id)
    return ids


async def test_amqp_batch_is_confirmed_once_each_in_order(
    channel: aio_pika.abc.AbstractChannel, exchange: str
) -> None:
    """An AMQP batch: every outcome ok on its confirm, the queue holding each event once."""
    queue = await queue_for(channel, exchange, "#")
    events = jobs(20)
    outcomes = await batch(AmqpSink("bus", AMQP_URL, exchange=exchange, routing_key="j"), events)
    assert [o.ok for o in outcomes] == [True] * 20
    assert await message_ids(queue) == [e.id for e in events]


async def test_amqp_unroutable_message_is_refused_alone(
    channel: aio_pika.abc.AbstractChannel, exchange: str
) -> None:
    """An AMQP batch with one message no queue takes: it comes back refused, the others ok."""
    queue = await queue_for(channel, exchange, "w0", "w2")
    events = jobs(3)
    sink = AmqpSink("bus", AMQP_URL, exchange=exchange, routing_key="{workspace}")
    outcomes = await batch(sink, events)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].rejected and outcomes[1].error
    assert "312 NO_ROUTE" in outcomes[1].error and "'w1'" in outcomes[1].error
    assert await message_ids(queue) == [events[0].id, events[2].id]


async def test_amqp_gone_fails_every_message_of_a_batch(
    channel: aio_pika.abc.AbstractChannel, exchange: str
) -> None:
    """RabbitMQ cut off after a first batch: every message of the next one failing."""
    await queue_for(channel, exchange, "#")
    async with relay(RABBITMQ) as cut:
        url = f"amqp://guest:guest@127.0.0.1:{cut.port}/"
        sink = AmqpSink("bus", url, exchange=exchange, routing_key="j", timeout=5)
        first = await sink.deliver_many(jobs(2))
        await cut.stop()
        outcomes = await batch(sink, jobs(4))
    assert all(o.ok for o in first)
    assert len(outcomes) == 4 and failing_sink(outcomes)


# -- Redis ---------------------------------------------------------------------------------


async def test_redis_batch_is_added_once_each_in_order(
    client: redis.asyncio.Redis, stream: str
) -> None:
    """A Redis batch (one pipeline): every outcome ok on its XADD reply, each entry once."""
    events = jobs(20)
    outcomes = await batch(RedisSink("bus", REDIS_URL, stream=stream), events)
    assert [o.ok for o in outcomes] == [True] * 20
    assert all(o.detail and o.detail.startswith(f"added to stream {stream}") for o in outcomes)
    assert [e["id"] for e in await stream_entries(client, stream)] == [e.id for e in events]


async def test_redis_xadd_refused_in_a_batch_is_refused_alone(
    client: redis.asyncio.Redis, stream: str
) -> None:
    """A Redis batch whose second XADD the stream cannot take: it alone is refused."""
    await client.xadd(stream, {"id": "first"})
    # room for one more entry, no second
    await client.execute_command("XSETID", stream, LAST_ID)  # type: ignore[no-untyped-call]
    events = jobs(2)
    outcomes = await batch(RedisSink("bus", REDIS_URL, stream=stream), events)
    assert [o.ok for o in outcomes] == [True, False]
    assert outcomes[1].rejected and outcomes[1].error
    assert outcomes[1].error.startswith(f"Redis refused XADD to '{stream}'")
    entries = await stream_entries(client, stream)
    assert [e["id"] for e in entries] == ["first", events[0].id]


async def test_redis_gone_fails_every_message_of_a_batch(stream: str) -> None:
    """Redis cut off after a first batch: every message of the next one failing."""
    async with relay(REDIS) as cut:
        sink = RedisSink("bus", f"redis://127.0.0.1:{cut.port}/0", stream=stream, timeout=5)
        first = await sink.deliver_many(jobs(2))
        await cut.stop()
        outcomes = await batch(sink, jobs(4))
    assert all(o.ok for o in first)
    assert len(outcomes) == 4 and failing_sink(outcomes)


# -- MQTT and the wrapper ------------------------------------------------------------------


async def test_mqtt_batch_is_acknowledged_each_but_not_pipelined() -> None:
    """MQTT: deliver_many gives one PUBACKed outcome per event; the dispatcher sends singles."""
    require("Mosquitto", MOSQUITTO)
    sink = MqttSink("bus", f"mqtt://127.0.0.1:{MOSQUITTO}", topic=unique("poller-test"))
    outcomes = await batch(sink, jobs(5))
    assert [(o.ok, o.detail) for o in outcomes] == [(True, "PUBACK")] * 5
    assert batching(sink) is None


async def test_mqtt_topic_the_broker_denies_is_refused_alone(tmp_path: pathlib.Path) -> None:
    """An MQTT batch with one topic the ACL denies: that message refused (0x87), others ok."""
    with mosquitto(tmp_path, "topic readwrite jobs/w0\ntopic readwrite jobs/w2\n") as port:
        sink = MqttSink("bus", f"mqtt://127.0.0.1:{port}", topic="jobs/{workspace}")
        outcomes = await batch(sink, jobs(3))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].rejected and outcomes[1].error
    assert "refused the message on 'jobs/w1'" in outcomes[1].error


async def test_mqtt_gone_fails_every_message_of_a_batch() -> None:
    """Mosquitto cut off after a first batch: every message of the next one failing."""
    require("Mosquitto", MOSQUITTO)
    async with relay(MOSQUITTO) as cut:
        url = f"mqtt://127.0.0.1:{cut.port}"
        sink = MqttSink("bus", url, topic=unique("poller-test"), timeout=5)
        first = await sink.deliver_many(jobs(2))
        await cut.stop()
        outcomes = await batch(sink, jobs(4))
    assert all(o.ok for o in first)
    assert len(outcomes) == 4 and failing_sink(outcomes)


async def test_redacted_passes_batches_through_scrubbed(server: NatsServer) -> None:
    """A redacted batch sink stays one: each outcome of deliver_many scrubbed."""
    await add_stream(server.url, "jobs.w0")
    inner = NatsSink("bus", server.url, subject="jobs.{workspace}")
    wrapped = redacted(inner, lambda text: text.replace("jobs.w1", "[redacted]"))
    assert isinstance(wrapped, RedactedBatch) and batching(wrapped) is wrapped
    try:
        outcomes = await wrapped.deliver_many(jobs(2))
    finally:
        await wrapped.aclose()
    assert outcomes[0].ok and outcomes[1].rejected
    assert outcomes[1].error and "[redacted]" in outcomes[1].error
    assert "jobs.w1" not in outcomes[1].error
    assert json.dumps([o.error for o in outcomes]).count("[redacted]") == 1

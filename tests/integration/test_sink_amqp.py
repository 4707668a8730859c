"""The ``amqp`` sink through the dispatcher, against the machine's RabbitMQ."""

from __future__ import annotations

import datetime as dt
import gc
import json
import pathlib

import aio_pika
import aio_pika.abc

from poller.app import App
from poller.sinkcheck import probe_event
from poller.sinks.amqp import AmqpSink
from tests.integration.broker_fixtures import AMQP_URL as URL
from tests.integration.broker_fixtures import queue_for
from tests.integration.brokers import (
    RABBITMQ,
    delivered,
    load,
    record,
    refused,
    relay,
    require,
    ride_out_an_outage,
    run_until,
    write_config,
)


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        messages.append(message)
    return messages


async def test_event_is_published_persistent_with_its_id_and_confirmed(
    channel: aio_pika.abc.AbstractChannel, exchange: str, tmp_path: pathlib.Path
) -> None:
    """A recorded event reaches the queue: message_id, persistent, type, timestamp, key."""
    queue = await queue_for(channel, exchange, "#")
    sink = {"name": "bus", "type": "amqp", "url": URL, "exchange": exchange}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    async with App(load(path)) as app:
        events = record(app, 2)
        await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 4)
    messages = await drain(queue)
    assert sorted(m.message_id or "" for m in messages) == sorted(e.id for e in events)
    first = next(m for m in messages if m.message_id == events[0].id)
    assert first.routing_key == "batch_job.created"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.type == "batch_job.created"
    assert first.content_type == "application/json"
    assert first.timestamp == events[0].timestamp.replace(microsecond=0).astimezone(dt.UTC)
    assert json.loads(first.body)["id"] == events[0].id


async def test_absent_exchange_is_declared_and_unroutable_is_a_refusal(
    channel: aio_pika.abc.AbstractChannel, exchange: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """The sink declares a durable topic exchange; a message no queue takes is refused."""
    sink = {"name": "bus", "type": "amqp", "url": URL, "exchange": exchange}
    path = write_config(tmp_path / "p.yaml", store_url, sink)
    async with App(load(path)) as app:
        assert "312 NO_ROUTE" in await refused(app, "bus", path)
    # declaring it again as a durable topic exchange succeeds only if that is what it is
    await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)


async def test_broker_away_opens_the_circuit_and_nothing_is_lost(
    channel: aio_pika.abc.AbstractChannel, exchange: str, tmp_path: pathlib.Path
) -> None:
    """Broker cut off: the circuit opens; back: every event is published, over a new link."""
    queue = await queue_for(channel, exchange, "#")
    async with relay(RABBITMQ) as cut:
        url = f"amqp://guest:guest@127.0.0.1:{cut.port}/"
        sink = {"name": "bus", "type": "amqp", "url": url, "exchange": exchange}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = await ride_out_an_outage(app, "bus", cut.stop, cut.start)
    messages = await drain(queue)
    assert sorted(m.message_id or "" for m in messages) == sorted(e.id for e in events)


async def test_refused_login_leaves_no_connection_open() -> None:
    """A broker refusing the login: the half-made connection is closed, none is left behind."""
    require("RabbitMQ", RABBITMQ)
    sink = AmqpSink(
        "bus", f"amqp://guest:wrong@127.0.0.1:{RABBITMQ}/", exchange="x", routing_key="k"
    )
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    outcome = await sink.deliver(probe_event("bus", "default", when, "n"))
    assert not outcome.ok and "ACCESS_REFUSED" in (outcome.error or "")
    gc.collect()
    # an unclosed one would be closed by its finalizer, which warns outside the event loop
    assert [
        c for c in gc.get_objects() if isinstance(c, aio_pika.Connection) and not c.is_closed
    ] == []

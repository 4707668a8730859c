"""The ``mqtt`` sink through the dispatcher, against the machine's Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import pathlib
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from poller.app import App
from poller.sinkcheck import probe_event
from poller.sinks.mqtt import MqttSink
from tests.integration.brokers import (
    MOSQUITTO,
    delivered,
    load,
    mosquitto,
    record,
    refused,
    relay,
    require,
    ride_out_an_outage,
    run_until,
    unique,
    write_config,
)
from tests.integration.conftest import eventually

URL = f"mqtt://127.0.0.1:{MOSQUITTO}"


class Subscriber:
    """Every message published under ``topic`` while it listens."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.messages: list[aiomqtt.Message] = []

    async def listen(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", MOSQUITTO, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(self.topic, qos=1)
            ready.set()
            async for message in client.messages:
                self.messages.append(message)

    def of(self, ids: set[str]) -> list[aiomqtt.Message]:
        """Those that carry one of ``ids`` (others may publish on a shared broker)."""
        return [m for m in self.messages if json.loads(bytes(m.payload))["id"] in ids]


@contextlib.asynccontextmanager
async def subscribed(topic: str) -> AsyncIterator[Subscriber]:
    require("Mosquitto", MOSQUITTO)
    subscriber = Subscriber(topic)
    ready = asyncio.Event()
    task = asyncio.create_task(subscriber.listen(ready))
    await asyncio.wait([task, asyncio.ensure_future(ready.wait())], return_when="FIRST_COMPLETED")
    try:
        yield subscriber
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_event_is_published_on_the_default_topic_with_its_id(tmp_path: pathlib.Path) -> None:
    """A recorded event arrives on poller/<resource>/<action>, id as an MQTT 5 user property."""
    async with subscribed("poller/#") as sub:
        sink = {"name": "bus", "type": "mqtt", "url": URL}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = record(app, 2)
            await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 4)
        ids = {e.id for e in events}
        await eventually(lambda: len(sub.of(ids)) == 4)
    first = next(m for m in sub.of(ids) if json.loads(m.payload)["id"] == events[0].id)
    assert first.topic.value == "poller/batch_job/created"
    assert first.qos == 1
    assert first.properties is not None
    # paho sets MQTT v5 properties as attributes named after them, which its types do not know
    assert ("id", events[0].id) in first.properties.UserProperty  # type: ignore[attr-defined]
    assert first.properties.ContentType == "application/json"  # type: ignore[attr-defined]


async def test_qos_2_and_topic_template(tmp_path: pathlib.Path) -> None:
    """qos: 2 is used end to end; the topic template takes {workspace} and {type}."""
    prefix = unique("poller-test")
    async with subscribed(f"{prefix}/#") as sub:
        sink = {
            "name": "bus",
            "type": "mqtt",
            "url": URL,
            "qos": 2,
            "topic": prefix + "/{workspace}/{type}",
        }
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = record(app, 1)
            await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 2)
        await eventually(lambda: len(sub.messages) == 2)
    topics = sorted(m.topic.value for m in sub.messages)
    assert topics == [
        f"{prefix}/default/batch_job.created",
        f"{prefix}/default/batch_job.succeeded",
    ]
    assert {json.loads(m.payload)["id"] for m in sub.messages} == {e.id for e in events}


async def test_broker_away_opens_the_circuit_and_nothing_is_lost(tmp_path: pathlib.Path) -> None:
    """Broker cut off: the circuit opens; back: every event is published after a reconnect."""
    prefix = unique("poller-test")
    async with subscribed(f"{prefix}/#") as sub, relay(MOSQUITTO) as cut:
        url = f"mqtt://127.0.0.1:{cut.port}"
        sink = {"name": "bus", "type": "mqtt", "url": url, "topic": prefix + "/{type}"}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = await ride_out_an_outage(app, "bus", cut.stop, cut.start)
        ids = {e.id for e in events}
        await eventually(lambda: {json.loads(m.payload)["id"] for m in sub.messages} == ids)


def mqtt_311_only(connect: bytes) -> bytes | None:
    """A broker that speaks MQTT 3.1.1 only: an MQTT 5 CONNECT gets CONNACK 0x01
    (unacceptable protocol version); anything else goes on to Mosquitto."""
    level = connect[connect.index(b"MQTT") + 4]
    return bytes([0x20, 0x02, 0x00, 0x01]) if level == 5 else None


async def test_a_broker_without_mqtt_5_is_spoken_to_in_3_1_1(tmp_path: pathlib.Path) -> None:
    """MQTT 5 refused at CONNECT: the sink speaks 3.1.1 (no properties) and delivers."""
    prefix = unique("poller-test")
    async with subscribed(f"{prefix}/#") as sub, relay(MOSQUITTO, mqtt_311_only) as old:
        url = f"mqtt://127.0.0.1:{old.port}"
        sink = {"name": "bus", "type": "mqtt", "url": url, "topic": prefix + "/{type}"}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = record(app, 1)
            await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 2)
        await eventually(lambda: len(sub.messages) == 2)
    assert {json.loads(m.payload)["id"] for m in sub.messages} == {e.id for e in events}
    assert all(not getattr(m.properties, "UserProperty", None) for m in sub.messages)


async def test_a_message_the_broker_refuses_is_a_refusal_in_its_words(
    tmp_path: pathlib.Path,
) -> None:
    """A PUBACK with reason code 0x87 (an ACL denies the topic): refused, not delivered."""
    with mosquitto(tmp_path, "topic readwrite allowed/#\n") as port:
        sink = {"name": "bus", "type": "mqtt", "url": f"mqtt://127.0.0.1:{port}"}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            shown = await refused(app, "bus", path)
    assert "the broker refused the message on 'poller/batch_job/created': Not authorized" in shown
    assert "(reason code 0x87)" in shown


class Silent:
    """A TCP listener on 127.0.0.1 that accepts and never answers: a broker that hangs.

    ``open`` counts the connections whose client has not closed them yet.
    """

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Silent:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        self._writers.add(writer)
        try:
            while await reader.read(65536):  # read the CONNECT, answer nothing, until EOF
                pass
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()


async def test_a_connect_that_times_out_leaves_no_socket_and_no_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that accepts TCP and never answers: each timed-out connect is closed, whole."""
    attempts = 5
    async with Silent() as broker:
        sink = MqttSink("bus", f"mqtt://127.0.0.1:{broker.port}", topic="t", timeout=0.2)
        when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
        for n in range(attempts):
            outcome = await sink.deliver(probe_event("bus", "default", when, str(n)))
            assert not outcome.ok and "no answer from the broker within 0.2s" in (
                outcome.error or ""
            )
        await sink.aclose()
        await eventually(lambda: broker.open == 0, limit=10)
        assert broker.accepted == attempts
    await eventually(lambda: asyncio.all_tasks() == {asyncio.current_task()}, limit=10)
    gc.collect()
    await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []

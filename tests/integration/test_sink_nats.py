"""The ``nats`` sink through the dispatcher, against a real ``nats-server -js`` of its own."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from click.testing import CliRunner
from nats.js.api import DiscardPolicy, RawStreamMsg, StreamConfig

from poller.app import App
from poller.cli import main
from tests.integration.brokers import (
    NatsServer,
    attempt_errors,
    delivered,
    load,
    nats_server,
    record,
    refused,
    ride_out_an_outage,
    run_until,
    write_config,
)


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as running:
        yield running


async def stored(url: str, stream: str) -> list[RawStreamMsg]:
    """Every message ``stream`` holds, oldest first."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        count = (await js.stream_info(stream)).state.messages
        return [await js.get_msg(stream, seq) for seq in range(1, count + 1)] if count else []
    finally:
        await nc.close()


@pytest.fixture
async def stream(server: NatsServer) -> AsyncIterator[str]:
    """A stream that takes poller's default subjects."""
    nc = await nats.connect(server.url)
    await nc.jetstream().add_stream(StreamConfig(name="POLLER", subjects=["poller.>"]))
    await nc.close()
    yield "POLLER"


async def test_event_is_stored_by_jetstream_under_its_id(
    server: NatsServer, stream: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """A recorded event reaches JetStream on poller.<resource>.<action> with Nats-Msg-Id."""
    path = write_config(
        tmp_path / "p.yaml", store_url, {"name": "bus", "type": "nats", "url": server.url}
    )
    async with App(load(path)) as app:
        events = record(app, 2)
        await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 4)
    messages = await stored(server.url, stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages if m.headers] == [e.id for e in events]
    first = messages[0]
    assert first.subject == "poller.batch_job.created"
    assert first.headers is not None and first.headers["Content-Type"] == "application/json"
    assert first.data is not None
    body = json.loads(first.data)
    assert set(body) == {"id", "type", "timestamp", "workspace", "data"}
    assert body["id"] == events[0].id and body["type"] == "batch_job.created"
    assert body["workspace"] == "default" and body["data"]["id"] == "job-0000"


async def test_a_resend_inside_the_duplicate_window_is_stored_once(
    server: NatsServer, stream: str, tmp_path: pathlib.Path
) -> None:
    """Delivering one event twice leaves one message: the server drops the repeat by id."""
    sink = {"name": "bus", "type": "nats", "url": server.url}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    async with App(load(path)) as app:
        event = record(app, 1)[0]
        first = await app.sinks["bus"].deliver(event)
        second = await app.sinks["bus"].deliver(event)
    assert first.ok and second.ok
    assert first.detail == "stored by stream POLLER as message 1"
    assert second.detail == "stored by stream POLLER as message 1, a duplicate it already had"
    assert len(await stored(server.url, stream)) == 1


async def test_server_down_opens_the_circuit_and_nothing_is_lost(
    server: NatsServer, stream: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """Killed server: the circuit opens; restarted: every event lands, each stored once."""
    path = write_config(
        tmp_path / "p.yaml", store_url, {"name": "bus", "type": "nats", "url": server.url}
    )

    async def kill() -> None:
        server.stop()

    async def restart() -> None:
        server.start()  # on the same port, with the same store directory

    async with App(load(path)) as app:
        events = await ride_out_an_outage(app, "bus", kill, restart)
    ids = [m.headers["Nats-Msg-Id"] for m in await stored(server.url, stream) if m.headers]
    assert sorted(ids) == sorted(e.id for e in events)


async def test_no_responders_while_jetstream_is_not_up_opens_the_circuit(
    server: NatsServer, stream: str, tmp_path: pathlib.Path
) -> None:
    """A server back without JetStream yet: no responders is the broker away, not a refusal."""
    sink = {"name": "bus", "type": "nats", "url": server.url}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)

    async def back_without_jetstream() -> None:
        server.stop()
        server.start(jetstream=False)

    async def jetstream_up() -> None:
        server.stop()
        server.start()

    async with App(load(path)) as app:
        events = await ride_out_an_outage(app, "bus", back_without_jetstream, jetstream_up)
        errors = attempt_errors(app, events)
    ids = [m.headers["Nats-Msg-Id"] for m in await stored(server.url, stream) if m.headers]
    assert sorted(ids) == sorted(e.id for e in events)
    assert any(e.startswith("JetStream is not answering (no responders to ") for e in errors)


async def test_subject_no_stream_takes_is_a_refusal_shown_by_events_show(
    server: NatsServer, stream: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """No stream covers the subject: a refusal, the circuit stays closed, events show says so."""
    sink = {"name": "bus", "type": "nats", "url": server.url, "subject": "elsewhere.{type}"}
    path = write_config(tmp_path / "p.yaml", store_url, sink)
    async with App(load(path)) as app:
        shown = await refused(app, "bus", path)
    assert "no JetStream stream takes subject 'elsewhere.batch_job.created'" in shown


async def test_filters_and_cloudevents(
    server: NatsServer, stream: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """events/workspaces filters pick what is sent; format: cloudevents sends CloudEvents 1.0."""
    sink = {
        "name": "bus",
        "type": "nats",
        "url": server.url,
        "events": ["batch_job.succeeded"],
        "workspaces": ["default"],
        "format": "cloudevents",
        "subject": "poller.{workspace}.{type}",
    }
    path = write_config(tmp_path / "p.yaml", store_url, sink)
    async with App(load(path)) as app:
        events = record(app, 2)
        await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 2)
    messages = await stored(server.url, stream)
    assert [m.subject for m in messages] == ["poller.default.batch_job.succeeded"] * 2
    assert messages[0].data is not None
    doc = json.loads(messages[0].data)
    assert doc["specversion"] == "1.0" and doc["id"] == events[2].id
    assert doc["source"] == "poller/default" and doc["subject"] == "job-0000"
    assert messages[0].headers is not None
    assert messages[0].headers["Content-Type"] == "application/cloudevents+json"


async def test_sinks_test_publishes_one_event_and_prints_the_stream_answer(
    server: NatsServer, stream: str, tmp_path: pathlib.Path
) -> None:
    """`poller sinks test` publishes one poller.test event and prints JetStream's answer."""
    sink = {"name": "bus", "type": "nats", "url": server.url}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    args = ["sinks", "test", "bus", "--config", str(path)]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)  # it runs its own loop
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]  # after any log lines
    assert line.startswith("sink bus: poller.test ")
    assert line.endswith(": stored by stream POLLER as message 1")
    [message] = await stored(server.url, stream)
    assert message.subject == "poller.poller.test"


async def test_a_full_stream_refuses_in_jetstream_words(
    server: NatsServer, tmp_path: pathlib.Path
) -> None:
    """A stream that discards new messages when full: JetStream's refusal reaches events show."""
    nc = await nats.connect(server.url)
    config = StreamConfig(name="SMALL", subjects=["small.>"], max_msgs=1, discard=DiscardPolicy.NEW)
    js = nc.jetstream()
    await js.add_stream(config)
    await js.publish("small.filler", b"{}")  # the one message it can hold
    await nc.close()
    sink = {"name": "bus", "type": "nats", "url": server.url, "subject": "small.{type}"}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    async with App(load(path)) as app:
        shown = await refused(app, "bus", path)
    assert "JetStream refused the message on 'small.batch_job.created': maximum messages" in shown

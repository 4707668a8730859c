"""`poller run` with an AMQP sink whose connection is cut: what reaches standard error."""

from __future__ import annotations

import asyncio
import inspect
import json
import pathlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import aio_pika.abc
import pytest

from poller.simulator import Simulator, SimulatorServer
from tests.integration.brokers import RABBITMQ, relay, require, unique

from .conftest import spawn

# what RabbitMQ sends each client as it shuts down (pamqp's Connection.Close, marshalled)
FORCED = (
    b"\x01\x00\x00\x00\x00\x00T\x00\n\x002\x01@ICONNECTION_FORCED - broker forced "
    b"connection closure with reason shutdown\x00\x00\x00\x00\xce"
)


@pytest.fixture
async def queue() -> AsyncIterator[tuple[str, aio_pika.abc.AbstractQueue]]:
    """An exchange of its own with a queue bound to every routing key; both deleted after."""
    require("RabbitMQ", RABBITMQ)
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{RABBITMQ}/")
    channel = await connection.channel()
    name = unique("poller-test")
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC)
    bound = await channel.declare_queue(name, exclusive=True)
    await bound.bind(exchange, "#")
    try:
        yield name, bound
    finally:
        await exchange.delete()
        await connection.close()


async def until(check: Callable[[], Any], limit: float = 30.0) -> None:
    """Wait, the event loop running (the relay lives in it), until ``check()`` holds
    (awaited, if it gives an awaitable)."""
    async with asyncio.timeout(limit):
        while True:
            found = check()
            if await found if inspect.isawaitable(found) else found:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("level", "farewell"),
    [("info", b""), ("info", FORCED), ("debug", FORCED)],
    ids=["cut-info", "shutdown-info", "shutdown-debug"],
)
async def test_a_cut_connection_is_reported_by_poller_alone_and_stopped_ends_the_log(
    queue: tuple[str, aio_pika.abc.AbstractQueue],
    tmp_path: pathlib.Path,
    level: str,
    farewell: bytes,
) -> None:
    """RabbitMQ cut off or shut down, then back: poller reconnects; aio-pika's error and
    traceback are debug lines; nothing follows stopped."""
    exchange, bound = queue
    received: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def delivered(count: int) -> bool:
        while (message := await bound.get(no_ack=True, fail=False)) is not None:
            received.append(message)
        return len(received) >= count

    sim = Simulator(seed=4)
    with SimulatorServer(sim) as server:
        async with relay(RABBITMQ) as cut:
            config = tmp_path / "poller.yaml"
            config.write_text(
                f"mistral:\n  base_url: {server.url}\n"
                f"store:\n  url: sqlite:///{tmp_path / 'p.db'}\n"
                "poll:\n  interval: 200ms\n  active_interval: 200ms\n"
                "sources:\n  fine_tuning_jobs: false\n  files: false\n  models: false\n"
                "sinks:\n  - name: bus\n    type: amqp\n"
                f"    url: amqp://guest:guest@127.0.0.1:{cut.port}/\n"
                f"    exchange: {exchange}\n"
                "    retry:\n      schedule: [0, 100ms, 200ms]\n      probe_interval: 200ms\n"
                f"log:\n  level: {level}\n  format: json\n"
            )
            log = tmp_path / "run.log"
            daemon = spawn(["run", "--config", str(config)], log)
            try:
                await until(lambda: "baseline_recorded" in log.read_text())
                sim.create_batch_job()
                await until(lambda: delivered(1))
                await cut.stop(farewell)  # every connection through it ends, as in a restart
                await cut.start()
                sim.create_batch_job()
                await until(lambda: delivered(2))
            finally:
                daemon.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(daemon.wait, 30)
    assert code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    library = [x for x in lines if str(x.get("logger", "")).startswith(("aio_pika", "aiormq"))]
    if level == "info":
        assert library == []
    else:
        assert library and {x["level"] for x in library} == {"debug"}
        assert any("Traceback" in x.get("exception", "") for x in library)
    assert [x["event"] for x in lines if x.get("logger") == "asyncio"] == []
    assert lines[-1]["event"] == "stopped"
    assert [x["event"] for x in lines if x["event"] == "sink_connected"] == ["sink_connected"] * 2

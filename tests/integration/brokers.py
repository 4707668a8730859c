"""Helpers of the broker sink tests: real brokers on 127.0.0.1, a relay to cut them off.

RabbitMQ, Redis and Mosquitto are the machine's own servers at their default ports (other
test runs use them at the same time, so every test names its own exchange, stream or
topic); NATS is a ``nats-server -js`` each test starts on a free port with its own store.
A broker that is not there skips its tests, or fails them where ``POLLER_REQUIRE_BROKERS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner

from poller import config as config_mod
from poller.app import App
from poller.cli import main
from poller.delivery.dispatcher import SinkWorker
from poller.diff import DiffResult, event_for
from poller.model import Event
from poller.sources import BATCH_JOBS
from poller.store import PollCommit
from poller.testing import free_port, wait_port

if TYPE_CHECKING:
    import redis.asyncio

RABBITMQ = 5672
REDIS = 6379
MOSQUITTO = 1883
FAST_RETRY = {"schedule": ["0", "0.1s", "0.2s", "0.2s", "0.2s"], "probe_interval": "0.2s"}


def require(name: str, port: int) -> None:
    """Skip (or fail, where brokers are required) unless something listens on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at 127.0.0.1:{port}: {exc}"
    if os.environ.get("POLLER_REQUIRE_BROKERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def unique(prefix: str) -> str:
    """A name no other test run uses: ``prefix`` and random hex."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def installed(name: str, *where: str) -> str:
    """The path of the program ``name`` (looked for in ``where`` too); the test is skipped
    without it (failed, where brokers are required)."""
    binary = shutil.which(name) or next(
        filter(None, (shutil.which(name, path=p) for p in where)), None
    )
    if binary is None:
        message = f"{name} is not installed"
        if os.environ.get("POLLER_REQUIRE_BROKERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return binary


@contextlib.contextmanager
def serving(args: list[str], port: int) -> Iterator[int]:
    """``args`` run as a server for the block, once it listens on ``port``; that port."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        process.kill()
        process.wait()


class NatsServer:
    """A ``nats-server`` with JetStream on a free port, stopped and started again at will.

    Its store directory outlives a restart, as a real server's does.
    """

    def __init__(self, store_dir: pathlib.Path) -> None:
        self.binary = installed("nats-server")
        self.store_dir = store_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, jetstream: bool = True) -> None:
        """Start on the port; without ``jetstream`` as a server whose JetStream is not up."""
        args = [
            self.binary,
            *(["-js"] if jetstream else []),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            [*args, "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextlib.contextmanager
def nats_server(tmp_path: pathlib.Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mosquitto(tmp_path: pathlib.Path, acl: str) -> Iterator[int]:
    """A Mosquitto of its own on a free port, anonymous clients limited by ``acl``; its port."""
    binary = installed("mosquitto", "/usr/sbin")
    port = free_port()
    (tmp_path / "acl").write_text(acl)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"acl_file {tmp_path / 'acl'}\n"
        # started as root it would become the mosquitto user, who cannot read tmp_path
        f"user {getpass.getuser()}\n"
    )
    with serving([binary, "-c", str(conf)], port):
        yield port


@contextlib.contextmanager
def redis_server(folder: pathlib.Path, *options: str) -> Iterator[int]:
    """A ``redis-server`` of its own on a free port, working in ``folder``; its port.

    For states the machine's shared Redis must not be put in (a failed snapshot, too few
    replicas). ``options`` are added to its command line, e.g. ``--min-replicas-to-write 1``.
    """
    binary = installed("redis-server")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with serving([binary, *args, "--dir", str(folder), *options], port):
        yield port


class Relay:
    """A TCP relay from a port of its own to a broker: ``stop`` cuts every connection and
    refuses new ones, as a broker that went away does; ``start`` brings it back."""

    def __init__(
        self, target_port: int, answer_first: Callable[[bytes], bytes | None] | None = None
    ) -> None:
        self.target_port = target_port
        self.answer_first = answer_first
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, farewell: bytes = b"") -> None:
        """Cut every connection; ``farewell`` goes to each client first, as the broker's
        own last words (e.g. AMQP's Connection.Close of a broker shutting down)."""
        if self._server is not None:
            self._server.close()
            for client in list(self._clients) if farewell else ():
                client.write(farewell)
                with contextlib.suppress(ConnectionError):
                    await client.drain()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = b""
        if self.answer_first is not None:
            # a broker of another kind: it may answer the client's first packet itself
            first = await reader.read(65536)
            answer = self.answer_first(first)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
                writer.transport.abort()
                return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        self._clients.add(writer)
        up_writer.write(first)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            self._clients.discard(writer)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def relay(
    target_port: int, answer_first: Callable[[bytes], bytes | None] | None = None
) -> AsyncIterator[Relay]:
    running = Relay(target_port, answer_first)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def stream_entries(client: redis.asyncio.Redis, stream: str) -> list[dict[str, str]]:
    """The fields of every entry of the Redis stream ``stream``, oldest first, as text."""
    found = await client.xrange(stream)
    assert found is not None
    return [{_text(k): _text(v) for k, v in (fields or {}).items()} for _id, fields in found]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def write_config(path: pathlib.Path, store_url: str, *sinks: dict[str, Any]) -> pathlib.Path:
    """A config file with the given sinks (fast retries) and no API calls made by the tests."""
    data = {
        "mistral": {"base_url": "http://127.0.0.1:9"},
        "store": {"url": store_url},
        "sinks": [{"retry": FAST_RETRY, "timeout": "5s", **sink} for sink in sinks],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def record(app: App, count: int, *, start: int = 0) -> list[Event]:
    """Commit ``count`` jobs' created and succeeded events, as a poll would."""
    now = dt.datetime.now(dt.UTC)
    events: list[Event] = []
    for status, kind in (("QUEUED", "batch_job.created"), ("SUCCESS", "batch_job.succeeded")):
        for n in range(start, start + count):
            job = BATCH_JOBS.to_resource(
                {
                    "id": f"job-{n:04d}",
                    "status": status,
                    "created_at": n,
                    "model": "m",
                    "output_file": None,
                    "total_requests": 1,
                }
            )
            events.append(event_for(BATCH_JOBS, kind, job, workspace="default", now=now))
    app.store.commit_poll(
        PollCommit("default", "batch_jobs", DiffResult(events=tuple(events)), now),
        active=lambda r: False,
    )
    app.notify()
    return events


async def run_until(worker: SinkWorker, condition: Callable[[], bool], limit: float = 20) -> None:
    """Run ``worker`` until ``condition()`` holds (checked between its steps)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, grace=2))
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    try:
        while not condition():
            if loop.time() > end or task.done():
                raise TimeoutError("condition not met")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def delivered(app: App, sink: str) -> int:
    stats = app.ledger.sink_stats().get(sink)
    return stats.delivered if stats else 0


def events_show(config: pathlib.Path, event_id: str) -> str:
    """What ``poller events show`` prints for ``event_id``."""
    result = CliRunner().invoke(main, ["events", "show", event_id, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def load(path: pathlib.Path) -> config_mod.Config:
    return config_mod.load(path)


async def ride_out_an_outage(
    app: App,
    sink: str,
    cut_off: Callable[[], Awaitable[None]],
    restore: Callable[[], Awaitable[None]],
) -> list[Event]:
    """Deliver two jobs' events, cut the broker off and record two more: the circuit opens
    and nothing more is delivered; restore it: all eight are delivered. The events."""
    worker = app.workers[sink]
    events = record(app, 2)
    await run_until(worker, lambda: delivered(app, sink) == 4)
    await cut_off()
    events += record(app, 2, start=2)
    await run_until(worker, lambda: worker.state.circuit_open)
    assert delivered(app, sink) == 4
    await restore()
    await run_until(worker, lambda: delivered(app, sink) == 8)
    return events


def attempt_errors(app: App, events: list[Event]) -> set[str]:
    """The errors of every failed attempt to deliver ``events`` (to their first sink)."""
    errors: set[str] = set()
    for event in events:
        detail = app.ledger.event_detail(event.id)
        assert detail is not None
        errors.update(a["error"] for a in detail["deliveries"][0]["log"] if a["error"])
    return errors


async def refused(app: App, sink: str, config: pathlib.Path) -> str:
    """Record one event, run until its first attempt is logged, and check that it was a
    refusal (the circuit stayed closed); what ``poller events show`` then prints."""
    worker = app.workers[sink]
    event = record(app, 1)[0]

    def logged() -> bool:
        detail = app.ledger.event_detail(event.id)
        return detail is not None and bool(detail["deliveries"][0]["log"])

    await run_until(worker, logged)
    assert not worker.state.circuit_open
    return events_show(config, event.id)

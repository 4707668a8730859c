"""The ``redis`` sink through the dispatcher, against the machine's Redis."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest
import redis.asyncio

from poller.app import App
from tests.integration.broker_fixtures import REDIS_URL as URL
from tests.integration.brokers import (
    REDIS,
    attempt_errors,
    delivered,
    load,
    record,
    redis_server,
    refused,
    relay,
    ride_out_an_outage,
    run_until,
    stream_entries,
    unique,
    write_config,
)


async def test_event_is_appended_with_id_type_and_envelope(
    client: redis.asyncio.Redis, stream: str, tmp_path: pathlib.Path
) -> None:
    """A recorded event becomes a stream entry with the fields id, type and event."""
    sink = {"name": "bus", "type": "redis", "url": URL, "stream": stream}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    async with App(load(path)) as app:
        events = record(app, 2)
        await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 4)
    entries = await stream_entries(client, stream)
    assert sorted(e["id"] for e in entries) == sorted(e.id for e in events)
    assert all(set(e) == {"id", "type", "event"} for e in entries)
    first = next(e for e in entries if e["id"] == events[0].id)
    assert first["type"] == "batch_job.created"
    body = json.loads(first["event"])
    assert set(body) == {"id", "type", "timestamp", "workspace", "data"}
    assert body["id"] == events[0].id and body["type"] == "batch_job.created"
    assert body["workspace"] == "default" and body["data"]["id"] == "job-0000"


async def test_maxlen_trims_the_stream(
    client: redis.asyncio.Redis, stream: str, tmp_path: pathlib.Path
) -> None:
    """maxlen keeps the stream near that many entries (approximate trimming)."""
    sink = {"name": "bus", "type": "redis", "url": URL, "stream": stream, "maxlen": 10}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
    async with App(load(path)) as app:
        record(app, 150)
        await run_until(app.workers["bus"], lambda: delivered(app, "bus") == 300)
    # whole nodes (100 entries by default) are trimmed: without maxlen it would hold 300
    assert await client.xlen(stream) < 200


async def test_wrong_type_key_is_a_refusal_in_redis_words(
    client: redis.asyncio.Redis, stream: str, tmp_path: pathlib.Path, store_url: str
) -> None:
    """XADD to a key that is not a stream: refused, circuit closed, events show has WRONGTYPE."""
    await client.set(stream, "not a stream")
    sink = {"name": "bus", "type": "redis", "url": URL, "stream": stream}
    path = write_config(tmp_path / "p.yaml", store_url, sink)
    async with App(load(path)) as app:
        assert "WRONGTYPE" in await refused(app, "bus", path)


async def test_server_away_opens_the_circuit_and_nothing_is_lost(
    client: redis.asyncio.Redis, stream: str, tmp_path: pathlib.Path
) -> None:
    """Redis cut off: the circuit opens; back: every event is appended."""
    async with relay(REDIS) as cut:
        url = f"redis://127.0.0.1:{cut.port}/0"
        sink = {"name": "bus", "type": "redis", "url": url, "stream": stream}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = await ride_out_an_outage(app, "bus", cut.stop, cut.start)
    ids = sorted(e["id"] for e in await stream_entries(client, stream))
    assert ids == sorted(e.id for e in events)


async def test_connection_is_kept_and_closed_when_a_reload_drops_the_sink(
    client: redis.asyncio.Redis, stream: str, tmp_path: pathlib.Path
) -> None:
    """Deliveries share the sink's kept connection; removing the sink (a reload) closes it."""
    name = unique("bus")
    sink = {"name": name, "type": "redis", "url": URL, "stream": stream}
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)

    async def connections() -> int:
        return sum(c["name"] == f"poller-{name}" for c in await client.client_list())

    async with App(load(path)) as app:
        record(app, 20)
        await run_until(app.workers[name], lambda: delivered(app, name) == 40)
        assert 1 <= await connections() <= 8  # at most one per delivery in flight
        await app.remove_sink(name)
        assert await connections() == 0


class Trouble:
    """Puts a Redis of its own into a state where it writes nothing, and takes it out."""

    def __init__(self, port: int, folder: pathlib.Path, kind: str) -> None:
        self.client = redis.asyncio.Redis(port=port)
        self.folder = folder
        self.kind = kind

    async def start(self) -> None:
        if self.kind == "NOREPLICAS":  # writes need a replica, and there is none
            await self.client.config_set("min-replicas-to-write", 1)
            return
        # MISCONF: a snapshot fails (its folder is gone) while writes stop on that (Redis
        # stops them only where snapshots are scheduled)
        await self.client.config_set("save", "3600 1")
        await self.client.config_set("stop-writes-on-bgsave-error", "yes")
        self.folder.rmdir()
        await self.snapshot("err")

    async def stop(self) -> None:
        if self.kind == "NOREPLICAS":
            await self.client.config_set("min-replicas-to-write", 0)
        else:
            self.folder.mkdir()
            await self.client.config_set("dir", str(self.folder))
            await self.snapshot("ok")
        await self.client.aclose()

    async def snapshot(self, status: str) -> None:
        """Take a snapshot in the background and wait until it ends with ``status``."""
        await self.client.bgsave()
        async with asyncio.timeout(20):
            while True:
                info = await self.client.info("persistence")
                if not info["rdb_bgsave_in_progress"] and info["rdb_last_bgsave_status"] == status:
                    return
                await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["MISCONF", "NOREPLICAS"])
async def test_a_server_that_cannot_write_is_away_not_a_refusal(
    kind: str, tmp_path: pathlib.Path
) -> None:
    """MISCONF (a failed snapshot) or NOREPLICAS: the circuit opens; lifted: all delivered."""
    with redis_server(tmp_path / "data", "--enable-protected-configs", "yes") as port:
        trouble = Trouble(port, tmp_path / "data", kind)
        url = f"redis://127.0.0.1:{port}/0"
        sink = {"name": "bus", "type": "redis", "url": url, "stream": "events"}
        path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", sink)
        async with App(load(path)) as app:
            events = await ride_out_an_outage(app, "bus", trouble.start, trouble.stop)
            failed = attempt_errors(app, events)
        async with redis.asyncio.Redis(port=port) as client:
            entries = await stream_entries(client, "events")
    assert sorted(e["id"] for e in entries) == sorted(e.id for e in events)
    assert failed and all(f.startswith(f"Redis cannot write now: {kind} ") for f in failed)

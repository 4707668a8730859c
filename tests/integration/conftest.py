"""Integration fixtures: the built-in simulator and a webhook receiver, both on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from poller import config as config_mod
from poller import store as store_mod
from poller.simulator import Simulator, SimulatorServer
from poller.store import dbtime
from poller.store.rows import DELIVERIES
from poller.testing import WebhookReceiver

from .broker_fixtures import channel, client, exchange, stream  # noqa: F401  (fixtures)
from .worlds import World

SECRET = "whsec_" + base64.b64encode(b"integration-secret-32-bytes-long").decode()


async def eventually(check: Callable[[], object], limit: float = 20.0) -> None:
    """Wait (the loop runs on) until ``check()`` holds; ``TimeoutError`` after ``limit``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not check():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def store_now(engine: sa.Engine) -> dt.datetime:
    """The store's clock: PostgreSQL's, or on SQLite this host's."""
    with engine.connect() as conn:
        return dbtime.read(conn)


def rewind(
    engine: sa.Engine,
    column: str,
    seconds: float,
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    """Move ``column`` of deliveries (``where``) ``seconds`` into the past: that much time
    went by for them (a claim's deadline passes, a delivery grows old) without waiting."""
    d = DELIVERIES
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(d.c.id, d.c[column]).where(sa.true() if where is None else where)
        ).all()
        for row in rows:
            if row[1] is not None:
                by = dt.timedelta(seconds=seconds)
                conn.execute(d.update().where(d.c.id == row.id).values({column: row[1] - by}))


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh store of each backend, its schema made."""
    engine = store_mod.create_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=7)


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[World]:
    """A simulator on a hand-driven clock and pollers over it, on each store backend."""
    w = World(store_url)
    yield w
    await w.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def store_file(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/poller.db"


def make_config(
    api_url: str, hook_url: str | None, store_url: str, **sections: Any
) -> config_mod.Config:
    """A config for the simulator and (optionally) one signed http sink, fast intervals."""
    data: dict[str, Any] = {
        "store": {"url": store_url},
        "poll": {
            "interval": "1s",
            "active_interval": "0.2s",
            "reconcile_interval": "1h",
            **sections.pop("poll", {}),
        },
        "sinks": [],
        "log": {"level": "debug"},
    }
    if "workspaces" not in sections:
        data["mistral"] = {"base_url": api_url, **sections.pop("mistral", {})}
    if hook_url is None:
        data["sinks"].append({"name": "console", "type": "log"})
    else:
        data["sinks"].append(
            {
                "name": "hook",
                "type": "http",
                "url": hook_url,
                "secret": SECRET,
                "retry": {
                    "schedule": ["0.1s", "0.2s", "0.5s", "1s"],
                    "probe_interval": "0.2s",
                },
            }
        )
    data.update(sections)
    return config_mod.from_mapping(data)

"""Whose calls the proxy records: the workspace whose ``api_key`` a call carries, no one else's.

httpx → the proxy → the simulator, which takes any key (so a stranger's call succeeds
upstream), events in SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog

from poller import config as config_mod
from poller.app import App
from poller.proxy.server import ProxyService
from poller.simulator import Simulator, SimulatorServer
from poller.testing import free_port

from .conftest import make_config

KEY_A = "sk-a-workspace-key-0123456789"
KEY_B = "sk-b-workspace-key-9876543210"
STRANGER = "sk-stranger-key-5555555555"
OTHER = "sk-other-stranger-4444444444"
CHAT = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hi"}]}
EMBED = {"model": "mistral-embed", "input": "x"}
BATCH = {"model": "mistral-small-latest", "endpoint": "/v1/chat/completions", "requests": [
    {"custom_id": "1", "body": {"messages": [{"role": "user", "content": "Hi"}]}}
]}  # fmt: skip


def two_workspaces(api_url: str, store_url: str, **proxy: Any) -> config_mod.Config:
    """Workspaces ``a`` and ``b`` on one API, each with its key; the proxy's is ``a``."""
    workspaces = [
        {"name": "a", "base_url": api_url, "api_key": KEY_A},
        {"name": "b", "base_url": api_url, "api_key": KEY_B},
    ]
    listen = f"127.0.0.1:{free_port()}"
    return make_config(
        api_url,
        None,
        store_url,
        workspaces=workspaces,
        proxy={"listen": listen, "workspace": "a", **proxy},
    )


@contextlib.asynccontextmanager
async def proxied(config: config_mod.Config) -> AsyncIterator[tuple[App, str]]:
    """The proxy of ``config`` serving; leaving waits for the records still pending."""
    async with App(config) as app:
        (service,) = (s for s in app.services if isinstance(s, ProxyService))
        stop = asyncio.Event()
        serving = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.ready.wait(), 10)
        try:
            yield app, service.url
        finally:
            stop.set()
            await serving


async def post(url: str, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        return await http.post(f"{url}/v1{path}", json=body)


def unattributed(app: App, kind: str) -> float | None:
    metric = "poller_proxy_unattributed_calls_total"
    return app.metrics.registry.get_sample_value(metric, {"kind": kind})


async def test_each_call_is_recorded_under_the_workspace_of_its_key(
    server: SimulatorServer, store_file: str
) -> None:
    """Two workspaces, two keys: a's call is a's event, b's is b's, whatever proxy.workspace."""
    async with proxied(two_workspaces(server.url, store_file)) as (app, url):
        with structlog.testing.capture_logs() as logs:
            by_b = await post(url, "/chat/completions", CHAT, KEY_B)
            by_a = await post(url, "/embeddings", EMBED, KEY_A)
    assert (by_a.status_code, by_b.status_code) == (200, 200)
    recorded = sorted((e.type, e.workspace, e.resource_id) for e in app.ledger.events())
    assert recorded == [
        ("chat_completion.created", "b", by_b.json()["id"]),
        ("embeddings.generated", "a", by_a.json()["id"]),
    ]
    assert not [x for x in logs if x["event"] == "proxy_key_unknown"]
    assert (unattributed(app, "trigger"), unattributed(app, "hint")) == (0, 0)


async def test_a_stranger_s_calls_record_nothing_and_are_named_once_per_key(
    server: SimulatorServer, store_file: str
) -> None:
    """Keys of no workspace: nothing recorded, one line per key fingerprint, every call counted."""
    async with proxied(two_workspaces(server.url, store_file)) as (app, url):
        with structlog.testing.capture_logs() as logs:
            answers = [
                await post(url, "/chat/completions", CHAT, STRANGER),
                await post(url, "/chat/completions", CHAT, STRANGER),
                await post(url, "/embeddings", EMBED, OTHER),
                await post(url, "/batch/jobs", BATCH, STRANGER),
                await post(url, "/embeddings", EMBED, KEY_A),
            ]
    assert [a.status_code for a in answers] == [200] * 5
    assert [(e.type, e.workspace) for e in app.ledger.events()] == [("embeddings.generated", "a")]
    named = [
        (x["log_level"], x["key_fingerprint"], x["path"])
        for x in logs
        if x["event"] == "proxy_key_unknown"
    ]
    assert named == [
        ("warning", "sha256:0d6d46d5", "/chat/completions"),
        ("warning", "sha256:0e48faf5", "/embeddings"),
    ]
    assert (unattributed(app, "trigger"), unattributed(app, "hint")) == (3, 1)
    dumped = json.dumps(logs, default=str)
    for key in (STRANGER, OTHER, KEY_A):
        assert key[3:11] not in dumped


async def test_a_stranger_s_call_the_api_refuses_is_neither_counted_nor_named(
    store_file: str,
) -> None:
    """A key the API answers 401 records nothing, and is no unattributed call."""
    with SimulatorServer(Simulator(seed=2, api_key=KEY_A)) as server:
        async with proxied(two_workspaces(server.url, store_file)) as (app, url):
            with structlog.testing.capture_logs() as logs:
                refused = await post(url, "/chat/completions", CHAT, STRANGER)
    assert refused.status_code == 401
    assert app.ledger.events() == []
    assert not [x for x in logs if x["event"] == "proxy_key_unknown"]
    assert unattributed(app, "trigger") == 0


async def test_with_inject_key_every_call_is_the_proxy_workspace_s(
    server: SimulatorServer, store_file: str
) -> None:
    """inject_key: calls carry the local token, the proxy adds a's key: they are a's events."""
    token = "local-token-0123456789"
    config = two_workspaces(server.url, store_file, inject_key=True, token=token)
    async with proxied(config) as (app, url):
        answer = await post(url, "/chat/completions", CHAT, token)
    assert answer.status_code == 200
    recorded = [(e.type, e.workspace) for e in app.ledger.events()]
    assert recorded == [("chat_completion.created", "a")]
    assert unattributed(app, "trigger") == 0

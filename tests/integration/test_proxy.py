"""The recording proxy over real HTTP: the official SDK → proxy → simulator, events in SQLite."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
import tenacity
from standardwebhooks.webhooks import Webhook

from poller import config as config_mod
from poller import serving, synchronous
from poller.app import App
from poller.config.models import SOURCE_NAMES
from poller.exceptions import ConfigError
from poller.proxy.recorder import Recorder
from poller.proxy.server import ProxyService
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.simulator.app import build_app
from poller.testing import WebhookReceiver, free_port
from tests.calls import embeddings_call

from .conftest import SECRET, eventually, make_config

sdk = pytest.importorskip("mistralai.client")

WORKSPACE_KEY = "sk-workspace-key-0123456789"
TOKEN = "local-proxy-token-9876543210"
KEYED = {"Authorization": f"Bearer {WORKSPACE_KEY}"}
"""What a client of the workspace sends: calls with its key are recorded as its own."""
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


def proxy_config(api_url: str, store_url: str, **proxy: Any) -> config_mod.Config:
    mistral = proxy.pop("mistral", {})
    return config_mod.from_mapping(
        {
            "mistral": {"base_url": api_url, "api_key": WORKSPACE_KEY, **mistral},
            "store": {"url": store_url},
            "sources": dict.fromkeys(SOURCE_NAMES, False),
            "sinks": [{"name": "jsonl", "type": "file", "path": "/dev/null"}],
            "proxy": {"listen": f"127.0.0.1:{free_port()}", **proxy},
            "log": {"level": "debug"},
        }
    )


class Running:
    """The proxy of one ``App`` serving in the test's event loop."""

    def __init__(self, app: App, service: ProxyService) -> None:
        self.app = app
        self.service = service
        self.url = service.url

    async def settled(self, recorded: int | None = None) -> None:
        """Wait until no record is pending (and ``recorded`` events were written)."""
        recorder = self.service.app.recorder
        await eventually(
            lambda: not recorder.pending and (recorded is None or recorder.recorded >= recorded)
        )

    def events(self, event_type: str = "*") -> list[dict[str, Any]]:
        rows = self.app.ledger.list_deliveries(event_type=event_type, limit=1000)
        found = [self.app.ledger.event_detail(r["id"]) for r in rows]
        return [d["event"] for d in found if d is not None]


Start = Callable[..., Any]


@pytest.fixture
async def start(server: SimulatorServer, store_file: str) -> AsyncIterator[Callable[..., Any]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None], App]] = []

    async def start(api_url: str | None = None, **proxy: Any) -> Running:
        config = proxy_config(api_url or server.url, store_file, **proxy)
        app = App(config)
        await app.__aenter__()
        service = app.services[0]
        assert isinstance(service, ProxyService)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        stops.append((stop, task, app))
        await asyncio.wait_for(service.ready.wait(), 5)
        return Running(app, service)

    yield start
    for stop, task, app in stops:
        stop.set()
        await task
        await app.aclose()


Client = Callable[..., Any]


@pytest.fixture
async def mistral() -> AsyncIterator[Client]:
    """Official SDK clients for a server URL; their connections are closed afterwards."""
    made: list[Any] = []

    def mistral(url: str, key: str = WORKSPACE_KEY) -> Any:
        made.append(sdk.Mistral(api_key=key, server_url=url))
        return made[-1]

    yield mistral
    for client in made:
        await client.__aexit__(None, None, None)
        client.__exit__(None, None, None)


def comparable(answer: Any) -> dict[str, Any]:
    doc: dict[str, Any] = answer.model_dump()
    doc.pop("id")
    doc.pop("created", None)
    return doc


async def test_sdk_chat_through_proxy_is_as_direct(
    mistral: Client, start: Start, server: SimulatorServer
) -> None:
    """The SDK's chat completion through the proxy equals the direct one; one event records it."""
    proxy = await start()
    via = await mistral(proxy.url).chat.complete_async(model="mistral-small-latest", messages=HELLO)
    direct = await mistral(server.root).chat.complete_async(
        model="mistral-small-latest", messages=HELLO
    )
    assert comparable(via) == comparable(direct)
    await proxy.settled(1)
    (event,) = proxy.events()
    assert event["type"] == "chat_completion.created"
    assert event["data"] == {
        "id": via.id,
        "model": "mistral-small-latest",
        "content": via.choices[0].message.content,
        "usage_total_tokens": via.usage.total_tokens,
        "finish_reason": "stop",
    }


async def test_sdk_stream_through_proxy_is_as_direct(
    mistral: Client, start: Start, server: SimulatorServer
) -> None:
    """Streaming through the proxy yields the same chunks; the event holds the assembled answer."""

    async def chunks(url: str) -> list[Any]:
        events = await mistral(url).chat.stream_async(model="mistral-small-latest", messages=HELLO)
        return [e.data async for e in events]

    proxy = await start()
    via, direct = await chunks(proxy.url), await chunks(server.root)
    assert [c.choices[0].delta.content for c in via] == [c.choices[0].delta.content for c in direct]
    assert via[-1].usage is not None and via[-1].usage == direct[-1].usage
    await proxy.settled(1)
    (event,) = proxy.events()
    assert event["data"] == {
        "id": via[0].id,
        "model": "mistral-small-latest",
        "content": "".join(str(c.choices[0].delta.content or "") for c in via),
        "usage_total_tokens": via[-1].usage.total_tokens,
        "finish_reason": "stop",
    }


async def test_sdk_fim_agents_embeddings_ocr_are_recorded(mistral: Client, start: Start) -> None:
    """FIM, agent, embeddings and OCR calls through the SDK each record their trigger once."""
    proxy = await start()
    client = mistral(proxy.url)
    fim = await client.fim.complete_async(model="codestral-latest", prompt="def f(", suffix="")
    agent = await client.agents.complete_async(agent_id="ag_01", messages=HELLO)
    emb = await client.embeddings.create_async(model="mistral-embed", inputs=["a", "b", "c"])
    ocr = await client.ocr.process_async(
        model="mistral-ocr-latest",
        document={"type": "document_url", "document_url": "https://example.com/a.pdf"},
    )
    await proxy.settled(4)
    data = {e["type"]: e["data"] for e in proxy.events()}
    assert data["fim_completion.created"] == {
        "id": fim.id,
        "model": "codestral-latest",
        "text": fim.choices[0].message.content,
        "usage_completion_tokens": fim.usage.completion_tokens,
        "finish_reason": "stop",
    }
    assert data["agent_completion.created"]["id"] == agent.id
    assert data["agent_completion.created"]["content"] == agent.choices[0].message.content
    assert data["embeddings.generated"] == {
        "model": "mistral-embed",
        "object": "list",
        "usage_prompt_tokens": emb.usage.prompt_tokens,
        "count": 3,
        "dimension": 1024,
    }
    assert data["ocr.completed"] == {
        "model": "mistral-ocr-latest",
        "pages_processed": ocr.usage_info.pages_processed,
        "doc_size_bytes": ocr.usage_info.doc_size_bytes,
    }


async def test_other_v1_calls_pass_through_unrecorded(mistral: Client, start: Start) -> None:
    """A call outside the five (model list) is forwarded and records nothing."""
    proxy = await start()
    models = await mistral(proxy.url).models.list_async()
    assert {m.id for m in models.data} >= {"mistral-small-latest", "mistral-embed"}
    await proxy.settled()
    assert proxy.events() == []


async def test_upstream_error_relayed_unchanged(start: Start, server: SimulatorServer) -> None:
    """An upstream 4xx reaches the client byte for byte and records nothing."""
    proxy = await start()
    body = {"model": "mistral-nope", "messages": HELLO}
    async with httpx.AsyncClient(headers=KEYED) as http:
        via = await http.post(f"{proxy.url}/v1/chat/completions", json=body)
        direct = await http.post(f"{server.url}/chat/completions", json=body)
    assert (via.status_code, via.content) == (direct.status_code, direct.content) != (200, b"")
    await proxy.settled()
    assert proxy.events() == []


async def test_upstream_5xx_fault_relayed(
    start: Start, sim: Simulator, server: SimulatorServer
) -> None:
    """A 503 with Retry-After from upstream is relayed with its header, unrecorded."""
    proxy = await start()
    sim.add_fault(kind="status", status=503, headers={"Retry-After": "2"}, match={"path": "/v1/e"})
    async with httpx.AsyncClient(headers=KEYED) as http:
        answer = await http.post(
            f"{proxy.url}/v1/embeddings", json={"model": "mistral-embed", "input": "x"}
        )
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    await proxy.settled()
    assert proxy.events() == []


async def test_unreachable_upstream_is_502_in_mistral_shape(start: Start) -> None:
    """A connection failure upstream answers 502 with Mistral's error object."""
    proxy = await start(api_url=f"http://127.0.0.1:{free_port()}/v1")
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{proxy.url}/v1/chat/completions", json={"model": "m"})
    assert answer.status_code == 502
    error = answer.json()
    assert error["object"] == "error" and set(error) == {
        "object",
        "message",
        "type",
        "param",
        "code",
    }
    assert "cannot be reached" in error["message"]


async def test_no_accept_encoding_asks_upstream_for_none(
    start: Start, receiver: WebhookReceiver
) -> None:
    """A client that sends no Accept-Encoding is not answered compressed on its behalf."""
    proxy = await start(api_url=f"{receiver.url}/v1")
    async with httpx.AsyncClient() as http:
        del http.headers["accept-encoding"]
        answer = await http.get(f"{proxy.url}/v1/models")
    assert answer.status_code == 200
    assert receiver.delivered()[-1].headers.get("accept-encoding") == "identity"


async def test_slow_upstream_is_504(start: Start, sim: Simulator) -> None:
    """An upstream that does not answer within read_timeout gives 504."""
    proxy = await start(read_timeout="0.2s")
    sim.add_fault(kind="delay", seconds=1.0, match={"path": "/v1/chat"})
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "mistral-small-latest", "messages": HELLO},
        )
    assert answer.status_code == 504
    assert answer.json()["type"] == "api_error"


async def test_hangup_mid_stream_closes_upstream_records_nothing(
    start: Start, sim: Simulator
) -> None:
    """A client leaving mid-stream ends the upstream stream too, and no event is recorded."""
    proxy = await start()
    sim.inference.token_delay = 0.05
    body = {"model": "mistral-small-latest", "messages": HELLO, "stream": True}
    async with httpx.AsyncClient(headers=KEYED) as http:
        async with http.stream("POST", f"{proxy.url}/v1/chat/completions", json=body) as answer:
            first = await anext(answer.aiter_raw())
            assert first.startswith(b"data: ")
    await eventually(lambda: sim.inference.as_dict()["streams"]["cancelled"] == 1)
    assert sim.inference.as_dict()["streams"] == {"started": 1, "completed": 0, "cancelled": 1}
    await asyncio.sleep(0.2)
    await proxy.settled()
    assert proxy.events() == []


@pytest.mark.parametrize(
    ("headers", "status", "path"),
    [({"Host": "evil.example.com:8787"}, 403, "/v1/models"),
     ({"Origin": "http://127.0.0.1:3000"}, 403, "/v1/models"),
     ({"Sec-Fetch-Site": "cross-site"}, 403, "/v1/models"),
     ({}, 404, "/v2/models"),
     ({}, 404, "/")],
)  # fmt: skip
async def test_refusals_are_mistral_errors(
    start: Start, sim: Simulator, headers: dict[str, str], status: int, path: str
) -> None:
    """Foreign Hosts, browser requests and paths outside /v1 are refused, never forwarded."""
    proxy = await start()
    sim.reset_stats()
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{proxy.url}{path}", headers=headers)
    assert answer.status_code == status
    assert answer.json()["object"] == "error" and "poller proxy" in answer.json()["message"]
    assert sim.stats()["total"] == 0


@pytest.fixture
async def noted(sim: Simulator) -> AsyncIterator[tuple[str, list[str]]]:
    """The simulator served over HTTP behind a layer noting every path asked of it."""
    paths: list[str] = []
    app = build_app(sim)

    async def noting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await app(scope, receive, send)

    sock = serving.listen_socket(("127.0.0.1", 0), backlog=16)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        serving.serve(serving.Server(serving.config(noting), ready.set), sock, stop)
    )
    await asyncio.wait_for(ready.wait(), 5)
    yield f"http://127.0.0.1:{port}/v1", paths
    stop.set()
    await task


async def raw_get(url: str, target: str, key: str = WORKSPACE_KEY) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client normalizes it): (status, body)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        f"{key}\r\nConnection: close\r\n\r\n".encode("latin-1")
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


ESCAPES = [
    "/v1/../_sim",
    "/v1/%2e%2e/_sim",
    "/v1/%2E%2E/_sim/stats",
    "/v1/.%2e/_sim",
    "/v1/models/../../_sim",
    "/v1/..%2f_sim",
    "/v1/..%2F_sim",
    "/v1/%2e%2e%2f_sim",
    "/v1/%252e%252e/_sim",
    "/v1/..%252f_sim",
    "/v1/..\\_sim",
    "/v1/..%5c_sim",
    "/v1/./models",
    "/v1/models/a%2F..%2F..%2F_sim",
]


@pytest.mark.parametrize("target", ESCAPES)
async def test_a_path_that_could_leave_v1_is_refused_before_upstream(
    target: str, start: Start, noted: tuple[str, list[str]]
) -> None:
    """Dot segments, encoded dots and slashes, double encoding, backslashes: 400, nothing sent."""
    upstream, paths = noted
    proxy = await start(
        api_url=upstream, inject_key=True, token=TOKEN, mistral={"api_key": WORKSPACE_KEY}
    )
    status, body = await raw_get(proxy.url, target, key=TOKEN)
    assert status == 400
    assert json.loads(body)["message"].startswith("poller proxy: the path")
    assert paths == []


async def test_plain_paths_still_reach_upstream(start: Start, noted: tuple[str, list[str]]) -> None:
    """Plain /v1 calls pass, an id with an encoded slash too: the refusals are not vacuous."""
    upstream, paths = noted
    proxy = await start(api_url=upstream)
    status, _ = await raw_get(proxy.url, "/v1/models")
    missing, _ = await raw_get(proxy.url, "/v1/models/ft%3Aa%2Fb")
    assert (status, missing) == (200, 404)
    assert paths == ["/v1/models", "/v1/models/ft:a/b"]


async def test_localhost_and_listed_hosts_pass(start: Start) -> None:
    """Host localhost, an IP literal and a name in proxy.hosts are all served."""
    proxy = await start(hosts=["poller.internal"])
    async with httpx.AsyncClient() as http:
        for host in ("localhost:1", "127.0.0.1", "poller.internal:8787"):
            answer = await http.get(f"{proxy.url}/v1/models", headers={"Host": host})
            assert answer.status_code == 200, host


async def test_inject_key_needs_the_token_and_hides_both(
    mistral: Client, store_file: str, start: Start
) -> None:
    """inject_key: the local token is required, the workspace key goes upstream, none is logged."""
    keyed = Simulator(seed=5, api_key=WORKSPACE_KEY)
    with SimulatorServer(keyed) as upstream, structlog.testing.capture_logs() as logs:
        proxy = await start(
            api_url=upstream.url,
            inject_key=True,
            token=TOKEN,
            mistral={"api_key": WORKSPACE_KEY},
        )
        async with httpx.AsyncClient() as http:
            url = f"{proxy.url}/v1/chat/completions"
            body = {"model": "mistral-small-latest", "messages": HELLO}
            bare = await http.post(url, json=body)
            wrong = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
        ok = await mistral(proxy.url, key=TOKEN).chat.complete_async(
            model="mistral-small-latest", messages=HELLO
        )
        await proxy.settled(1)
    assert bare.status_code == wrong.status_code == 401
    assert bare.json()["type"] == "authentication_error"
    assert ok.choices[0].message.content
    assert keyed.stats()["by_route"] == {"POST /v1/chat/completions": 1}
    text = json.dumps(logs, default=str) + json.dumps(proxy.events(), default=str)
    assert WORKSPACE_KEY not in text and TOKEN not in text


async def test_body_over_the_cap_is_413(start: Start, sim: Simulator) -> None:
    """A request body over max_body is refused before anything goes upstream."""
    proxy = await start(max_body="1KiB")
    sim.reset_stats()
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{proxy.url}/v1/embeddings", json={"model": "mistral-embed", "input": "x" * 2000}
        )
    assert answer.status_code == 413 and "proxy.max_body" in answer.json()["message"]
    assert sim.stats()["total"] == 0


async def test_ocr_gets_its_own_cap(mistral: Client, start: Start) -> None:
    """An OCR body over max_body but under max_body_ocr passes."""
    proxy = await start(max_body="1KiB", max_body_ocr="1MiB")
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 4000).decode()
    ocr = await mistral(proxy.url).ocr.process_async(
        model="mistral-ocr-latest", document={"type": "image_url", "image_url": image}
    )
    assert ocr.usage_info.doc_size_bytes == 4004


async def test_server_and_date_are_not_doubled(start: Start) -> None:
    """The answer carries upstream's one Server and one Date header, no hop-by-hop ones."""
    proxy = await start()
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{proxy.url}/v1/models", headers={"Connection": "keep-alive"})
    names = [k.lower() for k, _ in answer.headers.multi_items()]
    assert names.count("server") == 1 and names.count("date") == 1
    assert "keep-alive" not in names


async def test_record_content_false_keeps_text_out_of_events_and_logs(
    mistral: Client, start: Start
) -> None:
    """record_content: false records the call without its text, in events and in logs."""
    proxy = await start(record_content=False)
    with structlog.testing.capture_logs() as logs:
        plain = await mistral(proxy.url).chat.complete_async(
            model="mistral-small-latest", messages=HELLO
        )
        events = await mistral(proxy.url).chat.stream_async(
            model="mistral-small-latest", messages=HELLO
        )
        streamed = [e.data async for e in events]
        await proxy.settled(2)
    text = plain.choices[0].message.content
    assert text and all(e["data"]["content"] is None for e in proxy.events())
    assert {e["data"]["id"] for e in proxy.events()} == {plain.id, streamed[0].id}
    dumped = json.dumps(logs, default=str) + json.dumps(proxy.events(), default=str)
    assert text not in dumped and HELLO[0]["content"] not in dumped


async def test_port_taken_fails_with_one_line(
    start: Start, server: SimulatorServer, store_file: str
) -> None:
    """A listen address already in use stops the proxy with a config error naming the key."""
    proxy = await start()
    config = proxy_config(server.url, store_file, listen=f"127.0.0.1:{proxy.service.port}")
    async with App(config) as app:
        with pytest.raises(ConfigError, match=r"proxy\.listen: cannot listen on"):
            await app.services[0].run(asyncio.Event())


async def test_daemon_delivers_each_trigger_once_signed(
    mistral: Client, server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """Through Runner.run each proxied call reaches the webhook once, signed, with seed fields."""
    port = free_port()
    config = make_config(
        server.url,
        receiver.url,
        store_file,
        mistral={"api_key": WORKSPACE_KEY},
        proxy={"listen": f"127.0.0.1:{port}"},
        sources=dict.fromkeys(SOURCE_NAMES, False),
    )
    async with App(config) as app:
        stop = asyncio.Event()
        running = asyncio.create_task(Runner(app).run(stop, grace=2))
        service = app.services[0]
        assert isinstance(service, ProxyService)
        await asyncio.wait_for(service.ready.wait(), 5)
        client = mistral(service.url)
        plain = await client.chat.complete_async(model="mistral-small-latest", messages=HELLO)
        stream = await client.chat.stream_async(model="mistral-small-latest", messages=HELLO)
        chunks = [e.data async for e in stream]
        await client.embeddings.create_async(model="mistral-embed", inputs="x")
        await asyncio.to_thread(receiver.wait_delivered, 3)
        stop.set()
        await running
    docs = []
    for r in receiver.delivered():
        Webhook(SECRET).verify(r.body, r.headers)
        docs.append(r.json())
    assert sorted(d["type"] for d in docs) == [
        "chat_completion.created",
        "chat_completion.created",
        "embeddings.generated",
    ]
    assert len({d["id"] for d in docs}) == 3
    chats = {d["data"]["id"]: d["data"] for d in docs if d["type"] == "chat_completion.created"}
    assert set(chats) == {plain.id, chunks[0].id}
    assert chats[plain.id].keys() == {
        "id",
        "model",
        "content",
        "usage_total_tokens",
        "finish_reason",
    }


def recorder_of(app: App, enqueue: Any = None, **options: Any) -> Recorder:
    return Recorder(
        enqueue=enqueue or app.store.enqueue,
        notify=app.notify,
        record_content=True,
        clock=app.clock,
        **options,
    )


async def test_record_retries_until_the_store_takes_it(store_url: str) -> None:
    """A failed write is logged at error and retried; the event lands once."""
    config = config_mod.from_mapping({"store": {"url": store_url}})
    async with App(config) as app:
        failures = iter([True, True])

        def flaky(events: Any, now: Any) -> Any:
            if next(failures, False):
                raise OSError("disk unplugged")
            return app.store.enqueue(events, now)

        recorder = recorder_of(app, flaky, retry_wait=tenacity.wait_none())
        with structlog.testing.capture_logs() as logs:
            recorder.submit(embeddings_call("e1", app.clock()), workspace="default")
            await recorder.aclose(5)
        failed = [x for x in logs if x["event"] == "proxy_record_failed"]
        assert [x["log_level"] for x in failed] == ["error", "error"]
        assert failed[0]["error"] == "OSError: disk unplugged"
        assert recorder.recorded == 1
        assert [r["type"] for r in app.ledger.list_deliveries()] == ["embeddings.generated"]


async def test_a_call_cut_off_while_its_event_is_built_is_logged_lost(store_file: str) -> None:
    """Shutdown cutting off a call whose event is still being built logs it as lost."""
    config = config_mod.from_mapping({"store": {"url": store_file}})
    async with App(config) as app:
        building, release = threading.Event(), threading.Event()

        def blocked(call: synchronous.Call, workspace: str) -> synchronous.Outcome:
            building.set()
            release.wait(30)
            return synchronous.events(call, workspace=workspace)

        recorder = recorder_of(app, build=blocked, linger=0)
        try:
            with structlog.testing.capture_logs() as logs:
                recorder.submit(embeddings_call("e1", app.clock()), workspace="default")
                await asyncio.to_thread(building.wait, 30)
                await recorder.aclose(0)
        finally:
            release.set()
        lost = [x for x in logs if x["event"] == "proxy_record_lost"]
        assert [(x["log_level"], x["calls_not_built"]) for x in lost] == [("error", 1)]
        assert app.ledger.list_deliveries() == []


async def cut_off_in_its_thread(app: App, fail: bool) -> list[MutableMapping[str, Any]]:
    """Shut a recorder down while its write is in the store's thread; that write then ends."""
    writing, release = threading.Event(), threading.Event()

    def blocked(events: Any, now: Any) -> Any:
        writing.set()
        release.wait(30)
        if fail:
            raise OSError("disk unplugged")
        return app.store.enqueue(events, now)

    recorder = recorder_of(app, blocked, linger=0)
    with structlog.testing.capture_logs() as logs:
        recorder.submit(embeddings_call("e1", app.clock()), workspace="default")
        await asyncio.to_thread(writing.wait, 30)
        closing = asyncio.create_task(recorder.aclose(0))
        flusher = recorder._flusher
        assert flusher is not None
        await eventually(lambda: flusher.cancelling() > 0)
        release.set()
        await closing
    return logs


async def test_a_write_cut_off_in_its_thread_that_commits_is_written_not_lost(
    store_url: str,
) -> None:
    """Shutdown during a write already in its thread: it commits, and is logged written only."""
    async with App(config_mod.from_mapping({"store": {"url": store_url}})) as app:
        logs = await cut_off_in_its_thread(app, fail=False)
        assert [r["type"] for r in app.ledger.list_deliveries()] == ["embeddings.generated"]
    assert [x["event"] for x in logs if x["event"].startswith("proxy_")] == ["proxy_event_recorded"]


async def test_a_write_cut_off_in_its_thread_that_fails_is_lost_not_written(
    store_url: str,
) -> None:
    """Shutdown during a write that then fails: logged lost once, nothing in the outbox."""
    async with App(config_mod.from_mapping({"store": {"url": store_url}})) as app:
        logs = await cut_off_in_its_thread(app, fail=True)
        assert app.ledger.list_deliveries() == []
    lost = [x for x in logs if x["event"] == "proxy_record_lost"]
    assert [(x["log_level"], x["types"]) for x in lost] == [("error", ["embeddings.generated"])]
    assert not [x for x in logs if x["event"] == "proxy_event_recorded"]


async def test_calls_beyond_the_queue_size_are_counted_in_the_metric(
    server: SimulatorServer, store_file: str
) -> None:
    """With proxy.queue_size calls waiting, the next is dropped and counted in /metrics."""
    async with App(proxy_config(server.url, store_file, queue_size=1)) as app:
        service = app.services[0]
        assert isinstance(service, ProxyService)
        recorder = service.app.recorder
        recorder.submit(embeddings_call("kept", app.clock()), workspace="default")
        recorder.submit(embeddings_call("dropped", app.clock()), workspace="default")
        await recorder.aclose(5)
        exposed = app.metrics.registry.get_sample_value("poller_proxy_calls_dropped_total")
        assert (recorder.dropped, exposed) == (1, 1.0)
        assert [r["type"] for r in app.ledger.list_deliveries()] == ["embeddings.generated"]

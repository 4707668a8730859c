"""The API client over httpx.MockTransport: paging, retries, errors, secrecy."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from poller.exceptions import AuthError, GarbledError, NotFoundError, ServerError, UnreachableError
from poller.mistral.client import MistralClient, error_message
from poller.mistral.pace import Gate

KEY = "sk-very-secret-key-123"
Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(handler: Handler, *, page_size: int = 2) -> tuple[MistralClient, Clock]:
    clock = Clock()
    http = httpx.AsyncClient(
        base_url="http://api.test/v1",
        transport=httpx.MockTransport(handler),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    gate = Gate(clock=clock, sleep=clock.sleep)
    return MistralClient(http, page_size=page_size, gate=gate, sleep=clock.sleep), clock


def paged(items: list[dict[str, Any]], total: int | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", 0))
        size = int(request.url.params.get("page_size", 100))
        body = {
            "data": items[page * size : (page + 1) * size],
            "object": "list",
            "total": len(items) if total is None else total,
        }
        return httpx.Response(200, json=body)

    return handler


ITEMS = [{"id": f"i{n}"} for n in range(5)]


async def test_pages_until_short_page() -> None:
    """Pages are fetched from 0 until one comes back short, every item once."""
    client, _ = make(paged(ITEMS))
    listing = await client.list_all("/files")
    assert [i["id"] for i in listing.items] == [f"i{n}" for n in range(5)]
    assert listing.complete and listing.pages == 3


async def test_stops_at_total() -> None:
    """When the total is reached on a full page, no extra empty page is requested."""
    calls: list[str] = []
    handler = paged(ITEMS[:4])

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return handler(request)

    client, _ = make(counting)
    listing = await client.list_all("/files")
    assert listing.complete and len(calls) == 2


async def test_short_of_total_is_incomplete() -> None:
    """A listing that adds up to less than its total is marked incomplete."""
    client, _ = make(paged(ITEMS, total=7))
    assert not (await client.list_all("/files")).complete


async def test_unpaged_list() -> None:
    """The models list is read in one request."""
    client, _ = make(lambda r: httpx.Response(200, json={"object": "list", "data": ITEMS}))
    listing = await client.list_all("/models", paged=False)
    assert len(listing.items) == 5 and listing.complete


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        json.dumps({"data": "nope"}).encode(),
        json.dumps([1, 2]).encode(),
        json.dumps({"data": [{"name": "no id"}], "total": 1}).encode(),
    ],
)
async def test_garbled_listing_raises(body: bytes) -> None:
    """A 2xx list that is not the promised shape raises GarbledError."""
    client, _ = make(lambda r: httpx.Response(200, content=body))
    with pytest.raises(GarbledError):
        await client.list_all("/files")


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"{}", b'{"id": 3}', b'{"id": ""}'])
async def test_garbled_item_raises(body: bytes) -> None:
    """A 2xx item that is not an object with a non-empty string id raises GarbledError."""
    client, _ = make(lambda r: httpx.Response(200, content=body))
    with pytest.raises(GarbledError):
        await client.get_item("/files/x")


async def test_retries_5xx_then_succeeds() -> None:
    """5xx answers are retried with backoff until one succeeds."""
    answers = iter(
        [httpx.Response(502), httpx.Response(500), httpx.Response(200, json={"id": "x"})]
    )
    client, clock = make(lambda r: next(answers))
    assert await client.get_item("/files/x") == {"id": "x"}
    assert len(clock.sleeps) == 2


async def test_gives_up_after_attempts() -> None:
    """Persistent 5xx ends in ServerError after the configured attempts."""
    calls: list[httpx.Request] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503)

    client, _ = make(unavailable)
    with pytest.raises(ServerError):
        await client.get_item("/files/x")
    assert len(calls) == 4


async def test_429_honours_retry_after_for_the_whole_gate() -> None:
    """A 429 pauses the gate (every request of the workspace) for Retry-After seconds."""
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={"id": "x"})]
    )
    client, clock = make(lambda r: next(answers))
    await client.get_item("/files/x")
    assert clock.now >= 7.0
    assert 7.0 in clock.sleeps


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried(status: int) -> None:
    """401/403 raise AuthError at once, saying what to check, without the key."""
    calls: list[httpx.Request] = []

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"message": "Unauthorized"})

    client, _ = make(refused)
    with pytest.raises(AuthError) as info:
        await client.list_all("/batch/jobs")
    assert len(calls) == 1
    assert "api_key" in str(info.value) and KEY not in str(info.value)


async def test_404_get_is_none() -> None:
    """A GET answered 404 means the item does not exist."""
    client, _ = make(lambda r: httpx.Response(404, json={"message": "Not Found"}))
    assert await client.get_item("/files/x") is None


async def test_404_list_raises() -> None:
    """A list endpoint answering 404 raises NotFoundError (a switched-off endpoint)."""
    client, _ = make(lambda r: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(NotFoundError):
        await client.list_all("/fine_tuning/jobs")


async def test_connection_errors_are_retried_then_raise() -> None:
    """Connection failures are retried, then raise UnreachableError."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, clock = make(refuse)
    with pytest.raises(UnreachableError):
        await client.get_item("/files/x")
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": "bad model", "type": "invalid_request_error"}, "bad model"),
        ({"detail": "Not Found"}, "Not Found"),
        (
            {"detail": [{"loc": ["query", "page"], "msg": "must be >= 0", "type": "x"}]},
            "page: must be >= 0",
        ),
        ({"other": 1}, "Bad Request"),
    ],
)
def test_error_message_shapes(body: dict[str, Any], expected: str) -> None:
    """message, else detail (string or list) is the explanation."""
    assert error_message(httpx.Response(400, json=body)) == expected


def test_error_message_plain_text() -> None:
    """A non-JSON error body is shown trimmed."""
    assert error_message(httpx.Response(502, text="Bad gateway\n")) == "Bad gateway"


async def test_gate_budget_spreads_requests() -> None:
    """A per-minute budget spaces requests instead of failing them."""
    clock = Clock()
    gate = Gate(per_minute=60, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await gate.acquire()
    assert clock.now == pytest.approx(2.0)


async def test_pages_at_the_size_the_api_caps() -> None:
    """An API that serves fewer items per page than asked is paged at its own size, whole."""
    items = [{"id": f"i{n}"} for n in range(7)]
    asked: list[str] = []

    def capped(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url.params))
        page = int(request.url.params["page"])
        size = min(int(request.url.params["page_size"]), 3)
        body = {"data": items[page * size : (page + 1) * size], "object": "list", "total": 7}
        return httpx.Response(200, json=body)

    client, _ = make(capped, page_size=5)
    listing = await client.list_all("/files")
    assert [i["id"] for i in listing.items] == [f"i{n}" for n in range(7)]
    assert listing.complete


@pytest.mark.parametrize(("total", "expected"), [(7, 7), (None, None), (-1, None), (True, None)])
async def test_one_page_with_its_total(total: Any, expected: int | None) -> None:
    """list_page asks for one page with its total and keeps the total only when it is a count."""
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, json={"data": [{"id": "a"}], "object": "list", "total": total})

    client, _ = make(handler)
    listing = await client.list_page("/files", page=3, page_size=5)
    assert asked == [{"page": "3", "page_size": "5", "include_total": "true"}]
    assert [i["id"] for i in listing.items] == ["a"] and listing.total == expected


async def test_get_object_takes_any_object() -> None:
    """get_object answers an object without an id; 404 is None; a non-object is garbled."""
    answers = iter([{"run_id": "r"}, None, [1]])

    def handler(request: httpx.Request) -> httpx.Response:
        body = next(answers)
        return httpx.Response(404 if body is None else 200, json=body or {"detail": "gone"})

    client, _ = make(handler)
    assert await client.get_object("/workflows/runs/r") == {"run_id": "r"}
    assert await client.get_object("/workflows/runs/r") is None
    with pytest.raises(GarbledError, match="not an object"):
        await client.get_object("/workflows/runs/r")

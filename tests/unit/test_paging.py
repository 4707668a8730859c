"""Cursor and PaginationInfo paging over httpx.MockTransport: what is sent, when it stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from poller.exceptions import GarbledError
from poller.mistral import paging
from poller.mistral.client import MistralClient

ITEMS = [{"id": f"i{n}"} for n in range(5)]
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, seen: list[httpx.URL]) -> MistralClient:
    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return handler(request)

    http = httpx.AsyncClient(
        base_url="http://api.test/v1", transport=httpx.MockTransport(recording)
    )
    return MistralClient(http, attempts=1)


def cursor(items: list[dict[str, Any]], size: int) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("page_token") or 0)
        end = start + int(request.url.params["page_size"])
        token = str(end) if end < len(items) else None
        return httpx.Response(200, json={"data": items[start:end], "next_page_token": token})

    return handler


def numbered(items: list[dict[str, Any]], total: int | None = None, drop: int = 0) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        count = len(items) if total is None else total
        pages = -(-count // size)
        data = items[page * size : (page + 1) * size]
        info = {"total_items": count, "total_pages": pages, "current_page": page,
                "page_size": size, "has_more": page + 1 < pages}  # fmt: skip
        return httpx.Response(200, json={"pagination": info, "data": data[: len(data) - drop]})

    return handler


async def test_cursor_pages_follow_the_token_until_it_is_null() -> None:
    """Each next_page_token is sent back as page_token; the deprecated page is never sent."""
    urls: list[httpx.URL] = []
    pages = paging.CursorPages(client(cursor(ITEMS, 2), urls), "/libraries", page_size=2)
    got = [item["id"] async for page in pages for item in page]
    assert got == [i["id"] for i in ITEMS] and pages.complete
    assert [u.params.get("page_token") for u in urls] == [None, "2", "4"]
    assert all("page" not in u.params for u in urls)


async def test_a_cursor_that_does_not_lead_on_is_garbled() -> None:
    """A token answered twice would page forever: the listing is refused."""

    def loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": ITEMS[:1], "next_page_token": "again"})

    pages = paging.CursorPages(client(loop, []), "/libraries")
    with pytest.raises(GarbledError, match="does not lead on"):
        async for _ in pages:
            pass
    assert not pages.complete


async def test_numbered_pages_are_complete_when_they_hold_the_total() -> None:
    """PaginationInfo pages run until has_more is false, and add up to total_items."""
    urls: list[httpx.URL] = []
    pages = paging.NumberedPages(
        client(numbered(ITEMS), urls), "/libraries/x/documents", params={"sort_order": "desc"},
        page_size=2,
    )  # fmt: skip
    got = [item["id"] async for page in pages for item in page]
    assert got == [i["id"] for i in ITEMS] and pages.complete and pages.total == 5
    assert [u.params["page"] for u in urls] == ["0", "1", "2"]
    assert {u.params["sort_order"] for u in urls} == {"desc"}


async def test_numbered_pages_short_of_the_total_are_incomplete() -> None:
    """A page missing items leaves the listing incomplete: it cannot show a deletion."""
    pages = paging.NumberedPages(client(numbered(ITEMS, drop=1), []), "/d", page_size=2)
    async for _ in pages:
        pass
    assert not pages.complete and len(pages.seen) < 5


@pytest.mark.parametrize(
    "body",
    [{"data": []}, {"data": [], "pagination": {"total_items": -1, "has_more": False}},
     {"data": [], "pagination": {"total_items": 0, "has_more": "no"}}],
)  # fmt: skip
async def test_an_answer_without_usable_pagination_is_garbled(body: dict[str, Any]) -> None:
    """The documents list's pagination is required: without it the answer is garbled."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    with pytest.raises(GarbledError, match="pagination"):
        async for _ in paging.NumberedPages(client(handler, []), "/d"):
            pass

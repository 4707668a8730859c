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


RUNS = [{"run_id": f"r{n}", "execution_id": f"e{n}"} for n in range(5)]


def tokened(items: list[dict[str, Any]], moved: dict[str, Any] | None = None) -> Handler:
    """The workflow runs list: its token comes back as next_page_token; ``moved`` repeats an
    item of page 1 on page 2."""

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("next_page_token") or 0)
        size = int(request.url.params["page_size"])
        page = items[start : start + size]
        if moved is not None and start:
            page = [moved, *page]
        more = start + size < len(items)
        return httpx.Response(
            200, json={"executions": page, "next_page_token": str(start + size) if more else None}
        )

    return handler


def run_id(item: Any) -> str:
    if not isinstance(item.get("run_id"), str):
        raise ValueError("no run_id")
    return str(item["run_id"])


def runs(handler: Handler, urls: list[httpx.URL], page_size: int = 2) -> paging.CursorPages:
    return paging.CursorPages(
        client(handler, urls),
        "/workflows/runs",
        page_size=page_size,
        items="executions",
        key=run_id,
        token_param="next_page_token",
    )


async def test_runs_pages_send_the_token_back_as_next_page_token() -> None:
    """The runs list's pages: its own list, its own key, each item once though it moved."""
    urls: list[httpx.URL] = []
    pager = runs(tokened(RUNS, moved=RUNS[0]), urls)
    pages = [[i["run_id"] for i in page] async for page in pager]
    assert pages == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert (pager.complete, pager.total, pager.count) == (True, None, 3)
    assert [u.params.get("next_page_token") for u in urls] == [None, "2", "4"]
    assert all("page_token" not in u.params for u in urls)


async def test_an_item_twice_on_one_page_comes_once() -> None:
    """Two items with one key on the same page: the first is kept."""
    twice = [RUNS[0], {**RUNS[0], "status": "later"}, RUNS[1]]
    pager = runs(tokened(twice), [], page_size=5)
    assert [[i.get("status") for i in page] async for page in pager] == [[None, None]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": []}, "no 'executions' list"),
        ([], "no 'executions' list"),
        ({"executions": [{"execution_id": "e"}]}, "no id"),
        ({"executions": ["r"]}, "no id"),
        ({"executions": [], "next_page_token": 7}, "does not lead on"),
    ],
)
async def test_garbled_runs_pages_raise(body: Any, message: str) -> None:
    """A page without its list, an item without an id or a token that is no string: garbled."""
    pager = runs(lambda request: httpx.Response(200, json=body), [])
    with pytest.raises(GarbledError, match=message):
        [page async for page in pager]
    assert not pager.complete


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

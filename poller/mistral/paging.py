"""The two other ways Mistral's newer lists page, beside ``{data, total}`` with ``page``.

- **Cursor** (``GET /v1/libraries``, ``GET /v1/workflows/runs``): each answer's
  ``next_page_token`` is passed back (as ``page_token``, as ``next_page_token``) until it
  is null. The libraries list's deprecated ``page`` parameter is never sent.
- **PaginationInfo** (``GET /v1/libraries/{id}/documents``): ``page``/``page_size`` from
  0, each answer carrying ``pagination: {total_items, total_pages, current_page,
  page_size, has_more}``.

Either yields one page of items at a time (``async for items in pages``), each item once
even if it moves between pages meanwhile; the caller may stop early. Once exhausted,
``complete`` says whether the pages are the whole list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from poller.exceptions import GarbledError
from poller.mistral.client import MistralClient, items_of

MAX_PAGE_SIZE = 100
"""The largest ``page_size`` the libraries' lists accept (the runs list takes 1,000)."""


class CursorPages:
    """The pages of a list that continues with an opaque token until the token is null.

    The token an answer hands out in ``next_field`` is sent back as ``token_param``: the
    libraries list takes it as ``page_token``, the workflow runs list as
    ``next_page_token``. ``items`` names the answer's list (``data``; the runs list's
    ``executions``) and ``key`` an item's id (``ValueError`` when it has none; by default
    its string ``id``). The answers carry no total: ``complete`` says that the last page
    (the one without a next token) was reached, which is all such a listing can tell.
    """

    total: int | None = None

    def __init__(
        self,
        client: MistralClient,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        page_size: int = MAX_PAGE_SIZE,
        items: str = "data",
        key: Callable[[Mapping[str, Any]], str] | None = None,
        token_param: str = "page_token",
        next_field: str = "next_page_token",
    ) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.size = page_size
        self.items = items
        self.key = key or _id
        self.token_param = token_param
        self.next_field = next_field
        self.count = 0
        self.seen: set[str] = set()
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[dict[str, Any]]]:
        token: str | None = None
        tokens: set[str] = set()
        while True:
            params = {**self.params, "page_size": self.size}
            if token is not None:
                params[self.token_param] = token
            body = await self.client.request("GET", self.path, params)
            page = self._page(body)
            self.count += 1
            fresh = []
            for item, key in page:
                if key not in self.seen:
                    self.seen.add(key)
                    fresh.append(item)
            yield fresh
            token = body.get(self.next_field)
            if token is None or token == "":
                break
            if not isinstance(token, str) or token in tokens:
                raise GarbledError(
                    f"the answer's {self.next_field} does not lead on", method="GET", path=self.path
                )
            tokens.add(token)
            if self.count >= self.client.max_pages:
                raise GarbledError(
                    f"more than {self.client.max_pages} pages", method="GET", path=self.path
                )
        self.complete = True

    def _page(self, body: Any) -> list[tuple[dict[str, Any], str]]:
        """The items of one answer, each with its key."""
        items = body.get(self.items) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise GarbledError(
                f"the list answer has no '{self.items}' list", method="GET", path=self.path
            )
        page = []
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise ValueError("not an object")
                page.append((item, self.key(item)))
            except ValueError:
                raise GarbledError(
                    "a listed item has no id", method="GET", path=self.path
                ) from None
        return page


def _id(item: Mapping[str, Any]) -> str:
    """An item's string ``id`` (``ValueError`` without one)."""
    rid = item.get("id")
    if not isinstance(rid, str) or not rid:
        raise ValueError("no string id")
    return rid


class NumberedPages:
    """The pages of a list numbered from 0, whose answers carry a ``PaginationInfo``.

    ``total`` is the ``total_items`` of the first page; ``complete`` holds once the pages
    ran out and held at least that many distinct items.
    """

    def __init__(
        self,
        client: MistralClient,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.page_size = page_size
        self.total: int | None = None
        self.count = 0
        self.seen: set[str] = set()
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[dict[str, Any]]]:
        while True:
            params = {**self.params, "page": self.count, "page_size": self.page_size}
            body = await self.client.request("GET", self.path, params)
            items = items_of(body, self.path)
            info = _pagination(body, self.path)
            if self.count == 0:
                self.total = info["total_items"]
            self.count += 1
            yield _fresh(items, self.seen)
            if not info["has_more"] or len(items) < self.page_size:
                break
            if self.count >= self.client.max_pages:
                raise GarbledError(
                    f"more than {self.client.max_pages} pages", method="GET", path=self.path
                )
        self.complete = self.total is not None and len(self.seen) >= self.total


def _fresh(items: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """The items not seen on an earlier page (an item that moved is yielded once)."""
    fresh = [item for item in items if item["id"] not in seen]
    seen.update(item["id"] for item in fresh)
    return fresh


def _pagination(body: Any, path: str) -> dict[str, Any]:
    """The ``PaginationInfo`` of an answer: a ``total_items`` count and a ``has_more`` flag."""
    info = body.get("pagination") if isinstance(body, dict) else None
    total = info.get("total_items") if isinstance(info, dict) else None
    more = info.get("has_more") if isinstance(info, dict) else None
    if (
        not isinstance(total, int)
        or isinstance(total, bool)
        or total < 0
        or not isinstance(more, bool)
    ):
        raise GarbledError("the list answer has no usable 'pagination'", method="GET", path=path)
    return {"total_items": total, "has_more": more}

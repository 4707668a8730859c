"""Listing helpers shared by every resource family: paging, facets, the answer's shape."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from poller.simulator import index
from poller.simulator.errors import InvalidRequest
from poller.simulator.index import Page, Table
from poller.simulator.records import Json

FILE_ORDERS = ("newest", "oldest", "none")
"""How ``GET /v1/files`` orders its answer; ``none`` is stable but unrelated to creation."""


def page_args(page: int, page_size: int) -> tuple[int, int]:
    """(offset, limit) of a ``page``/``page_size`` query; 400 on a negative page or empty size."""
    if page < 0:
        raise InvalidRequest("page must be 0 or more")
    if page_size < 1:
        raise InvalidRequest("page_size must be 1 or more")
    return page * page_size, page_size


def answer(data: list[Json], total: int | None) -> Json:
    """A list answer as Mistral shapes them."""
    return {"data": data, "object": "list", "total": total}


def file_order(order: str) -> str:
    """``order`` if it is one of ``FILE_ORDERS``; 400 naming them otherwise."""
    if order not in FILE_ORDERS:
        raise InvalidRequest(f"files order {order!r} is unknown; use {', '.join(FILE_ORDERS)}")
    return order


def one(value: str | None) -> list[str] | None:
    """A single-valued filter as the facet lookup takes it (None: no filter)."""
    return None if value is None else [value]


def select(
    table: Table[Any],
    *,
    offset: int,
    limit: int,
    statuses: Collection[str] | None = None,
    newest_first: bool = True,
    after: float | None = None,
    before: float | None = None,
    facets: Mapping[str, Collection[str] | None],
    keep: Callable[[str], bool] | None = None,
) -> Page:
    """One page of ``table``: by status and creation through its indexes, then by facets."""
    allowed = table.having(facets)
    if allowed is not None:
        also = keep
        keep = allowed.__contains__ if also is None else lambda id: id in allowed and also(id)
    return index.select(
        [table.order] if not statuses else table.statuses(statuses),
        offset=offset,
        limit=limit,
        newest_first=newest_first,
        after=after,
        before=before,
        keep=keep,
    )

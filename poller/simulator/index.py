"""Resources kept in creation order, so that list pages are slices rather than sorts.

Every resource has a key ``(created_at, seq, id)``; a ``Table`` keeps its records by id,
all keys in one sorted list and, for jobs, one sorted list per status. A page of
"newest first, created after X, in these statuses" is then a few bisections and a
slice (or a merge of a few slices), whatever the number of resources; only filters
that have no index (model, filename search, ...) walk the matching range.
"""

from __future__ import annotations

import heapq
import sys
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Generic, Protocol, TypeVar

Key = tuple[float, int, str]


class Keyed(Protocol):
    @property
    def key(self) -> Key: ...


R = TypeVar("R", bound=Keyed)


class SortedKeys:
    """Keys in ascending order."""

    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self.keys: list[Key] = sorted(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Key) -> None:
        insort(self.keys, key)

    def discard(self, key: Key) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def span(self, after: float | None, before: float | None) -> tuple[int, int]:
        """The index range of keys created strictly after ``after`` and before ``before``."""
        lo = 0 if after is None else bisect_right(self.keys, (after, sys.maxsize, ""))
        hi = len(self.keys) if before is None else bisect_left(self.keys, (before, -1, ""))
        return lo, max(lo, hi)


@dataclass(frozen=True)
class Page:
    """One page of ids and the number of resources that match in all."""

    ids: list[str]
    total: int


def _walk(keys: list[Key], lo: int, hi: int, newest_first: bool) -> Iterator[Key]:
    if newest_first:
        return (keys[i] for i in range(hi - 1, lo - 1, -1))
    return (keys[i] for i in range(lo, hi))


def select(
    sources: Sequence[SortedKeys],
    *,
    offset: int,
    limit: int,
    newest_first: bool = True,
    after: float | None = None,
    before: float | None = None,
    keep: Callable[[str], bool] | None = None,
) -> Page:
    """A page of the union of ``sources`` (disjoint key lists) in creation order."""
    spans = [(src.keys, *src.span(after, before)) for src in sources]
    if keep is None and len(spans) == 1:
        keys, lo, hi = spans[0]
        total = hi - lo
        if newest_first:
            chosen = keys[max(lo, hi - offset - limit) : max(lo, hi - offset)][::-1]
        else:
            chosen = keys[min(hi, lo + offset) : min(hi, lo + offset + limit)]
        return Page([key[2] for key in chosen], total)
    merged: Iterator[Key] = heapq.merge(
        *(_walk(keys, lo, hi, newest_first) for keys, lo, hi in spans), reverse=newest_first
    )
    if keep is None:
        total = sum(hi - lo for _, lo, hi in spans)
        return Page([key[2] for key in islice(merged, offset, offset + limit)], total)
    ids: list[str] = []
    total = 0
    for key in merged:
        if keep(key[2]):
            if offset <= total < offset + limit:
                ids.append(key[2])
            total += 1
    return Page(ids, total)


class Table(Generic[R]):
    """Records of one kind by id, their keys in order and, optionally, per status."""

    def __init__(self) -> None:
        self.records: dict[str, R] = {}
        self.order = SortedKeys()
        self.by_status: dict[str, SortedKeys] = {}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, id: str) -> R | None:
        return self.records.get(id)

    def add(self, record: R, status: str | None = None) -> None:
        self.records[record.key[2]] = record
        self.order.add(record.key)
        if status is not None:
            self.by_status.setdefault(status, SortedKeys()).add(record.key)

    def load(self, records: Iterable[R], status: Callable[[R], str] | None = None) -> None:
        """Add many records at once (one sort instead of one insertion each)."""
        fresh = list(records)
        self.records.update((r.key[2], r) for r in fresh)
        self.order = SortedKeys([*self.order.keys, *(r.key for r in fresh)])
        if status is not None:
            grouped: dict[str, list[Key]] = {}
            for r in fresh:
                grouped.setdefault(status(r), []).append(r.key)
            for name, keys in grouped.items():
                old = self.by_status.get(name, SortedKeys())
                self.by_status[name] = SortedKeys([*old.keys, *keys])

    def remove(self, id: str, status: str | None = None) -> R | None:
        record = self.records.pop(id, None)
        if record is not None:
            self.order.discard(record.key)
            if status is not None and status in self.by_status:
                self.by_status[status].discard(record.key)
        return record

    def move(self, record: R, old: str, new: str) -> None:
        """File a record under its new status."""
        if old in self.by_status:
            self.by_status[old].discard(record.key)
        self.by_status.setdefault(new, SortedKeys()).add(record.key)

    def statuses(self, names: Iterable[str]) -> list[SortedKeys]:
        return [self.by_status[name] for name in dict.fromkeys(names) if name in self.by_status]

    def clear(self) -> None:
        self.records.clear()
        self.order = SortedKeys()
        self.by_status.clear()

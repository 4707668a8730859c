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
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
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


# past this many keys into a union of sources, sorting their concatenation (timsort merges
# the sorted runs in C) beats merging them one key at a time
_DEEP = 1000


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
    """A page of the union of ``sources`` (disjoint key lists) in creation order.

    ``keep`` filters ids; passing a set's ``__contains__`` keeps the walk in C.
    """
    spans = [(src.keys, *src.span(after, before)) for src in sources]
    if keep is None and len(spans) == 1:
        keys, lo, hi = spans[0]
        if newest_first:
            chosen = keys[max(lo, hi - offset - limit) : max(lo, hi - offset)][::-1]
        else:
            chosen = keys[min(hi, lo + offset) : min(hi, lo + offset + limit)]
        return Page([key[2] for key in chosen], hi - lo)
    merged: Iterable[Key]
    if len(spans) == 1:
        keys, lo, hi = spans[0]
        merged = reversed(keys[lo:hi]) if newest_first else keys[lo:hi]
    elif keep is not None or offset + limit > _DEEP:
        runs = chain.from_iterable(keys[lo:hi] for keys, lo, hi in spans)
        merged = sorted(runs, reverse=newest_first)
    else:
        walks = (_walk(keys, lo, hi, newest_first) for keys, lo, hi in spans)
        merged = heapq.merge(*walks, reverse=newest_first)
    if keep is None:
        total = sum(hi - lo for _, lo, hi in spans)
        return Page([key[2] for key in islice(merged, offset, offset + limit)], total)
    matching = [key[2] for key in merged if keep(key[2])]
    return Page(matching[offset : offset + limit], len(matching))


def first(
    sources: Sequence[SortedKeys],
    keep: Callable[[str], bool],
    *,
    newest_first: bool = True,
    before: float | None = None,
) -> str | None:
    """The id of the newest (or oldest) key of ``sources`` that ``keep`` accepts."""
    spans = [(src.keys, *src.span(None, before)) for src in sources]
    walks = (_walk(keys, lo, hi, newest_first) for keys, lo, hi in spans)
    return next((key[2] for key in heapq.merge(*walks, reverse=newest_first) if keep(key[2])), None)


class Table(Generic[R]):
    """Records of one kind by id, their keys in order and, optionally, per status.

    ``facets`` name fields worth filtering on (``model``, ``purpose``, ...): the table
    keeps the ids of the records having each value, so that a filter is a set lookup.
    Facet values must not change once a record is added.
    """

    def __init__(self, facets: Mapping[str, Callable[[R], Hashable]] | None = None) -> None:
        self.records: dict[str, R] = {}
        self.order = SortedKeys()
        self.by_status: dict[str, SortedKeys] = {}
        self._facets = dict(facets or {})
        self._by_facet: dict[str, dict[Hashable, set[str]]] = {name: {} for name in self._facets}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, id: str) -> R | None:
        return self.records.get(id)

    def _file_facets(self, record: R) -> None:
        for name, value_of in self._facets.items():
            self._by_facet[name].setdefault(value_of(record), set()).add(record.key[2])

    def add(self, record: R, status: str | None = None) -> None:
        self.records[record.key[2]] = record
        self.order.add(record.key)
        self._file_facets(record)
        if status is not None:
            self.by_status.setdefault(status, SortedKeys()).add(record.key)

    def load(self, records: Iterable[R], status: Callable[[R], str] | None = None) -> None:
        """Add many records at once (one sort instead of one insertion each)."""
        fresh = list(records)
        self.records.update((r.key[2], r) for r in fresh)
        self.order = SortedKeys([*self.order.keys, *(r.key for r in fresh)])
        for r in fresh:
            self._file_facets(r)
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
            for name, value_of in self._facets.items():
                self._by_facet[name].get(value_of(record), set()).discard(id)
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

    def having(self, filters: Mapping[str, Iterable[Hashable] | None]) -> set[str] | None:
        """The ids whose facets take one of the given values (``None``: no filter at all)."""
        chosen: set[str] | None = None
        for name, values in filters.items():
            if values is None:
                continue
            index = self._by_facet[name]
            ids: set[str] = set().union(*(index.get(v, ()) for v in values))
            chosen = ids if chosen is None else chosen & ids
        return chosen

    def clear(self) -> None:
        self.records.clear()
        self.order = SortedKeys()
        self.by_status.clear()
        for index in self._by_facet.values():
            index.clear()

"""Reading only the end of a list that has no time filter: the files source between reconciles.

``GET /v1/files`` answers a ``total`` and pages by ``page``/``page_size``; it has no time
filter and documents no order. poller learns the order from the ``created_at`` of what a
full listing shows (newest first, oldest first, or neither), checks it again on every
page it reads, and between reconciles reads only the end where new files appear: every
item created since a window before the cursor (a slow upload is listed after newer ones,
with the creation time its upload began with), and the page where the last item poller
expects sits. The totals then tell whether anything else changed: the items poller
expects (its snapshot, less the deletions it holds back) plus the new ones read must make
the answered total. When they do not, something was deleted (or added out of order), and
the poll lists in full. An upload created longer than the window before the newest item
poller has seen, listed with a deletion in the same cycle, waits for the next full listing.

Pure functions and one small accumulator; the I/O lives in ``poller.polling``. After a
restart the order is learned again by the source's first full listing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal

Order = Literal["newest", "oldest"]

MIN_STEPS = 8
"""Changes of creation time, all one way, a full listing must show before its order is
trusted: a short or tied listing in no order would otherwise pass for an ordered one."""


@dataclasses.dataclass(slots=True)
class OrderWatch:
    """The creation times of a listing, item after item, and which ways they moved."""

    last: int | None = None
    rising: int = 0
    falling: int = 0
    unknown: bool = False
    """An item had no creation time: no order can be told."""

    def feed(self, created: Iterable[int | None]) -> None:
        for value in created:
            if value is None:
                self.unknown = True
                continue
            if self.last is not None:
                if value > self.last:
                    self.rising += 1
                elif value < self.last:
                    self.falling += 1
            self.last = value

    def order(self, min_steps: int = MIN_STEPS) -> Order | None:
        """The order the whole listing kept, if it showed enough to tell."""
        if self.unknown:
            return None
        if self.falling >= min_steps and not self.rising:
            return "newest"
        if self.rising >= min_steps and not self.falling:
            return "oldest"
        return None

    def keeps(self, order: Order) -> bool:
        """Whether every item fed so far agrees with ``order`` (ties always do)."""
        if self.unknown:
            return False
        return not self.rising if order == "newest" else not self.falling


def first_page(order: Order, expected: int, size: int) -> int:
    """The page a tail read starts at.

    Newest first, new items come first: page 0. Oldest first, they come after the last
    item poller expects (index ``expected - 1``): the page holding it.
    """
    if order == "newest" or expected <= 0:
        return 0
    return (expected - 1) // size


def last_page(page: int, got: int, size: int, total: int) -> bool:
    """Whether ``page`` (which held ``got`` items) ends the listing of ``total`` items."""
    return got < size or (page + 1) * size >= total


def reached_known(order: Order, known: bool, created: int | None, since: int | None) -> bool:
    """Whether a newest-first read may stop at this item: a known one created before ``since``.

    ``since`` is the window's start, a little before the cursor (the newest creation time
    a poll saw): items created in it may be new ones listed late, and are read.
    """
    if order != "newest" or not known:
        return False
    return since is None or (created is not None and created < since)


def before_window(created: int | None, since: int | None) -> bool:
    """Whether an oldest-first read going back may stop at a page whose first item was
    created at ``created``: everything before it is older than the window (``since``)."""
    return since is None or created is None or created < since


def balanced(total: int | None, expected: int, new: int) -> bool:
    """Whether the answered total is what poller expects plus the new items it read."""
    return total is not None and total == expected + new

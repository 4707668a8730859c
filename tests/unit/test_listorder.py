"""The pure rules of reading a files listing at its end."""

from __future__ import annotations

import pytest

from poller import listorder

STEADY_DOWN = [90, 80, 80, 70, 60, 50, 40, 30, 20, 10]
STEADY_UP = list(reversed(STEADY_DOWN))


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (STEADY_DOWN, "newest"),
        (STEADY_UP, "oldest"),
        ([], None),
        ([5] * 20, None),  # all tied: no order can be told
        (STEADY_DOWN[:5], None),  # too short to trust
        ([*STEADY_DOWN, 95], None),  # one step the other way
        ([*STEADY_DOWN[:-1], None], None),  # an item without a creation time
    ],
)
def test_order_is_learned_from_a_whole_listing(
    created: list[int | None], expected: str | None
) -> None:
    """A listing's order is trusted only when it kept one way over enough steps."""
    watch = listorder.OrderWatch()
    watch.feed(created)
    assert watch.order() == expected


@pytest.mark.parametrize(
    ("order", "created", "keeps"),
    [
        ("newest", [9, 9, 7, 3], True),
        ("newest", [9, 10], False),
        ("oldest", [3, 3, 7], True),
        ("oldest", [7, 3], False),
        ("newest", [9, None], False),
    ],
)
def test_pages_are_checked_against_the_order(order: str, created: list[int], keeps: bool) -> None:
    """Every page read keeps to the learned order, ties included, or the order is dropped."""
    watch = listorder.OrderWatch()
    watch.feed(created)
    assert watch.keeps(order) is keeps  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "expected", "size", "page"),
    [
        ("newest", 250, 100, 0),
        ("oldest", 0, 100, 0),
        ("oldest", 100, 100, 0),
        ("oldest", 101, 100, 1),
        ("oldest", 250, 100, 2),
    ],
)
def test_first_page_of_a_tail_read(order: str, expected: int, size: int, page: int) -> None:
    """Newest first a read starts at page 0; oldest first at the page of the last known item."""
    assert listorder.first_page(order, expected, size) == page  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "known", "created", "since", "stop"),
    [
        ("newest", True, 50, 60, True),
        ("newest", True, 60, 60, False),  # as new as the window's start: read on
        ("newest", False, 50, 60, False),
        ("newest", True, 50, None, True),
        ("oldest", True, 50, 60, False),
    ],
)
def test_a_newest_first_read_stops_at_a_known_older_item(
    order: str, known: bool, created: int, since: int | None, stop: bool
) -> None:
    """Reading stops at the first known item older than the window, newest first only."""
    assert listorder.reached_known(order, known, created, since) is stop  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("created", "since", "stop"),
    [(50, 60, True), (60, 60, False), (70, 60, False), (None, 60, True), (70, None, True)],
)
def test_an_oldest_first_read_goes_back_while_a_page_starts_in_the_window(
    created: int | None, since: int | None, stop: bool
) -> None:
    """Going back stops at a page whose first item is older than the window (or undated)."""
    assert listorder.before_window(created, since) is stop


@pytest.mark.parametrize(
    ("total", "expected", "new", "ok"),
    [
        (10, 10, 0, True),
        (11, 10, 1, True),
        (10, 10, 1, False),
        (9, 10, 0, False),
        (None, 0, 0, False),
    ],
)
def test_totals_balance(total: int | None, expected: int, new: int, ok: bool) -> None:
    """The answered total must be what is expected plus the new items read."""
    assert listorder.balanced(total, expected, new) is ok


def test_last_page() -> None:
    """A short page, or one reaching the total, ends the listing."""
    assert listorder.last_page(0, 7, 10, 7)
    assert listorder.last_page(1, 10, 10, 20)
    assert not listorder.last_page(0, 10, 10, 11)

"""What a worker holds and how far it trusts each claim, on a monotonic clock passed in."""

from __future__ import annotations

import datetime as dt

import pytest

from poller.delivery.holding import Holding
from poller.model import Delivery, Event

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delivery(n: int, claim: str | None = "c1") -> Delivery:
    event = Event(f"evt_{n}", "batch_job.created", "w", f"job-{n}", T0, {})
    return Delivery(n, "hook", event, 0, T0, T0, claim=claim, claimed_at=T0)


@pytest.mark.parametrize(("after", "trusted"), [(0.0, True), (1.99, True), (2.0, False)])
def test_a_claim_is_trusted_for_two_thirds_of_its_time(after: float, trusted: bool) -> None:
    """Taken by a call that began at t, a 3 s claim may be started until t + 2 s, not after."""
    clock = Clock()
    holding = Holding(3.0, monotonic=clock)
    holding.take([delivery(1)], began=clock.now)
    clock.now += after
    assert holding.trusted(delivery(1)) is trusted


def test_renewal_is_due_a_third_after_the_oldest_confirmation() -> None:
    """Claims are renewed a third of their time after the oldest was taken or renewed."""
    clock = Clock()
    holding = Holding(3.0, monotonic=clock)
    assert holding.renewal_in() == float("inf")
    holding.take([delivery(1)], began=100.0)
    holding.take([delivery(2, "c2")], began=100.5)
    clock.now = 100.25
    assert holding.renewal_in() == pytest.approx(0.75)
    clock.now = 102.0
    assert holding.renewal_in() == 0.0


def test_a_renewal_forgets_rows_taken_by_others_and_trusts_the_rest_again() -> None:
    """Rows a renewal did not keep are no longer held; those kept are trusted afresh."""
    clock = Clock()
    holding = Holding(3.0, monotonic=clock)
    holding.take([delivery(1), delivery(2)], began=100.0)
    clock.now = 110.0
    assert not holding.trusted(delivery(1))
    assert holding.renewed({"c1"}, kept=[1], began=110.0) == [2]
    assert holding.trusted(delivery(1))
    assert 2 not in holding and not holding.trusted(delivery(2))
    assert holding.renewal_in() == pytest.approx(1.0)


def test_what_is_not_held_is_not_trusted() -> None:
    """A delivery given back, or one held under another claim, is never trusted."""
    clock = Clock()
    holding = Holding(3.0, monotonic=clock)
    holding.take([delivery(1)], began=clock.now)
    assert not holding.trusted(delivery(1, "c9"))
    holding.forget([1])
    assert not holding.trusted(delivery(1))
    assert holding.renewal_in() == float("inf")


def test_the_outbox_time_runs_on_from_the_claims_database_time() -> None:
    """The database's time at the claim, plus what the monotonic clock counted since."""
    clock = Clock()
    holding = Holding(3.0, monotonic=clock)
    holding.take([delivery(1)], began=clock.now)
    clock.now += 42.5
    assert holding.outbox_now(delivery(1)) == T0 + dt.timedelta(seconds=42.5)
    unclaimed = Delivery(2, "hook", delivery(2).event, 0, T0, T0)
    assert holding.outbox_now(unclaimed) is None

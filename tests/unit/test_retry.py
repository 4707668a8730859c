"""The retry policy and HTTP classification, as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from poller.delivery import retry
from poller.delivery.retry import RetryPolicy

T0 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "transient"),
        (302, "transient"),
        (400, "rejected"),
        (401, "rejected"),
        (404, "rejected"),
        (408, "transient"),
        (410, "gone"),
        (422, "rejected"),
        (425, "transient"),
        (429, "transient"),
        (500, "transient"),
        (503, "transient"),
        (None, "transient"),
    ],
)
def test_classify(code: int | None, kind: str) -> None:
    """HTTP answers map to delivered, gone, rejected or transient."""
    assert retry.classify(code) == kind


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, 5.0), (2, 300.0), (3, 1800.0), (4, 7200.0), (5, 18000.0), (6, 36000.0), (7, 36000.0)],
)
def test_schedule_without_jitter(attempts: int, delay: float) -> None:
    """After n failures the next attempt waits the n-th step of the default schedule."""
    assert retry.retry_delay(RetryPolicy(), attempts=attempts, created_at=T0, now=T0) == delay


def test_schedule_first_entry_is_the_first_retry() -> None:
    """The schedule's first entry is the delay after the first failed attempt."""
    policy = RetryPolicy(schedule=(10.0, 20.0))
    assert retry.retry_delay(policy, attempts=1, created_at=T0, now=T0) == 10


def test_schedule_spent_is_dead() -> None:
    """After one more failure than the schedule has retries, the delivery is dead."""
    assert retry.retry_delay(RetryPolicy(), attempts=7, created_at=T0, now=T0) is not None
    assert retry.retry_delay(RetryPolicy(), attempts=8, created_at=T0, now=T0) is None


def test_sink_failures_never_spend_the_schedule() -> None:
    """A sink that keeps failing keeps the schedule's last delay instead of killing the payload."""
    delay = retry.retry_delay(RetryPolicy(), attempts=20, created_at=T0, now=T0, sink_failing=True)
    assert delay == 36000


def test_sink_failures_still_end_at_max_age() -> None:
    """Past max_age a delivery is dead, whatever failed."""
    policy = RetryPolicy(max_age=3600)
    now = T0 + dt.timedelta(minutes=59)
    assert retry.retry_delay(policy, attempts=20, created_at=T0, now=now, sink_failing=True) is None


def test_max_age_is_dead() -> None:
    """A next attempt beyond max_age from creation means dead."""
    policy = RetryPolicy(max_age=3600)
    now = T0 + dt.timedelta(minutes=59)
    assert retry.retry_delay(policy, attempts=2, created_at=T0, now=now) is None


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.75, 0.999])
def test_jitter_stays_within_ten_percent(rand: float) -> None:
    """Jitter moves a delay by at most ±10 %."""
    delay = retry.retry_delay(RetryPolicy(), attempts=2, created_at=T0, now=T0, rand=rand)
    assert delay is not None
    assert 270 <= delay <= 330


def test_retry_after_wins_when_longer() -> None:
    """A Retry-After longer than the scheduled delay is honoured."""
    assert retry.retry_delay(RetryPolicy(), attempts=1, created_at=T0, now=T0, retry_after=60) == 60


@pytest.mark.parametrize(
    ("first", "retry_after", "seconds"),
    [(True, None, 5.0), (False, None, 30.0), (True, 120.0, 120.0), (False, 10.0, 30.0)],
)
def test_probe_timing(first: bool, retry_after: float | None, seconds: float) -> None:
    """The first probe comes after the schedule's first retry, later ones every probe_interval."""
    at = retry.next_probe(RetryPolicy(), now=T0, first=first, retry_after=retry_after)
    assert at == T0 + dt.timedelta(seconds=seconds)

"""When a source is polled next."""

from __future__ import annotations

import pytest

from poller.pacing import Pace, next_delay

PACE = Pace(interval=30, active_interval=5, max_backoff=300)


@pytest.mark.parametrize(
    ("active", "streak", "retry_after", "expected"),
    [
        (False, 0, 0, 30),
        (True, 0, 0, 5),
        (False, 1, 0, 5),
        (False, 2, 0, 10),
        (False, 3, 0, 20),
        (False, 10, 0, 300),
        (False, 60, 0, 300),
        (True, 0, 42, 42),
        (False, 1, 90, 90),
    ],
)
def test_next_delay(active: bool, streak: int, retry_after: float, expected: float) -> None:
    """Idle, active, backoff (capped) and Retry-After give the expected delay."""
    assert next_delay(PACE, active=active, error_streak=streak, retry_after=retry_after) == expected


def test_backoff_jitter_bounded() -> None:
    """Backoff jitter stays within ±10 % and under the cap."""
    low = next_delay(PACE, active=False, error_streak=3, rand=0.0)
    high = next_delay(PACE, active=False, error_streak=3, rand=0.999)
    assert 18 <= low <= 20 <= high <= 22
    assert next_delay(PACE, active=False, error_streak=20, rand=0.999) <= 300

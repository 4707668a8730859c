"""When a source is polled next: pure functions of its state.

Active interval while it has jobs still moving, idle interval otherwise, exponential
backoff with jitter after errors (capped), and never sooner than a ``Retry-After`` asked.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Pace:
    """The intervals of one source."""

    interval: float = 30.0
    active_interval: float = 5.0
    max_backoff: float = 300.0
    jitter: float = 0.1


def next_delay(
    pace: Pace,
    *,
    active: bool,
    error_streak: int = 0,
    retry_after: float = 0.0,
    rand: float = 0.5,
) -> float:
    """Seconds until the next poll.

    ``error_streak`` consecutive failures back off exponentially from the active interval
    (1x, 2x, 4x, … with ±``jitter``), capped at ``max_backoff``; ``rand`` in [0, 1) draws
    the jitter (0.5 is none).
    """
    if error_streak > 0:
        base = min(pace.active_interval, pace.interval)
        delay = min(pace.max_backoff, base * (2.0 ** min(error_streak - 1, 30)))
        delay *= 1.0 + pace.jitter * (2.0 * rand - 1.0)
        delay = min(delay, pace.max_backoff)
    else:
        delay = pace.active_interval if active else pace.interval
    return max(delay, retry_after, 0.0)

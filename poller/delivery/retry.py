"""The retry policy, as pure functions: when a failed delivery goes again, or never.

A delivery's first attempt goes at once; the schedule is the delay before each retry. The
default is Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt failed,
each delay with ±10 % jitter, bounded by a maximum age (3 days). A failing sink is one
circuit: ``next_probe`` says when it is tried again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one sink retries."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    """Delay before retry 1, 2, … (the first attempt goes at once); spent, a refusal is dead."""
    max_age: float = 3 * 86400.0
    probe_interval: float = 30.0
    jitter: float = 0.1


def classify(status_code: int | None) -> str:
    """What an HTTP answer means for delivery: delivered, gone, rejected or transient.

    2xx is delivered; 410 Gone disables the sink; a 4xx other than 408, 425 and 429 is the
    receiver refusing this payload; everything else (3xx, 408, 425, 429, 5xx, no answer)
    is the sink failing.
    """
    if status_code is None:
        return "transient"
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "gone"
    if 400 <= status_code < 500 and status_code not in (408, 425, 429):
        return "rejected"
    return "transient"


def _jittered(delay: float, jitter: float, rand: float) -> float:
    return max(0.0, delay * (1.0 + jitter * (2.0 * rand - 1.0)))


def retry_delay(
    policy: RetryPolicy,
    *,
    attempts: int,
    created_at: dt.datetime,
    now: dt.datetime,
    retry_after: float | None = None,
    rand: float = 0.5,
    sink_failing: bool = False,
) -> float | None:
    """Seconds until a delivery that has now failed ``attempts`` times goes again; ``None``
    if it is dead.

    ``created_at`` and ``now`` are on one clock (the outbox's: the database's). ``rand`` in
    [0, 1) draws the jitter (0.5 is none). A ``Retry-After`` longer than the scheduled delay
    wins. Past ``max_age`` from the delivery's creation, it is dead.

    ``sink_failing``: the attempt failed because the sink did (no answer, 5xx…), not because
    it refused this payload. The circuit paces those, so they never spend the schedule: past
    its last step the delivery keeps that step's delay, until ``max_age``.
    """
    step = attempts - 1
    if step >= len(policy.schedule):
        if not sink_failing:
            return None
        step = len(policy.schedule) - 1
    delay = _jittered(policy.schedule[max(step, 0)], policy.jitter, rand)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if (now - created_at).total_seconds() + delay > policy.max_age:
        return None
    return delay


def next_probe(
    policy: RetryPolicy,
    *,
    now: dt.datetime,
    first: bool,
    retry_after: float | None = None,
) -> dt.datetime:
    """When a failing sink is tried again.

    The first probe after the circuit opens comes as soon as the schedule's first retry
    (5 s by default), so a blip costs seconds; later ones every ``probe_interval``.
    """
    delay = policy.probe_interval
    if first and policy.schedule:
        delay = min(delay, policy.schedule[0])
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + dt.timedelta(seconds=delay)

"""``poller events tail``: follow events as they are recorded, like ``journalctl -f``.

It reads the store by event ``seq`` at a short interval, so it works beside a running
daemon on SQLite and PostgreSQL alike. On PostgreSQL a transaction that took a lower
``seq`` can commit after a higher one is already visible; such a gap is looked for again
for ``hold`` seconds before it is taken for a rolled-back transaction, so a late commit
is still shown.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa

from poller.model import Event
from poller.store.feed import Feed


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """Where a tail stands: the highest ``seq`` shown and the lower ones still missing."""

    seq: int
    missing: Mapping[int, float] = dataclasses.field(default_factory=dict)
    """A missing ``seq`` → until when (monotonic seconds) to look for it."""


def advance(
    cursor: Cursor, seqs: Sequence[int], now: float, hold: float
) -> tuple[Cursor, frozenset[int]]:
    """The cursor after reading ``seqs`` (ascending), and which of them are new to show."""
    new = frozenset(s for s in seqs if s > cursor.seq or s in cursor.missing)
    missing = {s: until for s, until in cursor.missing.items() if s not in new and until > now}
    top = max([cursor.seq, *new])
    missing.update((s, now + hold) for s in range(cursor.seq + 1, top) if s not in new)
    return Cursor(top, missing), new


def type_pattern(event_type: str | None) -> re.Pattern[str]:
    """The event types ``--type`` takes: a glob where ``*`` matches anything."""
    return re.compile(re.escape(event_type or "*").replace(r"\*", ".*"))


def matcher(event_type: str | None, workspace: str | None) -> Callable[[Event], bool]:
    """Whether an event passes ``--type`` (``*`` matches anything) and ``--workspace``."""
    pattern = type_pattern(event_type)

    def matches(event: Event) -> bool:
        in_workspace = workspace is None or event.workspace == workspace
        return in_workspace and pattern.fullmatch(event.type) is not None

    return matches


SLICE = 0.5
"""The longest a wait on notices lasts before the tail looks at its stop again."""


class Waker(Protocol):
    lost: bool

    def wait(self, timeout: float) -> bool: ...


def follow(
    feed: Feed,
    start: int,
    *,
    stop: threading.Event,
    emit: Callable[[Event], None],
    matches: Callable[[Event], bool],
    on_error: Callable[[str | None], None],
    interval: float = 0.5,
    hold: float = 10.0,
    batch: int = 500,
    clock: Callable[[], float] = time.monotonic,
    notices: Waker | None = None,
) -> None:
    """Emit every matching event recorded after ``start`` until ``stop`` is set.

    Between two reads it waits ``interval`` seconds, or less when ``notices`` hears of
    new deliveries (PostgreSQL). ``on_error`` hears a store error once per episode (and
    ``None`` when it is over); the tail keeps trying.
    """

    def pause() -> None:
        end = clock() + interval
        while notices is not None and not notices.lost and not stop.is_set():
            left = end - clock()
            if left <= 0 or notices.wait(min(left, SLICE)):
                return
        stop.wait(max(0.0, end - clock()))

    cursor = Cursor(start)
    failing = False
    while not stop.is_set():
        try:
            rows = feed.after(cursor.seq, also=tuple(cursor.missing), limit=batch)
        except sa.exc.SQLAlchemyError as exc:
            if not failing:
                on_error(f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:300])
            failing = True
            pause()
            continue
        if failing:
            on_error(None)
            failing = False
        cursor, new = advance(cursor, [seq for seq, _ in rows], clock(), hold)
        for seq, event in rows:
            if seq in new and matches(event):
                emit(event)
        if len(rows) < batch:
            pause()

"""The recorded events in the order they were recorded (``seq``), for ``poller events tail``.

Reads only the ``events`` table, so it follows everything poller records — polled
transitions and proxy calls — whatever the sinks did with it. On PostgreSQL ``Notices``
hears the outbox's NOTIFY, so a tail wakes when deliveries are committed instead of at
its next look.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from poller.model import Event
from poller.store import tables
from poller.store.dialect import like_glob
from poller.store.intake import CHANNEL
from poller.store.rows import event_of

_EVENTS: sa.Table = tables.EventRow.__table__  # type: ignore[attr-defined]


class Feed:
    """Reads recorded events by ``seq`` from one engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def head(self) -> int:
        """The highest ``seq`` recorded so far (0 for an empty store)."""
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(_EVENTS.c.seq))) or 0)

    def start(
        self,
        *,
        since: dt.datetime | None = None,
        last: int | None = None,
        event_type: str | None = None,
        workspace: str | None = None,
    ) -> int:
        """The ``seq`` to follow after: now, or before the ``last`` matching events, or
        before the first event recorded at or after ``since``."""
        e = _EVENTS
        with self.engine.connect() as conn:
            head = int(conn.scalar(sa.select(sa.func.max(e.c.seq))) or 0)
            if last:
                query = sa.select(e.c.seq).order_by(e.c.seq.desc()).limit(last)
                if event_type is not None:
                    query = query.where(like_glob(e.c.type, event_type))
                if workspace is not None:
                    query = query.where(e.c.workspace == workspace)
                seqs = list(conn.scalars(query))
                return min(seqs) - 1 if seqs else head
            if since is not None:
                first = conn.scalar(sa.select(sa.func.min(e.c.seq)).where(e.c.timestamp >= since))
                return int(first) - 1 if first is not None else head
            return head

    def after(
        self, seq: int, *, also: Collection[int] = (), limit: int = 500
    ) -> list[tuple[int, Event]]:
        """Events with a ``seq`` above ``seq`` (and those in ``also``), in ``seq`` order.

        ``also`` names lower seqs not seen yet: on PostgreSQL a transaction that took a
        lower ``seq`` may commit after a higher one is visible.
        """
        e = _EVENTS
        where = e.c.seq > seq
        if also:
            where = sa.or_(where, e.c.seq.in_(list(also)))
        query = sa.select(e).where(where).order_by(e.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [(int(row.seq), event_of(row)) for row in conn.execute(query)]


class Notices:
    """A LISTEN on the outbox's channel, on a connection of its own (PostgreSQL only)."""

    def __init__(self, url: sa.URL) -> None:
        import psycopg

        from poller.store.listen import conninfo

        self._errors = (psycopg.Error, OSError)
        self._conn: Any = psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10)
        row = self._conn.execute("SELECT current_schema()").fetchone()
        self.schema = row[0] if row else None
        self._conn.execute(f"LISTEN {CHANNEL}")
        self.lost = False

    def wait(self, timeout: float) -> bool:
        """Whether a notice for this schema came within ``timeout`` seconds.

        A lost connection sets ``lost`` (the caller then waits without it).
        """
        end = time.monotonic() + timeout
        try:
            while (left := end - time.monotonic()) > 0:
                for notice in self._conn.notifies(timeout=left, stop_after=1):
                    if notice.payload == self.schema:
                        return True
        except self._errors:
            self.lost = True
        return False

    def close(self) -> None:
        self._conn.close()

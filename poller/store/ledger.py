"""The outbox as operators see it: figures per sink, deliveries, an event's history, replay.

What `poller status`, `poller events` and the metrics read; ``replay`` is the one write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from poller.model import Event
from poller.store import dbtime
from poller.store.dialect import like_glob
from poller.store.rows import ATTEMPTS, DEAD, DELIVERED, DELIVERIES, EVENTS, PENDING, event_of

STATUSES = ("pending", "failed", "dead", "delivered")
"""What operators filter on; ``failed`` is a pending delivery whose last attempt failed."""


@dataclasses.dataclass(frozen=True, slots=True)
class SinkStats:
    """Outbox figures of one sink."""

    name: str
    pending: int = 0
    failing: int = 0
    dead: int = 0
    delivered: int = 0
    oldest_pending_at: dt.datetime | None = None


class Ledger:
    """Read-mostly queries over events, deliveries and their attempts, for operators."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def sink_stats(self) -> dict[str, SinkStats]:
        """Pending, failing, dead and delivered counts and the oldest pending, per sink."""
        d = DELIVERIES
        failing = sa.and_(d.c.status == PENDING, d.c.attempts > 0)
        query = sa.select(
            d.c.sink,
            sa.func.sum(sa.case((d.c.status == PENDING, 1), else_=0)),
            sa.func.sum(sa.case((failing, 1), else_=0)),
            sa.func.sum(sa.case((d.c.status == DEAD, 1), else_=0)),
            sa.func.sum(sa.case((d.c.status == DELIVERED, 1), else_=0)),
            sa.func.min(sa.case((d.c.status == PENDING, d.c.created_at), else_=None)),
        ).group_by(d.c.sink)
        stats: dict[str, SinkStats] = {}
        with self.engine.connect() as conn:
            for sink, pending, fail, dead, delivered, oldest in conn.execute(query):
                if oldest is not None and oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=dt.UTC)
                stats[sink] = SinkStats(
                    sink,
                    int(pending or 0),
                    int(fail or 0),
                    int(dead or 0),
                    int(delivered or 0),
                    oldest,
                )
        return stats

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        sink: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, for ``poller events list``.

        ``failing``: pending, and its last attempt failed. ``attempts`` counts every attempt
        in the log, before a replay too, as ``event_detail`` does.
        """
        d, e, a = DELIVERIES, EVENTS, ATTEMPTS
        logged = (
            sa.select(sa.func.count())
            .where(a.c.delivery_id == d.c.id)
            .correlate(d)
            .scalar_subquery()
        )
        query = (
            sa.select(
                e.c.id,
                e.c.type,
                e.c.timestamp,
                e.c.resource_id,
                d.c.sink,
                d.c.status,
                sa.and_(d.c.status == PENDING, d.c.attempts > 0).label("failing"),
                logged.label("attempts"),
                d.c.last_status_code,
                d.c.last_error,
                d.c.next_attempt_at,
                d.c.delivered_at,
            )
            .join(e, e.c.seq == d.c.event_seq)
            .order_by(d.c.event_seq.desc(), d.c.sink)
            .limit(limit)
        )
        if status == "failed":
            query = query.where(d.c.status == PENDING, d.c.attempts > 0)
        elif status is not None:
            query = query.where(d.c.status == status)
        if sink is not None:
            query = query.where(d.c.sink == sink)
        if event_type is not None:
            query = query.where(like_glob(e.c.type, event_type))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def event_detail(self, event_id: str) -> dict[str, Any] | None:
        """An event's envelope and every attempt of each of its deliveries."""
        d, e, a = DELIVERIES, EVENTS, ATTEMPTS
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(e).where(e.c.id == event_id)).first()
            if row is None:
                return None
            deliveries = []
            for drow in conn.execute(
                sa.select(d).where(d.c.event_seq == row.seq).order_by(d.c.sink)
            ):
                attempts = [
                    dict(x._mapping)
                    for x in conn.execute(
                        sa.select(
                            a.c.attempted_at, a.c.ok, a.c.status_code, a.c.error, a.c.duration_ms
                        )
                        .where(a.c.delivery_id == drow.id)
                        .order_by(a.c.id)
                    )
                ]
                deliveries.append(
                    {
                        "sink": drow.sink,
                        "status": drow.status,
                        # every attempt in the log, before a replay too (the row's own
                        # count restarts at a replay, for the retry schedule)
                        "attempts": len(attempts),
                        "next_attempt_at": drow.next_attempt_at,
                        "delivered_at": drow.delivered_at,
                        "log": attempts,
                    }
                )
        return {"event": event_of(row).envelope(), "deliveries": deliveries}

    def replay(
        self,
        *,
        ids: Sequence[str] = (),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        sink: str | None = None,
    ) -> int:
        """Queue events again (delivered or dead ones too), under the same ids.

        Each chosen delivery becomes pending and due now (the database's now); its attempt
        count restarts so the retry schedule applies afresh. A claim on it is cleared: an
        attempt in flight then writes nothing back, and the delivery goes again. Returns how
        many were queued.
        """
        d, e = DELIVERIES, EVENTS
        seqs = sa.select(e.c.seq)
        if ids:
            seqs = seqs.where(e.c.id.in_(list(ids)))
        if since is not None:
            seqs = seqs.where(e.c.timestamp >= since)
        if until is not None:
            seqs = seqs.where(e.c.timestamp <= until)
        stmt = d.update().where(d.c.event_seq.in_(seqs.scalar_subquery()))
        if sink is not None:
            stmt = stmt.where(d.c.sink == sink)
        with self.engine.begin() as conn:
            now = dbtime.now(conn)
            stmt = stmt.values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                last_outcome=None,
                claim_token=None,
                claimed_until=None,
            )
            return int(conn.execute(stmt).rowcount)

    def known_event_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` name recorded events."""
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(EVENTS.c.id).where(EVENTS.c.id.in_(list(ids)))))

    def events(self, *, limit: int | None = None) -> list[Event]:
        """Recorded events in order (tests and the status command read them)."""
        query = sa.select(EVENTS).order_by(EVENTS.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [event_of(r) for r in conn.execute(query)]

"""Events enter the outbox here, whatever produced them: one delivery per routed sink.

``add_events`` is called inside the producer's own transaction (a poll's, or the proxy's),
so an event and the change that caused it are committed together. A delivery is created,
and due, at the database's time (``dbtime``), whatever the producer's clock says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa

from poller.model import Event
from poller.store import dbtime
from poller.store.rows import DELIVERIES, EVENTS, PENDING

CHANNEL = "poller_outbox"
"""The PostgreSQL NOTIFY channel new deliveries are announced on (payload: the schema)."""


def add_events(
    conn: sa.Connection,
    events: Sequence[Event],
    route: Callable[[Event], Sequence[str]],
) -> list[Event]:
    """Insert the events not already recorded (by id) and one delivery per routed sink.

    Returns the events that were new, in order. An id recorded before is skipped: that is
    what makes every event exactly-once by id, whoever detects it again.
    """
    if not events:
        return []
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.id, event)
    existing: set[str] = set()
    ids = list(unique)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        existing.update(conn.scalars(sa.select(EVENTS.c.id).where(EVENTS.c.id.in_(part))))
    new = [e for e in unique.values() if e.id not in existing]
    if not new:
        return []
    rows = [
        {
            "id": e.id,
            "type": e.type,
            "workspace": e.workspace,
            "resource_id": e.resource_id,
            "timestamp": e.timestamp,
            "data": dict(e.data),
        }
        for e in new
    ]
    seqs = conn.scalars(
        EVENTS.insert().returning(EVENTS.c.seq, sort_by_parameter_order=True), rows
    ).all()
    deliveries = [
        {
            "event_seq": seq,
            "sink": sink,
            "order_key": event.order_key,
            "status": PENDING,
            "attempts": 0,
        }
        for seq, event in zip(seqs, new, strict=True)
        for sink in route(event)
    ]
    if deliveries:
        # read once: two calls of clock_timestamp() in one statement differ by microseconds,
        # and a new delivery is due exactly when it was created
        now = dbtime.read(conn)
        conn.execute(DELIVERIES.insert().values(created_at=now, next_attempt_at=now), deliveries)
        if conn.dialect.name == "postgresql":
            # sent at commit; listeners of other schemas of the database ignore it
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, sa.func.current_schema())))
    return new

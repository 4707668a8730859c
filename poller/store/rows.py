"""The outbox's tables as Core handles, the statuses of a delivery, and a row as an Event."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from poller.model import Event
from poller.store import tables

EVENTS: sa.Table = tables.EventRow.__table__  # type: ignore[attr-defined]
DELIVERIES: sa.Table = tables.DeliveryRow.__table__  # type: ignore[attr-defined]
ATTEMPTS: sa.Table = tables.AttemptRow.__table__  # type: ignore[attr-defined]
SINKS: sa.Table = tables.SinkStateRow.__table__  # type: ignore[attr-defined]

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def event_of(row: Any) -> Event:
    """The event an ``events`` row (or a row selecting its columns) holds."""
    return Event(
        id=row.id,
        type=row.type,
        workspace=row.workspace,
        resource_id=row.resource_id,
        timestamp=row.timestamp,
        data=row.data,
    )

"""SQLModel tables. Only ``poller.store`` imports this module.

Portable by design: nothing here is SQLite-only (the same tables run on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 2
"""``meta.schema_version``: raised by a revision that older releases must not run beside."""


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the dialect stores."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class MetaRow(SQLModel, table=True):
    """Key/value facts about the database itself (its schema version)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class ResourceRow(SQLModel, table=True):
    """The snapshot: one row per tracked item of a source of a workspace."""

    __tablename__ = "resources"
    __table_args__ = (sa.Index("ix_resources_active", "workspace", "source", "active"),)
    workspace: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=32)
    resource_id: str = Field(primary_key=True, max_length=255)
    status: str | None = Field(default=None, max_length=64)
    created: int | None = Field(default=None, sa_type=sa.BigInteger)
    active: bool = False
    data: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    first_seen_at: dt.datetime = _ts(nullable=False)
    updated_at: dt.datetime = _ts(nullable=False)


class SourceStateRow(SQLModel, table=True):
    """Where each source of each workspace stands: baseline, cursor, health."""

    __tablename__ = "source_state"
    workspace: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=32)
    baselined: bool = False
    cursor: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_poll_at: dt.datetime | None = _ts()
    last_success_at: dt.datetime | None = _ts()
    last_reconcile_at: dt.datetime | None = _ts()
    last_error: str | None = Field(default=None, max_length=1000)
    error_streak: int = 0
    held_since: dt.datetime | None = _ts()
    held_count: int = 0


class EventRow(SQLModel, table=True):
    """The outbox: every event poller recorded, whatever produced it, in order (``seq``)."""

    __tablename__ = "events"
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True)
    type: str = Field(max_length=64, index=True)
    workspace: str = Field(max_length=64)
    resource_id: str = Field(max_length=255)
    timestamp: dt.datetime = _ts(nullable=False, index=True)
    data: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )


class DeliveryRow(SQLModel, table=True):
    """One event on its way to one sink, with its durable retry state."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_seq", "sink", name="uq_deliveries_event_sink"),
        sa.Index("ix_deliveries_due", "sink", "status", "next_attempt_at", "event_seq"),
        sa.Index("ix_deliveries_order", "sink", "order_key", "status", "event_seq"),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_seq: int = Field(foreign_key="events.seq", sa_type=sa.BigInteger)
    sink: str = Field(max_length=64)
    order_key: str = Field(max_length=400)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    created_at: dt.datetime = _ts(nullable=False)
    next_attempt_at: dt.datetime = _ts(nullable=False)
    last_attempt_at: dt.datetime | None = _ts()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    last_duration_ms: float | None = None
    last_outcome: str | None = Field(default=None, max_length=16)
    """``delivered``, ``transient`` (the sink failed), ``rejected`` (it refused this payload)."""
    delivered_at: dt.datetime | None = _ts()
    claim_token: str | None = Field(default=None, max_length=32)
    """Who is sending it: set by a claim, cleared when its attempt is recorded."""
    claimed_until: dt.datetime | None = _ts()
    """When an unfinished claim lapses (its holder died) and the delivery may be claimed again."""


class AttemptRow(SQLModel, table=True):
    """The delivery log: one row per attempt, kept for ``poller events show``."""

    __tablename__ = "attempts"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="deliveries.id", index=True)
    attempted_at: dt.datetime = _ts(nullable=False)
    ok: bool = False
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: float | None = None


class SinkStateRow(SQLModel, table=True):
    """Durable per-sink state: disabled after a 410, circuit open while failing."""

    __tablename__ = "sink_state"
    name: str = Field(primary_key=True, max_length=64)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=1000)
    failing_since: dt.datetime | None = _ts()
    next_probe_at: dt.datetime | None = _ts()


class LeaseRow(SQLModel, table=True):
    """Who polls a workspace (PostgreSQL replicas): holder, fencing epoch, expiry in DB time."""

    __tablename__ = "leases"
    workspace: str = Field(primary_key=True, max_length=64)
    holder: str | None = Field(default=None, max_length=255)
    epoch: int = Field(default=0, sa_type=sa.BigInteger)
    expires_at: dt.datetime | None = _ts()


class ReplicaRow(SQLModel, table=True):
    """One live ``poller run`` replica: its heartbeat, which expires like a lease."""

    __tablename__ = "replicas"
    replica: str = Field(primary_key=True, max_length=255)
    started_at: dt.datetime = _ts(nullable=False)
    expires_at: dt.datetime = _ts(nullable=False)

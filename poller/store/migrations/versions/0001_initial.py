"""The schema as poller created it before migrations (``schema_version`` 1).

A store created by that release (tables made directly, no ``alembic_version``) is stamped
with this revision rather than running it, then upgraded like any other.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "resources",
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        _ts("first_seen_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("workspace", "source", "resource_id"),
    )
    op.create_index("ix_resources_active", "resources", ["workspace", "source", "active"])
    op.create_table(
        "source_state",
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("baselined", sa.Boolean(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        _ts("last_poll_at"),
        _ts("last_success_at"),
        _ts("last_reconcile_at"),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("error_streak", sa.Integer(), nullable=False),
        _ts("held_since"),
        sa.Column("held_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace", "source"),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        _ts("timestamp", nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_events_timestamp", "events", ["timestamp"])
    op.create_index("ix_events_type", "events", ["type"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("order_key", sa.String(400), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("next_attempt_at", nullable=False),
        _ts("last_attempt_at"),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("last_duration_ms", sa.Float(), nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        _ts("delivered_at"),
        sa.ForeignKeyConstraint(["event_seq"], ["events.seq"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_seq", "sink", name="uq_deliveries_event_sink"),
    )
    op.create_index(
        "ix_deliveries_due", "deliveries", ["sink", "status", "next_attempt_at", "event_seq"]
    )
    op.create_index(
        "ix_deliveries_order", "deliveries", ["sink", "order_key", "status", "event_seq"]
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        _ts("attempted_at", nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attempts_delivery_id", "attempts", ["delivery_id"])
    op.create_table(
        "sink_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(1000), nullable=True),
        _ts("failing_since"),
        _ts("next_probe_at"),
        sa.PrimaryKeyConstraint("name"),
    )
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.String))
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    for table in ("sink_state", "attempts", "deliveries", "events", "source_state", "resources"):
        op.drop_table(table)
    op.drop_table("meta")

"""Alembic's environment: runs on the connection ``poller.store.migrate`` holds under its lock."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from poller.store import tables

_ = tables  # the tables register themselves on SQLModel.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("poller's migrations run through `poller db upgrade` (or the daemon)")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

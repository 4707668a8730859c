"""The store: snapshot, source state, outbox and delivery log, on SQLite or PostgreSQL."""

from __future__ import annotations

from poller.store.engine import create_engine, open_engine, opening, safe_url
from poller.store.outbox import Outbox
from poller.store.sql import PollCommit, Router, Store

__all__ = [
    "Outbox",
    "PollCommit",
    "Router",
    "Store",
    "create_engine",
    "open_engine",
    "opening",
    "safe_url",
]

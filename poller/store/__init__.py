"""The store: snapshot, source state, outbox and delivery log, on SQLite or PostgreSQL."""

from __future__ import annotations

from poller.store.engine import create_engine, open_engine, opening, safe_url
from poller.store.leases import (
    Lease,
    Leases,
    Replica,
    all_leases,
    limit_idle_transactions,
    live_replicas,
)
from poller.store.ledger import Ledger
from poller.store.outbox import Outbox
from poller.store.sinkstate import SinkState, SinkStates
from poller.store.sql import Fence, PollCommit, Router, Store

__all__ = [
    "Fence",
    "Lease",
    "Leases",
    "Ledger",
    "Outbox",
    "PollCommit",
    "Replica",
    "Router",
    "SinkState",
    "SinkStates",
    "Store",
    "all_leases",
    "create_engine",
    "limit_idle_transactions",
    "live_replicas",
    "open_engine",
    "opening",
    "safe_url",
]

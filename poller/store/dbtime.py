"""The outbox's clock: the database's, so that processes on hosts whose clocks disagree agree.

On PostgreSQL every time the outbox writes or compares — a delivery's creation and next
attempt, a claim's deadline, the expiry cut-off — is the server's ``clock_timestamp()``
(not ``now()``, the start of the transaction), as leases are. SQLite is one host, and its
processes share that host's clock: there it is poller's own ``utils.utcnow()``, read when
the statement is built.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from poller import utils
from poller.store import tables

Bound = sa.Connection | sa.Engine
"""Where a statement will run: what tells which clock to use."""


def _server(conn: Bound) -> bool:
    return conn.dialect.name == "postgresql"


def now(conn: Bound) -> sa.ColumnElement[dt.datetime]:
    """The database's time, as a SQL expression."""
    return after(conn, 0.0)


def after(conn: Bound, seconds: float) -> sa.ColumnElement[dt.datetime]:
    """The database's time ``seconds`` from now (before now when negative)."""
    if _server(conn):
        clock = sa.func.clock_timestamp(type_=tables.UTCDateTime())
        if not seconds:
            return clock
        return clock + sa.literal(dt.timedelta(seconds=seconds), sa.Interval())
    return sa.literal(utils.utcnow() + dt.timedelta(seconds=seconds), tables.UTCDateTime())


def now_param(conn: Bound, name: str) -> sa.ColumnElement[dt.datetime]:
    """The database's time in a statement built once: on SQLite the bound parameter ``name``,
    whose value is ``delay(conn, 0)`` read when the statement runs."""
    if _server(conn):
        return sa.func.clock_timestamp(type_=tables.UTCDateTime())
    return sa.bindparam(name, type_=tables.UTCDateTime())


def after_param(conn: Bound, name: str) -> sa.ColumnElement[dt.datetime]:
    """The database's time plus the bound parameter ``name`` (a value of ``delay``)."""
    if _server(conn):
        clock = sa.func.clock_timestamp(type_=tables.UTCDateTime())
        return clock + sa.bindparam(name, type_=sa.Interval())
    return sa.bindparam(name, type_=tables.UTCDateTime())


def delay(conn: Bound, seconds: float) -> Any:
    """The value of an ``after_param`` parameter that stands for ``seconds`` from now."""
    if _server(conn):
        return dt.timedelta(seconds=seconds)
    return utils.utcnow() + dt.timedelta(seconds=seconds)


def after_field(conn: Bound, seconds: sa.ColumnElement[Any]) -> sa.ColumnElement[dt.datetime]:
    """The database's time plus ``seconds``, a column of ``field_delay`` values."""
    if _server(conn):
        clock = sa.func.clock_timestamp(type_=tables.UTCDateTime())
        return clock + seconds * sa.literal(dt.timedelta(seconds=1), sa.Interval())
    return sa.type_coerce(seconds, tables.UTCDateTime())


def field_delay(conn: Bound) -> Callable[[float], Any]:
    """What stands for ``seconds`` from now in a JSON document that ``after_field`` reads:
    the seconds on PostgreSQL; on SQLite the time itself, as the store writes it."""
    if _server(conn):
        return float
    stored = tables.UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert stored is not None
    return lambda seconds: stored(utils.utcnow() + dt.timedelta(seconds=seconds))


def read(conn: sa.Connection) -> dt.datetime:
    """The database's time, read."""
    value: dt.datetime | None = conn.scalar(sa.select(now(conn)))
    assert value is not None
    return value

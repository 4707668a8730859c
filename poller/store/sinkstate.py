"""A sink's durable state: enabled or disabled (after a 410), and its circuit."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from poller.store.dialect import upsert
from poller.store.rows import SINKS


@dataclasses.dataclass(frozen=True, slots=True)
class SinkState:
    """Durable state of one sink."""

    name: str
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: dt.datetime | None = None
    next_probe_at: dt.datetime | None = None

    @property
    def circuit_open(self) -> bool:
        return self.failing_since is not None


class SinkStates:
    """Reads and writes ``SinkState`` rows; a sink never saved is enabled with a closed circuit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> SinkState:
        """The saved state of sink ``name``, or the state of a sink never saved."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(SINKS).where(SINKS.c.name == name)).first()
        if row is None:
            return SinkState(name=name)
        return SinkState(
            name=name,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            next_probe_at=row.next_probe_at,
        )

    def save(self, state: SinkState) -> None:
        """Insert or replace the state of ``state.name``."""
        with self.engine.begin() as conn:
            upsert(conn, SINKS, [dataclasses.asdict(state)], ("name",))

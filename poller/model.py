"""Frozen domain objects shared by the core: resources seen in the API and events about them.

These are plain data. Tables live in ``poller.store``; the diff never sees a session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from poller import utils


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """One item of a source as poller remembers it.

    ``data`` holds the API fields poller keeps (see ``sources.SourceSpec.keep``), with the
    real API's names and values.
    """

    id: str
    status: str | None
    created: int | None
    data: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A trigger event, as it enters the outbox and reaches every sink."""

    id: str
    type: str
    workspace: str
    resource_id: str
    timestamp: dt.datetime
    data: Mapping[str, Any]

    @property
    def resource(self) -> str:
        """The resource half of the type: ``batch_job`` for ``batch_job.succeeded``."""
        return self.type.partition(".")[0]

    @property
    def action(self) -> str:
        """The action half of the type: ``succeeded`` for ``batch_job.succeeded``."""
        return self.type.partition(".")[2]

    @property
    def order_key(self) -> str:
        """Events with the same key reach a sink in the order they were recorded."""
        return f"{self.workspace}/{self.resource}/{self.resource_id}"

    def envelope(self) -> dict[str, Any]:
        """The JSON document sinks deliver."""
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": utils.isoformat(self.timestamp),
            "workspace": self.workspace,
            "data": dict(self.data),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class SourceState:
    """Where one source of one workspace stands, as the store remembers it."""

    workspace: str
    source: str
    baselined: bool = False
    cursor: int | None = None
    """The newest creation time seen (unix seconds), for incremental listing."""
    last_poll_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    last_reconcile_at: dt.datetime | None = None
    last_error: str | None = None
    error_streak: int = 0
    held_since: dt.datetime | None = None
    """When deletions were first held back by the mass-deletion guard."""
    held_count: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one sink."""

    id: int
    sink: str
    event: Event
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    claim: str | None = None
    """The claim this process holds on it (``Outbox.claim``); its writes must present it."""
    claimed_at: dt.datetime | None = None
    """When the claim was taken, in the database's time (the outbox's clock)."""

    @property
    def order_key(self) -> str:
        return self.event.order_key


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to, as a sink reports it."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (429/503 ``Retry-After``)."""
    gone: bool = False
    """The receiver answered 410 Gone: the sink must stop until re-enabled."""
    rejected: bool = False
    """The receiver refused this payload (a 4xx) while being reachable."""
    detail: str | None = None
    """What the receiver answered, briefly (the start of a 2xx body), for ``sinks test``."""

"""What every sink is: a name and one coroutine that delivers one event."""

from __future__ import annotations

import json
from typing import Any, Protocol

from poller.model import Event, Outcome


class Sink(Protocol):
    """Delivers one event per call and says how it went; never raises for a failed attempt."""

    name: str

    async def deliver(self, event: Event) -> Outcome: ...

    async def aclose(self) -> None: ...


def dumps(document: Any) -> bytes:
    """The compact JSON bytes every sink sends (and signs)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode()

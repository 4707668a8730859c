"""What every sink is: a name and one coroutine that delivers one event.

Also what sinks share: the JSON bytes they send, the two body formats (poller's envelope or
a CloudEvents 1.0 document) and the ``{resource}``-style templates of URLs, subjects and topics.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Protocol

from poller import utils
from poller.model import Event, Outcome

TEMPLATE_FIELDS = ("resource", "action", "type", "workspace")
"""The placeholders a target template may hold, each a property of ``Event``."""

_PLACEHOLDER = re.compile(r"\{(" + "|".join(TEMPLATE_FIELDS) + r")\}")


class Sink(Protocol):
    """Delivers one event per call and says how it went; never raises for a failed attempt."""

    name: str

    async def deliver(self, event: Event) -> Outcome: ...

    async def aclose(self) -> None: ...


def dumps(document: Any) -> bytes:
    """The compact JSON bytes every sink sends (and signs)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def cloudevent(event: Event) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode form of an event."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": f"poller/{event.workspace}",
        "type": event.type,
        "subject": event.resource_id,
        "time": utils.isoformat(event.timestamp),
        "datacontenttype": "application/json",
        "data": dict(event.data),
    }


def render(event: Event, format: str) -> tuple[bytes, str]:
    """The body of ``event`` in ``format`` (``standard`` or ``cloudevents``) and its type."""
    if format == "cloudevents":
        return dumps(cloudevent(event)), "application/cloudevents+json"
    return dumps(event.envelope()), "application/json"


def expand(template: str, event: Event) -> str:
    """``template`` with ``{resource}``, ``{action}``, ``{type}`` and ``{workspace}`` filled."""
    return _PLACEHOLDER.sub(lambda m: str(getattr(event, m.group(1))), template)


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), for an Outcome."""
    return round((time.perf_counter() - started) * 1000.0, 3)

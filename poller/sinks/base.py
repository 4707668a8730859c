"""What every sink is: a name and one coroutine that delivers one event.

A sink may also deliver several events in one call (:class:`BatchSink`): the broker sinks
send them pipelined and gather the acknowledgements; each event still gets its own outcome.

Also what sinks share: the JSON bytes they send, the two body formats (poller's envelope or
a CloudEvents 1.0 document) and the ``{resource}``-style templates of URLs, subjects and topics.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that also delivers several events in one call, pipelined on its connection.

    ``deliver_many`` returns one outcome per event, in the events' order, each meaning what
    ``deliver``'s would; like ``deliver`` it never raises for a failed attempt. A sink whose
    ``pipelined`` is false has the method but is better sent one event per call.
    """

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]: ...


def batching(sink: Sink) -> BatchSink | None:
    """``sink`` when it is best sent batches (``deliver_many``, not ``pipelined = False``)."""
    if isinstance(sink, BatchSink) and getattr(sink, "pipelined", True):
        return sink
    return None


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

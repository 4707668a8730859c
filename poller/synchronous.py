"""The synchronous triggers: one event builder for the proxy and for ``poller action``.

Five endpoints answer at once and no listing shows what they did, so their triggers are
recorded from the call itself: ``POST /chat/completions`` gives ``chat_completion.created``
and so on. ``events(call, ...)`` turns one observed call — its request, its answer as
received (JSON or a server-sent-events stream) — into the event, pure and without I/O.

Event ids come from ``catalog.event_id(workspace, type, response id)``, so recording the
same call twice never makes two events. OCR answers carry no id: poller makes one from a
digest of the request, the answer and the moment the call started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from poller import catalog
from poller.model import Event
from poller.proxy import stream

ENDPOINTS: Mapping[str, str] = {
    "/chat/completions": "chat_completion.created",
    "/fim/completions": "fim_completion.created",
    "/embeddings": "embeddings.generated",
    "/agents/completions": "agent_completion.created",
    "/ocr": "ocr.completed",
}
"""The recorded endpoints, by path under the API root (``/v1``), and their trigger."""

CONTENT_FIELDS = frozenset({"content", "text"})
"""Payload fields that hold generated text; ``record_content: false`` leaves them null."""


def trigger(method: str, path: str) -> str | None:
    """The event type a call records: ``POST /chat/completions`` → ``chat_completion.created``.

    ``path`` is relative to the API root (``/v1`` already removed); a trailing slash or a
    query string does not matter. ``None`` for any call that records nothing.
    """
    if method.upper() != "POST":
        return None
    bare = path.partition("?")[0].rstrip("/") or "/"
    return ENDPOINTS.get(bare if bare.startswith("/") else "/" + bare)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One synchronous API call as observed: what was asked and what came back, as bytes."""

    method: str
    path: str
    """Relative to the API root, e.g. ``/chat/completions``."""
    request_body: bytes
    status: int
    content_type: str
    content_encoding: str | None
    body: bytes
    """The answer's body as received (still content-encoded)."""
    started_at: dt.datetime
    finished_at: dt.datetime

    @property
    def streamed(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a call records: its events, or why it records none."""

    events: tuple[Event, ...] = ()
    skipped: str | None = None
    """Why nothing is recorded, e.g. ``HTTP 400`` or ``stream ended without [DONE]``."""


def call_digest(call: Call) -> str:
    """A stable id for a call whose answer has none (OCR): ``ocr_`` + 32 hex digits.

    It digests the request, the answer and the moment the call started, so the same
    observed call always gets the same id and two calls never share one.
    """
    digest = hashlib.sha256()
    for part in (
        call.method.upper().encode(),
        call.path.encode(),
        hashlib.sha256(call.request_body).digest(),
        hashlib.sha256(call.body).digest(),
        call.started_at.astimezone(dt.UTC).isoformat().encode(),
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    prefix = call.path.strip("/").split("/", 1)[0] or "call"
    return f"{prefix}_{digest.hexdigest()[:32]}"


def answer_of(call: Call, *, keep_content: bool = True) -> dict[str, Any]:
    """The answer as a JSON object: parsed, or assembled from its stream.

    Raises ``ValueError`` naming what is wrong when there is no usable answer.
    """
    body = stream.decode(call.body, call.content_encoding)
    if call.streamed:
        assembled = stream.assemble(body, keep_content=keep_content)
        if assembled is None:
            raise ValueError("the stream ended without data: [DONE]")
        return assembled
    try:
        answer = json.loads(body)
    except ValueError:
        raise ValueError("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer


def build(
    event_type: str,
    answer: Mapping[str, Any],
    *,
    workspace: str,
    now: dt.datetime,
    record_content: bool = True,
    fallback_id: str,
) -> Event:
    """The ``event_type`` event of ``answer`` with the seed's payload fields.

    Generated text is read as text (a list of content chunks gives its text chunks
    joined) and left null when ``record_content`` is false; embedding vectors are
    never copied, only their count and dimension. ``fallback_id`` names the call when
    the answer has no ``id`` of its own.
    """
    view = dict(answer)
    if event_type == "embeddings.generated":
        data = answer.get("data")
        vectors = data if isinstance(data, list) else []
        first = vectors[0] if vectors and isinstance(vectors[0], Mapping) else {}
        embedding = first.get("embedding")
        view["count"] = len(vectors)
        view["dimension"] = len(embedding) if isinstance(embedding, list) else None
    payload = catalog.payload(event_type, view)
    for name in CONTENT_FIELDS & payload.keys():
        payload[name] = stream.text_of(payload[name]) if record_content else None
    own_id = answer.get("id")
    resource_id = own_id if isinstance(own_id, str) and own_id else fallback_id
    return Event(
        id=catalog.event_id(workspace, event_type, resource_id),
        type=event_type,
        workspace=workspace,
        resource_id=resource_id,
        timestamp=now,
        data=payload,
    )


def events(call: Call, *, workspace: str, record_content: bool = True) -> Outcome:
    """The events one observed call records (one for a 2xx on a recorded endpoint)."""
    event_type = trigger(call.method, call.path)
    if event_type is None:
        return Outcome(skipped="not a recorded endpoint")
    if not 200 <= call.status < 300:
        return Outcome(skipped=f"HTTP {call.status}")
    try:
        answer = answer_of(call, keep_content=record_content)
    except ValueError as exc:
        return Outcome(skipped=str(exc))
    event = build(
        event_type,
        answer,
        workspace=workspace,
        now=call.finished_at,
        record_content=record_content,
        fallback_id=call_digest(call),
    )
    return Outcome(events=(event,))

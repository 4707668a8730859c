"""JSON Schemas of the events poller sends, generated from the catalog.

Each event type has two forms: poller's envelope (``format: standard`` and every broker,
file and log sink) and the CloudEvents 1.0 structured-mode document (``format:
cloudevents``). Both carry the same payload, whose fields, types and descriptions come
from ``catalog`` — the one place an event's shape is declared. ``poller events schema``
prints these, and ``docs/events/`` keeps them (``files()``), so a receiver can be
generated instead of guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from poller import catalog

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE, CLOUDEVENTS = "envelope", "cloudevents"
FORMS = (ENVELOPE, CLOUDEVENTS)

EVENT_ID: Mapping[str, Any] = {
    "type": "string",
    "pattern": "^evt_[a-z2-7]{26}$",
    "description": "Stable event id: the same transition always has the same id "
    "(deduplicate by it). Also the `webhook-id` header.",
}
TIMESTAMP: Mapping[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "When poller saw the transition (UTC, ISO 8601).",
}


def event_types() -> tuple[catalog.EventType, ...]:
    """Every type poller can send: the catalog's triggers and ``poller.test``."""
    return (*catalog.TYPES, catalog.TEST)


def payload(event_type: catalog.EventType) -> dict[str, Any]:
    """The schema of one type's ``data``: every catalog field, present (null if unknown)."""
    return {
        "title": f"{event_type.name} payload",
        "type": "object",
        "properties": {
            f.name: {**f.schema, "description": f.description} for f in event_type.fields
        },
        "required": [f.name for f in event_type.fields],
        "additionalProperties": False,
    }


def envelope(event_type: catalog.EventType) -> dict[str, Any]:
    """The schema of one type's envelope, as ``Event.envelope()`` builds it."""
    return {
        "title": event_type.name,
        "description": event_type.description,
        "type": "object",
        "properties": {
            "id": dict(EVENT_ID),
            "type": {"const": event_type.name, "description": "The event type."},
            "timestamp": dict(TIMESTAMP),
            "workspace": {"type": "string", "description": "The configured workspace name."},
            "data": payload(event_type),
        },
        "required": ["id", "type", "timestamp", "workspace", "data"],
        "additionalProperties": False,
    }


def cloudevent(event_type: catalog.EventType) -> dict[str, Any]:
    """The schema of one type as a CloudEvents 1.0 structured-mode document."""
    return {
        "title": f"{event_type.name} (CloudEvents)",
        "description": event_type.description,
        "type": "object",
        "properties": {
            "specversion": {"const": "1.0"},
            "id": dict(EVENT_ID),
            "source": {
                "type": "string",
                "pattern": "^poller/",
                "description": "`poller/` and the workspace name.",
            },
            "type": {"const": event_type.name},
            "subject": {"type": "string", "description": "The resource's id."},
            "time": dict(TIMESTAMP),
            "datacontenttype": {"const": "application/json"},
            "data": payload(event_type),
        },
        "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
        "additionalProperties": False,
    }


_BUILDERS = {ENVELOPE: envelope, CLOUDEVENTS: cloudevent}


def schema(name: str, form: str = ENVELOPE) -> dict[str, Any]:
    """The standalone schema of the type ``name``; ``KeyError`` for an unknown type."""
    by_name = {t.name: t for t in event_types()}
    return {"$schema": DIALECT, **_BUILDERS[form](by_name[name])}


def combined(form: str = ENVELOPE) -> dict[str, Any]:
    """One schema that any event in ``form`` matches, by its ``type``."""
    types = event_types()
    return {
        "$schema": DIALECT,
        "title": "poller event" + (" (CloudEvents)" if form == CLOUDEVENTS else ""),
        "description": "Any event poller sends; `type` says which.",
        "oneOf": [{"$ref": f"#/$defs/{t.name}"} for t in types],
        "$defs": {t.name: _BUILDERS[form](t) for t in types},
    }

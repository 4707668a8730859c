"""The AsyncAPI 3.0 document of every channel poller publishes to, built from the catalog.

One channel per way an event leaves poller: the http sink's URL (as configured, or a
``{resource}/{action}`` template such as the seed's per-event paths), NATS subjects,
AMQP routing keys on a topic exchange, a Redis stream and MQTT topics. Each channel
carries one message per event type, whose payload is the type's schema from
``eventschema`` and whose headers say how the event's id travels (``webhook-id``,
``Nats-Msg-Id``, AMQP ``message_id``, the stream entry's ``id`` field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from poller import __version__, catalog, eventschema
from poller import config as config_mod


def _default(model: type[pydantic.BaseModel], key: str) -> str:
    """A sink's default address, as its config model declares it."""
    return str(model.model_fields[key].default)


NATS_SUBJECT = _default(config_mod.NatsSinkConfig, "subject")
AMQP_ROUTING_KEY = _default(config_mod.AmqpSinkConfig, "routing_key")
MQTT_TOPIC = _default(config_mod.MqttSinkConfig, "topic")
REDIS = "redis"
"""The form of a Redis stream entry: fields ``id``, ``type`` and ``event`` (the envelope)."""

HEADERS: Mapping[str, Mapping[str, Any]] = {
    "StandardWebhooksHeaders": {
        "type": "object",
        "properties": {
            "webhook-id": {
                **eventschema.EVENT_ID,
                "description": "The event id (deduplicate by it).",
            },
            "webhook-timestamp": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Unix seconds when this attempt was signed.",
            },
            "webhook-signature": {
                "type": "string",
                "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$",
                "description": "Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 "
                "of `{webhook-id}.{webhook-timestamp}.{body}`, one per configured secret, "
                "separated by spaces. Absent when the sink has no secret.",
            },
        },
        "required": ["webhook-id", "webhook-timestamp"],
    },
    "MqttUserProperties": {
        "type": "object",
        "description": "MQTT 5 user properties (none over MQTT 3.1.1, where the body's `id` "
        "is the only place of the event id).",
        "properties": {
            "id": {**eventschema.EVENT_ID},
            "type": {"type": "string", "description": "The event type."},
        },
    },
    "NatsHeaders": {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {**eventschema.EVENT_ID},
            "Content-Type": {"enum": ["application/json", "application/cloudevents+json"]},
        },
        "required": ["Nats-Msg-Id", "Content-Type"],
    },
}
"""Schemas of the headers that carry the event id, by their key under components/schemas."""


_BOTH = (eventschema.ENVELOPE, eventschema.CLOUDEVENTS)
"""``format: standard`` sends the envelope, ``format: cloudevents`` the CloudEvents form."""


@dataclasses.dataclass(frozen=True, slots=True)
class Channel:
    """One way events leave poller, as an AsyncAPI channel on one server."""

    key: str
    protocol: str
    host: str
    title: str
    address: str | None
    description: str
    forms: tuple[str, ...] = (eventschema.ENVELOPE,)
    headers: str | None = None
    """The key of its headers' schema under ``components/schemas``."""
    bindings: Mapping[str, Any] | None = None


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "webhook",
        "https",
        "receiver.example.com",
        "HTTP webhook",
        None,
        "An `http` sink POSTs each event to its `url`, signed the Standard Webhooks way. "
        "`format: standard` sends the envelope, `format: cloudevents` a CloudEvents 1.0 "
        "structured-mode document. 2xx means delivered; see docs/operations.md for the "
        "rest.",
        _BOTH,
        "StandardWebhooksHeaders",
        {"http": {"method": "POST"}},
    ),
    Channel(
        "webhookPerEvent",
        "https",
        "receiver.example.com",
        "HTTP webhook, one path per event type",
        catalog.WEBHOOK_PATH,
        "An `http` sink whose `url` carries `{resource}` and `{action}`: "
        f"`https://host{catalog.WEBHOOK_PATH}` gives the seed connector's per-event paths.",
        _BOTH,
        "StandardWebhooksHeaders",
        {"http": {"method": "POST"}},
    ),
    Channel(
        "nats",
        "nats",
        "localhost:4222",
        "NATS subject",
        NATS_SUBJECT,
        "A `nats` sink publishes each event to JetStream on this subject (a template; "
        "a stream must take it) and counts it delivered once the stream acknowledged it. "
        "`Nats-Msg-Id` is the event id, so JetStream drops a duplicate within its window.",
        _BOTH,
        headers="NatsHeaders",
    ),
    Channel(
        "amqp",
        "amqp",
        "localhost:5672",
        "AMQP routing key",
        AMQP_ROUTING_KEY,
        "An `amqp` sink publishes each event, persistent and mandatory, with publisher "
        "confirms, to its `exchange` (a durable topic exchange) with this routing key (a "
        "template). The AMQP properties `message_id`, `type` and `timestamp` are the "
        "event's id, type and time.",
        _BOTH,
        bindings={"amqp": {"is": "routingKey", "exchange": {"type": "topic", "durable": True}}},
    ),
    Channel(
        "redis",
        "redis",
        "localhost:6379",
        "Redis stream",
        "{stream}",
        "A `redis` sink adds one entry per event to its `stream` (`XADD`): the fields `id` "
        "(the event id), `type` (the event type) and `event` (the envelope, or with "
        "`format: cloudevents` the CloudEvents document, as JSON). Redis does not "
        "deduplicate: consumers do, by `id`.",
        (REDIS,),
    ),
    Channel(
        "mqtt",
        "mqtt",
        "localhost:1883",
        "MQTT topic",
        MQTT_TOPIC,
        "An `mqtt` sink publishes each event on this topic (a template) at its `qos` "
        "(1 by default: delivered once the broker's PUBACK arrived). Over MQTT 5 the "
        "event's id and type are also user properties, and the content type is set.",
        _BOTH,
        headers="MqttUserProperties",
    ),
)


def redis_entry(event_type: Any) -> dict[str, Any]:
    """The schema of one type's Redis stream entry (its fields are strings)."""
    return {
        "title": f"{event_type.name} (Redis stream entry)",
        "type": "object",
        "properties": {
            "id": dict(eventschema.EVENT_ID),
            "type": {"const": event_type.name},
            "event": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "The envelope as JSON (components/schemas/"
                f"{event_type.name}), or the CloudEvents document (components/schemas/"
                f"{event_type.name}.cloudevents).",
            },
        },
        "required": ["id", "type", "event"],
        "additionalProperties": False,
    }


_CONTENT_TYPES = {
    eventschema.ENVELOPE: "application/json",
    eventschema.CLOUDEVENTS: "application/cloudevents+json",
    REDIS: "application/json",
}


def schema_key(name: str, form: str) -> str:
    """The key under ``components/schemas`` of one type in one form."""
    return name if form == eventschema.ENVELOPE else f"{name}.{form}"


def message_key(name: str, form: str) -> str:
    """The key of one type's message in a channel: the type, with the form when not plain."""
    return name if form in (eventschema.ENVELOPE, REDIS) else f"{name}.{form}"


def _parameters(address: str | None) -> dict[str, Any]:
    types = eventschema.event_types()
    known = {
        "resource": {
            "enum": sorted({t.resource for t in types}),
            "description": "The resource half of the event type (`batch_job`).",
        },
        "action": {
            "enum": sorted({t.action for t in types}),
            "description": "The action half of the event type (`succeeded`).",
        },
        "stream": {"description": "The sink's configured stream key."},
    }
    return {name: spec for name, spec in known.items() if address and f"{{{name}}}" in address}


def _channel(channel: Channel) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for t in eventschema.event_types():
        for form in channel.forms:
            message: dict[str, Any] = {
                "name": message_key(t.name, form),
                "title": t.name,
                "summary": t.description,
                "contentType": _CONTENT_TYPES[form],
                "payload": {"$ref": f"#/components/schemas/{schema_key(t.name, form)}"},
            }
            if channel.headers is not None:
                message["headers"] = {"$ref": f"#/components/schemas/{channel.headers}"}
            messages[message_key(t.name, form)] = message
    out: dict[str, Any] = {
        "address": channel.address,
        "title": channel.title,
        "description": channel.description,
        "servers": [{"$ref": f"#/servers/{channel.key}"}],
        "messages": messages,
    }
    parameters = _parameters(channel.address)
    if parameters:
        out["parameters"] = parameters
    if channel.bindings:
        out["bindings"] = {k: v for k, v in channel.bindings.items() if k != "http"}
        if not out["bindings"]:
            del out["bindings"]
    return out


def _operation(channel: Channel, messages: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": "send",
        "title": f"Publish to the {channel.title}",
        "channel": {"$ref": f"#/channels/{channel.key}"},
        "messages": [{"$ref": f"#/channels/{channel.key}/messages/{key}"} for key in messages],
    }
    if channel.bindings and "http" in channel.bindings:
        out["bindings"] = {"http": dict(channel.bindings["http"])}
    return out


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document, as a JSON-ready mapping."""
    channels = {c.key: _channel(c) for c in CHANNELS}
    schemas: dict[str, Any] = {key: dict(value) for key, value in HEADERS.items()}
    for t in eventschema.event_types():
        schemas[schema_key(t.name, eventschema.ENVELOPE)] = eventschema.envelope(t)
        schemas[schema_key(t.name, eventschema.CLOUDEVENTS)] = eventschema.cloudevent(t)
        schemas[schema_key(t.name, REDIS)] = redis_entry(t)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "poller events",
            "version": __version__,
            "description": "The events poller sends about Mistral AI batch jobs, fine-tuning "
            "jobs, files, models and synchronous calls, on every channel it publishes to. "
            "Every event carries a stable id: deduplicate by it. Generated by "
            "`poller events schema --asyncapi`.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            c.key: {
                "host": "{host}",
                "protocol": c.protocol,
                "description": f"Where the sink's {c.title} lives.",
                "variables": {"host": {"default": c.host, "description": "Host and port."}},
            }
            for c in CHANNELS
        },
        "channels": channels,
        "operations": {
            f"{c.key}.send": _operation(c, channels[c.key]["messages"]) for c in CHANNELS
        },
        "components": {"schemas": schemas},
    }

"""The ``mqtt`` sink: publishes each event to an MQTT broker over MQTT 5 (or 3.1.1).

At ``qos`` 1 a message counts once the broker's PUBACK arrived, at ``qos`` 2 once its
PUBCOMP did; at ``qos`` 0 there is no acknowledgement, so it counts once it was sent. The
envelope carries the event id; MQTT 5 also gets it as the user property ``id`` (beside
``type``) and the body's content type. A broker that refuses MQTT 5 is spoken to in 3.1.1,
without properties.
"""

from __future__ import annotations

import ssl
import urllib.parse
import uuid

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from poller.model import Event
from poller.sinks import base
from poller.sinks.broker import BrokerSink, Stale

_UNSUPPORTED = (1, 132)
"""CONNACK codes for a protocol version the broker does not speak (MQTT 3.1.1, MQTT 5)."""


class MqttSink(BrokerSink[aiomqtt.Client]):
    """Publishes to ``topic`` (a template) at ``qos`` on the broker at ``url``."""

    kind = "mqtt"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        topic: str,
        qos: int = 1,
        format: str = "standard",
        timeout: float = 15.0,
    ) -> None:
        super().__init__(name, format=format, timeout=timeout)
        self.url = url
        self.topic = topic
        self.qos = qos
        self.protocol = aiomqtt.ProtocolVersion.V5

    async def connect(self) -> aiomqtt.Client:
        try:
            return await self._open(self.protocol)
        except aiomqtt.MqttCodeError as exc:
            if self.protocol != aiomqtt.ProtocolVersion.V5 or exc.rc not in _UNSUPPORTED:
                raise
        # a broker that does not speak MQTT 5 refused the version: speak 3.1.1 from now on
        self.log.info("mqtt_protocol_fallback", protocol="3.1.1")
        self.protocol = aiomqtt.ProtocolVersion.V311
        return await self._open(self.protocol)

    async def _open(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        parts = urllib.parse.urlsplit(self.url)
        secure = parts.scheme == "mqtts"
        client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if secure else 1883),
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            # several poller processes may publish for one config: each its own session
            identifier=f"poller-{self.name}-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            timeout=self.timeout,
            tls_context=ssl.create_default_context() if secure else None,
        )
        await client.__aenter__()
        return client

    async def publish(
        self, client: aiomqtt.Client, event: Event, body: bytes, content_type: str
    ) -> str | None:
        properties = None
        if self.protocol == aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("id", event.id), ("type", event.type)]
            properties.ContentType = content_type
        try:
            await client.publish(
                base.expand(self.topic, event),
                body,
                qos=self.qos,
                properties=properties,
                timeout=self.timeout,
            )
        except aiomqtt.MqttCodeError as exc:
            if exc.rc == paho.MQTT_ERR_NO_CONN:
                raise Stale from exc  # the broker had dropped us; nothing was sent
            raise
        return {0: "sent (qos 0: no acknowledgement)", 1: "PUBACK", 2: "PUBCOMP"}[self.qos]

    async def disconnect(self, client: aiomqtt.Client) -> None:
        await client.__aexit__(None, None, None)


def _unquoted(value: str | None) -> str | None:
    return urllib.parse.unquote(value) if value is not None else None

"""The ``mqtt`` sink: publishes each event to an MQTT broker over MQTT 5 (or 3.1.1).

At ``qos`` 1 a message counts once the broker's PUBACK arrived, at ``qos`` 2 once its
PUBCOMP did; at ``qos`` 0 there is no acknowledgement, so it counts once it was sent. The
envelope carries the event id; MQTT 5 also gets it as the user property ``id`` (beside
``type``) and the body's content type. A broker that refuses MQTT 5 is spoken to in 3.1.1,
without properties.

The dispatcher sends it one event per call (``pipelined`` is false), up to its concurrency
at once, so several QoS 1 (or 2) publishes are outstanding on the connection, each awaiting
its own acknowledgement. Batches would be slower: a batch waits for every PUBACK before
anything more is sent, and a broker that leaves Nagle's algorithm on (Mosquitto's default,
``set_tcp_nodelay false``) then holds the later PUBACKs until the client's delayed TCP
acknowledgement, tens of milliseconds, per batch. ``deliver_many`` still works, publishing
concurrently as the base class does (aiomqtt offers no batch of its own).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import urllib.parse
import uuid
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from poller.model import Event
from poller.sinks import base
from poller.sinks.broker import BrokerSink, Refused, Stale

_UNSUPPORTED = (1, 132)
"""CONNACK codes for a protocol version the broker does not speak (MQTT 3.1.1, MQTT 5)."""


_MID: contextvars.ContextVar[int] = contextvars.ContextVar("mqtt_mid")
"""The packet id of the message the current task published last."""


class AckedClient(aiomqtt.Client):
    """aiomqtt's client, keeping what aiomqtt drops: an MQTT 5 PUBACK's reason code.

    A broker refuses a message (not authorized, too large) with a PUBACK whose reason code
    is 0x80 or more; aiomqtt would count it as published. The packet id of each publish is
    noted in the publishing task's context, so its refusal can be found once it is answered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: dict[int, ReasonCode] = {}
        publish = self._client.publish

        def noting_mid(*args: Any, **kwargs: Any) -> paho.MQTTMessageInfo:
            info = publish(*args, **kwargs)
            _MID.set(info.mid)
            return info

        self._client.publish = noting_mid  # type: ignore[method-assign]

    async def abandon(self) -> None:
        """Close what a connect that failed or timed out left open.

        aiomqtt leaves the socket of an unanswered CONNECT open, read by the event loop,
        and its housekeeping task running: each such attempt would leave both behind.
        """
        # paho's own close: the socket goes, and with it its reader and writer
        self._client._sock_close()
        misc = self._misc_task
        if misc is not None and not misc.done():
            misc.cancel()
            await asyncio.gather(misc, return_exceptions=True)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if isinstance(reason_code, ReasonCode) and reason_code.is_failure:
            self.refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)


class MqttSink(BrokerSink[AckedClient]):
    """Publishes to ``topic`` (a template) at ``qos`` on the broker at ``url``."""

    kind = "mqtt"
    pipelined = False  # see the module's docstring

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

    async def connect(self) -> AckedClient:
        try:
            return await self._open(self.protocol)
        except aiomqtt.MqttCodeError as exc:
            if self.protocol != aiomqtt.ProtocolVersion.V5 or exc.rc not in _UNSUPPORTED:
                raise
        # a broker that does not speak MQTT 5 refused the version: speak 3.1.1 from now on
        self.log.info("mqtt_protocol_fallback", protocol="3.1.1")
        self.protocol = aiomqtt.ProtocolVersion.V311
        return await self._open(self.protocol)

    async def _open(self, protocol: aiomqtt.ProtocolVersion) -> AckedClient:
        parts = urllib.parse.urlsplit(self.url)
        secure = parts.scheme == "mqtts"
        client = AckedClient(
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
        # the TCP connect runs in a thread aiomqtt cannot stop: bound it as the sink is
        client._client.connect_timeout = self.timeout
        try:
            await client.__aenter__()
        except BaseException:
            await client.abandon()
            raise
        return client

    async def publish(
        self, client: AckedClient, event: Event, body: bytes, content_type: str
    ) -> str | None:
        topic = base.expand(self.topic, event)
        properties = None
        if self.protocol == aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("id", event.id), ("type", event.type)]
            properties.ContentType = content_type
        try:
            await client.publish(
                topic,
                body,
                qos=self.qos,
                properties=properties,
                timeout=self.timeout,
            )
        except aiomqtt.MqttCodeError as exc:
            if exc.rc == paho.MQTT_ERR_NO_CONN:
                raise Stale from exc  # the broker had dropped us; nothing was sent
            raise
        refusal = client.refusals.pop(_MID.get(-1), None)
        if refusal is not None:
            raise Refused(
                f"the broker refused the message on '{topic}': {refusal} "
                f"(reason code 0x{refusal.value:02x})"
            )
        return {0: "sent (qos 0: no acknowledgement)", 1: "PUBACK", 2: "PUBCOMP"}[self.qos]

    async def disconnect(self, client: AckedClient) -> None:
        await client.__aexit__(None, None, None)


def _unquoted(value: str | None) -> str | None:
    return urllib.parse.unquote(value) if value is not None else None

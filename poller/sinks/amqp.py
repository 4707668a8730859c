"""The ``amqp`` sink: publishes each event to a RabbitMQ exchange, with publisher confirms.

Messages are persistent, carry the event id as ``message_id`` and its type and time as the
``type`` and ``timestamp`` properties, and are published ``mandatory``: a message no queue
is bound to take comes back, and that is a refusal rather than a silent loss. The exchange
is declared as a durable ``topic`` exchange when it does not exist yet; one that exists is
used as it is.

A batch is published together on the one confirming channel (the broker base's concurrent
publishes): each message is written while the confirms of those before it are still
outstanding, and the confirms (or returns) are gathered, each message judged on its own.
"""

from __future__ import annotations

import dataclasses

import aio_pika
import aio_pika.abc
import aio_pika.connection
import aio_pika.exceptions
import pamqp.commands

from poller.model import Event
from poller.sinks import base
from poller.sinks.broker import BrokerSink, Refused


@dataclasses.dataclass(frozen=True)
class Link:
    """One open connection, its confirming channel and the exchange published to."""

    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    exchange: aio_pika.abc.AbstractExchange


class AmqpSink(BrokerSink[Link]):
    """Publishes to ``exchange`` with ``routing_key`` (a template) on the broker at ``url``."""

    kind = "amqp"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        exchange: str,
        routing_key: str,
        format: str = "standard",
        timeout: float = 15.0,
    ) -> None:
        super().__init__(name, format=format, timeout=timeout)
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key

    async def connect(self) -> Link:
        # made here rather than by aio_pika.connect, so that a connect that fails (a refused
        # login) is closed too: else its finalizer closes it, warning, outside the event loop
        connection = aio_pika.Connection(aio_pika.connection.make_url(self.url))
        try:
            await connection.connect(timeout=self.timeout)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                exchange = await channel.get_exchange(self.exchange, ensure=True)
            except aio_pika.exceptions.ChannelClosed:
                # absent: the failed passive declare closed that channel
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.declare_exchange(
                    self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
        except BaseException:
            await connection.close()
            raise
        return Link(connection, channel, exchange)

    def alive(self, client: Link) -> bool:
        return not client.connection.is_closed and not client.channel.is_closed

    async def publish(
        self, client: Link, event: Event, body: bytes, content_type: str
    ) -> str | None:
        routing_key = base.expand(self.routing_key, event)
        try:
            await client.exchange.publish(
                message(event, body, content_type),
                routing_key,
                mandatory=True,
                timeout=self.timeout,
            )
        except aio_pika.exceptions.DeliveryError as exc:
            frame = exc.frame
            if isinstance(frame, pamqp.commands.Basic.Return):
                words = f"{frame.reply_code} {frame.reply_text}"
            else:
                words = "negative acknowledgement (basic.nack)"
            raise Refused(
                f"RabbitMQ returned the message: {words} (exchange '{self.exchange}', "
                f"routing key '{routing_key}'); bind a queue that takes it or change routing_key"
            ) from None
        return f"confirmed by the broker (exchange '{self.exchange}', routing key '{routing_key}')"

    async def disconnect(self, client: Link) -> None:
        await client.connection.close()


def message(event: Event, body: bytes, content_type: str) -> aio_pika.Message:
    """The persistent message that carries ``event``: its id, type and time as properties."""
    return aio_pika.Message(
        body,
        content_type=content_type,
        message_id=event.id,
        type=event.type,
        timestamp=event.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id="poller",
    )

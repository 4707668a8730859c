"""The ``nats`` sink: publishes each event to NATS JetStream, acknowledged by the stream.

The event id travels as the ``Nats-Msg-Id`` header, so a message sent again within the
stream's duplicate window (a retry after a lost acknowledgement) is dropped by the server:
JetStream stores each event once. A publish nobody answers ("no responders") is a refusal
only once JetStream itself says no stream covers the subject; when JetStream does not answer
either (a server just restarted, still loading its streams), the broker is away.

A batch is published asynchronously (JetStream's ``publish_async``): every message goes out
at once, each with its own reply inbox, and the acknowledgements are gathered; each message
counts on its own PubAck, as a single publish does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from poller.model import Event
from poller.sinks import base
from poller.sinks.broker import Answer, Away, BrokerSink, Message, Refused


async def _ignore(_error: Exception) -> None:
    """nats-py's error callback: failures reach poller as the outcome of each publish."""


class NatsSink(BrokerSink[Client]):
    """Publishes to ``subject`` (a template) on the NATS server at ``url``."""

    kind = "nats"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        subject: str,
        format: str = "standard",
        timeout: float = 15.0,
    ) -> None:
        super().__init__(name, format=format, timeout=timeout)
        self.url = url
        self.subject = subject
        self._jetstream: tuple[Client, JetStreamContext] | None = None
        """The JetStream context of the kept connection: it holds the async publishes'
        reply subscription, made once per connection."""

    async def connect(self) -> Client:
        # poller keeps the connection itself: a dropped one is replaced on the next attempt
        # rather than buffering publishes in the client while it reconnects
        return await nats.connect(
            self.url,
            name=f"poller-{self.name}",
            allow_reconnect=False,
            # one attempt (a second at once), not nats-py's default of minutes of retries
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=max(1, round(self.timeout)),
            error_cb=_ignore,
        )

    def alive(self, client: Client) -> bool:
        return client.is_connected

    async def publish(
        self, client: Client, event: Event, body: bytes, content_type: str
    ) -> str | None:
        subject = base.expand(self.subject, event)
        try:
            ack = await client.jetstream().publish(
                subject, body, timeout=self.timeout, headers=_headers(event, content_type)
            )
        except nats.js.errors.NoStreamResponseError:
            raise await self._no_responders(client, subject) from None
        except nats.js.errors.APIError as exc:
            raise _refusal(subject, exc) from None
        return _stored(ack)

    async def publish_many(self, client: Client, messages: Sequence[Message]) -> list[Answer]:
        js = self._context(client)
        subjects = [base.expand(self.subject, m.event) for m in messages]
        pending: list[asyncio.Future[PubAck] | BaseException] = []
        try:
            for subject, m in zip(subjects, messages, strict=True):
                try:
                    headers = _headers(m.event, m.content_type)
                    pending.append(await js.publish_async(subject, m.body, headers=headers))
                except Exception as exc:  # not sent (the connection is closed, say)
                    pending.append(exc)
            if futures := [f for f in pending if isinstance(f, asyncio.Future)]:
                await asyncio.wait(futures)
        finally:
            for f in pending:  # timed out: their slots in the client are freed
                if isinstance(f, asyncio.Future):
                    f.cancel()
        answers: list[Answer] = []
        why: dict[str, Exception] = {}
        for subject, sent in zip(subjects, pending, strict=True):
            error = sent if isinstance(sent, BaseException) else sent.exception()
            if error is None:
                assert isinstance(sent, asyncio.Future)
                answers.append(_stored(sent.result()))
            elif isinstance(error, nats.js.errors.NoStreamResponseError):
                if subject not in why:
                    why[subject] = await self._no_responders(client, subject)
                answers.append(why[subject])
            elif isinstance(error, nats.js.errors.APIError):
                answers.append(_refusal(subject, error))
            else:
                answers.append(error)
        return answers

    def _context(self, client: Client) -> JetStreamContext:
        if self._jetstream is None or self._jetstream[0] is not client:
            self._jetstream = (client, client.jetstream(timeout=self.timeout))
        return self._jetstream[1]

    async def _no_responders(self, client: Client, subject: str) -> Exception:
        """Why nobody answered a publish on ``subject``: JetStream's own word, if it has one."""
        try:
            stream = await client.jetstream(timeout=self.timeout).find_stream_name_by_subject(
                subject
            )
        except nats.js.errors.NotFoundError:
            return Refused(
                f"no JetStream stream takes subject '{subject}' (the server answered: "
                "503 no responders); add the subject to a stream or change the sink's subject"
            )
        except (nats.errors.Error, TimeoutError) as exc:
            return Away(
                f"JetStream is not answering (no responders to '{subject}', nor to its API: "
                f"{type(exc).__name__}); it may be starting, or not enabled on the server"
            )
        return Away(f"stream {stream} takes '{subject}' but did not answer (no responders)")

    async def disconnect(self, client: Client) -> None:
        await client.close()


def _headers(event: Event, content_type: str) -> dict[str, str]:
    return {"Nats-Msg-Id": event.id, "Content-Type": content_type}


def _refusal(subject: str, exc: nats.js.errors.APIError) -> Refused:
    return Refused(
        f"JetStream refused the message on '{subject}': {exc.description} "
        f"(code {exc.code}, error {exc.err_code})"
    )


def _stored(ack: PubAck) -> str:
    duplicate = ", a duplicate it already had" if ack.duplicate else ""
    return f"stored by stream {ack.stream} as message {ack.seq}{duplicate}"

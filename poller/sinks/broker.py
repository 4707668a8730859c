"""What the message-broker sinks (``nats``, ``amqp``, ``redis``, ``mqtt``) have in common.

Each keeps one connection, opened on the first delivery and opened again when the broker
dropped it (a restart); ``aclose`` closes it. An attempt counts as delivered only once the
broker acknowledged the message. A broker that cannot be reached, or does not answer within
``timeout``, is a failing sink (its circuit opens), and so is one that answers that it can
take nothing now (:class:`Away`); a broker that answers but refuses the message raises
:class:`Refused` in the subclass, which becomes a refusal carrying the broker's own words.
The body is the same envelope (or CloudEvents document) the ``http`` sink sends.

Several events may go in one call (``deliver_many``): they are published pipelined on the
connection and their acknowledgements gathered, each message judged on its own answer, as
if each had been delivered alone; one refused message leaves the others delivered.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

import structlog

from poller import utils
from poller.model import Event, Outcome
from poller.sinks import base

log = structlog.get_logger("poller.sinks")

C = TypeVar("C")

Answer = str | BaseException | None
"""What one message's publish came to: the broker's words, or the exception it met."""


class Refused(Exception):
    """The broker answered and will not take this message; ``str()`` gives its words."""


class Away(Exception):
    """The broker answered but can take no message now (starting, not persisting, without
    its replicas): the sink is failing, as if unreachable; ``str()`` says what it said."""


class Stale(Exception):
    """The kept connection had gone before anything was sent: connect again and send."""


@dataclasses.dataclass(frozen=True)
class Message:
    """One event to publish, its body rendered and the body's content type."""

    event: Event
    body: bytes
    content_type: str


class BrokerSink(abc.ABC, Generic[C]):
    """Publishes each event through one kept connection of type ``C`` to one broker."""

    kind: str = "broker"
    pipelined: bool = True
    """Whether the dispatcher sends it batches (``deliver_many``) rather than single events."""

    def __init__(self, name: str, *, format: str = "standard", timeout: float = 15.0) -> None:
        self.name = name
        self.format = format
        self.timeout = timeout
        self._client: C | None = None
        self._lock = asyncio.Lock()
        self.log = log.bind(sink=name, type=self.kind)

    # -- what each broker provides -------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> C:
        """A new, ready connection (raises when the broker cannot be reached)."""

    @abc.abstractmethod
    async def publish(self, client: C, event: Event, body: bytes, content_type: str) -> str | None:
        """Send one message and wait for the broker's acknowledgement; what it said, briefly.

        Raises :class:`Refused` when the broker answers no; anything else it raises means
        the broker could not be reached or did not answer.
        """

    @abc.abstractmethod
    async def disconnect(self, client: C) -> None:
        """Close ``client``."""

    def alive(self, client: C) -> bool:
        """Whether ``client`` is still connected; a dead one is replaced before publishing."""
        return True

    async def publish_many(self, client: C, messages: Sequence[Message]) -> list[Answer]:
        """Send several messages at once and wait for every acknowledgement; per message, in
        order, what the broker said or the exception its publish met (:class:`Refused`,
        :class:`Away`, :class:`Stale`, a network error).

        By default they are published concurrently over the one connection, each awaiting
        its own acknowledgement; a broker whose client pipelines better says so here.
        """
        return list(
            await asyncio.gather(
                *(self.publish(client, m.event, m.body, m.content_type) for m in messages),
                return_exceptions=True,
            )
        )

    # -- the Sink protocol ---------------------------------------------------------------

    async def deliver(self, event: Event) -> Outcome:
        return (await self.deliver_many([event]))[0]

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]:
        """Deliver ``events`` pipelined on the one connection: one outcome per event, in order.

        Each counts as delivered only on its own acknowledgement; a refusal is that message's
        alone, while a lost connection or a silent broker fails every message not yet answered.
        """
        messages = [Message(e, *base.render(e, self.format)) for e in events]
        started = time.perf_counter()
        client: C | None = None
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._connected()
                answers = await self._send(client, messages)
                if stale := [n for n, a in enumerate(answers) if isinstance(a, Stale)]:
                    # the kept connection had gone before they were sent: send them anew
                    await self._drop(client)
                    client = await self._connected()
                    again = await self._send(client, [messages[n] for n in stale])
                    for n, answer in zip(stale, again, strict=True):
                        answers[n] = answer
        except TimeoutError:
            await self._drop(client)
            return [_failed(self._silent(), started)] * len(messages)
        except Exception as exc:  # each client library raises its own zoo of network errors
            await self._drop(client)
            return [_failed(describe(exc), started)] * len(messages)
        outcomes = [self._outcome(answer, started) for answer in answers]
        if any(isinstance(a, BaseException) and not isinstance(a, Refused | Away) for a in answers):
            await self._drop(client)  # the connection is suspect: the next attempt opens anew
        return outcomes

    async def _send(self, client: C, messages: list[Message]) -> list[Answer]:
        if len(messages) == 1:
            m = messages[0]
            try:
                return [await self.publish(client, m.event, m.body, m.content_type)]
            except Exception as exc:
                return [exc]
        answers = await self.publish_many(client, messages)
        if len(answers) != len(messages):
            raise RuntimeError(f"{len(answers)} answers to {len(messages)} messages")
        return answers

    def _outcome(self, answer: Answer, started: float) -> Outcome:
        """The outcome of one message from what its publish came to."""
        if isinstance(answer, Refused):
            return Outcome(
                ok=False,
                error=utils.first_line(answer)[:300],
                rejected=True,
                duration_ms=base.elapsed_ms(started),
            )
        if isinstance(answer, Away):  # the connection is sound: it is kept for the next attempt
            return _failed(utils.first_line(answer)[:300], started)
        if isinstance(answer, TimeoutError):
            return _failed(self._silent(), started)
        if isinstance(answer, BaseException):
            return _failed(describe(answer), started)
        return Outcome(ok=True, duration_ms=base.elapsed_ms(started), detail=answer)

    def _silent(self) -> str:
        return f"no answer from the broker within {self.timeout:g}s"

    async def aclose(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await self._quietly_close(client)

    # -- the kept connection -------------------------------------------------------------

    async def _connected(self) -> C:
        client = self._client
        if client is not None and self.alive(client):
            return client
        async with self._lock:
            if self._client is not None and self.alive(self._client):
                return self._client
            stale, self._client = self._client, None
            if stale is not None:
                await self._quietly_close(stale)
            self._client = await self.connect()
            self.log.info("sink_connected", reconnected=stale is not None)
            return self._client

    async def _drop(self, client: C | None) -> None:
        """Forget a connection that failed, so the next attempt opens a new one."""
        if client is None or self._client is not client:
            return
        self._client = None
        await self._quietly_close(client)

    async def _quietly_close(self, client: C) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self.disconnect(client)


def _failed(error: str, started: float) -> Outcome:
    return Outcome(ok=False, error=error, duration_ms=base.elapsed_ms(started))


def describe(exc: BaseException) -> str:
    """One line naming a network failure: its type and first line, or its cause's."""
    text = str(exc).strip()
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__).strip()
    line = text.splitlines()[0] if text else ""
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__)[:300]

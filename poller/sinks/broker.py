"""What the message-broker sinks (``nats``, ``amqp``, ``redis``, ``mqtt``) have in common.

Each keeps one connection, opened on the first delivery and opened again when the broker
dropped it (a restart); ``aclose`` closes it. An attempt counts as delivered only once the
broker acknowledged the message. A broker that cannot be reached, or does not answer within
``timeout``, is a failing sink (its circuit opens), and so is one that answers that it can
take nothing now (:class:`Away`); a broker that answers but refuses the message raises
:class:`Refused` in the subclass, which becomes a refusal carrying the broker's own words.
The body is the same envelope (or CloudEvents document) the ``http`` sink sends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from typing import Generic, TypeVar

import structlog

from poller import utils
from poller.model import Event, Outcome
from poller.sinks import base

log = structlog.get_logger("poller.sinks")

C = TypeVar("C")


class Refused(Exception):
    """The broker answered and will not take this message; ``str()`` gives its words."""


class Away(Exception):
    """The broker answered but can take no message now (starting, not persisting, without
    its replicas): the sink is failing, as if unreachable; ``str()`` says what it said."""


class Stale(Exception):
    """The kept connection had gone before anything was sent: connect again and send."""


class BrokerSink(abc.ABC, Generic[C]):
    """Publishes each event through one kept connection of type ``C`` to one broker."""

    kind: str = "broker"

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

    # -- the Sink protocol ---------------------------------------------------------------

    async def deliver(self, event: Event) -> Outcome:
        body, content_type = base.render(event, self.format)
        started = time.perf_counter()
        client: C | None = None
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._connected()
                try:
                    answer = await self.publish(client, event, body, content_type)
                except Stale:
                    await self._drop(client)
                    client = await self._connected()
                    answer = await self.publish(client, event, body, content_type)
        except Refused as exc:
            return Outcome(
                ok=False,
                error=utils.first_line(exc)[:300],
                rejected=True,
                duration_ms=base.elapsed_ms(started),
            )
        except Away as exc:  # the connection is sound: it is kept for the next attempt
            return Outcome(
                ok=False, error=utils.first_line(exc)[:300], duration_ms=base.elapsed_ms(started)
            )
        except TimeoutError:
            await self._drop(client)
            return Outcome(
                ok=False,
                error=f"no answer from the broker within {self.timeout:g}s",
                duration_ms=base.elapsed_ms(started),
            )
        except Exception as exc:  # each client library raises its own zoo of network errors
            await self._drop(client)
            return Outcome(ok=False, error=describe(exc), duration_ms=base.elapsed_ms(started))
        return Outcome(ok=True, duration_ms=base.elapsed_ms(started), detail=answer)

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


def describe(exc: BaseException) -> str:
    """One line naming a network failure: its type and first line, or its cause's."""
    text = str(exc).strip()
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__).strip()
    line = text.splitlines()[0] if text else ""
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__)[:300]

"""The ``redis`` sink: appends each event to a Redis stream (``XADD``).

Each entry has the fields ``id`` (the event id), ``type`` and ``event`` (the envelope, or the
CloudEvents document, as JSON). It counts as delivered once ``XADD`` answered with the
entry's id. ``maxlen`` trims the stream approximately (``MAXLEN ~``) as entries are added.
Redis has no duplicate detection: a retry after a lost answer may add an entry twice, so
consumers de-duplicate on ``id``.

A batch goes as one pipeline (not a transaction): every ``XADD`` in one round trip, each
reply checked on its own, so one refused entry leaves the others added.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio
import redis.exceptions
from redis.typing import EncodableT, FieldT

from poller.model import Event
from poller.sinks.broker import Answer, Away, BrokerSink, Message, Refused

_BUSY = (
    "OOM",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "BUSY",
    "MISCONF",  # stop-writes-on-bgsave-error: its last snapshot failed
    "NOREPLICAS",  # min-replicas-to-write: too few replicas in reach
)
"""Error prefixes that say the server cannot write at all, not that it refuses this entry."""


class RedisSink(BrokerSink["redis.asyncio.Redis"]):
    """Appends to ``stream`` on the Redis server at ``url``."""

    kind = "redis"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        stream: str,
        maxlen: int | None = None,
        format: str = "standard",
        timeout: float = 15.0,
    ) -> None:
        super().__init__(name, format=format, timeout=timeout)
        self.url = url
        self.stream = stream
        self.maxlen = maxlen

    async def connect(self) -> redis.asyncio.Redis:
        client = redis.asyncio.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            client_name=f"poller-{self.name}",
        )
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return client

    async def publish(
        self, client: redis.asyncio.Redis, event: Event, body: bytes, content_type: str
    ) -> str | None:
        try:
            entry = await client.xadd(
                self.stream, _fields(event, body), maxlen=self.maxlen, approximate=True
            )
        except redis.exceptions.ResponseError as exc:
            raise self._refusal(exc) from None
        return self._added(entry)

    async def publish_many(
        self, client: redis.asyncio.Redis, messages: Sequence[Message]
    ) -> list[Answer]:
        async with client.pipeline(transaction=False) as pipe:
            for m in messages:
                pipe.xadd(
                    self.stream, _fields(m.event, m.body), maxlen=self.maxlen, approximate=True
                )
            replies = await pipe.execute(raise_on_error=False)
        return [
            self._refusal(r)
            if isinstance(r, redis.exceptions.ResponseError)
            else r
            if isinstance(r, BaseException)
            else self._added(r)
            for r in replies
        ]

    def _refusal(self, exc: redis.exceptions.ResponseError) -> Exception:
        """What an error reply to ``XADD`` means: the server cannot write, or refuses this."""
        if isinstance(exc, redis.exceptions.ReadOnlyError) or str(exc).startswith(_BUSY):
            # the server cannot write now, whatever the message: the sink is failing
            return Away(f"Redis cannot write now: {exc}")
        return Refused(f"Redis refused XADD to '{self.stream}': {exc}")

    def _added(self, entry: object) -> str:
        shown = entry.decode() if isinstance(entry, bytes) else str(entry)
        return f"added to stream {self.stream} as entry {shown}"

    async def disconnect(self, client: redis.asyncio.Redis) -> None:
        await client.aclose()


def _fields(event: Event, body: bytes) -> dict[FieldT, EncodableT]:
    return {"id": event.id, "type": event.type, "event": body}

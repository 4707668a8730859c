"""The ``redis`` sink: appends each event to a Redis stream (``XADD``).

Each entry has the fields ``id`` (the event id), ``type`` and ``event`` (the envelope, or the
CloudEvents document, as JSON). It counts as delivered once ``XADD`` answered with the
entry's id. ``maxlen`` trims the stream approximately (``MAXLEN ~``) as entries are added.
Redis has no duplicate detection: a retry after a lost answer may add an entry twice, so
consumers de-duplicate on ``id``.
"""

from __future__ import annotations

import redis.asyncio
import redis.exceptions
from redis.typing import EncodableT, FieldT

from poller.model import Event
from poller.sinks.broker import Away, BrokerSink, Refused

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
        fields: dict[FieldT, EncodableT] = {"id": event.id, "type": event.type, "event": body}
        try:
            entry = await client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        except redis.exceptions.ResponseError as exc:
            if isinstance(exc, redis.exceptions.ReadOnlyError) or str(exc).startswith(_BUSY):
                # the server cannot write now, whatever the message: the sink is failing
                raise Away(f"Redis cannot write now: {exc}") from None
            raise Refused(f"Redis refused XADD to '{self.stream}': {exc}") from None
        shown = entry.decode() if isinstance(entry, bytes) else str(entry)
        return f"added to stream {self.stream} as entry {shown}"

    async def disconnect(self, client: redis.asyncio.Redis) -> None:
        await client.aclose()

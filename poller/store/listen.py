"""Waking at once: PostgreSQL LISTEN/NOTIFY on a connection of its own.

``intake.add_events`` notifies ``intake.CHANNEL`` in the transaction that adds deliveries,
so every process sharing the store hears of them at commit, whichever wrote them, and
wakes its dispatchers. A hint that puts a job in its source's active set notifies
``sql.WAKE_CHANNEL`` the same way, so the replica leading that workspace — not only the
one whose proxy saw the call — polls the source soon (``hinted``). The
listener holds one psycopg connection in autocommit, outside the engine's pool (a pooled
connection would carry LISTEN to whoever borrows it next). Polling stays the fallback: a
missed or spurious wake-up costs one look at the outbox, nothing else. The channel is
database-wide, so the payload names the schema and other schemas' notices are ignored.
A lost connection is opened again after ``retry`` seconds, doubling while the store stays
away (up to ``max_retry``), and the dispatchers are woken then for whatever was committed
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import psycopg
import sqlalchemy as sa
import structlog

from poller import utils
from poller.store.intake import CHANNEL
from poller.store.sql import WAKE_CHANNEL

log = structlog.get_logger("poller.store")


def conninfo(url: sa.URL) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (its driver name dropped)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxListener:
    """A service that calls ``wake`` when a transaction commits new deliveries, and
    ``hinted(workspace, source)`` when one asks for a source to be polled soon."""

    name = "outbox-listener"

    def __init__(
        self,
        url: sa.URL,
        wake: Callable[[], None],
        *,
        hinted: Callable[[str, str], None] = lambda workspace, source: None,
        retry: float = 1.0,
        max_retry: float = 30.0,
        check_every: float = 10.0,
    ) -> None:
        self._conninfo = conninfo(url)
        self.wake = wake
        self.hinted = hinted
        self.retry = retry
        self.max_retry = max_retry
        self.check_every = check_every
        self.connects = 0
        """How many times the listener has connected (tests and logs read it)."""
        self.backend_pid: int | None = None
        """The PostgreSQL backend of the live listening connection, if any."""
        self.listening = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, reconnecting whenever the connection is lost."""
        listening = asyncio.create_task(self._reconnecting(), name="outbox-listen")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listening, stopping):
                task.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await listening  # an error of its own ends the daemon, as any service's

    async def _reconnecting(self) -> None:
        delay = self.retry
        while True:
            connects = self.connects
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                self.backend_pid = None
                if self.connects != connects:
                    delay = self.retry  # it was listening: the first retry comes soon
                log.warning("outbox_listener_lost", error=utils.first_line(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=10
        )
        async with conn:
            cursor = await conn.execute("SELECT current_schema()")
            row = await cursor.fetchone()
            schema = row[0] if row else None
            await conn.execute(f"LISTEN {CHANNEL}")
            await conn.execute(f"LISTEN {WAKE_CHANNEL}")
            self.connects += 1
            self.backend_pid = conn.info.backend_pid
            self.listening.set()
            log.info("outbox_listening", channel=CHANNEL, connects=self.connects)
            self.wake()  # whatever was committed while nobody listened
            while True:
                heard = False
                async for notice in conn.notifies(timeout=self.check_every):
                    heard = True
                    if notice.channel == WAKE_CHANNEL:
                        self._hinted(notice.payload, schema)
                    elif notice.payload == schema:
                        self.wake()
                if not heard:
                    await conn.execute("SELECT 1")  # a dead peer shows here, not in silence

    def _hinted(self, payload: str, schema: str | None) -> None:
        try:
            asked = json.loads(payload)
            workspace, source = asked["workspace"], asked["source"]
        except (ValueError, KeyError, TypeError):
            log.warning("wake_notice_unreadable", channel=WAKE_CHANNEL)
            return
        if asked.get("schema") == schema:
            self.hinted(str(workspace), str(source))

"""A running daemon stops when a newer release migrates its store under it.

In a rolling update the first replica of the new release migrates the store while replicas
of the old one still run; a revision they do not know may change what a claim or a
delivery means. So ``poller run`` reads the store's revision every third of
``store.claim_timeout``. On one it does not know it stops at once what it would send
(``on_newer``: no attempt starts, attempts in flight finish and are written), logs
``store_schema_newer`` once, and ends the daemon with that error: it exits with status 2,
as it would have refused to start on that store, and the orchestrator replaces it with the
new release. A store it cannot read just now is looked at again at the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import sqlalchemy as sa
import structlog

from poller.exceptions import SchemaVersionError
from poller.store import migrate

log = structlog.get_logger("poller.schemawatch")


class SchemaWatch:
    """The daemon's service that watches the store's schema revision."""

    name = "schema-watch"

    def __init__(self, engine: sa.Engine, *, interval: float, on_newer: Callable[[], None]):
        self.engine = engine
        self.interval = interval
        self.on_newer = on_newer

    async def run(self, stop: asyncio.Event) -> None:
        """Look every ``interval`` until ``stop``; raise ``SchemaVersionError`` on a newer one."""
        while not stop.is_set():
            try:
                revision = await asyncio.to_thread(migrate.unknown_revision, self.engine)
            except sa.exc.SQLAlchemyError:
                revision = None  # the store is away: the delivery and lease loops say so
            if revision is not None:
                self.on_newer()
                known = migrate.head()
                log.error("store_schema_newer", revision=revision, known=known)
                raise SchemaVersionError(
                    f"the store has schema revision {revision}, which this poller does not "
                    f"know (its newest is {known}): a newer poller migrated it, so this one "
                    "stopped sending; run the newer release"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
